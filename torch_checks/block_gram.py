"""Gram matrices of per-token scores over large parameter groups, with bounded memory.

For scores G (n × P) of a parameter group θ, the spectrum of F = GᵀG/n is that of the Gram
matrix K = GGᵀ/n (n × n). With P in the millions (a whole transformer block) G does not fit
in memory, but K is a sum over any partition of the columns: K = Σ_s G_s G_sᵀ / n. We split
θ into *shards* — row ranges of its parameter tensors (:func:`plan_shards`), each shard at
most ``budget_bytes`` of scores for all n rows — and for each shard compute the per-token
scores of that shard only (``jacrev`` with respect to the shard's rows, the rest of the model
fixed), add G_s G_sᵀ to the Gram, free G_s and go on. At most one shard's scores (≤ the
budget, for every score set together) plus the autograd work of one trajectory are resident.

Several *score sets* (e.g. the model and its quantized copy, on the same tokens) share the
shards: :func:`joint_gram` returns the Gram of their stacked scores [G₁; G₂; …], from which
λ_max(F(θ)), λ_max(F(θ̃)), v1ᵀEv1 and the reduction of (F, E) to the span of the scores
follow (:func:`gram_pair`), P×P never formed.

Head-free route. For an LM exposing ``hidden(idx)`` (the final normalised hidden state) and
a position-wise ``logits_from_hidden(h)``, and a group that does not touch the head, the
score of token t is ∇_θ s_t with s_t(θ) = ⟨g_t, h_t(θ)⟩ and g_t = ∂ log p_t/∂h_t at θ
(computed once per trajectory, the head in chunks of positions): exact, by the chain rule,
because log p_t depends on θ only through h_t. Its VJPs carry (T, d) cotangents instead of
(T, vocab) — for Gemma 3's 262,144-token head, the difference between feasible and not. If
the model also has ``embed(idx)`` and ``run_layers(x, start)``, the hidden state at the
input of the group's first block is computed once per trajectory (``run_layers(x, 0, start)``:
blocks ``0…start-1``, no final norm) and the shards' passes start there
(``run_layers(x, start)``: the remaining blocks and the final norm).

Accuracy: K is accumulated in float64 in shard order (a sum of n·P products per entry:
rounding ≈ P·eps·max|K| relative, the same as one GGᵀ); the reduced pair of
:func:`gram_pair` comes from an eigendecomposition of the joint Gram (see there).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from fimtheory.errors import InputError, UnknownIdError

from .scores import _logits

DEFAULT_BUDGET_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Piece:
    """Rows ``start:stop`` (dimension 0) of parameter ``name``; ``row_numel`` scalars each."""

    name: str
    start: int
    stop: int
    row_numel: int

    @property
    def numel(self) -> int:
        return (self.stop - self.start) * self.row_numel


@dataclass(frozen=True)
class Shard:
    """Consecutive pieces; its columns are contiguous in the flattened group."""

    pieces: tuple[Piece, ...]

    @property
    def numel(self) -> int:
        return sum(p.numel for p in self.pieces)


def plan_shards(module: nn.Module, names: Sequence[str], n_rows: int, budget_bytes: int, itemsize: int = 8):
    """Split the group ``names`` into shards of at most ``budget_bytes // (n_rows·itemsize)``
    columns each (row ranges of the tensors, in flattening order; small tensors share a shard).

    Raises
    ------
    InputError
        A budget that cannot hold one row of some tensor for all ``n_rows`` scores, or bad sizes.
    """
    if n_rows < 1 or budget_bytes < 1:
        raise InputError(f"n_rows and budget_bytes must be positive, got {n_rows}, {budget_bytes}")
    params = dict(module.named_parameters())
    bad = [n for n in names if n not in params]
    if bad:
        raise UnknownIdError(f"unknown parameter(s) {bad}")
    cols = budget_bytes // (n_rows * itemsize)
    shards: list[Shard] = []
    cur: list[Piece] = []
    used = 0
    for name in names:
        p = params[name]
        rows = p.shape[0] if p.ndim else 1
        row_numel = p.numel() // max(rows, 1)
        if row_numel > cols:
            raise InputError(
                f"a budget of {budget_bytes} bytes holds {cols} score columns for {n_rows} rows; "
                f"one row of {name} has {row_numel}: raise the budget"
            )
        r = 0
        while r < rows:
            take = min(rows - r, (cols - used) // row_numel)
            if take == 0:
                shards.append(Shard(tuple(cur)))
                cur, used = [], 0
                continue
            cur.append(Piece(name, r, r + take, row_numel))
            used += take * row_numel
            r += take
    if cur:
        shards.append(Shard(tuple(cur)))
    return shards


def _first_block(names: Sequence[str]) -> int | None:
    idx = []
    for n in names:
        m = re.match(r"model\.layers\.(\d+)\.", n)
        if not m:
            return None
        idx.append(int(m.group(1)))
    return min(idx) if idx else None


class _Suffix(nn.Module):
    def __init__(self, lm: nn.Module, start: int):
        super().__init__()
        self.lm = lm
        self.start = start

    def forward(self, x):
        return self.lm.run_layers(x, self.start)


class _Hidden(nn.Module):
    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, idx):
        return self.lm.hidden(idx)


def head_free_applies(module: nn.Module, names: Sequence[str]) -> bool:
    """Whether the head-free route applies: the model splits at its head and the group is
    inside numbered blocks (``model.layers.<i>.…``), so it does not touch the head or the final norm."""
    return hasattr(module, "hidden") and hasattr(module, "logits_from_hidden") and _first_block(names) is not None


class ShardScorer:
    """Per-token scores of one trajectory for one shard at a time.

    Parameters
    ----------
    module : nn.Module
        Causal LM, int64 ``(1, T)`` → logits ``(1, T, V)`` (or ``.logits``); eval mode, float64
        for checks.
    tokens : int64 tensor ``(T + 1,)``
        Inputs ``tokens[:-1]``, targets ``tokens[1:]``.
    route : ``"auto"``, ``"head-free"``, ``"per-position"`` or ``"full"``
        ``auto``: per-position for a model whose positions are independent given their own
        inputs (it has ``core`` and ``position_inputs(idx)``: position t's logits are
        ``core(position_inputs(idx)[t])``, e.g. a window classifier run as an LM; one
        backward per position instead of T VJPs through all positions), else head-free when
        :func:`head_free_applies`, else full.
    names : the group (to decide the route and the first block).
    head_chunk : positions per chunk of the head when computing g_t.
    """

    def __init__(self, module, tokens, names, *, route: str = "auto", head_chunk: int = 64, chunk_size=None):
        if route not in ("auto", "head-free", "per-position", "full"):
            raise InputError(f"unknown score route {route!r}")
        if tokens.ndim != 1 or tokens.shape[0] < 2:
            raise InputError("a trajectory must be a 1-D tensor of at least 2 tokens")
        self.module = module
        self.params = dict(module.named_parameters())
        dev = next(iter(self.params.values())).device
        self.x = tokens[:-1].to(dev).long()
        self.y = tokens[1:].to(dev).long()
        self.chunk_size = chunk_size
        free = head_free_applies(module, names)
        positional = hasattr(module, "core") and hasattr(module, "position_inputs")
        if route == "head-free" and not free:
            raise InputError("the head-free route needs hidden/logits_from_hidden and a group inside the blocks")
        if route == "per-position" and not positional:
            raise InputError("the per-position route needs core and position_inputs")
        if route == "auto":
            route = "per-position" if positional else ("head-free" if free else "full")
        self.route = route
        if self.route == "head-free":
            self._prepare_head_free(names, head_chunk)
        elif self.route == "per-position":
            if any(not n.startswith("core.") for n in names):
                raise InputError("the per-position route scores parameters of the core only")
            with torch.no_grad():
                self.inputs = module.position_inputs(self.x)

    def _prepare_head_free(self, names, head_chunk):
        m = self.module
        start = _first_block(names)
        with torch.no_grad():
            if hasattr(m, "embed") and hasattr(m, "run_layers"):
                x = m.run_layers(m.embed(self.x[None]), 0, start)  # blocks below the group, once
                self.inputs, self.wrapper, self.prefix = x, _Suffix(m, start), "lm."
            else:
                self.inputs, self.wrapper, self.prefix = self.x[None], _Hidden(m), "lm."
            h = m.hidden(self.x[None])[0]
        h = h.detach().requires_grad_(True)
        total = 0.0
        grads = torch.zeros_like(h)
        for i in range(0, h.shape[0], head_chunk):
            hc = h[i : i + head_chunk].detach().requires_grad_(True)
            lp = torch.log_softmax(m.logits_from_hidden(hc), dim=-1)
            s = lp.gather(-1, self.y[i : i + head_chunk, None]).sum()
            (g,) = torch.autograd.grad(s, hc)
            grads[i : i + head_chunk] = g
            total += float(s.detach())
        self.g_hidden = grads.detach()
        self.logp_sum = total

    def _full_params(self, pieces: dict[str, torch.Tensor], shard: Shard) -> dict[str, torch.Tensor]:
        """The overridden parameters: each piece's rows replaced by the variable ``pieces``."""
        by_name: dict[str, list[Piece]] = {}
        for pc in shard.pieces:
            by_name.setdefault(pc.name, []).append(pc)
        out = {}
        for name, pcs in by_name.items():
            p = self.params[name].detach()
            flat_rows = p.reshape(p.shape[0], -1) if p.ndim else p.reshape(1, 1)
            parts, r = [], 0
            for pc in sorted(pcs, key=lambda q: q.start):
                if pc.start > r:
                    parts.append(flat_rows[r : pc.start])
                parts.append(pieces[f"{name}[{pc.start}:{pc.stop}]"].reshape(pc.stop - pc.start, -1))
                r = pc.stop
            if r < flat_rows.shape[0]:
                parts.append(flat_rows[r:])
            out[name] = torch.cat(parts, dim=0).reshape(p.shape)
        return out

    def scores(self, shard: Shard) -> torch.Tensor:
        """(T, shard.numel) per-token scores of the shard, columns in flattening order."""
        init = {}
        for pc in shard.pieces:
            p = self.params[pc.name].detach()
            rows = p.reshape(p.shape[0], -1) if p.ndim else p.reshape(1, 1)
            init[f"{pc.name}[{pc.start}:{pc.stop}]"] = rows[pc.start : pc.stop].reshape(-1)

        if self.route == "head-free":
            g = self.g_hidden

            def objective(v):
                over = {self.prefix + k: t for k, t in self._full_params(v, shard).items()}
                h = functional_call(self.wrapper, over, (self.inputs,))[0]
                return (h * g).sum(-1)

        elif self.route == "per-position":
            core, y_all = self.module.core, self.y

            def logp_one(v, inp, y):
                over = {k[len("core.") :]: t for k, t in self._full_params(v, shard).items()}
                out = _logits(functional_call(core, over, (inp[None],))).reshape(-1)
                return torch.log_softmax(out, dim=-1).gather(0, y.reshape(1)).squeeze(0)

            with torch.no_grad():
                J = vmap(grad(logp_one), in_dims=(None, 0, 0), chunk_size=self.chunk_size)(init, self.inputs, y_all)
            T = self.x.shape[0]
            return torch.cat([J[f"{pc.name}[{pc.start}:{pc.stop}]"].reshape(T, -1) for pc in shard.pieces], dim=1)
        else:

            def objective(v):
                out = _logits(functional_call(self.module, self._full_params(v, shard), (self.x[None],)))[0]
                lp = torch.log_softmax(out, dim=-1)
                return lp.gather(-1, self.y[:, None]).squeeze(-1)

        with torch.no_grad():  # function transforms ignore an outer no_grad; the result is detached
            J = jacrev(objective, chunk_size=self.chunk_size)(init)
        T = self.x.shape[0]
        return torch.cat([J[f"{pc.name}[{pc.start}:{pc.stop}]"].reshape(T, -1) for pc in shard.pieces], dim=1)


