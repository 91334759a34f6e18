"""Streaming σ_t = λ_max(F_t) / λ_base along a generation, with the model's KV cache.

:class:`StreamingSigma` is the deployment form of :class:`torch_checks.monitor.SigmaMonitor`:
the model generates (or reads) one token at a time and every token x_t (t ≥ 1) adds the score
g_t = ∇_θ log p(x_t | x_<t; θ) to F_t = (1/n) Σ g_s g_sᵀ over the last n scores (all of them,
or the last ``window``). Two ways of computing g_t:

``"kv-cache"`` (position-wise groups)
    θ is *position-wise* when every use of θ that reaches log p(x_t | x_<t) happens at position
    t − 1 (the last block's MLP, the final norm, an untied output head: nothing after θ mixes
    positions). Then no cached key/value depends on θ, and g_t is the gradient of one
    single-token forward with the cache (``past_key_values``): hooks on the layers that hold θ
    record the layer input a and add a zero probe to its output, whose gradient is δ. A
    ``nn.Linear`` / Hugging Face ``Conv1D`` weight has the rank-one score δ ⊗ a, its bias δ, an
    ``nn.Embedding`` weight e_idx ⊗ δ; the stream stores only the factors (δ, a, idx), and the
    Gram entries are (δ_t·δ_s)(a_t·a_s) (+ δ_t·δ_s for a bias, [idx_t = idx_s] for an
    embedding). Any other θ tensor (a norm weight, a custom layer's tensor) is stored as its
    dense gradient row. **Cost per push**: one single-token forward with the cache (its
    attention reads the t cached keys: O(t·d) flops per layer, small against the layers'
    O(d²) for the t of a context), the backward from log p to the probes (the layers after θ
    only), O(n·(d_in + d_out)) for the new Gram column, and warm-started Lanczos on the n × n
    Gram (O(n²) per step, a few steps). With a window n ≤ W, so the score and eigen parts do
    not grow with t; without one, the Gram column and Lanczos steps grow with n = t.
``"recompute"`` (general groups)
    θ also acts through the cached keys/values of earlier positions (an earlier block, a tied
    input embedding), so the exact score needs a backward through the whole prefix. The stream
    re-runs the prefix (at most ``max_context`` tokens) forward and backward for every token:
    O(t) layer work and O(t²) attention per push, plus O(n·P) for the Gram column of a dense
    score row of length P. This is the cost of the exact score; it is measured in
    ``results/streaming.json`` (by :func:`measure_stream`, whose ``seconds`` is the wall-clock
    time from the first push to the report, by ``time.perf_counter``, rounded to 0.01 s).

``mode="auto"`` decides with a check, not a guess (:func:`classify_group`): the Gram matrix of
the scores of a probe sequence computed by the cached path must equal the dense float64 Gram
of the full-prefix scores (:func:`torch_checks.scores.per_token_scores`) to ``1e-8`` relative
(float64 model; ``1e-3`` for a float32 model); otherwise the group is general.

λ_max(K_n / n) comes from Lanczos with full reorthogonalisation on the n × n Gram, warm-started
from the previous top eigenvector (its new coordinate by one power step), stopped when the
Ritz residual estimate is ≤ ``tol``·θ and accepted only when the explicit residual
‖K y − θ y‖ ≤ 10·``tol``·θ; otherwise a dense ``eigvalsh`` is used (counted in
:attr:`StreamingSigma.fallbacks`). The value is within 10·``tol`` relative of an eigenvalue of
K_n / n — in practice of λ_max, compared with the dense float64 reference in the tests.

Units: scores in nats per θ-unit, λ in nats² per θ-unit², σ dimensionless.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fimtheory.errors import HypothesesNotMet, InputError

from .engines import _layer_kind, _refuse_layer
from .monitor import StreamStateError, _broken_stream_message, _orthogonal_restart, require_eval_mode
from .scores import _logits, per_token_scores

__all__ = [
    "MODES",
    "StreamingSigma",
    "StreamStateError",
    "Component",
    "classify_group",
    "full_prefix_lambdas",
    "supports_kv_cache",
]

MODES = ("auto", "kv-cache", "recompute")
#: relative agreement of the cached-path Gram with the dense full-prefix Gram for "kv-cache"
CLASSIFY_RTOL = {torch.float64: 1e-8, torch.float32: 1e-3}


# --------------------------------------------------------------------------- θ components


@dataclass
class Component:
    """How one hooked module (or one dense θ tensor) contributes to the score.

    ``kind``: "linear" / "hf_conv1d" (weight δ ⊗ a and/or bias δ), "embedding" (e_idx ⊗ δ) or
    "dense" (the gradient of the tensor itself). ``names``: the θ names it covers.
    """

    kind: str
    names: tuple[str, ...]
    module: nn.Module | None = None
    module_name: str = ""
    weight: bool = False
    bias: bool = False
    tensor: torch.Tensor | None = None


def _holders(model: nn.Module):
    out: dict[int, list[tuple[str, nn.Module, str]]] = {}
    for mname, mod in model.named_modules(remove_duplicate=False):
        for role, p in mod._parameters.items():
            if p is not None:
                out.setdefault(id(p), []).append((mname, mod, role))
    return out


def plan_components(model: nn.Module, param_names: Sequence[str]) -> list[Component]:
    """The components of θ: one per supported layer holding θ tensors, one per other tensor.

    Raises
    ------
    InputError
        Empty, duplicate or unknown names, or two names of one (tied) tensor.
    """
    names = tuple(param_names)
    if not names:
        raise InputError("the parameter group is empty")
    if len(set(names)) != len(names):
        raise InputError(f"duplicate parameter names in {names}")
    allp = dict(model.named_parameters(remove_duplicate=False))
    bad = [n for n in names if n not in allp]
    if bad:
        raise InputError(f"unknown parameter(s) {bad}")
    seen: dict[int, str] = {}
    for n in names:
        if id(allp[n]) in seen:
            raise InputError(f"{n!r} and {seen[id(allp[n])]!r} are the same (tied) tensor; list it once")
        seen[id(allp[n])] = n
    holders = _holders(model)
    by_module: dict[int, Component] = {}
    comps: list[Component] = []
    for n in names:
        t = allp[n]
        hold = holders.get(id(t), [])
        if len(hold) == 1:
            mname, mod, role = hold[0]
            kind = _layer_kind(mod)
            if kind in ("linear", "hf_conv1d", "embedding") and _refuse_layer(mod, kind, role) is None:
                c = by_module.get(id(mod))
                if c is None:
                    c = Component(kind, (), mod, mname)
                    by_module[id(mod)] = c
                    comps.append(c)
                c.names = c.names + (n,)
                if role == "weight":
                    c.weight = True
                else:
                    c.bias = True
                continue
        comps.append(Component("dense", (n,), tensor=t))
    return comps


def supports_kv_cache(model: nn.Module) -> bool:
    """Whether ``model``'s forward takes ``past_key_values`` and ``use_cache`` (the Hugging Face
    causal-LM interface) — the cached path needs both."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return _cache_kwarg(model) is not None and "use_cache" in params and hasattr(model, "config")