class ScoreStore:
    """Shard scores of one score set kept on disk (``.npy`` files in ``directory``), so a set
    used in several joint Grams (the model beside each quantized copy) is scored once.

    Reading a shard back maps the file (``mmap_mode="r"``): resident memory stays within the
    budget. The files are removed by :meth:`close` (or when the store is garbage-collected).
    """

    def __init__(self, directory: str | None = None):
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="fimtheory-scores-", dir=directory)
        self.directory = self._tmp.name
        self.plan: tuple | None = None
        self.bytes_written = 0

    def _path(self, k: int) -> str:
        import os

        return os.path.join(self.directory, f"shard{k:05d}.npy")

    def has(self, k: int) -> bool:
        import os

        return os.path.exists(self._path(k))

    def put(self, k: int, S: torch.Tensor) -> None:
        a = S.detach().cpu().numpy()
        np.save(self._path(k), a)
        self.bytes_written += a.nbytes

    def get(self, k: int, device) -> torch.Tensor:
        return torch.from_numpy(np.load(self._path(k), mmap_mode="r").copy()).to(device)

    def close(self) -> None:
        self._tmp.cleanup()


@dataclass
class GramResult:
    """The (unnormalised) Gram matrix M = S Sᵀ of the stacked scores S of every score set.

    Attributes
    ----------
    M : np.ndarray
        (N, N) float64, N = Σ rows of the sets (divide by n for F's normalisation).
    rows : list of int
        Rows per score set.
    shards : int
    P : int
    budget_bytes : int
    peak_shard_bytes : int
        Largest resident score block (all sets, one shard).
    seconds : float
    route : str
    """

    M: np.ndarray
    rows: list
    shards: int
    P: int
    budget_bytes: int
    peak_shard_bytes: int
    seconds: float
    route: str


def joint_gram(
    sets: Sequence[tuple[nn.Module, Sequence[torch.Tensor]]],
    names: Sequence[str],
    *,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    route: str = "auto",
    progress: Callable[[str], None] | None = None,
    chunk_size: int | None = None,
    stores: Sequence[ScoreStore | None] | None = None,
    shards: Sequence[Shard] | None = None,
) -> GramResult:
    """Gram matrix of the stacked per-token scores of several (module, trajectories) sets.

    Every module must have the parameters ``names`` with the same shapes (a model and its
    quantized copy). The scores of all sets for one shard — at most ``budget_bytes`` — are
    resident at a time; the Gram is accumulated in float64. ``stores[i]`` (a
    :class:`ScoreStore`, or None) keeps set i's shard scores on disk: a store filled by an
    earlier call with the same shard plan is read instead of recomputed. ``shards`` fixes the
    plan (e.g. one planned for the largest joint Gram to come, so stores can be reused); the
    resident scores are then checked against the budget as they come.

    Raises
    ------
    InputError
        Empty sets, mismatched shapes, a budget too small for one tensor row.
    """
    if not sets:
        raise InputError("no score set")
    t0 = time.perf_counter()
    names = tuple(names)
    ref = dict(sets[0][0].named_parameters())
    for mod, _ in sets[1:]:
        ps = dict(mod.named_parameters())
        for n in names:
            if n not in ps or ps[n].shape != ref[n].shape:
                raise InputError(f"parameter {n} differs between the score sets")
    rows = [sum(int(tr.shape[0]) - 1 for tr in trajs) for _, trajs in sets]
    N = sum(rows)
    if N == 0:
        raise InputError("no token to score")
    dtype = ref[names[0]].dtype
    item = torch.finfo(dtype).bits // 8
    if shards is None:
        shards = plan_shards(sets[0][0], names, N, budget_bytes, item)
    shards = list(shards)
    if sum(sh.numel for sh in shards) != sum(ref[n].numel() for n in names):
        raise InputError("the shard plan does not cover the parameter group")
    dev = ref[names[0]].device
    stores = list(stores or [None] * len(sets))
    if len(stores) != len(sets):
        raise InputError(f"{len(stores)} stores for {len(sets)} score sets")
    plan = (tuple(shards), tuple(rows))
    cached = []
    for st, r in zip(stores, rows):
        if st is not None and st.plan is not None and st.plan != (plan[0], r):
            raise InputError("a score store was filled with another shard plan")
        cached.append(st is not None and st.plan is not None)
    scorers = [
        [] if hit else [ShardScorer(mod, tr, names, route=route, chunk_size=chunk_size) for tr in trajs]
        for hit, (mod, trajs) in zip(cached, sets)
    ]
    M = torch.zeros((N, N), dtype=torch.float64, device=dev)
    peak = 0
    for k, sh in enumerate(shards):
        S = torch.empty((N, sh.numel), dtype=dtype, device=dev)
        i = 0
        for j, per_set in enumerate(scorers):
            if cached[j]:
                S[i : i + rows[j]] = stores[j].get(k, dev)
                i += rows[j]
                continue
            i0 = i
            for sc in per_set:
                g = sc.scores(sh)
                S[i : i + g.shape[0]] = g
                i += g.shape[0]
                del g
            if stores[j] is not None:
                stores[j].put(k, S[i0:i])
        peak = max(peak, S.numel() * item)
        if S.numel() * item > budget_bytes:
            raise InputError(f"shard {k} holds {S.numel() * item} bytes of scores, over the budget of {budget_bytes}")
        S64 = S if S.dtype == torch.float64 else S.double()
        M.addmm_(S64, S64.T)
        del S, S64
        if progress is not None:
            progress(f"shard {k + 1}/{len(shards)} ({sh.numel} parameters)")
    for st, r, hit in zip(stores, rows, cached):
        if st is not None and not hit:
            st.plan = (plan[0], r)
    P = sum(ref[n].numel() for n in names)
    M = M.cpu().numpy()
    M = 0.5 * (M + M.T)
    route_used = next((per[0].route for per in scorers if per), route)
    return GramResult(M, rows, len(shards), int(P), int(budget_bytes), int(peak), time.perf_counter() - t0, route_used)