def _cache_kwarg(model: nn.Module) -> str | None:
    """The name of the forward's cache argument (``cache`` in recent transformers,
    ``past_key_values`` before), or None."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


def _detach_cache(cache) -> bool:
    """Detach the cached keys/values in place (no autograd graph is kept across tokens); True
    if some of them required grad, i.e. θ (or a probe on a θ layer) reaches the cache."""
    leaked = False
    for layer in getattr(cache, "layers", None) or ():
        for attr in ("keys", "values"):
            t = getattr(layer, attr, None)
            if isinstance(t, torch.Tensor) and t.requires_grad:
                leaked = True
                setattr(layer, attr, t.detach())
    return leaked


def _is_hf(model: nn.Module) -> bool:
    cfg = getattr(model, "config", None)
    return cfg is not None and hasattr(cfg, "use_cache")


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float64


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _max_context(model: nn.Module) -> int | None:
    cfg = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "context"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


# --------------------------------------------------------------------------- the Gram store


class _GramStore:
    """Score factors of the last n tokens and their n × n Gram matrix (float64).

    Unwindowed: slots 0..n−1, capacity doubling. Windowed: a ring of W slots (λ_max does not
    depend on the order of the scores).
    """

    def __init__(self, comps: list[Component], window: int | None, device):
        self.comps = comps
        self.window = window
        self.device = device
        self.cap = 16 if window is None else window
        self.n = 0  # active slots
        self.pushed = 0  # scores pushed in total
        self.bufs: list[dict[str, torch.Tensor]] = [{} for _ in comps]
        self.K = torch.zeros(self.cap, self.cap, dtype=torch.float64, device=device)

    def _alloc(self, i: int, key: str, like: torch.Tensor) -> torch.Tensor:
        shape = (self.cap, *like.shape)
        buf = self.bufs[i].get(key)
        if buf is None:
            buf = torch.zeros(shape, dtype=like.dtype, device=self.device)
            self.bufs[i][key] = buf
        return buf

    def _grow(self) -> None:
        new = 2 * self.cap
        K = torch.zeros(new, new, dtype=torch.float64, device=self.device)
        K[: self.n, : self.n] = self.K[: self.n, : self.n]
        self.K = K
        for b in self.bufs:
            for key, buf in list(b.items()):
                nb = torch.zeros((new, *buf.shape[1:]), dtype=buf.dtype, device=self.device)
                nb[: self.n] = buf[: self.n]
                b[key] = nb
        self.cap = new

    def add(self, factors: list[dict[str, torch.Tensor]]) -> tuple[int, torch.Tensor]:
        """Store one score (its factors per component); return (slot, new Gram column over the
        active slots, the slot's own entry included)."""
        if self.window is None:
            if self.n == self.cap:
                self._grow()
            slot = self.n
            self.n += 1
        else:
            slot = self.pushed % self.window
            self.n = min(self.n + 1, self.window)
        self.pushed += 1
        n = self.n
        col = torch.zeros(n, dtype=torch.float64, device=self.device)
        for i, (c, f) in enumerate(zip(self.comps, factors)):
            for key, v in f.items():
                self._alloc(i, key, v)[slot] = v
            b = self.bufs[i]
            if c.kind == "dense":
                col += b["g"][:n] @ f["g"]
                continue
            dd = b["d"][:n] @ f["d"]
            if c.kind == "embedding":
                col += dd * (b["idx"][:n] == f["idx"]).to(torch.float64)
                continue
            other = torch.zeros_like(dd)
            if c.weight:
                other += b["a"][:n] @ f["a"]
            if c.bias:
                other += 1.0
            col += dd * other
        self.K[slot, :n] = col
        self.K[:n, slot] = col
        return slot, col

    def active(self) -> torch.Tensor:
        return self.K[: self.n, : self.n]


def _lanczos_top(K: torch.Tensor, start: torch.Tensor | None, tol: float, max_iter: int):
    """Top eigenpair of the symmetric PSD K by Lanczos (full reorthogonalisation) from ``start``.

    Returns (θ, unit vector, steps, converged); converged means the explicit residual
    ‖K y − θ y‖ ≤ 10·tol·θ.

    When the Krylov space of the start becomes invariant before it spans the whole space (a
    start in the null space of K, or orthogonal to the top eigenvector), its Ritz values are
    eigenvalues of K with a zero residual that need not include the largest one. There the rest
    of the spectrum is bounded by (‖K‖_F² − Σ‖T‖_F²)^½ (the tridiagonal matrices so far); when
    that bound is above the best Ritz value, Lanczos restarts from a seeded random vector
    orthogonal to the space spanned so far, in the same step budget (as
    :func:`torch_checks.monitor.top_eig_warm`). A budget spent before that bound is met is
    reported as not converged.
    """
    n = K.shape[0]
    if start is None or not bool(torch.isfinite(start).all()) or float(torch.linalg.vector_norm(start)) == 0.0:
        start = torch.ones(n, dtype=K.dtype, device=K.device)
    q = start / torch.linalg.vector_norm(start)
    m = min(n, max(1, int(max_iter)))
    Q = torch.empty(m, n, dtype=K.dtype, device=K.device)
    alphas: list[float] = []  # the current block's tridiagonal matrix
    betas: list[float] = []
    scale2 = float(torch.linalg.matrix_norm(K, ord="fro")) ** 2
    # a breakdown: β at the rounding level of K's dtype (1e-14‖K‖_F in float64, ~2e-6‖K‖_F in float32)
    breakdown = max(1e-14, 16 * torch.finfo(K.dtype).eps) * scale2**0.5
    first = 0  # first Lanczos vector of the current block (a restart begins a new block)
    kept: tuple[float, torch.Tensor] | None = None  # best Ritz pair of the finished (invariant) blocks
    kept_frob2 = 0.0  # their ‖T‖_F²
    exhausted = False  # True: the budget ran out before the rest of the spectrum was bounded
    rng = None
    theta, s, steps = 0.0, np.ones(1), 0
    for k in range(m):
        Q[k] = q
        w = K @ q
        alpha = float(torch.dot(w, q))
        alphas.append(alpha)
        for _ in range(2):
            w = w - Q[: k + 1].T @ (Q[: k + 1] @ w)
        beta = float(torch.linalg.vector_norm(w))
        T = np.diag(alphas)
        if len(alphas) > 1:
            T += np.diag(betas, 1) + np.diag(betas, -1)
        ev, evec = np.linalg.eigh(T)
        theta, s, steps = float(ev[-1]), evec[:, -1], k + 1
        invariant = beta <= breakdown
        if not invariant and theta > 0.0 and beta * abs(s[-1]) <= tol * theta:
            break
        if k + 1 == n:  # the blocks span the whole space: the best of their Ritz values is λ_max
            break
        if invariant:
            y = Q[first : k + 1].T @ torch.as_tensor(s, dtype=K.dtype, device=K.device)
            if kept is None or theta > kept[0]:
                kept = (theta, y / torch.linalg.vector_norm(y))
            kept_frob2 += sum(a * a for a in alphas) + 2.0 * sum(b * b for b in betas)
            if max(scale2 - kept_frob2, 0.0) ** 0.5 <= kept[0]:  # every eigenvalue outside ≤ kept θ
                break
            if k + 1 == m:
                exhausted = True
                break
            q, rng = _orthogonal_restart(Q[: k + 1], rng)
            first, alphas, betas = k + 1, [], []
            continue
        betas.append(beta)
        q = w / beta
    else:
        exhausted = True
    y = Q[first:steps].T @ torch.as_tensor(s, dtype=K.dtype, device=K.device)
    y = y / torch.linalg.vector_norm(y)
    certified = True  # the current block's Ritz pair: Lanczos' usual residual standard
    if kept is not None and kept[0] >= theta:
        theta, y = kept
        certified = not exhausted  # an invariant block's pair, certified only by the bound
    if theta <= 0.0:
        return 0.0, y, steps, bool(float(K.abs().max()) == 0.0)
    res = float(torch.linalg.vector_norm(K @ y - theta * y))
    return theta, y, steps, certified and res <= 10 * tol * theta


# --------------------------------------------------------------------------- the stream


@dataclass
class PushRecord:
    """One token of the stream: position t (0-based index of the token), its id, σ_t (NaN for
    the first token, which nothing predicts), λ_max(F_t), whether σ_t > the threshold (with at
    least ``min_scores`` scores), the number of scores in F_t, and the
    seconds spent in the model (forward + score) and in the Gram/eigen update (wall clock, and
    CPU time of this process: with one torch thread, insensitive to other processes' load)."""

    t: int
    token: int
    sigma: float
    lam: float
    alert: bool
    n_scores: int
    model_seconds: float
    gram_seconds: float
    model_cpu_seconds: float = float("nan")
    gram_cpu_seconds: float = float("nan")


class StreamingSigma:
    """σ_t per token along a generation (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        Causal LM in eval mode (refused in training mode): int64 ``(1, T)`` → logits
        ``(1, T, V)`` (or ``.logits``). The cached path also needs the Hugging Face
        ``cache`` (or ``past_key_values``) / ``use_cache`` interface. Not modified (parameter
        ``requires_grad`` flags are switched off during each forward and restored).
    param_names : sequence of str
        θ (e.g. from :func:`torch_checks.param_groups.select_params`).
    lambda_base : float
        Positive finite baseline (calibrated on the full-precision model).
    threshold : float or None
        τ: ``alert`` is σ_t > τ once F_t holds ``min_scores`` scores (None: never).
    min_scores : int
        Alerts are armed only from this many scores on (σ of a handful of scores is not the
        calibrated statistic: calibrate over T tokens or a window W and arm at T or W).
    window : int or None
        Keep only the last ``window`` scores in F_t.
    mode : {"auto", "kv-cache", "recompute"}
        "auto" runs :func:`classify_group` on ``probe_tokens`` (default: 8 seeded random ids).
    tol, max_iter : float, int
        Lanczos relative residual tolerance (λ_max(F_t) is returned within 10·tol relative of
        an eigenvalue of F_t; the tests compare it with the dense reference) and steps per token.

    Attributes
    ----------
    mode : str
        The path in use; ``mode_reason`` says why.
    records : list of PushRecord
    fallbacks : int
        Dense eigvalsh fallbacks of the warm Lanczos.
    next_logits : torch.Tensor or None
        Logits (V,) of the next token after the last push (for generation).

    Notes
    -----
    A bad token id or a push past the model's context raises
    :class:`~fimtheory.errors.InputError` before anything changes. Any exception raised after
    that inside :meth:`push` or :meth:`skip` (a model error, an out-of-memory error, a
    KeyboardInterrupt) may leave the tokens, the KV cache and the scores out of step (the
    tokens are appended and a cached forward may update the cache in place before the score
    is computed), so the stream is then marked inconsistent: every later :meth:`push`,
    :meth:`skip` and :meth:`generate` raises :class:`StreamStateError` (naming the original
    exception type) until :meth:`reset`.
    """

    def __init__(
        self,
        model: nn.Module,
        param_names: Sequence[str],
        lambda_base: float,
        *,
        threshold: float | None = None,
        min_scores: int = 1,
        window: int | None = None,
        mode: str = "auto",
        tol: float = 1e-8,
        max_iter: int = 60,
        probe_tokens: torch.Tensor | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        require_eval_mode(model, what="the streaming monitor")
        lb = float(lambda_base)
        if not math.isfinite(lb) or lb <= 0:
            raise InputError(f"lambda_base must be positive and finite, got {lambda_base!r}")
        if threshold is not None and not math.isfinite(float(threshold)):
            raise InputError(f"threshold must be finite, got {threshold!r}")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise InputError(f"window must be a positive integer or None, got {window!r}")
        if mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(min_scores, bool) or not isinstance(min_scores, int) or min_scores < 1:
            raise InputError(f"min_scores must be a positive integer, got {min_scores!r}")
        self.min_scores = min_scores
        if not tol > 0:
            raise InputError(f"tol must be positive, got {tol!r}")
        self.model = model
        self._params = list(model.parameters())
        self.param_names = tuple(param_names)
        self.comps = plan_components(model, self.param_names)
        self.lambda_base = lb
        self.threshold = None if threshold is None else float(threshold)
        self.window = window
        self.tol, self.max_iter = float(tol), int(max_iter)
        self.device = _model_device(model)
        self.dtype = _model_dtype(model)
        self.max_context = _max_context(model)
        self._hf = _is_hf(model)
        self._cache_kw = _cache_kwarg(model) or "past_key_values"
        if mode == "auto":
            mode, why = classify_group(model, self.param_names, probe_tokens)
        elif mode == "kv-cache":
            if not supports_kv_cache(model):
                raise InputError("mode 'kv-cache' needs a model with the past_key_values / use_cache interface")
            why = "requested"
        else:
            why = "requested"
        self.mode, self.mode_reason = mode, why
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget the stream (tokens, cache, scores) and clear an inconsistent-state mark."""
        self._broken: str | None = None  # the exception type that left the stream inconsistent
        self.tokens: list[int] = []
        self._cache = None
        self.cache_depends_on_theta = False
        self._pending = None  # (logits, probes, captured) of the last forward
        self.next_logits: torch.Tensor | None = None
        comps = self.comps
        if self.mode == "recompute":  # the recompute path stores dense score rows
            comps = [Component("dense", c.names) for c in self.comps]
        self.store = _GramStore(comps, self.window, self.device)
        self._u: torch.Tensor | None = None
        self._theta = 0.0
        self.records: list[PushRecord] = []
        self.fallbacks = 0
        self.iterations: list[int] = []
        self._rng = torch.Generator().manual_seed(0)  # the warm start's random component

    @property
    def sigmas(self) -> list[float]:
        return [r.sigma for r in self.records]

    @property
    def lambdas(self) -> list[float]:
        return [r.lam for r in self.records]

    # ------------------------------------------------------------------ model calls

    def _frozen(self, keep: Sequence[torch.Tensor] = ()):
        """Context: every parameter with requires_grad False except ``keep`` (restored after)."""
        params = self._params
        keep_ids = {id(t) for t in keep}

        class _Ctx:
            def __enter__(self_):
                self_.flags = [(p, p.requires_grad) for p in params]
                for p, _ in self_.flags:
                    p.requires_grad_(id(p) in keep_ids)

            def __exit__(self_, *exc):
                for p, f in self_.flags:
                    p.requires_grad_(f)

        return _Ctx()

    def _forward(self, ids: torch.Tensor, *, use_cache: bool, with_probes: bool):
        """Forward ``ids`` (1-D) with hooks; return (logits (L, V), captured {comp index: (a, probe)})."""
        captured: dict[int, list] = {}
        handles = []
        dense = [c.tensor for c in self.comps if c.kind == "dense"]
        if with_probes:
            for i, c in enumerate(self.comps):
                if c.kind == "dense":
                    continue

                def hook(m, args, out, i=i):
                    probe = torch.zeros_like(out, requires_grad=True)
                    captured.setdefault(i, []).append((args[0].detach(), probe))
                    return out + probe

                handles.append(c.module.register_forward_hook(hook))
        kw = {}
        if self._hf:
            kw["use_cache"] = use_cache
            if use_cache:
                kw[self._cache_kw] = self._cache
        try:
            with self._frozen(dense if with_probes else ()), torch.set_grad_enabled(with_probes):
                out = self.model(ids.to(self.device).reshape(1, -1), **kw)
        finally:
            for h in handles:
                h.remove()
        if use_cache:
            self._cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            if _detach_cache(self._cache):
                self.cache_depends_on_theta = True
        logits = _logits(out)[0]
        return logits, captured

    def _factors(self, logp: torch.Tensor, captured) -> list[dict[str, torch.Tensor]]:
        """Score factors of log p (one position) per component."""
        probes, slots = [], []
        for i, calls in captured.items():
            if len(calls) != 1:
                raise HypothesesNotMet(
                    f"{self.comps[i].module_name} was called {len(calls)} times in one single-token "
                    "forward; the cached path needs one call per token (use mode='recompute')"
                )
            probes.append(calls[0][1])
            slots.append(i)
        self._require_called(captured)
        dense_idx = [i for i, c in enumerate(self.comps) if c.kind == "dense"]
        inputs = probes + [self.comps[i].tensor for i in dense_idx]
        grads = torch.autograd.grad(logp, inputs, allow_unused=True) if logp.requires_grad else [None] * len(inputs)
        out: list[dict[str, torch.Tensor]] = [{} for _ in self.comps]
        f64 = torch.float64
        for j, i in enumerate(slots):
            c, (a, probe) = self.comps[i], captured[i][0]
            g = grads[j]
            d = torch.zeros_like(probe) if g is None else g
            d = d.reshape(-1, d.shape[-1])[-1].to(f64)
            if c.kind == "embedding":
                out[i] = {"d": d, "idx": a.reshape(-1)[-1].to(torch.int64)}
            else:
                out[i] = {"d": d}
                if c.weight:
                    out[i]["a"] = a.reshape(-1, a.shape[-1])[-1].to(f64)
        for j, i in enumerate(dense_idx):
            g = grads[len(slots) + j]
            t = self.comps[i].tensor
            out[i] = {"g": (torch.zeros_like(t) if g is None else g).reshape(-1).to(f64)}
        return out

    def _require_called(self, captured) -> None:
        """Every hooked layer of θ must have been called by the forward."""
        for i, c in enumerate(self.comps):
            if c.kind != "dense" and i not in captured:
                raise HypothesesNotMet(
                    f"{c.module_name} was not called in the forward: its parameters {list(c.names)} "
                    "cannot influence log p (remove them from the group)"
                )

    # ------------------------------------------------------------------ pushes

    def _require_consistent(self) -> None:
        if self._broken is not None:
            raise StreamStateError(_broken_stream_message(self._broken))

    def _check_context(self, extra: int) -> None:
        if self.max_context is not None and len(self.tokens) + extra > self.max_context:
            raise InputError(
                f"the stream would exceed the model's context of {self.max_context} tokens; "
                "start a new stream (reset) for longer generations"
            )

    def _check_token(self, token) -> int:
        if isinstance(token, bool) or not isinstance(token, (int, np.integer)):
            if isinstance(token, torch.Tensor) and token.numel() == 1 and not token.is_floating_point():
                token = int(token)
            else:
                raise InputError(f"a token must be an integer id, got {token!r}")
        token = int(token)
        V = getattr(getattr(self.model, "config", None), "vocab_size", None)
        if token < 0 or (isinstance(V, int) and token >= V):
            raise InputError(f"token id {token} is outside the vocabulary (0..{V - 1 if V else '?'})")
        return token

    def skip(self, tokens) -> None:
        """Append tokens as context without scoring them (e.g. a prompt you do not monitor).

        Raises :class:`StreamStateError` on an inconsistent stream (see the class Notes)."""
        self._require_consistent()
        try:
            flat = torch.as_tensor(tokens).reshape(-1).tolist()
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"tokens must be integer ids, got {tokens!r}") from exc
        ids = [self._check_token(t) for t in flat]
        if not ids:
            return
        self._check_context(len(ids))
        try:
            self._pending = None
            self.tokens.extend(ids)
            if self.mode == "kv-cache":
                if len(ids) > 1:  # one no-grad forward for all but the last token
                    self._forward(torch.tensor(ids[:-1]), use_cache=True, with_probes=False)
                # the next token's score needs the probe graph of the last position
                logits, captured = self._forward(torch.tensor(ids[-1:]), use_cache=True, with_probes=True)
                self._pending = (logits[-1], captured)
                self.next_logits = logits[-1].detach()
            else:
                self._pending = "recompute"
                with torch.no_grad():
                    self.next_logits = self._prefix_logits()[-1].detach()
        except BaseException as exc:
            self._broken = type(exc).__name__
            raise

    def _prefix(self) -> torch.Tensor:
        toks = self.tokens if self.max_context is None else self.tokens[-self.max_context :]
        return torch.tensor(toks, dtype=torch.int64)

    def _prefix_logits(self):
        logits, _ = self._forward(self._prefix(), use_cache=False, with_probes=False)
        return logits

    def push(self, token) -> float:
        """Append one token; return σ_t (NaN for the very first token).

        Raises :class:`StreamStateError` on an inconsistent stream (see the class Notes)."""
        self._require_consistent()
        token = self._check_token(token)
        self._check_context(1)
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            self.tokens.append(token)
            factors = None
            if self.mode == "kv-cache":
                if self._pending is not None:
                    logits, captured = self._pending
                    logp = torch.log_softmax(logits, dim=-1)[token]
                    factors = self._factors(logp, captured)
                logits, captured = self._forward(torch.tensor([token]), use_cache=True, with_probes=True)
                self._pending = (logits[-1], captured)
                self.next_logits = logits[-1].detach()
            else:
                if len(self.tokens) >= 2:
                    factors, nxt = self._recompute_score(token)
                else:
                    with torch.no_grad():
                        nxt = self._prefix_logits()[-1]
                self._pending = "recompute"
                self.next_logits = nxt.detach()
            t1, c1 = time.perf_counter(), time.process_time()
            if factors is None:
                sigma, lam = float("nan"), float("nan")
            else:
                lam = self._update(factors)
                sigma = lam / self.lambda_base
            t2, c2 = time.perf_counter(), time.process_time()
            armed = self.store.n >= self.min_scores
            alert = bool(self.threshold is not None and armed and sigma > self.threshold)
            self.records.append(
                PushRecord(
                    len(self.tokens) - 1, token, sigma, lam, alert, self.store.n, t1 - t0, t2 - t1, c1 - c0, c2 - c1
                )
            )
            return sigma
        except BaseException as exc:
            self._broken = type(exc).__name__
            raise

    def _recompute_score(self, token: int):
        """Score of the last token by a forward + backward over the whole (truncated) prefix."""
        ids = self._prefix()
        # probes on the hooked layers at every position; the score of the last target is the
        # gradient through all of them (they act at every position of the prefix)
        logits, captured = self._forward(ids, use_cache=False, with_probes=True)
        logp = torch.log_softmax(logits[-2], dim=-1)[token]
        return self._dense_factors(logp, captured), logits[-1]

    def _dense_factors(self, logp, captured) -> list[dict[str, torch.Tensor]]:
        """Dense score rows for the recompute path: Σ over positions of δ_s ⊗ a_s per layer."""
        out: list[dict[str, torch.Tensor]] = [{} for _ in self.comps]
        self._require_called(captured)
        order = [(i, k) for i, calls in captured.items() for k in range(len(calls))]
        dense_idx = [i for i, c in enumerate(self.comps) if c.kind == "dense"]
        inputs = [captured[i][k][1] for i, k in order] + [self.comps[i].tensor for i in dense_idx]
        grads = torch.autograd.grad(logp, inputs, allow_unused=True)
        f64 = torch.float64
        parts: dict[int, torch.Tensor] = {}
        for (i, k), g in zip(order, grads):
            c = self.comps[i]
            a, probe = captured[i][k]
            d = (torch.zeros_like(probe) if g is None else g).to(f64)
            d = d.reshape(-1, d.shape[-1])
            pieces = []
            if c.kind == "embedding":
                W = torch.zeros(c.module.num_embeddings, d.shape[-1], dtype=f64, device=d.device)
                W.index_add_(0, a.reshape(-1).long(), d)
                pieces.append(W.reshape(-1))
            else:
                A = a.reshape(-1, a.shape[-1]).to(f64)
                if c.weight:
                    gw = d.T @ A if c.kind == "linear" else A.T @ d
                    pieces.append(gw.reshape(-1))
                if c.bias:
                    pieces.append(d.sum(0))
            row = torch.cat(pieces)
            parts[i] = row if i not in parts else parts[i] + row
        for i, row in parts.items():
            out[i] = {"g": row}
        for j, i in enumerate(dense_idx):
            g = grads[len(order) + j]
            t = self.comps[i].tensor
            out[i] = {"g": (torch.zeros_like(t) if g is None else g).reshape(-1).to(f64)}
        return out

    def _update(self, factors) -> float:
        u_prev, theta_prev = self._u, self._theta
        n_before = self.store.n
        slot, col = self.store.add(factors)
        n = self.store.n
        start = None
        if u_prev is not None and theta_prev > 0:
            if n > n_before:  # appended: pad with the power-step coordinate
                new = torch.dot(col[:-1], u_prev) / theta_prev
                start = torch.cat([u_prev, new.reshape(1)])
            else:  # ring: the slot's coordinate is replaced
                start = u_prev.clone()
                start[slot] = 0.0
                start[slot] = torch.dot(col, start) / theta_prev
        K = self.store.active()
        # A seeded random component keeps every eigen-direction in the Krylov space: a warm start
        # orthogonal to the new top eigenvector (a score orthogonal to the stored ones, e.g. the
        # embedding rows of distinct tokens) would otherwise converge to a lower eigenvalue with a
        # zero residual (as fimtheory.monitor does).
        if start is None or not bool(torch.isfinite(start).all()) or float(torch.linalg.vector_norm(start)) == 0.0:
            start = torch.ones(n, dtype=K.dtype, device=K.device)
        noise = torch.randn(n, generator=self._rng, dtype=torch.float64, device="cpu") / math.sqrt(n)
        start = start / torch.linalg.vector_norm(start) + 1e-2 * noise.to(device=K.device, dtype=K.dtype)
        theta, vec, steps, ok = _lanczos_top(K, start, self.tol, self.max_iter)
        # λ_max ≥ the largest diagonal entry: a Ritz value below it is not the top eigenvalue
        if not ok or theta < float(K.diagonal().max()) * (1 - 1e-12):
            self.fallbacks += 1
            w, V = torch.linalg.eigh(K)
            theta, vec = float(w[-1]), V[:, -1]
        self._u, self._theta = vec, theta
        self.iterations.append(steps)
        return theta / n

    # ------------------------------------------------------------------ generation

    def generate(self, n_new: int, *, temperature: float = 0.0, seed: int = 0, eos: int | None = None, on_token=None):
        """Generate ``n_new`` tokens after the tokens pushed so far (greedy for temperature 0,
        else sampling from softmax(logits / temperature) with a seeded CPU generator); each
        token is pushed (its σ_t computed) before the next is chosen. ``on_token(record)`` is
        called after every push. Stops early at ``eos``. Returns the new records. Raises
        :class:`StreamStateError` on an inconsistent stream (see the class Notes)."""
        self._require_consistent()
        if self.next_logits is None:
            raise InputError("push at least one token (the prompt) before generating")
        if isinstance(n_new, bool) or not isinstance(n_new, int) or n_new < 0:
            raise InputError(f"n_new must be a non-negative integer, got {n_new!r}")
        if not (temperature >= 0 and math.isfinite(temperature)):
            raise InputError(f"temperature must be finite and >= 0, got {temperature!r}")
        self._check_context(n_new)
        gen = torch.Generator().manual_seed(int(seed))
        start = len(self.records)
        for _ in range(n_new):
            logits = self.next_logits.detach().to(torch.float64).cpu()
            if temperature == 0:
                tok = int(logits.argmax())
            else:
                p = torch.softmax(logits / temperature, dim=-1)
                tok = int(torch.multinomial(p, 1, generator=gen))
            self.push(tok)
            if on_token is not None:
                on_token(self.records[-1])
            if eos is not None and tok == eos:
                break
        return self.records[start:]


# --------------------------------------------------------------------------- references


def full_prefix_lambdas(
    model: nn.Module, param_names: Sequence[str], tokens, *, window: int | None = None
) -> np.ndarray:
    """λ_max(F_t) for t = 1..T−1 from scratch: the dense float64 per-token scores of the whole
    sequence (:func:`torch_checks.scores.per_token_scores`) and ``eigvalsh`` of each prefix's
    (or window's) Gram matrix — the non-streaming reference of :class:`StreamingSigma`."""
    tok = torch.as_tensor(tokens).reshape(-1)
    if tok.numel() < 2:
        raise InputError("need at least 2 tokens")
    G = per_token_scores(model, tuple(param_names), tok[:-1], tok[1:], dtype=torch.float64).G
    out = []
    for t in range(1, G.shape[0] + 1):
        rows = G[:t] if window is None else G[max(0, t - window) : t]
        K = rows @ rows.T
        out.append(float(torch.linalg.eigvalsh(0.5 * (K + K.T))[-1]) / rows.shape[0])
    return np.asarray(out)


def _probe_sequence(model: nn.Module, length: int = 8, seed: int = 0) -> torch.Tensor:
    V = getattr(getattr(model, "config", None), "vocab_size", None)
    if not isinstance(V, int) or V < 2:
        raise InputError("pass probe_tokens: the model has no config.vocab_size")
    return torch.randint(0, V, (length,), generator=torch.Generator().manual_seed(seed), device="cpu")


def classify_group(model: nn.Module, param_names: Sequence[str], probe_tokens=None) -> tuple[str, str]:
    """("kv-cache" or "recompute", reason) for θ on ``model``.

    "kv-cache" when the model has the cache interface, no cached key/value depends on θ (the
    cache tensors do not require grad when only θ's layers carry probes), and the Gram matrix of
    the cached-path scores of ``probe_tokens`` (default: 8 seeded random ids) equals the dense
    full-prefix one to :data:`CLASSIFY_RTOL` (the cached path drops every use of θ through
    cached keys/values, so a general group disagrees).
    """
    if not supports_kv_cache(model):
        return "recompute", "the model has no past_key_values / use_cache interface"
    tok = _probe_sequence(model) if probe_tokens is None else torch.as_tensor(probe_tokens).reshape(-1)
    if tok.numel() < 3:
        raise InputError("probe_tokens needs at least 3 tokens")
    s = StreamingSigma(model, param_names, 1.0, mode="kv-cache")
    for t in tok.tolist():
        s.push(t)
    Ks = s.store.active().clone()
    G = per_token_scores(model, tuple(param_names), tok[:-1], tok[1:], dtype=torch.float64).G
    Kd = G @ G.T
    scale = float(Kd.abs().max())
    err = float((Ks - Kd).abs().max())
    rtol = CLASSIFY_RTOL.get(_model_dtype(model), 1e-3)
    what = f"{tok.numel()} probe tokens: max |K_cache − K_dense| = {err:.3g}, max |K_dense| = {scale:.3g}"
    if scale == 0.0:
        raise HypothesesNotMet("every score of the probe tokens is zero: θ does not influence log p")
    if s.cache_depends_on_theta:
        return "recompute", f"not position-wise: θ reaches the cached keys/values ({what})"
    if err <= rtol * scale:
        return "kv-cache", f"position-wise: cached-path Gram equals the full-prefix Gram ({what})"
    return "recompute", f"not position-wise: the cached path misses uses of θ through the cache ({what})"


# --------------------------------------------------------------------------- measurement


def push_profile(records: Sequence[PushRecord], at: int, span: int = 16) -> dict:
    """Median milliseconds per push (total, model, Gram/eigen; CPU time and wall clock) over the
    scored pushes with t in [at − span/2, at + span/2)."""
    sel = [r for r in records if at - span // 2 <= r.t < at + span // 2 and not math.isnan(r.sigma)]
    if not sel:
        raise InputError(f"no scored push near t = {at}")

    def med(xs):
        return 1e3 * float(np.median(xs))

    return {
        "t": at,
        "pushes": len(sel),
        "n_scores": int(np.median([r.n_scores for r in sel])),
        "median_push_cpu_ms": med([r.model_cpu_seconds + r.gram_cpu_seconds for r in sel]),
        "median_model_cpu_ms": med([r.model_cpu_seconds for r in sel]),
        "median_gram_eig_cpu_ms": med([r.gram_cpu_seconds for r in sel]),
        "median_push_wall_ms": med([r.model_seconds + r.gram_seconds for r in sel]),
        "median_model_wall_ms": med([r.model_seconds for r in sel]),
        "median_gram_eig_wall_ms": med([r.gram_seconds for r in sel]),
    }


def measure_stream(
    model: nn.Module,
    param_names: Sequence[str],
    *,
    n_tokens: int,
    at: Sequence[int] = (64, 1024),
    window: int | None = None,
    mode: str = "auto",
    seed: int = 0,
    span: int = 16,
    progress=None,
) -> dict:
    """Generate ``n_tokens`` tokens (sampling at temperature 1, seeded) while streaming σ_t, and
    report the push times near each t in ``at`` and their ratio last/first."""
    s = StreamingSigma(model, param_names, 1.0, window=window, mode=mode)
    t0 = time.perf_counter()
    s.push(0)

    def tick(rec):
        if progress is not None and rec.t % 128 == 0:
            progress(f"t = {rec.t}: {1e3 * (rec.model_cpu_seconds + rec.gram_cpu_seconds):.2f} ms CPU/push")

    s.generate(n_tokens - 1, temperature=1.0, seed=seed, on_token=tick)
    prof = [push_profile(s.records, t, span) for t in at]
    if supports_kv_cache(model):
        for p in prof:  # the model's own generation step at the same t, without the monitor
            p["bare_forward_cpu_ms"] = bare_forward_cpu_ms(model, s.tokens, p["t"], span)
            p["monitor_overhead_cpu_ms"] = p["median_push_cpu_ms"] - p["bare_forward_cpu_ms"]
    return {
        "mode": s.mode,
        "mode_reason": s.mode_reason,
        "window": window,
        "P": int(sum(dict(model.named_parameters())[n].numel() for n in param_names)),
        "params": list(param_names),
        "at": prof,
        "ratio": prof[-1]["median_push_cpu_ms"] / prof[0]["median_push_cpu_ms"],
        "ratio_wall": prof[-1]["median_push_wall_ms"] / prof[0]["median_push_wall_ms"],
        "ratio_model_part": prof[-1]["median_model_cpu_ms"] / prof[0]["median_model_cpu_ms"],
        "ratio_monitor_overhead": (
            prof[-1]["monitor_overhead_cpu_ms"] / prof[0]["monitor_overhead_cpu_ms"]
            if "monitor_overhead_cpu_ms" in prof[0]
            else None
        ),
        "ratio_bare_forward": (
            prof[-1]["bare_forward_cpu_ms"] / prof[0]["bare_forward_cpu_ms"]
            if "bare_forward_cpu_ms" in prof[0]
            else None
        ),
        "lanczos_steps_median_last": float(np.median(s.iterations[-span:])),
        "fallbacks": s.fallbacks,
        "seconds": round(time.perf_counter() - t0, 2),
    }


@torch.no_grad()
def bare_forward_cpu_ms(model: nn.Module, tokens: Sequence[int], at: int, span: int = 16) -> float:
    """Median CPU milliseconds of the model's own single-token forward with the KV cache (no
    monitor, no gradient) for the tokens at t in [at − span/2, at + span/2): what generation
    costs without the monitor at that t."""
    kw = _cache_kwarg(model)
    start = max(1, at - span // 2)
    out = model(torch.tensor([list(tokens[:start])]), use_cache=True)
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    times = []
    for tok in tokens[start : start + span]:
        c0 = time.process_time()
        out = model(torch.tensor([[int(tok)]]), use_cache=True, **{kw: cache})
        times.append(time.process_time() - c0)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    return 1e3 * float(np.median(times))


def validate_stream(model: nn.Module, param_names: Sequence[str], *, n_tokens: int, window=None, seed: int = 0):
    """max over t of |λ_stream(t) − λ_dense(t)| / λ_dense(t) on a generated sequence, the dense
    reference being :func:`full_prefix_lambdas` (float64 eigvalsh of every prefix's Gram)."""
    s = StreamingSigma(model, param_names, 1.0, window=window)
    s.push(0)
    s.generate(n_tokens - 1, temperature=1.0, seed=seed)
    ref = full_prefix_lambdas(model, param_names, torch.tensor(s.tokens), window=window)
    got = np.asarray(s.lambdas[1:])
    return {
        "mode": s.mode,
        "window": window,
        "tokens": n_tokens,
        "max_rel_error": float(np.max(np.abs(got - ref) / ref)),
        "tol": s.tol,
        "fallbacks": s.fallbacks,
    }