def block_gram(module, trajectories, names, **kw) -> GramResult:
    """:func:`joint_gram` of one score set."""
    return joint_gram([(module, trajectories)], names, **kw)


@dataclass(frozen=True)
class GramPair:
    """What the checks need of (F, F̃) from the joint Gram of [G; G̃] (n rows each).

    ``lambda1``, ``gap`` of F; ``lambda_q`` = λ_max(F̃); ``e11`` = v1ᵀEv1 (v1 the top
    eigenvector of F); ``A``, ``E``: F and E = F̃ − F reduced to the span of the rows of G and
    G̃ (r × r, r ≤ 2n), with the nonzero spectra of F, E and F + E.
    """

    lambda1: float
    gap: float
    lambda_q: float
    e11: float
    A: np.ndarray
    E: np.ndarray
    eigenvalues: np.ndarray


def gram_pair(M: np.ndarray, n: int) -> GramPair:
    """:class:`GramPair` from the joint Gram M = [G; G̃][G; G̃]ᵀ (2n × 2n, unnormalised).

    λ's from eigh of the diagonal blocks (/n); v1 = Gᵀu1/‖Gᵀu1‖ with u1 the top eigenvector of
    GGᵀ, so ‖G̃v1‖² = ‖(G̃Gᵀ)u1‖²/(u1ᵀGGᵀu1) and v1ᵀEv1 = (‖G̃v1‖² − ‖Gv1‖²)/n. The reduced pair:
    M = W diag(μ) Wᵀ, R = diag(√μ₊) Wᵀ is the coefficient matrix of the 2n score rows in an
    orthonormal basis of their span (RᵀR = M), so A = R₁R₁ᵀ/n and A + E = R₂R₂ᵀ/n. Eigenvalues
    μ ≤ 2n·eps·μ_max are dropped (directions not resolved by the Gram). Unlike the QR route of
    :func:`torch_checks.checks.reduced_pair` (backward stable on G itself), a Gram loses
    accuracy on directions whose μ is near that cut: absolute errors of A and E are
    ≈ √(eps·μ_max·μ_i)/n along them.
    """
    M = np.asarray(M, dtype=np.float64)
    if M.shape != (2 * n, 2 * n):
        raise InputError(f"the joint Gram must be {2 * n} × {2 * n}, got {M.shape}")
    K0, Kq, C = M[:n, :n], M[n:, n:], M[n:, :n]
    w0, U0 = np.linalg.eigh(0.5 * (K0 + K0.T))
    u1 = U0[:, -1]
    mu1 = float(u1 @ K0 @ u1)
    lam1 = float(w0[-1]) / n
    gap = float(w0[-1] - w0[-2]) / n if n > 1 else math.inf
    lam_q = float(np.linalg.eigvalsh(0.5 * (Kq + Kq.T))[-1]) / n
    cu = C @ u1
    e11 = (float(cu @ cu) / mu1 - mu1) / n if mu1 > 0 else float(Kq.trace() * 0)
    mu, W = np.linalg.eigh(M)
    keep = mu > 2 * n * np.finfo(np.float64).eps * max(float(mu[-1]), 0.0)
    R = np.sqrt(mu[keep])[:, None] * W[:, keep].T
    R1, R2 = R[:, :n], R[:, n:]
    A = R1 @ R1.T / n
    Aq = R2 @ R2.T / n
    A = 0.5 * (A + A.T)
    Aq = 0.5 * (Aq + Aq.T)
    return GramPair(lam1, gap, lam_q, e11, A, Aq - A, w0[::-1] / n)


def reduce_family(M: np.ndarray, n: int, k: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """F and E_j = F̃_j − F (j = 1…k) reduced to the span of the rows of G, G̃_1, …, G̃_k,
    from their joint Gram M ((k+1)n square, unnormalised), as in :func:`gram_pair`: one
    common orthonormal basis, so any combination F + Σ c_j E_j keeps its nonzero spectrum."""
    M = np.asarray(M, dtype=np.float64)
    if M.shape != ((k + 1) * n, (k + 1) * n):
        raise InputError(f"the joint Gram must be {(k + 1) * n} square, got {M.shape}")
    mu, W = np.linalg.eigh(0.5 * (M + M.T))
    keep = mu > (k + 1) * n * np.finfo(np.float64).eps * max(float(mu[-1]), 0.0)
    R = np.sqrt(mu[keep])[:, None] * W[:, keep].T
    blocks = []
    for j in range(k + 1):
        Rj = R[:, j * n : (j + 1) * n]
        B = Rj @ Rj.T / n
        blocks.append(0.5 * (B + B.T))
    return blocks[0], [B - blocks[0] for B in blocks[1:]]


def sub_gram(M: np.ndarray, n: int, i: int, j: int) -> np.ndarray:
    """The joint Gram of score sets i and j (n rows each) taken out of a larger joint Gram."""
    idx = np.r_[i * n : (i + 1) * n, j * n : (j + 1) * n]
    return M[np.ix_(idx, idx)]


def gram_from_stores(stores: Sequence[ScoreStore], n_shards: int, device="cpu") -> np.ndarray:
    """Joint Gram of the score sets kept in ``stores`` (filled with one shard plan), summed
    over the shards with two sets' shard scores resident at a time (each S_i S_jᵀ, i ≤ j)."""
    if not stores or any(st is None or st.plan is None for st in stores):
        raise InputError("every store must hold a complete score set")
    rows = [st.plan[1] for st in stores]
    if len({st.plan[0] for st in stores}) != 1:
        raise InputError("the stores were filled with different shard plans")
    off = np.concatenate([[0], np.cumsum(rows)])
    N = int(off[-1])
    M = torch.zeros((N, N), dtype=torch.float64, device=device)
    for k in range(n_shards):
        for i in range(len(stores)):
            Si = stores[i].get(k, device).double()
            for j in range(i, len(stores)):
                Sj = Si if j == i else stores[j].get(k, device).double()
                B = Si @ Sj.T
                M[off[i] : off[i + 1], off[j] : off[j + 1]] += B
                if j != i:
                    M[off[j] : off[j + 1], off[i] : off[i + 1]] += B.T
                del Sj, B
            del Si
    M = M.cpu().numpy()
    return 0.5 * (M + M.T)
