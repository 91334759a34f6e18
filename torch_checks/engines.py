"""λ_max of the empirical FIM F = GᵀG / n from the stacked scores G (n × P).

Units: those of F (nats² per θ-unit² for scores in nats). docs/theory.md §1: the nonzero
spectrum of F equals that of the Gram matrix K = GGᵀ / n, so λ_max(F) = λ_max(K) = ‖G‖₂²/n.

Paths
-----
``"dense"``
    Form F (P × P) and ``eigh``. For P ≤ n (and P moderate).
``"gram"``
    Form K (n × n) block by block of rows (F is never formed) and ``eigh``. For n < P.
``"lanczos"``
    Matrix-free Lanczos with full reorthogonalisation on the smaller of the two operators
    v ↦ G(Gᵀv)/n (on Rⁿ) and v ↦ Gᵀ(Gv)/n (on R^P); for large n and P. Each step costs
    two products with G (4nP flops) plus O(k·min(n, P)) for the reorthogonalisation.
``"auto"``
    dense if P ≤ n and P ≤ ``dense_max``; else gram if min(n, P) ≤ ``gram_max``; else lanczos.

Everything runs on G's device and in G's dtype (float64 recommended for checks); the small
tridiagonal eigenproblems of Lanczos are solved on the CPU in float64.

Without G: :func:`structured_gram` / :func:`lambda_max_structured` (per-sample scores whose layer
outputs belong to one sample each) and :func:`structured_gram_per_token` /
:func:`lambda_max_per_token` (per-token scores of every Linear / Conv1D / Embedding of a causal
LM, from the per-target output signals of T batched backwards). Without G, K or any structural
hypothesis: :func:`lambda_max_autodiff` (Lanczos on K with Gᵀv by a backward and G w by
reverse-over-reverse on one recorded forward; about two backward passes per step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from fimtheory.errors import HypothesesNotMet, InputError

METHODS = ("auto", "dense", "gram", "lanczos")


@dataclass(frozen=True)
class LambdaMaxResult:
    """λ_max(F) and how it was obtained.

    Attributes
    ----------
    value : float
        The (Ritz or eigh) estimate of λ_max(F) = λ_max(K).
    method : str
        ``"dense"``, ``"gram"`` or ``"lanczos"`` (never ``"auto"``).
    iterations : int
        Lanczos steps (0 for the eigh paths).
    residual : float
        ‖A y − value·y‖₂ for the returned unit vector y of the operator A that was used
        (F, or K). For symmetric A some eigenvalue lies within ``residual`` of ``value``
        (and within residual²/gap when the gap to the rest of the spectrum is known).
        For Lanczos, ``value`` is a Rayleigh quotient, hence ≤ λ_max up to rounding.
    n, P : int
        Shape of G.
    operator : str
        ``"F"`` (P × P) or ``"K"`` (n × n).
    vector : torch.Tensor or None
        With ``return_vector=True``: a unit top eigenvector of F, in R^P (on G's device).
    structure : tuple of str or None
        Structured path only: the layer calls found in the forward for each θ tensor.
    """

    value: float
    method: str
    iterations: int
    residual: float
    n: int
    P: int
    operator: str
    vector: torch.Tensor | None = None
    structure: tuple[str, ...] | None = None


def _validate(G: torch.Tensor) -> torch.Tensor:
    if not isinstance(G, torch.Tensor):
        raise InputError(f"G must be a torch.Tensor, got {type(G).__name__}")
    if G.ndim != 2 or G.shape[0] < 1 or G.shape[1] < 1:
        raise InputError(f"G must be a non-empty 2-D (n, P) tensor, got shape {tuple(G.shape)}")
    if not G.is_floating_point() or G.is_complex():
        raise InputError(f"G must be a real floating tensor, got {G.dtype}")
    # A finite sum implies finite entries (NaN or ±inf propagate): one reduction, no n×P
    # temporary. Only a non-finite sum (or overflow of a finite G) needs the full scan.
    if not bool(torch.isfinite(G.sum())) and not bool(torch.isfinite(G).all()):
        bad = torch.nonzero(~torch.isfinite(G))[0].tolist()
        raise InputError(f"G has a NaN or inf entry at index {tuple(bad)}")
    return G


def gram_matrix(G: torch.Tensor, *, block_size: int = 2048) -> torch.Tensor:
    """K = G Gᵀ / n (n × n), built ``block_size`` rows at a time and symmetrised exactly."""
    return _gram(_validate(G), block_size)


def _gram(G: torch.Tensor, block_size: int = 2048) -> torch.Tensor:
    n = G.shape[0]
    K = torch.empty(n, n, dtype=G.dtype, device=G.device)
    for i in range(0, n, block_size):
        K[i : i + block_size] = G[i : i + block_size] @ G.T
    K = 0.5 * (K + K.T)
    return K / n


def fisher_matrix(G: torch.Tensor) -> torch.Tensor:
    """F = GᵀG / n (P × P), symmetrised exactly."""
    return _fisher(_validate(G))


def _fisher(G: torch.Tensor) -> torch.Tensor:
    F = G.T @ G
    return 0.5 * (F + F.T) / G.shape[0]


def _top_eigh(A: torch.Tensor, want_vector: bool = True) -> tuple[float, torch.Tensor | None, float]:
    """Top eigenpair and its residual ‖Av − λv‖. Without ``want_vector`` only the eigenvalues are
    computed (eigvalsh, ~4× cheaper than eigh) and the residual reported is the a-priori
    backward-error bound n·eps·‖A‖_F of a backward-stable symmetric eigensolver."""
    if not want_vector:
        evals = torch.linalg.eigvalsh(A)
        bound = A.shape[0] * torch.finfo(A.dtype).eps * float(torch.linalg.matrix_norm(A))
        return float(evals[-1]), None, bound
    evals, evecs = torch.linalg.eigh(A)
    lam = evals[-1]
    v = evecs[:, -1]
    res = float(torch.linalg.vector_norm(A @ v - lam * v))
    return float(lam), v, res


def _f_vector_from_k(G: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    w = G.T @ u
    nrm = torch.linalg.vector_norm(w)
    return w / nrm if float(nrm) > 0 else w


@dataclass(frozen=True)
class LanczosResult:
    """Largest Ritz pair of a symmetric operator (see :func:`lanczos`)."""

    value: float
    vector: torch.Tensor
    iterations: int
    residual: float
    residual_estimate: float
    converged: bool


def lanczos(
    matvec,
    dim: int,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    tol: float = 1e-10,
    max_iter: int | None = None,
    seed: int = 0,
) -> LanczosResult:
    """Largest eigenvalue of a symmetric operator by Lanczos with full reorthogonalisation.

    Parameters
    ----------
    matvec : callable
        v ↦ A v for 1-D tensors of length ``dim`` (A symmetric; PSD in our use, but any
        symmetric A works: the result is its largest eigenvalue).
    tol : float
        Relative stopping tolerance: stop when the Ritz residual β_k·|s_k| ≤ tol_eff·‖A‖~,
        with ‖A‖~ the largest of |θ|, |α_j|, β_j seen so far (= θ for PSD A) and
        tol_eff = max(tol, 64·eps(dtype)) (a float32 run cannot resolve 1e-10). Finite, ≥ 0.
    max_iter : int, optional
        Default min(dim, 500); a positive integer. Reaching ``dim`` steps spans the whole space:
        exact.
    seed : int
        Seeds the (Gaussian) start vector, drawn on the CPU for device independence.

    Notes
    -----
    Full reorthogonalisation (two Gram–Schmidt passes against every previous Lanczos
    vector) keeps the basis orthonormal to working precision, so no spurious copies of
    converged Ritz values appear. A breakdown (β ≈ 0) means an invariant subspace was
    found and the Ritz values are eigenvalues. The returned ``residual`` is recomputed
    explicitly as ‖A y − θ y‖ with one extra matvec. Hypothesis for convergence to the
    *largest* eigenvalue: the start vector is not orthogonal to its eigenspace
    (probability 1 for a Gaussian start).

    Raises
    ------
    fimtheory.errors.InputError
        ``dim`` < 1, a bad ``max_iter`` or ``tol``, or an operator that returns a vector with a
        NaN or inf entry or a norm that overflows (never a non-finite or overflowed "converged"
        value).
    """
    if dim < 1:
        raise InputError(f"dim must be >= 1, got {dim}")
    if max_iter is not None and (isinstance(max_iter, bool) or not isinstance(max_iter, Integral) or max_iter < 1):
        raise InputError(f"max_iter must be a positive integer or None, got {max_iter!r}")
    if not math.isfinite(float(tol)) or float(tol) < 0:
        raise InputError(f"tol must be a finite number >= 0, got {tol!r}")
    eps = torch.finfo(dtype).eps
    tol_eff = max(float(tol), 64.0 * eps)
    m = min(dim, max_iter or 500)
    gen = torch.Generator().manual_seed(int(seed))
    q = torch.randn(dim, generator=gen, dtype=torch.float64, device="cpu").to(device=device, dtype=dtype)
    q = q / torch.linalg.vector_norm(q)
    Q = torch.zeros(m, dim, dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    theta, s = 0.0, np.ones(1)
    res_est, converged, k = math.inf, False, 0
    scale = 0.0
    for k in range(m):
        Q[k] = q
        w = matvec(q)
        alpha = float(torch.dot(w, q))
        w = w - alpha * q
        if k > 0:
            w = w - betas[-1] * Q[k - 1]
        for _ in range(2):  # full reorthogonalisation, twice is enough
            w = w - Q[: k + 1].T @ (Q[: k + 1] @ w)
        beta = float(torch.linalg.vector_norm(w))
        if not (math.isfinite(alpha) and math.isfinite(beta)):  # a NaN/inf entry of A q reaches one of them
            raise InputError(
                f"the operator returned a non-finite vector at Lanczos step {k} "
                f"(α = {alpha!r}, β = {beta!r}): NaN or inf in A v, or a norm that overflows"
            )
        alphas.append(alpha)
        if k == 0:
            ev = np.array([alpha])
            s = np.ones(1)
        else:
            # only the largest Ritz pair of the tridiagonal T_k: O(k) work per step
            ev, sv = eigh_tridiagonal(np.array(alphas), np.array(betas), select="i", select_range=(k, k))
            s = sv[:, 0]
        theta = float(ev[-1])
        # lower estimate of ‖A‖ (= θ for PSD A); also sound for indefinite A, where the
        # wanted θ may be near 0 and a tolerance relative to |θ| could never be met
        scale = max(scale, abs(theta), abs(alpha), beta)
        res_est = beta * abs(float(s[-1]))
        if beta <= 16 * eps * max(scale, 1e-300) * math.sqrt(dim) or scale == 0.0:
            converged = True  # invariant subspace: Ritz values are eigenvalues
            break
        if res_est <= tol_eff * scale:
            converged = True
            break
        if k + 1 == dim:
            converged = True
            break
        betas.append(beta)
        q = w / beta
    iters = k + 1
    y = Q[:iters].T @ torch.as_tensor(s, dtype=dtype, device=device)
    ny = torch.linalg.vector_norm(y)
    y = y / ny if float(ny) > 0 else y
    residual = float(torch.linalg.vector_norm(matvec(y) - theta * y))
    return LanczosResult(theta, y, iters, residual, res_est, converged)


def lambda_max(
    G: torch.Tensor,
    *,
    method: str = "auto",
    tol: float = 1e-10,
    max_iter: int | None = None,
    seed: int = 0,
    block_size: int = 2048,
    dense_max: int = 2048,
    gram_max: int = 4096,
    return_vector: bool = False,
) -> LambdaMaxResult:
    """λ_max of F = GᵀG / n (equivalently of K = GGᵀ / n) — see the module docstring.

    Parameters
    ----------
    G : torch.Tensor ``(n, P)``
        Stacked scores, real floating, finite; any device.
    method : {"auto", "gram", "lanczos", "dense"}
    tol : float
        Lanczos relative residual tolerance (ignored by the eigh paths, which are accurate to
        O(eps·n·‖K‖)).
    max_iter, seed : Lanczos options (:func:`lanczos`).
    block_size : rows of G per block when forming K.
    dense_max, gram_max : thresholds of ``"auto"``.
    return_vector : bool
        Also return a unit top eigenvector of F (in R^P).

    Returns
    -------
    LambdaMaxResult

    Raises
    ------
    fimtheory.errors.InputError
        Bad G or unknown method.
    """
    G = _validate(G)
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; expected one of {METHODS}")
    n, P = G.shape
    if method == "auto":
        if P <= n and P <= dense_max:
            method = "dense"
        elif min(n, P) <= gram_max:
            method = "gram"
        else:
            method = "lanczos"
    vec = None
    if method == "dense":
        lam, v, res = _top_eigh(_fisher(G), return_vector)
        if return_vector:
            vec = v
        return LambdaMaxResult(lam, "dense", 0, res, n, P, "F", vec)
    if method == "gram":
        lam, u, res = _top_eigh(_gram(G, block_size), return_vector)
        if return_vector:
            vec = _f_vector_from_k(G, u)
        return LambdaMaxResult(lam, "gram", 0, res, n, P, "K", vec)
    if n <= P:

        def op(v):
            return G @ (G.T @ v) / n

        dim, name = n, "K"
    else:

        def op(v):
            return G.T @ (G @ v) / n

        dim, name = P, "F"
    r = lanczos(op, dim, dtype=G.dtype, device=G.device, tol=tol, max_iter=max_iter, seed=seed)
    if return_vector:
        vec = _f_vector_from_k(G, r.vector) if name == "K" else r.vector
    return LambdaMaxResult(r.value, "lanczos", r.iterations, r.residual, n, P, name, vec)


# --------------------------------------------------------------------------------------
# structured Gram path: per-sample gradients that are sums of outer products per layer call
# --------------------------------------------------------------------------------------
#
# For a layer call z = W a (+ b) whose output rows r each belong to one sample s(r), and whose
# rows influence only that sample's log-probability, the score of sample i on W is
# g_i = Σ_{r: s(r)=i} δ_r ⊗ a_r with δ_r = ∂(Σ_j log p_j)/∂z_r, and on b it is Σ_r δ_r. A
# parameter used by several calls (a module called twice, a tensor shared by several modules)
# sums over all of them. Every use is written in the parameter's own (dim 0, dim 1) layout as
# rows u_r ⊗ v_r, so that for any two rows (u_r ⊗ v_r)·(u_s ⊗ v_s) = (u_r·u_s)(v_r·v_s) and
# K_ij = Σ_params Σ_{r∈i, s∈j} (u_r·u_s)(v_r·v_s) / n — never forming G.

_SUPPORTED = "nn.Linear, nn.Conv1d/nn.Conv2d (groups=1, zero padding), nn.Embedding, transformers Conv1D"
#: entries of a row-block Gram (R_a × R_b) computed at once; larger blocks are chunked
_BLOCK_ENTRIES = 2**24


@dataclass(frozen=True)
class _Index:
    """One-hot rows e_{idx_r} of length ``size`` (an embedding lookup), never materialised."""

    idx: torch.Tensor
    size: int


def _is_hf_conv1d(mod) -> bool:
    t = type(mod)
    return t.__name__ == "Conv1D" and t.__module__.startswith("transformers")


def _layer_kind(mod) -> str | None:
    """The supported kind of ``mod`` (its ``forward`` must be the library's own), or None."""
    nn = torch.nn
    for base, kind in (
        (nn.Linear, "linear"),
        (nn.Conv1d, "conv1d"),
        (nn.Conv2d, "conv2d"),
        (nn.Embedding, "embedding"),
    ):
        if isinstance(mod, base):
            return kind if type(mod).forward is base.forward else None
    if _is_hf_conv1d(mod):
        return "hf_conv1d"
    return None


def _refuse_layer(mod, kind: str | None, role: str) -> str | None:
    """Why the structured path cannot use parameter ``role`` of ``mod`` (None: it can)."""
    if kind is None:
        return (
            f"it is owned by a {type(mod).__name__}, not one of {_SUPPORTED} (or by a subclass that overrides forward)"
        )
    if role not in ("weight", "bias"):
        return f"{role!r} is not the weight or bias of the {type(mod).__name__}"
    if torch.nn.utils.parametrize.is_parametrized(mod):
        return "the module is parametrized (torch.nn.utils.parametrize)"
    if kind in ("conv1d", "conv2d"):
        if mod.groups != 1:
            return f"grouped convolution (groups={mod.groups}) is not supported"
        if mod.padding_mode != "zeros":
            return f"padding_mode={mod.padding_mode!r} is not supported (only 'zeros')"
        if isinstance(mod.padding, str) and mod.padding == "same":
            if any((d * (k - 1)) % 2 for d, k in zip(mod.dilation, mod.kernel_size)):
                return "padding='same' with an even effective kernel pads asymmetrically"
    if kind == "embedding":
        if mod.max_norm is not None:
            return "Embedding(max_norm=...) renormalises its weight in the forward"
        if mod.scale_grad_by_freq:
            return "Embedding(scale_grad_by_freq=True) scales gradients by batch frequencies"
    return None


class _Call:
    """One recorded call of a hooked module: its input, the probe added to its output, and the
    tensor each θ role was read from during the call."""

    __slots__ = ("name", "mod", "kind", "order", "inp", "version", "probe", "out_fn", "targets", "entry", "shared")

    def __init__(self, name, mod, kind, order):
        self.name, self.mod, self.kind, self.order = name, mod, kind, order
        self.inp = self.version = self.probe = self.out_fn = None
        self.shared = False
        self.targets: dict[str, torch.Tensor] = {}
        self.entry: dict[str, int] = {}


def _conv_padding(mod) -> tuple[int, ...]:
    if isinstance(mod.padding, str):
        if mod.padding == "valid":
            return (0,) * len(mod.kernel_size)
        return tuple(d * (k - 1) // 2 for d, k in zip(mod.dilation, mod.kernel_size))
    return tuple(mod.padding)


def _delta_rows(call: _Call, delta: torch.Tensor) -> torch.Tensor:
    """The output signal of one call as rows (R, out), in the same row order as the inputs."""
    if call.kind in ("conv1d", "conv2d"):
        nd = 1 if call.kind == "conv1d" else 2
        db = delta if call.inp.ndim == nd + 2 else delta.unsqueeze(0)
        return db.reshape(db.shape[0], db.shape[1], -1).transpose(1, 2).reshape(-1, db.shape[1])
    return delta.reshape(-1, delta.shape[-1])


def _call_rows(call: _Call, delta: torch.Tensor):
    """(lead shape, factors by role) of one call. Factors are (u, v) with rows u_r ⊗ v_r in the
    parameter's layout; v = None means the scalar 1 (biases)."""
    mod, x, kind = call.mod, call.inp, call.kind
    if kind in ("linear", "hf_conv1d"):
        lead = tuple(x.shape[:-1])
        a = x.reshape(-1, x.shape[-1])
        d = delta.reshape(-1, delta.shape[-1])
        w = (d, a) if kind == "linear" else (a, d)
        return lead, {"weight": w, "bias": (d, None)}
    if kind == "embedding":
        lead = tuple(x.shape)
        idx = x.reshape(-1).long()
        d = delta.reshape(-1, delta.shape[-1])
        if mod.padding_idx is not None:  # the padding row receives no gradient
            keep = idx != mod.padding_idx
            return lead, {"weight": (_Index(idx, mod.num_embeddings), d), "_keep": keep}
        return lead, {"weight": (_Index(idx, mod.num_embeddings), d)}
    # convolutions as a Linear applied per output position on unfolded patches
    nd = 1 if kind == "conv1d" else 2
    batched = x.ndim == nd + 2
    xb = x if batched else x.unsqueeze(0)
    db = delta if batched else delta.unsqueeze(0)
    ks, st, dl, pd = mod.kernel_size, mod.stride, mod.dilation, _conv_padding(mod)
    if nd == 1:
        xb, db = xb.unsqueeze(-2), db.unsqueeze(-2)
        ks, st, dl, pd = (1, ks[0]), (1, st[0]), (1, dl[0]), (0, pd[0])
    N = xb.shape[0]
    patches = torch.nn.functional.unfold(xb, ks, dilation=dl, padding=pd, stride=st)  # (N, C·k, L)
    L = patches.shape[-1]
    if db.shape[-2] * db.shape[-1] != L:
        raise HypothesesNotMet(
            f"{call.name}: unfolded patches ({L}) do not match the output positions {tuple(db.shape[-2:])}"
        )
    a = patches.transpose(1, 2).reshape(N * L, -1)
    d = _delta_rows(call, delta)
    return (N, L), {"weight": (d, a), "bias": (d, None)}


def _segments(lead: tuple[int, ...], n: int, where: str) -> torch.Tensor | None:
    """Sample id of every output row: identity when there are n rows, else n equal groups of
    consecutive rows (batch-first per-position use); anything else is refused."""
    R = math.prod(lead) if lead else 1
    if R == n:
        return None
    if lead and lead[0] == n and R % n == 0:
        return torch.arange(n, device="cpu").repeat_interleave(R // n)
    raise HypothesesNotMet(
        f"{where}: its {R} output rows (leading shape {lead}) cannot be assigned to the n = {n} "
        "samples (neither one row per sample nor a batch-first axis of length n)"
    )


def _fgram(X, Y, i0: int, i1: int):
    """Gram (rows i0:i1 of X) · (all rows of Y)ᵀ of two factors; None for the all-ones matrix."""
    if X is None:
        return None
    if isinstance(X, _Index) and isinstance(Y, _Index):
        return X.idx[i0:i1, None] == Y.idx[None, :]
    if isinstance(X, _Index):
        return Y[:, X.idx[i0:i1]].T
    if isinstance(Y, _Index):
        return X[i0:i1][:, Y.idx]
    return X[i0:i1] @ Y.T


def _rows_of(F) -> int:
    return F.idx.shape[0] if isinstance(F, _Index) else F.shape[0]


def _width(F) -> int:
    if F is None:
        return 1
    return F.size if isinstance(F, _Index) else F.shape[1]


def _filter_rows(F, keep):
    if F is None:
        return None
    if isinstance(F, _Index):
        return _Index(F.idx[keep], F.size)
    return F[keep]


def _entry_gram_structured(blocks, n, dtype, device, cache) -> torch.Tensor:
    """Σ_{r∈i, s∈j} (u_r·u_s)(v_r·v_s) over all row blocks of one parameter (a new tensor)."""
    if len(blocks) == 1 and blocks[0][0] is None and _rows_of(blocks[0][1]) <= _BLOCK_ENTRIES // n:
        # one call, one row per sample (the common case): no accumulator to allocate
        _, u, v = blocks[0]
        key = (id(u), id(u), 0)
        GU = cache.get(key)
        if GU is None:
            GU = _fgram(u, u, 0, n)
            GU = GU.to(dtype) if GU.dtype == torch.bool else GU
            cache[key] = GU
        GV = _fgram(v, v, 0, n)
        return GU.clone() if GV is None else GU * GV
    K = torch.zeros(n, n, dtype=dtype, device=device)
    for ia, (sa, ua, va) in enumerate(blocks):
        Ra = _rows_of(ua)
        for ib in range(ia, len(blocks)):
            sb, ub, vb = blocks[ib]
            Rb = _rows_of(ub)
            step = max(1, _BLOCK_ENTRIES // max(1, Rb))
            for i0 in range(0, Ra, step):
                i1 = min(Ra, i0 + step)
                key = (id(ua), id(ub), i0)
                GU = cache.get(key)
                if GU is None:
                    GU = _fgram(ua, ub, i0, i1)
                    if GU.dtype == torch.bool:
                        GU = GU.to(dtype)
                    cache[key] = GU
                GV = _fgram(va, vb, i0, i1)
                M = GU if GV is None else GU * GV
                if sb is not None:
                    M = torch.zeros(i1 - i0, n, dtype=dtype, device=device).index_add_(1, sb.to(device), M)
                if sa is not None:
                    M = torch.zeros(n, n, dtype=dtype, device=device).index_add_(0, sa[i0:i1].to(device), M)
                    K += M if ib == ia else M + M.T
                else:
                    if ib == ia:
                        K[i0:i1] += M
                    else:
                        K[i0:i1] += M
                        K[:, i0:i1] += M.T
    return K


def _entry_gram_explicit(blocks, n, dtype, device) -> torch.Tensor:
    """The same Gram through the parameter's per-sample gradients G_p (n × |p|): cheaper when
    many rows per sample meet a small parameter (a convolution's kernel, a per-position bias)."""
    d1, d2 = _width(blocks[0][1]), _width(blocks[0][2])
    Gp = torch.zeros(n, d1 * d2, dtype=dtype, device=device)
    for s, u, v in blocks:
        R = u.shape[0]
        seg = s.to(device) if s is not None else torch.arange(R, device=device)
        step = max(1, _BLOCK_ENTRIES // max(1, d1 * d2))
        for i0 in range(0, R, step):
            uu = u[i0 : i0 + step]
            rows = uu if v is None else (uu[:, :, None] * v[i0 : i0 + step, None, :]).reshape(uu.shape[0], -1)
            Gp.index_add_(0, seg[i0 : i0 + step], rows)
    return Gp @ Gp.T


def _use_explicit(blocks, n) -> bool:
    if any(isinstance(u, _Index) or isinstance(v, _Index) for _, u, v in blocks):
        return False
    d1, d2 = _width(blocks[0][1]), _width(blocks[0][2])
    rows = [_rows_of(u) for _, u, _ in blocks]
    R = sum(rows)
    if n * d1 * d2 > 2**26 or R == n:
        return False
    structured = R * R * (d1 + d2) / 2
    explicit = R * d1 * d2 + n * n * d1 * d2
    return explicit < structured


@dataclass(frozen=True)
class StructuredGram:
    """K = GGᵀ/n from :func:`structured_gram_details`, with what was found in the forward.

    Attributes
    ----------
    K : (n, n) tensor, exactly symmetric.
    P : int
        Number of scalar parameters in θ (each tied tensor counted once).
    structure : tuple of str
        One line per θ tensor: the module calls that use it, in forward order, rows per sample.
    checks : str
        What was verified against autograd (see :func:`structured_gram`).
    """

    K: torch.Tensor
    P: int
    structure: tuple[str, ...]
    checks: str


def structured_gram(
    model: torch.nn.Module,
    per_sample_logp,
    param_names,
    *,
    check_rows: int = 1,
    score_rows=None,
    seed: int = 0,
) -> torch.Tensor:
    """K = GGᵀ/n **without forming G**, for scores that are sums of outer products per layer call.

    The structure is discovered from the actual forward: hooks on every module that holds a θ
    tensor record each call (forward order, input, output). For a call z = W a (+ b) whose output
    rows each belong to one sample and influence only that sample's log-probability, the score
    of sample i on W is Σ_{rows r of i} δ_r ⊗ a_r with δ_r = ∂(Σ_j log p_j)/∂z_r; a tensor used by
    several calls (a module called twice, weights tied between modules, compared by identity)
    sums over all of them, and rows per sample > 1 (a Linear applied per position to a
    (batch, T, d) input with per-sample scores, a convolution's output positions) are summed
    exactly: K_ij = Σ_params Σ_{r∈i, s∈j} (δ_r·δ_s)(a_r·a_s) / n, or through the parameter's
    per-sample gradients when that is cheaper (a small convolution kernel with many positions).

    Supported layers: ``nn.Linear``, ``nn.Conv1d`` / ``nn.Conv2d`` (groups = 1, zero padding),
    ``nn.Embedding`` (no ``max_norm`` / ``scale_grad_by_freq``) and Hugging Face
    ``transformers.pytorch_utils.Conv1D`` (weight (in, out), y = x W + b). Any other owner of a
    θ tensor is refused.

    Hypotheses (checked): (H1) θ is used only through the recorded calls; (H2) every output row
    of every call belongs to one sample — one row per sample, or n equal batch-first groups — and
    influences only that sample's log-probability. H1 is checked exactly on the autograd graph
    (every use of a θ tensor reachable from log p must be a recorded call) when the forward reads
    the model's own parameters, or substitutes tensors that require grad; when
    ``per_sample_logp`` substitutes detached tensors (``torch.func.functional_call`` with
    detached copies) their uses outside the hooked modules are not visible. H2 is
    checked with autograd on ``check_rows`` sampled samples and on one random combination of all
    samples: the vector-Jacobian products ∂(Σ_i w_i log p_i)/∂z of every recorded output z must
    equal w_{s(r)}·δ_r row by row (a mixing operation — attention over positions, batch-norm in
    training mode, a tied embedding whose rows feed later positions — breaks this) to within
    1024·eps·max|w|·max|δ|. Failure of any check raises
    :class:`fimtheory.errors.HypothesesNotMet` naming the parameter and the reason.

    Parameters
    ----------
    model : the module (its parameters are used as they are; requires_grad is restored).
    per_sample_logp : callable () → tensor of n log-probabilities (one batched forward of
        ``model``; it may call the model directly or through ``functional_call``).
    param_names : names of the θ tensors (aliases of a tied tensor, e.g. GPT-2's
        ``lm_head.weight``, are accepted; list each tensor once).
    check_rows : int
        Samples whose output signals are verified against autograd (default 1), on top of the
        random combination of all samples; 0 skips the autograd verification of H2 (then H2
        is the caller's to guarantee).
    score_rows : callable, optional
        ``score_rows(idx)`` → the exact score rows G[idx]; if given, K[idx, idx] is also compared
        with them (to 1e-8·‖K‖_max).
    seed : int
        Seeds the sampled rows and the random combination.

    Returns
    -------
    K : (n, n) tensor in log p's dtype, exactly symmetric. Every product is formed in that dtype:
        the calls' inputs and output signals (values of the layers' own dtype) are cast to it
        first, so float32 layers scored in float64 give the float64 Gram of their float32 factors.
    """
    return structured_gram_details(
        model, per_sample_logp, param_names, check_rows=check_rows, score_rows=score_rows, seed=seed
    ).K


def _resolve_theta(model, param_names):
    """θ tensors by identity: [(display name, tensor)], and which (module, role) hold each."""
    if isinstance(param_names, str):
        raise InputError("param_names must be a sequence of names, not a string")
    names = list(param_names)
    if not names:
        raise InputError("the parameter subset is empty")
    allp = dict(model.named_parameters(remove_duplicate=False))
    bad = [k for k in names if k not in allp]
    if bad:
        from fimtheory.errors import UnknownIdError

        raise UnknownIdError(f"unknown parameter(s) {bad}; the model has {list(allp)[:8]}...")
    entries: list[tuple[str, torch.Tensor]] = []
    seen: dict[int, str] = {}
    for k in names:
        t = allp[k]
        if id(t) in seen:
            raise InputError(f"{k!r} and {seen[id(t)]!r} are the same tensor (tied); list it once")
        seen[id(t)] = k
        entries.append((k, t))
    # distinct parameters sharing storage with a θ tensor: autograd treats them as separate
    theta_ptrs = {t.untyped_storage().data_ptr(): k for k, t in entries}
    for k, t in model.named_parameters():
        if id(t) not in seen and t.untyped_storage().data_ptr() in theta_ptrs:
            raise HypothesesNotMet(
                f"{theta_ptrs[t.untyped_storage().data_ptr()]!r} shares storage with the distinct "
                f"parameter {k!r}: autograd treats them as separate tensors, so the scores of one do "
                "not include the uses of the other; tie them (assign the same nn.Parameter) or untie"
            )
    holders: dict[int, list[tuple[str, torch.nn.Module, str]]] = {id(t): [] for _, t in entries}
    for mname, mod in model.named_modules(remove_duplicate=False):
        for role, p in mod._parameters.items():
            if p is not None and id(p) in holders:
                holders[id(p)].append((mname, mod, role))
    return entries, holders


def structured_gram_details(
    model, per_sample_logp, param_names, *, check_rows: int = 1, score_rows=None, seed: int = 0
) -> StructuredGram:
    """:func:`structured_gram` returning a :class:`StructuredGram` (K, P, structure, checks)."""
    if isinstance(check_rows, bool) or not isinstance(check_rows, int) or check_rows < 0:
        raise InputError(f"check_rows must be a non-negative integer, got {check_rows!r}")
    entries, calls, lp, substituted, substitutes, leaves = _record_forward(model, per_sample_logp, param_names)
    try:
        return _assemble(entries, calls, lp, check_rows, score_rows, seed, substituted, substitutes)
    finally:
        leaves.clear()


def _record_forward(model, fn, param_names, *, windows: int | None = None):
    """Run ``fn()`` (a forward of ``model``) with hooks on every module holding a θ tensor.

    Returns (entries, calls, out, substituted, substitutes, leaves). Each recorded call's output
    gets a zero probe added (its gradient is the call's output signal). With ``windows`` = m,
    a call whose output has no leading axis of length m (a position embedding called once for
    a batch of m windows) gets a probe broadcast to (m, *out.shape[-2:]) instead, so that its
    output signal is per window; the caller checks that the forward's values did not change.
    """
    entries, holders = _resolve_theta(model, param_names)
    entry_of_id = {id(t): i for i, (_, t) in enumerate(entries)}
    # modules to hook (each once, even if it holds several θ tensors or appears under 2 names)
    modules: dict[int, tuple[str, torch.nn.Module, str, dict[str, int]]] = {}
    for name, t in entries:
        for mname, mod, role in holders[id(t)]:
            kind = _layer_kind(mod)
            why = _refuse_layer(mod, kind, role)
            if why:
                raise HypothesesNotMet(
                    f"structured Gram cannot score {name!r} (held by {mname or 'the model'} as {role!r}): {why}"
                )
            if id(mod) not in modules:
                modules[id(mod)] = (mname, mod, kind, {})
            modules[id(mod)][3][role] = entry_of_id[id(t)]

    calls: list[_Call] = []
    swapped: list[tuple[torch.nn.Module, str, torch.Tensor, torch.Tensor]] = []  # (module, role, held, leaf)
    leaves: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}
    substituted = [False]

    def make_hooks(mname, mod, kind, roles):
        def pre(m, args):
            call = _Call(mname, m, kind, len(calls))
            for role, ei in roles.items():
                call.entry[role] = ei
                t = m._parameters[role]
                if t is entries[ei][1]:
                    call.targets[role] = t
                    continue
                # the forward substituted this tensor (functional_call): differentiate a leaf
                # copy of it during this call only
                substituted[0] = True
                if id(t) not in leaves:
                    leaves[id(t)] = (t, t.detach().requires_grad_(True), ei)
                leaf = leaves[id(t)][1]
                m._parameters[role] = leaf
                swapped.append((m, role, t, leaf))
                call.targets[role] = leaf
            calls.append(call)

        def post(m, args, out):
            call = next(c for c in reversed(calls) if c.mod is m and c.probe is None)
            for i in range(len(swapped) - 1, -1, -1):
                sm, role, t, _ = swapped[i]
                if sm is m:
                    sm._parameters[role] = t
                    del swapped[i]
            if not args or not isinstance(args[0], torch.Tensor) or not isinstance(out, torch.Tensor):
                raise HypothesesNotMet(f"{mname}: expected one tensor input and one tensor output")
            call.inp = args[0].detach()
            call.version = args[0]._version
            call.out_fn = out.grad_fn
            shape = out.shape
            if windows is not None and (out.ndim < 3 or out.shape[0] != windows):
                if out.ndim == 3 and out.shape[0] == 1:
                    shape = (windows, *out.shape[1:])
                elif out.ndim == 2 and kind in ("embedding", "linear", "hf_conv1d"):
                    shape = (windows, *out.shape)
                else:
                    raise HypothesesNotMet(
                        f"{mname or 'model'}: output of shape {tuple(out.shape)} has no window axis of "
                        f"length {windows} and is not a per-position call shared by all windows"
                    )
                call.shared = True
            call.probe = torch.zeros(shape, dtype=out.dtype, device=out.device, requires_grad=True)
            return out + call.probe

        return pre, post

    handles = []
    forced = [t for _, t in entries if not t.requires_grad]
    try:
        for t in forced:
            t.requires_grad_(True)
        for mname, mod, kind, roles in modules.values():
            pre, post = make_hooks(mname, mod, kind, roles)
            handles.append(mod.register_forward_pre_hook(pre))
            handles.append(mod.register_forward_hook(post))
        with torch.enable_grad():
            lp = fn()
    finally:
        for h in handles:
            h.remove()
        # a call that raised left its leaf copies in place; restore those still there (a
        # functional_call around the forward has already put the module's own tensors back)
        for m, role, t, leaf in swapped:
            if m._parameters.get(role) is leaf:
                m._parameters[role] = t
        for t in forced:
            t.requires_grad_(False)
    substitutes = {id(t): entries[ei][0] for t, _, ei in leaves.values() if t.is_leaf and t.requires_grad}
    return entries, calls, lp, substituted[0], substitutes, leaves


def _describe_uses(name, uses, n) -> str:
    parts = []
    for call, _role, rows in uses:
        per = "" if rows == n else f", {rows // n} rows/sample"
        parts.append(f"{call.name or 'model'}#{call.order}({call.kind}{per})")
    return f"{name}: {len(uses)} call(s) " + " + ".join(parts)


def _check_coverage(lp, entries, calls, substitutes):
    """H1 on the autograd graph: each use of a θ tensor reachable from log p is a recorded call
    (every supported layer reads each of its parameters exactly once per call). A tensor that the
    forward substituted for a θ tensor and that is an autograd leaf (``substitutes``: id → name)
    must not be used at all: the recorded calls used a leaf copy of it."""
    targets: dict[int, str] = {}
    for c in calls:
        for role, t in c.targets.items():
            targets[id(t)] = f"{c.name}.{role}"
    theta_ids = {id(t): k for k, t in entries}
    theta_ids.update(substitutes)
    edges: dict[int, int] = {}
    seen = set()
    stack = [lp.grad_fn]
    while stack:
        f = stack.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        for nf, _ in f.next_functions:
            if nf is None:
                continue
            var = getattr(nf, "variable", None)
            if var is not None and (id(var) in targets or id(var) in theta_ids):
                edges[id(var)] = edges.get(id(var), 0) + 1
            stack.append(nf)
    recorded: dict[int, int] = {}
    for c in calls:
        if c.out_fn is not None and c.out_fn in seen:
            for t in c.targets.values():
                recorded[id(t)] = recorded.get(id(t), 0) + 1
    for key, count in edges.items():
        if count != recorded.get(key, 0):
            name = theta_ids.get(key) or targets.get(key)
            raise HypothesesNotMet(
                f"{name!r} is used {count} time(s) in the graph of log p but only "
                f"{recorded.get(key, 0)} use(s) are calls of a supported module: it is also used "
                "directly (e.g. F.linear(x, weight) or a weight read by another module), which the "
                "structured Gram cannot see"
            )


def _assemble(entries, calls, lp, check_rows, score_rows, seed, substituted, substitutes) -> StructuredGram:
    if not isinstance(lp, torch.Tensor) or not lp.is_floating_point():
        raise InputError("per_sample_logp() must return a floating tensor of n log-probabilities")
    lp = lp.reshape(-1)
    n = lp.numel()
    if n < 1:
        raise InputError("per_sample_logp() returned no log-probabilities")
    if not bool(torch.isfinite(lp).all()):
        raise InputError("per_sample_logp() returned a NaN or inf log-probability")
    if not lp.requires_grad:
        raise InputError(
            "per_sample_logp() returned a tensor without an autograd graph (computed under torch.no_grad or detached?)"
        )
    for c in calls:
        if c.inp is not None and c.inp._version != c.version:
            raise HypothesesNotMet(
                f"the input of {c.name} (call #{c.order}) was modified in place "
                "after the call; the recorded activations are not those used"
            )
    _check_coverage(lp, entries, calls, substitutes)
    live = [c for c in calls if c.probe is not None]
    verify = check_rows > 0 and bool(live)
    # no recorded call (θ held only by modules the forward never calls): nothing to differentiate
    grads = (
        torch.autograd.grad(lp.sum(), [c.probe for c in live], allow_unused=True, retain_graph=verify) if live else ()
    )
    dtype, device = lp.dtype, lp.device
    used = [(c, g) for c, g in zip(live, grads) if g is not None]
    # per θ tensor: its row blocks (segments, u, v) and a description of each use
    blocks: dict[int, list] = {i: [] for i in range(len(entries))}
    uses: dict[int, list] = {i: [] for i in range(len(entries))}
    segs = {}
    for c, g in used:
        lead, fac = _call_rows(c, g.to(dtype))
        seg = _segments(lead, n, f"{c.name or 'model'} (call #{c.order})")
        segs[id(c)] = (seg, lead)
        keep = fac.pop("_keep", None)
        for role, (u, v) in fac.items():
            t = c.targets.get(role)
            if t is None:
                continue
            ei = c.entry[role]
            u = u.to(dtype) if isinstance(u, torch.Tensor) else u
            v = v.to(dtype) if isinstance(v, torch.Tensor) else v
            s = seg
            if keep is not None and not bool(keep.all()):
                u, v = _filter_rows(u, keep), _filter_rows(v, keep)
                s = (torch.arange(keep.numel(), device="cpu") if seg is None else seg)[keep.cpu()]
            blocks[ei].append((s, u, v))
            uses[ei].append((c, role, math.prod(lead) if lead else 1))
    # one tensor for several modules must be one tensor in every call (tie kept by the forward)
    for ei, (name, _) in enumerate(entries):
        ids = {id(c.targets[role]) for c, role, _ in uses[ei]}
        if len(ids) > 1:
            raise HypothesesNotMet(
                f"{name!r} is tied between modules but the forward gave them "
                f"{len(ids)} different tensors (functional_call with tie_weights=False?)"
            )
    checks = "none (check_rows=0)"
    if verify and not used:  # every recorded call's output is discarded: every score is zero
        checks = "none needed (no recorded call reaches log p)"
    elif verify:
        checks = _verify_signals(lp, used, segs, n, check_rows, seed, entries, uses, substituted)
    K = None
    cache: dict = {}
    for bl in blocks.values():
        if not bl:
            continue
        if _use_explicit(bl, n):
            part = _entry_gram_explicit(bl, n, dtype, device)
        else:
            part = _entry_gram_structured(bl, n, dtype, device, cache)
        K = part if K is None else K.add_(part)
    cache.clear()
    if K is None:  # no recorded call reaches log p: every score is zero
        K = torch.zeros(n, n, dtype=dtype, device=device)
    K = 0.5 * (K + K.T) / n
    if score_rows is not None and check_rows:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed), device="cpu")[: min(check_rows, n)]
        Gs = score_rows(idx).to(K.dtype)
        direct = Gs @ Gs.T / n
        err = float((direct - K[idx][:, idx]).abs().max())
        scale = float(K.abs().max()) or 1.0
        if err > 1e-8 * scale:
            raise HypothesesNotMet(
                f"structured Gram disagrees with the score rows by {err:.3g} (‖K‖_max {scale:.3g}): "
                "the per-sample scores are not rank one per layer call for this model/subset"
            )
        checks += f"; K[idx, idx] equals score_rows on {len(idx)} rows"
    structure = tuple(_describe_uses(name, uses[ei], n) for ei, (name, _) in enumerate(entries))
    P = sum(t.numel() for _, t in entries)
    return StructuredGram(K, P, structure, checks)


def _h2_check_weights(n: int, check_rows: int, seed, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight vectors of the H2 autograd checks (:func:`_verify_signals`, :func:`_verify_per_token`).

    Parameters
    ----------
    n : int
        Number of samples (of targets, for the per-token check), n ≥ 1.
    check_rows : int
        How many samples are checked one by one (``min(check_rows, n)`` of them), ≥ 1.
    seed : int
        Seed of the check's own CPU ``torch.Generator``; the global generator is not touched.
    dtype, device
        The dtype and device of the returned weights (those of ``log p``).

    Returns
    -------
    idx : torch.Tensor
        (q,) int64 on the CPU, q = ``min(check_rows, n)``: the first q entries of
        ``torch.randperm(n)`` drawn from a generator seeded ``seed``, the samples checked one by one.
    W : torch.Tensor
        (q + 1, n) in ``dtype`` on ``device``: row j < q is the one-hot row of sample ``idx[j]``;
        the last row is a standard Gaussian vector drawn next from the same generator in float64,
        then rounded to ``dtype`` (the random combination of all samples). Drawn on the CPU, so
        the weights are the same whatever the device, then moved to ``device``.
    """
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(n, generator=gen, device="cpu")[: min(check_rows, n)]
    W = torch.zeros(len(idx) + 1, n, dtype=dtype, device="cpu")
    W[torch.arange(len(idx), device="cpu"), idx] = 1.0
    W[-1] = torch.randn(n, generator=gen, dtype=torch.float64, device="cpu").to(dtype)
    return idx, W.to(device)


def _verify_signals(lp, used, segs, n, check_rows, seed, entries, uses, substituted) -> str:
    """H2 with autograd: for weights w (q × n) — one-hot rows of sampled samples and one Gaussian
    combination of all samples — the VJP ∂(Σ_i w_i log p_i)/∂z of every recorded output must be
    w_{s(r)}·δ_r in every row r."""
    idx, W = _h2_check_weights(n, check_rows, seed, lp.dtype, lp.device)
    probes = [c.probe for c, _ in used]
    # one plain VJP per weight vector: measured faster than one vmapped (is_grads_batched)
    # backward on CPU, and free of missing batching rules
    per = [
        torch.autograd.grad(lp, probes, grad_outputs=w, retain_graph=j + 1 < len(W), allow_unused=True)
        for j, w in enumerate(W)
    ]
    got = tuple(None if per[0][j] is None else torch.stack([p[j] for p in per]) for j in range(len(probes)))
    eps = torch.finfo(lp.dtype).eps
    wmax = W.abs().amax(dim=1)
    for (c, delta), g in zip(used, got):
        seg, _ = segs[id(c)]
        rows_w = W if seg is None else W[:, seg.to(W.device)]  # (q, R)
        d = _delta_rows(c, delta)
        expected = rows_w[:, :, None] * d[None]
        actual = torch.zeros_like(expected) if g is None else torch.stack([_delta_rows(c, x) for x in g])
        err = (actual - expected).abs().amax(dim=(1, 2))
        # the VJPs pass through the call in its own precision (a float32 layer scored in float64)
        tol = 1024 * max(eps, torch.finfo(c.probe.dtype).eps) * wmax * float(d.abs().max())
        bad = torch.nonzero(err > tol).reshape(-1)
        if bad.numel():
            q = int(bad[0])
            what = f"sample {int(idx[q])}" if q < len(idx) else "a random combination of all samples"
            names = sorted({entries[ei][0] for ei, u in uses.items() for cc, _, _ in u if cc is c})
            raise HypothesesNotMet(
                f"structured Gram hypotheses not met for {', '.join(map(repr, names))}: the output "
                f"of {c.name or 'model'} (call #{c.order}) influences other samples' log-probabilities "
                f"than its own rows' (autograd check on {what}: error {float(err[q]):.3g} > "
                f"{float(tol[q]):.3g}); the per-sample scores are not rank one per row for this "
                "model/subset (a mixing layer such as attention, batch-norm in training mode, or an "
                "embedding whose rows feed later positions)"
            )
    h1 = (
        "H1 on the autograd graph, but uses outside the hooked calls of tensors the forward "
        "substitutes without requires_grad (functional_call with detached tensors) are not visible"
        if substituted
        else "H1 on the autograd graph"
    )
    return f"H2 verified with autograd on {len(idx)} sampled samples and one random combination of all {n}; {h1}"


def lambda_max_structured(
    model, per_sample_logp, param_names, *, dense_max: int = 512, tol: float = 1e-10, **kw
) -> LambdaMaxResult:
    """λ_max(F) through :func:`structured_gram` (see its hypotheses, verified by default).

    K is formed either way; its top eigenvalue comes from ``eigvalsh`` for n ≤ ``dense_max`` and
    from Lanczos on K (O(n²) per step, residual-checked to ``tol``) above, where a full
    eigendecomposition (O(n³)) would dominate the cost. ``P`` counts each θ tensor once (a tied
    tensor listed under one of its names); ``structure`` describes the calls found in the forward.

    Raises
    ------
    fimtheory.errors.HypothesesNotMet
        A θ tensor is held by an unsupported module, used outside the recorded calls, or its
        layer outputs mix samples (see :func:`structured_gram`); never a number then.
    """
    sg = structured_gram_details(model, per_sample_logp, param_names, **kw)
    K, P = sg.K, sg.P
    n = K.shape[0]
    if n <= dense_max:
        lam, _, res = _top_eigh(K, want_vector=False)
        return LambdaMaxResult(lam, "structured-gram", 0, res, n, P, "K", None, sg.structure)
    r = lanczos(lambda v: K @ v, n, dtype=K.dtype, device=K.device, tol=tol)
    return LambdaMaxResult(r.value, "structured-gram-lanczos", r.iterations, r.residual, n, P, "K", None, sg.structure)


# --------------------------------------------------------------------------------------
# per-token structured Gram for every layer of a causal LM: per-target output signals
# --------------------------------------------------------------------------------------
#
# Samples are the positions t of m independent windows; sample (b, t) has the score
# g_bt = Σ_calls Σ_s δ^{bt}_{b,s} ⊗ a_{b,s}, with a_{b,s} the call's input at row s of window b
# and δ^{bt}_{b,s} = ∂ log p_bt / ∂z_{b,s} the signal of target (b, t) at that output row
# (zero for s > t in a causal model, zero in other windows). One backward with the cotangent
# "target t in every window" yields δ^{bt}_{b,·} for all b at once (windows do not mix), so T
# backwards (batched with is_grads_batched) give every signal. Per θ tensor the Gram is then
#
#   diagonal     every use has δ^{bt}_{b,s} = 0 for s ≠ t (only position-wise ops follow):
#                rank one per sample, K = Σ (δ_bt·δ_b't')(a_bt·a_b't'), cost n²(d_in + d_out)
#   structured   K_(bt),(b't') = Σ_{s,s'} (a_bs·a_b's')(δ^{bt}_bs·δ^{b't'}_b's'), contracted as
#                Y = A·Δ then Δ·Y: about 2·n²·R·d_out + n²·d_in flops (R rows per window), G never
#                formed
#   explicit     the tensor's block of G, g_bt = Σ_s δ^{bt}_bs ⊗ a_bs, built a chunk of its
#                dim-0 at a time and accumulated as G_c G_cᵀ: n·R·d_in·d_out + n²·d_in·d_out
#                flops (all uses of a tied tensor summed in the parameter's layout)
#
# chosen per tensor by the smaller flop count times a measured cost per flop of each kernel.

PER_TOKEN_PATHS = ("auto", "structured", "explicit")
_FLOP_COST: dict = {}


def _measured_flop_costs(dtype, device) -> dict[str, float]:
    """Seconds per flop of the structured contraction (batched einsum) and of the explicit
    path's GEMM, measured once per (dtype, device) on small representative shapes.

    The structured probe is ``einsum("tbso,xbso->btx", D, Y)`` with D (R, m, R, d) and Y
    (m, m, R, d), m = 2, R = d = 32 (2·m²·R²·d flops); the explicit one is ``Gc @ Gc.T`` with Gc
    (m·R, 2048) (2·(m·R)²·2048 flops). The operands are float64 Gaussians of a generator seeded 0,
    drawn on the CPU (the global generator is not touched) and moved to ``device`` in ``dtype``.
    Each product runs once untimed (warm-up), then three timed runs — each waiting for the device
    (``torch.cuda.synchronize(device)`` on CUDA) before the clock is read — and the shortest
    time over the flop count is the cost. Returns ``{"structured": s/flop, "explicit": s/flop}``,
    cached in ``_FLOP_COST`` under ``(dtype, str(device))``."""
    key = (dtype, str(device))
    if key in _FLOP_COST:
        return _FLOP_COST[key]
    import time

    gen = torch.Generator().manual_seed(0)

    def t(fn, flops):
        fn()
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - t0)
        return best / flops

    m, R, d = 2, 32, 32
    D = torch.randn(R, m, R, d, generator=gen, dtype=torch.float64, device="cpu").to(device=device, dtype=dtype)
    Y = torch.randn(m, m, R, d, generator=gen, dtype=torch.float64, device="cpu").to(device=device, dtype=dtype)
    Gc = torch.randn(m * R, 2048, generator=gen, dtype=torch.float64, device="cpu").to(device=device, dtype=dtype)
    cost = {
        "structured": t(lambda: torch.einsum("tbso,xbso->btx", D, Y), 2 * R * m * m * R * d),
        "explicit": t(lambda: Gc @ Gc.T, 2 * (m * R) ** 2 * 2048),
    }
    _FLOP_COST[key] = cost
    return cost


class _Use:
    """One use of a θ tensor by a call, per window: the static factor X (m, R, d_x) — dense, an
    index tensor (m, R) of one-hot rows, or None for a bias — and the output signals of every
    target Δ (m, T, R, d_δ) = δ^{bt}_{b,s} (window, target, row, output), contiguous so that
    the products below are batched GEMMs over windows. ``delta_dim0``: the signal side is the
    parameter's dim 0. A diagonal use (δ^{bt}_{b,s} = 0 for s ≠ t) keeps only dd (m, T, d_δ)."""

    __slots__ = ("call", "role", "X", "size", "delta", "delta_dim0", "diagonal", "dd", "d_delta", "R")

    def __init__(self, call, role, X, size, delta, delta_dim0, dd=None):
        self.call, self.role, self.X, self.size = call, role, X, size
        self.delta, self.delta_dim0 = delta, delta_dim0
        _, T, self.R, self.d_delta = delta.shape
        # dd given: only position-wise operations follow; keep δ^{bt}_{bt} (m, T, d) alone
        self.diagonal, self.dd = dd is not None, dd
        if dd is not None:
            self.delta = None

    @property
    def d_x(self) -> int:
        return 1 if self.X is None else (self.size if self.X.dtype == torch.long else self.X.shape[-1])

    def signal(self):
        """(Δ (b, t, s, o), einsum letters) — the diagonal form as (b, t, o) with s = t."""
        return (self.dd, "bso") if self.diagonal else (self.delta, "btso")

    def values(self, V: torch.Tensor) -> torch.Tensor:
        """(m, R, d_δ): the parameter-layout tensor V applied to every row's static factor."""
        if self.X is None:
            return V
        if self.X.dtype == torch.long:
            out = V[self.X]
            if self.call.kind == "embedding" and self.call.mod.padding_idx is not None:
                out = out * (self.X != self.call.mod.padding_idx)[..., None].to(out.dtype)
            return out
        return self.X @ (V.T if self.delta_dim0 else V)

    def matvec(self, V: torch.Tensor) -> torch.Tensor:
        """(G_use v)_{bt} = Σ_s δ^{bt}_bs · (V a_bs), an (m, T) tensor."""
        Va = self.values(V)
        if self.diagonal:
            return (self.dd * Va).sum(-1)
        m, T, R, o = self.delta.shape
        if self.X is None:
            return (self.delta.view(m, T * R, o) @ Va).view(m, T, R).sum(-1)
        return torch.bmm(self.delta.view(m, T, R * o), Va.reshape(m, R * o, 1)).view(m, T)

    def rmatvec(self, w: torch.Tensor) -> torch.Tensor:
        """Σ_{b,t} w_bt g_bt restricted to this use, in the parameter's layout."""
        if self.diagonal:
            S = w[..., None] * self.dd
        else:
            m, T, R, o = self.delta.shape
            S = torch.bmm(w.view(m, 1, T), self.delta.view(m, T, R * o)).view(m, R, o)
        if self.X is None:
            return S.sum((0, 1))
        if self.X.dtype == torch.long:
            idx = self.X.reshape(-1)
            S = S.reshape(-1, S.shape[-1])
            if self.call.kind == "embedding" and self.call.mod.padding_idx is not None:
                S = S * (idx != self.call.mod.padding_idx)[:, None].to(S.dtype)
            return torch.zeros(self.size, S.shape[-1], dtype=S.dtype, device=S.device).index_add_(0, idx, S)
        if self.delta_dim0:
            return torch.einsum("bso,bsi->oi", S, self.X)
        return torch.einsum("bsi,bso->io", self.X, S)

    def onehot(self, i0: int, i1: int, dtype) -> torch.Tensor:
        """(m, R, i1 − i0) one-hot rows of the index factor restricted to columns i0:i1."""
        idx = self.X
        oh = (idx[..., None] == torch.arange(i0, i1, device=idx.device)).to(dtype)
        if self.call.kind == "embedding" and self.call.mod.padding_idx is not None:
            oh = oh * (idx != self.call.mod.padding_idx)[..., None].to(dtype)
        return oh


def _per_token_uses(call: _Call, delta: torch.Tensor, m: int, dtype) -> dict[str, _Use]:
    """The uses of one call from its batched output signal ``delta`` (m, T, *probe.shape[1:])."""
    T = delta.shape[1]
    x, kind = call.inp, call.kind
    if kind in ("conv1d", "conv2d"):
        raise HypothesesNotMet(f"{call.name}: convolutions are not supported by the per-token structured Gram")
    d = delta.reshape(m, T, -1, delta.shape[-1]).to(dtype)  # (b, t, s, o)
    R = d.shape[2]
    dd = None
    if R == T and not bool(torch.linalg.vector_norm(d, dim=(0, 3)).fill_diagonal_(0).any()):
        ar = torch.arange(T, device=d.device)
        dd = d[:, ar, ar].contiguous()  # δ^{bt}_{b,s} = 0 for s ≠ t: the diagonal is all
    if kind == "embedding":
        idx = x.long()
        idx = idx.reshape(-1, R).expand(m, R) if call.shared else idx.reshape(m, R)
        return {"weight": _Use(call, "weight", idx, call.mod.num_embeddings, d, False, dd)}
    a = x.reshape(-1, R, x.shape[-1]).to(dtype)
    if call.shared:
        a = a.expand(m, R, a.shape[-1])
    elif a.shape[0] != m:
        raise HypothesesNotMet(f"{call.name}: input rows {tuple(x.shape)} do not match {m} windows")
    out = {"weight": _Use(call, "weight", a, 0, d, kind == "linear", dd)}
    if call.mod._parameters.get("bias") is not None:
        out["bias"] = _Use(call, "bias", None, 0, d, True, dd)
    return out


def _per_token_signals(lp, probes, chunk: int):
    """Δ for every target: grads of lp (m, T) w.r.t. ``probes`` under the cotangents "position t
    of every window", t = 0..T−1, in batches of ``chunk`` (vmapped backward; a plain loop if a
    batching rule is missing). Returns a list (per probe, probe shape (m, …)) of (m, T, …)
    tensors — window, target, then the probe's own axes — or None for a probe that log p does
    not depend on."""
    m, T = lp.shape
    out: list = [None] * len(probes)
    batched = True
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        E = torch.zeros(t1 - t0, m, T, dtype=lp.dtype, device=lp.device)
        E[torch.arange(t1 - t0, device=E.device), :, torch.arange(t0, t1, device=E.device)] = 1.0
        gs = None
        if batched:
            try:
                gs = torch.autograd.grad(
                    lp, probes, grad_outputs=E, retain_graph=True, allow_unused=True, is_grads_batched=True
                )
            except RuntimeError:
                batched = False
        if gs is None:
            per = [torch.autograd.grad(lp, probes, grad_outputs=e, retain_graph=True, allow_unused=True) for e in E]
            gs = tuple(None if per[0][j] is None else torch.stack([p[j] for p in per]) for j in range(len(probes)))
        for j, g in enumerate(gs):
            if g is None:
                continue
            if out[j] is None:  # every target chunk writes its slice: no zero fill needed
                out[j] = torch.empty((m, T, *probes[j].shape[1:]), dtype=lp.dtype, device=lp.device)
            out[j][:, t0:t1] = g.transpose(0, 1)
        del gs
    return out


def _pt_cost(uses, n: int, T: int, cost: dict) -> dict[str, float]:
    """Estimated seconds of each path for one θ tensor (flops × measured seconds per flop)."""
    explicit = 0.0
    d0d1 = uses[0].d_x * uses[0].d_delta
    for u in uses:
        explicit += 2 * n * (1 if u.diagonal else u.R) * d0d1
    explicit += 2 * n * n * d0d1
    est = {"explicit": explicit * cost["explicit"]}
    if len(uses) == 1 and uses[0].X is not None:
        u = uses[0]
        R = u.R
        m = n // T
        est["structured"] = (4 * n * n * R * u.d_delta) * cost["structured"] + 2 * (m * R) ** 2 * u.d_x * cost[
            "explicit"
        ]
    return est


def _pt_explicit(uses, m: int, T: int, dtype, device) -> torch.Tensor:
    """Σ over dim-0 chunks of G_c G_cᵀ, G_c (n × chunk·d1) the tensor's block of G (rows b·T + t)."""
    n = m * T
    u0 = uses[0]
    d0 = u0.d_delta if u0.delta_dim0 else u0.d_x
    d1 = u0.d_x if u0.delta_dim0 else u0.d_delta
    if u0.X is None:  # bias: g_bt = Σ_s δ^{bt}_bs
        Gb = sum(u.dd.reshape(n, -1) if u.diagonal else u.delta.sum(2).reshape(n, -1) for u in uses)
        return Gb @ Gb.T
    step = max(1, _BLOCK_ENTRIES // max(1, n * d1))
    K = torch.zeros(n, n, dtype=dtype, device=device)
    for i0 in range(0, d0, step):
        i1 = min(d0, i0 + step)
        Gc = None
        for u in uses:
            D, lt = u.signal()  # lt: "tbso" (all rows s of the window) or "bso" (s = t)
            out_rows = "bs" if u.diagonal else "bt"
            if u.X.dtype == torch.long:  # one-hot rows (dim 0 = vocabulary), signals dim 1
                part = torch.einsum(f"bsv,{lt}->{out_rows}vo", u.onehot(i0, i1, dtype), D)
            elif u.delta_dim0:  # nn.Linear: (out, in)
                part = torch.einsum(f"{lt},bsi->{out_rows}oi", D[..., i0:i1], u.X)
            else:  # Conv1D: (in, out)
                part = torch.einsum(f"bsi,{lt}->{out_rows}io", u.X[..., i0:i1], D)
            part = part.reshape(n, -1)
            Gc = part if Gc is None else Gc.add_(part)
        K.addmm_(Gc, Gc.T)
    return K


def _pt_structured(u: _Use, m: int, T: int, dtype, device) -> torch.Tensor:
    """Σ_{s,s'} (a_bs·a_b's')(δ^{bt}_bs·δ^{b't'}_b's') without the block of G (one dense use)."""
    n = m * T
    R = u.R
    if u.X.dtype == torch.long:
        f = u.X.reshape(-1)
        A = (f[:, None] == f[None, :]).to(dtype)
        if u.call.kind == "embedding" and u.call.mod.padding_idx is not None:
            keep = (f != u.call.mod.padding_idx).to(dtype)
            A = A * keep[:, None] * keep[None, :]
    else:
        Xf = u.X.reshape(m * R, -1)
        A = Xf @ Xf.T
    A3 = A.reshape(m, R, m, R)  # (b, s, b', s')
    D = u.delta  # (b, t, s, o)
    K = torch.empty(m, T, m, T, dtype=dtype, device=device)
    step = max(1, _BLOCK_ENTRIES // max(1, m * m * R * u.d_delta))
    for c0 in range(0, T, step):
        c1 = min(T, c0 + step)
        # Y[c, b', b, s, o] = Σ_s' A[b, s, b', s'] Δ[b', c, s', o]
        Y = torch.einsum("bsxr,xcro->cxbso", A3, D[:, c0:c1])
        K[:, :, :, c0:c1] = torch.einsum("btso,cxbso->btxc", D, Y)
    return K.reshape(n, n)


def structured_gram_per_token(
    model: torch.nn.Module,
    per_token_logp,
    param_names,
    *,
    check_rows: int = 1,
    seed: int = 0,
    path: str = "auto",
    target_chunk: int | None = None,
) -> StructuredGram:
    """K = GGᵀ/n of the per-token scores of every Linear / Conv1D / Embedding of a causal LM,
    without forming G where that is cheaper.

    Samples are the positions of m independent windows: ``per_token_logp()`` runs the model once
    on an (m, T) batch and returns the (m, T) log-probabilities log p(x_{b,t+1} | x_{b,≤t}); the
    score of sample (b, t) (row b·T + t of G) is ∇θ of that entry. Each use of a θ tensor is a
    recorded call z = W a (+ b); the output signals δ^{bt} of every target come from T backwards
    with the cotangents "position t in every window" (vmapped, ``target_chunk`` targets at a
    time), and each θ tensor's Gram is formed by the cheapest of three exact routes (see the
    section comment): *diagonal* (only position-wise operations follow the call), *structured*
    (Σ_{s,s'} (a_s·a_s')(δ_{t,s}·δ_{t',s'}), G never formed) or *explicit* (the tensor's block of
    G, a chunk at a time; always used for a tensor with several non-diagonal uses, e.g. a tied
    embedding and LM head). The choice is by flop counts times a per-flop cost measured once per
    dtype/device; ``path`` forces "structured" (where applicable) or "explicit".

    A call whose output has no window axis (a position embedding called once with positions
    0..T−1) gets a probe broadcast over the m windows; the hooked forward must then reproduce
    log p of a plain forward exactly (checked: a dry forward runs first).

    Hypotheses (checked): (H1) θ is used only through recorded calls of supported modules (on
    the autograd graph, as in :func:`structured_gram`); (H2) windows do not interact: for
    ``check_rows`` sampled targets and one random combination of all targets, the
    vector–Jacobian products at every recorded output equal those predicted by the per-target
    signals (largest entrywise error at most 1024·eps·T·max|w|·max|δ| per call, eps the larger
    machine epsilon of log p's and the call's dtype, max|δ| the call's largest signal).
    Causality is not needed for exactness (it only makes δ^{bt}_{b,s} zero for s > t). Models
    must be deterministic (eval mode).

    Memory: the signals of every target, T·n·Σ_calls d_out floats, plus the backward's batch of
    ``target_chunk`` cotangents.

    Returns
    -------
    StructuredGram with ``structure`` naming each tensor's route and estimated costs.

    Raises
    ------
    fimtheory.errors.HypothesesNotMet, fimtheory.errors.InputError
    """
    if path not in PER_TOKEN_PATHS:
        raise InputError(f"unknown path {path!r}; expected one of {PER_TOKEN_PATHS}")
    lp0 = _validate_lp0(per_token_logp)
    m, T = lp0.shape
    n = m * T
    entries, uses, checks = _record_per_token(model, per_token_logp, param_names, lp0, check_rows, seed, target_chunk)
    dtype, device = lp0.dtype, lp0.device
    K, structure = _per_token_gram(entries, uses, m, T, path, dtype, device)
    P = sum(t.numel() for _, t in entries)
    return StructuredGram(K / n, P, tuple(structure), checks)


def _validate_lp0(per_token_logp):
    with torch.no_grad():
        lp0 = per_token_logp()
    if not isinstance(lp0, torch.Tensor) or lp0.ndim != 2 or not lp0.is_floating_point() or lp0.numel() == 0:
        got = tuple(lp0.shape) if isinstance(lp0, torch.Tensor) else type(lp0).__name__
        raise InputError(f"per_token_logp() must return a non-empty floating (m, T) tensor, got {got}")
    if not bool(torch.isfinite(lp0).all()):
        raise InputError("per_token_logp() returned a NaN or inf log-probability")
    return lp0


def _record_per_token(model, per_token_logp, param_names, lp0, check_rows, seed, target_chunk):
    if isinstance(check_rows, bool) or not isinstance(check_rows, int) or check_rows < 0:
        raise InputError(f"check_rows must be a non-negative integer, got {check_rows!r}")
    bad_chunk = isinstance(target_chunk, bool) or not isinstance(target_chunk, int) or target_chunk < 1
    if target_chunk is not None and bad_chunk:
        raise InputError(f"target_chunk must be a positive integer, got {target_chunk!r}")
    m, T = lp0.shape
    entries, calls, lp, _, substitutes, leaves = _record_forward(model, per_token_logp, param_names, windows=m)
    try:
        uses, checks = _per_token_factors(entries, calls, lp, lp0, substitutes, check_rows, seed, target_chunk, m, T)
    finally:
        leaves.clear()
    return entries, uses, checks


def _per_token_factors(entries, calls, lp, lp0, substitutes, check_rows, seed, target_chunk, m, T):
    """(uses per θ tensor, checks) of one hooked forward; see :func:`structured_gram_per_token`."""
    if not isinstance(lp, torch.Tensor) or lp.shape != lp0.shape or not lp.requires_grad:
        raise InputError("per_token_logp() must return an (m, T) tensor with an autograd graph")
    dtype = lp.dtype
    eps = torch.finfo(dtype).eps
    gap = float((lp.detach() - lp0).abs().max())
    if gap > 64 * eps * max(1.0, float(lp0.abs().max())):
        raise HypothesesNotMet(
            f"the hooked forward changed log p by {gap:.3g} (a call shared by all windows was given a "
            "per-window probe and the forward does not broadcast it back; or the model is not deterministic)"
        )
    for c in calls:
        if c.inp is not None and c.inp._version != c.version:
            raise HypothesesNotMet(f"the input of {c.name} (call #{c.order}) was modified in place after the call")
    _check_coverage(lp, entries, calls, substitutes)
    live = [c for c in calls if c.probe is not None and c.out_fn is not None]
    chunk = target_chunk or max(1, min(T, 16))
    deltas = _per_token_signals(lp, [c.probe for c in live], chunk) if live else []
    uses: dict[int, list[_Use]] = {i: [] for i in range(len(entries))}
    for c, d in zip(live, deltas):
        if d is None or not bool(d.any()):
            continue  # the call does not reach log p
        for role, u in _per_token_uses(c, d, m, dtype).items():
            if role in c.targets:
                uses[c.entry[role]].append(u)
    checks = "none (check_rows=0)"
    if check_rows and live:  # no live call: no signal to verify (every score is zero)
        checks = _verify_per_token(lp, live, deltas, m, T, check_rows, seed)
    del deltas
    return uses, checks


def _per_token_gram(entries, uses, m, T, path, dtype, device):
    """(K unnormalised GGᵀ, structure lines) from the uses."""
    n = m * T
    cost = _measured_flop_costs(dtype, device)
    K = torch.zeros(n, n, dtype=dtype, device=device)
    structure = []
    for ei, (name, _) in enumerate(entries):
        us = uses[ei]
        if not us:
            structure.append(f"{name}: no call reaches log p (zero scores)")
            continue
        calls_desc = " + ".join(f"{u.call.name or 'model'}#{u.call.order}({u.call.kind})" for u in us)
        if all(u.diagonal for u in us):
            blocks = []
            for u in us:
                dd = u.dd.reshape(n, -1)  # δ^{bt}_{bt}, rows b·T + t
                if u.X is None:
                    blocks.append((None, dd, None))
                    continue
                X = _Index(u.X.reshape(-1), u.size) if u.X.dtype == torch.long else u.X.reshape(n, -1)
                if u.X.dtype == torch.long and u.call.kind == "embedding" and u.call.mod.padding_idx is not None:
                    dd = dd * (u.X.reshape(-1) != u.call.mod.padding_idx)[:, None].to(dtype)
                blocks.append((None, dd, X) if u.delta_dim0 else (None, X, dd))
            K.add_(_entry_gram_structured(blocks, n, dtype, device, {}))
            structure.append(f"{name}: {len(us)} call(s) {calls_desc}; route diagonal (position-wise)")
            continue
        est = _pt_cost(us, n, T, cost)
        if path == "auto":
            route = min(est, key=est.get)
        elif path == "structured" and "structured" in est:
            route = "structured"
        else:
            route = "explicit"
        if route == "structured":
            part = _pt_structured(us[0], m, T, dtype, device)
        else:
            part = _pt_explicit(us, m, T, dtype, device)
        K.add_(part)
        del part
        costs = ", ".join(f"{k} {v:.2g} s" for k, v in sorted(est.items()))
        structure.append(f"{name}: {len(us)} call(s) {calls_desc}; route {route} (estimated {costs})")
    return 0.5 * (K + K.T), structure


def _verify_per_token(lp, live, deltas, m, T, check_rows, seed) -> str:
    """H2 for windows: VJPs of sampled single targets and of one random combination of all
    targets must equal the combinations of the per-target signals at every recorded output."""
    n = m * T
    idx, W = _h2_check_weights(n, check_rows, seed, lp.dtype, lp.device)
    W = W.reshape(-1, m, T)
    probes = [c.probe for c in live]
    eps = torch.finfo(lp.dtype).eps
    dmaxes: dict = {}
    for q, w in enumerate(W):
        got = torch.autograd.grad(lp, probes, grad_outputs=w, retain_graph=True, allow_unused=True)
        for c, d, g in zip(live, deltas, got):
            if d is None:
                continue
            # predicted: Σ_t w[b, t] δ^{bt} at the rows of window b
            pred = torch.bmm(w.view(m, 1, T), d.reshape(m, T, -1)).view(m, -1)
            act = torch.zeros_like(pred) if g is None else g.reshape(m, -1)
            err = float(torch.linalg.vector_norm(act - pred, ord=math.inf))
            dmax = dmaxes.setdefault(id(d), float(torch.linalg.vector_norm(d, ord=math.inf)))
            # the VJPs pass through the call in its own precision (a float32 layer scored in float64)
            tol = 1024 * max(eps, torch.finfo(c.probe.dtype).eps) * float(w.abs().max()) * max(dmax, 1e-300) * T
            if err > tol:
                what = f"target {int(idx[q])}" if q < len(idx) else "a random combination of all targets"
                raise HypothesesNotMet(
                    f"per-token structured Gram hypotheses not met at {c.name or 'model'} (call #{c.order}): "
                    f"windows interact (autograd check on {what}: error {err:.3g} > {tol:.3g}); the m rows "
                    "of the batch must be independent sequences (no batch-norm in training mode, no "
                    "cross-window attention)"
                )
    return (
        f"H2 (independent windows) verified with autograd on {len(idx)} sampled targets and one random "
        f"combination of all {n}; H1 on the autograd graph"
    )


def layer_param_names(model: torch.nn.Module, *, kinds=("linear", "hf_conv1d", "embedding")) -> tuple[str, ...]:
    """Names of every weight and bias held by a supported layer of the given ``kinds`` (a tied
    tensor listed once, under its first name), in ``named_modules`` order."""
    out, seen = [], set()
    for mname, mod in model.named_modules():
        if _layer_kind(mod) not in kinds:
            continue
        for role in ("weight", "bias"):
            p = mod._parameters.get(role)
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                out.append(f"{mname}.{role}" if mname else role)
    return tuple(out)


class _PerTokenOperator:
    """v ↦ K v = G(Gᵀ v)/n on Rⁿ from the per-target signals, never forming K or G: per product
    about 4·Σ_uses n·(R·d_δ + d_x·d_δ) flops (R = 1 for a diagonal use)."""

    def __init__(self, uses, m, T):
        self.groups = [us for us in uses.values() if us]
        self.m, self.T, self.n = m, T, m * T

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        w = v.reshape(self.m, self.T)
        out = torch.zeros_like(w)
        for us in self.groups:
            g = None
            for u in us:
                r = u.rmatvec(w)
                g = r if g is None else g.add_(r)
            for u in us:
                out.add_(u.matvec(g))
        return out.reshape(-1) / self.n


def lambda_max_per_token(
    model: torch.nn.Module,
    per_token_logp,
    param_names,
    *,
    method: str = "auto",
    tol: float = 1e-10,
    check_rows: int = 1,
    seed: int = 0,
    target_chunk: int | None = None,
    dense_max: int = 512,
) -> LambdaMaxResult:
    """λ_max(F) of the per-token scores of every Linear / Conv1D / Embedding of a causal LM
    (same hypotheses and checks as :func:`structured_gram_per_token`), G never formed.

    ``method``: ``"gram"`` forms K (per tensor by the cheapest exact route) and takes its top
    eigenvalue (``eigvalsh`` for n ≤ ``dense_max``, Lanczos on K above); ``"lanczos"`` runs
    Lanczos (full reorthogonalisation, residual-checked to ``tol``) on the factored operator
    v ↦ Σ_θ G_θ(G_θᵀ v)/n built from the per-target signals, K never formed; ``"auto"`` takes
    "gram" for n ≤ ``dense_max`` and "lanczos" above.
    """
    if method not in ("auto", "gram", "lanczos"):
        raise InputError(f"unknown method {method!r}; expected auto, gram or lanczos")
    lp0 = _validate_lp0(per_token_logp)
    m, T = lp0.shape
    n = m * T
    entries, uses, checks = _record_per_token(model, per_token_logp, param_names, lp0, check_rows, seed, target_chunk)
    P = sum(t.numel() for _, t in entries)
    dtype, device = lp0.dtype, lp0.device
    if method == "auto":
        method = "gram" if n <= dense_max else "lanczos"
    if method == "gram":
        K, structure = _per_token_gram(entries, uses, m, T, "auto", dtype, device)
        K = K / n
        if n <= dense_max:
            lam, _, res = _top_eigh(K, want_vector=False)
            return LambdaMaxResult(lam, "per-token-gram", 0, res, n, P, "K", None, tuple(structure))
        r = lanczos(lambda v: K @ v, n, dtype=dtype, device=device, tol=tol, seed=seed)
        return LambdaMaxResult(
            r.value, "per-token-gram-lanczos", r.iterations, r.residual, n, P, "K", None, tuple(structure)
        )
    op = _PerTokenOperator(uses, m, T)
    r = lanczos(op, n, dtype=dtype, device=device, tol=tol, seed=seed)
    structure = tuple(
        f"{entries[ei][0]}: {len(us)} call(s); {'diagonal' if all(u.diagonal for u in us) else 'per-target signals'}"
        for ei, us in uses.items()
        if us
    )
    return LambdaMaxResult(r.value, "per-token-lanczos", r.iterations, r.residual, n, P, "K", None, structure)


# --------------------------------------------------------------------------------------
# matrix-free λ_max from automatic differentiation on one recorded forward
# --------------------------------------------------------------------------------------
#
# K = GGᵀ/n with G the Jacobian of the n log-probabilities w.r.t. θ. Both products of G come
# from the graph of one forward, never re-run: Gᵀv = ∂(v·log p)/∂θ is a backward with the
# cotangent v (graph retained), and G w = ∂/∂u ⟨Gᵀu, w⟩ is a backward through the graph of the
# linear map u ↦ Gᵀu, built once with create_graph=True (reverse-over-reverse). A step of
# Lanczos on K therefore costs two backward passes and no forward; per-token scores of a
# causal LM cost no more than per-sample ones (a cotangent over all (window, position) pairs).


class _CotangentPruner:
    """Saved-tensor hooks for the first backward (u ↦ Gᵀu, recorded with create_graph): a tensor
    that the recorded backward saves and that depends on the cotangent u is not kept.

    Gᵀu is linear in u, so its derivative with respect to u (the only one ever taken: G w) does
    not depend on u; an autograd formula saves a u-dependent tensor only for the derivative with
    respect to another input (θ, or an activation of the forward), which is never requested.
    Such tensors (the backpropagated signals of every layer, about as large as the forward's
    activations) are replaced by a placeholder that unpacks to a NaN tensor of the same shape
    (one stored element): should a double-backward formula read one after all, G w comes out
    NaN and :class:`_AutodiffGram` raises. Values are never rounded (float64 stays float64).
    """

    def __init__(self, u):
        self.u = u
        self.u_node = None
        self.dep: dict = {}  # autograd node → whether it depends on u (nodes kept alive while recording)
        self.dropped = 0
        self.dropped_bytes = 0

    def _depends(self, node) -> bool:
        if node is None:
            return False
        dep = self.dep
        if node in dep:
            return dep[node]
        stack = [(node, iter(node.next_functions))]
        dep[node] = False
        while stack:
            cur, it = stack[-1]
            for nxt, _ in it:
                if nxt is None:
                    continue
                if nxt not in dep:
                    if getattr(nxt, "variable", None) is self.u:
                        dep[nxt] = True
                    else:
                        dep[nxt] = False
                        stack.append((nxt, iter(nxt.next_functions)))
                        break
                if dep[nxt]:
                    dep[cur] = True
            else:
                stack.pop()
                if stack and dep[cur]:
                    dep[stack[-1][0]] = True
        return dep[node]

    def pack(self, t):
        if t is self.u or (t.requires_grad and self._depends(t.grad_fn)):
            self.dropped += 1
            self.dropped_bytes += t.numel() * t.element_size()
            return (_PRUNED, tuple(t.shape), t.dtype, t.device)
        return t

    @staticmethod
    def unpack(x):
        if isinstance(x, tuple) and x and x[0] is _PRUNED:
            _, shape, dtype, device = x
            return torch.full((), math.nan, dtype=dtype, device=device).expand(shape)
        return x

    def done(self) -> None:
        self.dep = {}


_PRUNED = object()


class _AutodiffGram:
    """v ↦ K v = G(Gᵀv)/n from the recorded graph, checking ⟨G Gᵀv, v⟩ = ‖Gᵀv‖² on every call
    (the two products must be each other's transposes; a wrong double-backward formula breaks
    it)."""

    def __init__(self, flat, thetas, u, gt):
        self.flat, self.thetas, self.u, self.gt = flat, thetas, u, gt
        self.n = flat.numel()
        self.eps = torch.finfo(flat.dtype).eps
        self.worst = 0.0
        self.calls = 0

    def gt_product(self, v):
        return torch.autograd.grad(self.flat, self.thetas, grad_outputs=v, retain_graph=True)

    def g_product(self, ws):
        (out,) = torch.autograd.grad(self.gt, self.u, grad_outputs=ws, retain_graph=True, allow_unused=True)
        return torch.zeros_like(self.u) if out is None else out

    def __call__(self, v):
        g = self.gt_product(v)
        sq = sum(float(torch.sum(x * x)) for x in g)
        Gg = self.g_product(g)
        self.calls += 1
        if not bool(torch.isfinite(Gg).all()):
            raise HypothesesNotMet(
                "the reverse-over-reverse product G w is not finite: a double-backward formula of an operation "
                "in the forward reads a tensor that depends on the cotangent (or overflows); use a G-based or "
                "structured path"
            )
        ip = float(torch.dot(Gg, v))
        scale = float(torch.linalg.vector_norm(Gg)) * float(torch.linalg.vector_norm(v)) + sq
        err = abs(ip - sq)
        if scale > 0:
            self.worst = max(self.worst, err / scale)
        if err > 4096 * self.eps * scale:
            raise HypothesesNotMet(
                f"the reverse-over-reverse product G w is not the transpose of the backward Gᵀv "
                f"(⟨G Gᵀv, v⟩ = {ip:.17g} vs ‖Gᵀv‖² = {sq:.17g}): an operation in the forward has a wrong "
                "or non-linear double-backward formula; use a G-based or structured path"
            )
        return Gg / self.n


def _refuse_stochastic(model) -> None:
    nn = torch.nn
    for name, mod in model.named_modules():
        if not mod.training:
            continue
        if isinstance(mod, nn.modules.dropout._DropoutNd) and mod.p > 0:
            raise InputError(f"{name or 'model'} is a {type(mod).__name__} in training mode: call model.eval() first")
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            raise InputError(
                f"{name or 'model'} is a {type(mod).__name__} in training mode (samples interact): call model.eval()"
            )


def lambda_max_autodiff(
    model: torch.nn.Module,
    logp,
    param_names,
    *,
    tol: float = 1e-10,
    max_iter: int | None = None,
    seed: int = 0,
) -> LambdaMaxResult:
    """λ_max(F) = λ_max(K), K = GGᵀ/n, by Lanczos on K with both products of G taken by
    automatic differentiation on one recorded forward — neither G nor K is formed, and the
    forward is never re-run.

    The n samples are the entries of ``logp()`` (any shape, row-major: an (m, T) tensor of
    per-token log-probabilities gives the samples b·T + t, as :func:`lambda_max_per_token`); the
    score of sample i is ∇θ of entry i. Gᵀv is the backward of log p with the cotangent v (graph
    retained); G w is the backward, with respect to u, of the graph of u ↦ Gᵀu built once with
    ``create_graph=True`` (reverse-over-reverse). Each Lanczos step therefore costs about two
    backward passes, whatever the layers (Linear, Conv1D, Embedding, LayerNorm, attention, tied
    or shared tensors: autograd sums every use) and whatever the sample structure.

    Checks: every product verifies ⟨G Gᵀv, v⟩ = ‖Gᵀv‖² (to 4096·eps relative), so a forward
    operation whose double-backward formula is wrong or missing raises instead of returning a
    number; the Ritz residual is recomputed explicitly (``residual``); training-mode dropout or
    batch-norm is refused (the scores would be those of one random or batch-coupled forward).

    Parameters
    ----------
    model : the module whose parameters ``logp`` reads (requires_grad is restored).
    logp : callable () → tensor of the n log-probabilities, with an autograd graph to θ.
    param_names : names of the θ tensors (a tied tensor listed once, under any of its names).
    tol, max_iter, seed : :func:`lanczos` options (relative residual tolerance, iterations,
        start-vector seed).

    Memory: the forward's saved activations and the graph of the first backward, plus Lanczos'
    basis (iterations × n floats). The first backward's graph keeps only what G w reads: the
    tensors it would save that depend on u (every layer's backpropagated signal, saved by
    autograd for derivatives with respect to θ and the activations, which are never taken) are
    dropped by saved-tensor hooks at full precision; so the lasting memory is about one
    forward's activations plus the backward's tensors that depend on the forward alone.

    Raises
    ------
    fimtheory.errors.InputError
        ``logp`` does not return a finite floating tensor with a graph; stochastic layers in
        training mode; unknown or repeated parameter names.
    fimtheory.errors.HypothesesNotMet
        The double-backward products are not consistent (see Checks).
    """
    if not callable(logp):
        raise InputError(f"logp must be a callable returning log-probabilities, got {type(logp).__name__}")
    entries, _ = _resolve_theta(model, param_names)
    _refuse_stochastic(model)
    thetas = [t for _, t in entries]
    forced = [t for t in thetas if not t.requires_grad]
    try:  # frozen θ tensors require grad for the whole run (every product differentiates them)
        for t in forced:
            t.requires_grad_(True)
        return _autodiff_lanczos(entries, thetas, logp, tol, max_iter, seed)
    finally:
        for t in forced:
            t.requires_grad_(False)


def _autodiff_lanczos(entries, thetas, logp, tol, max_iter, seed) -> LambdaMaxResult:
    with torch.enable_grad():
        lp = logp()
        if not isinstance(lp, torch.Tensor) or not lp.is_floating_point() or lp.numel() == 0:
            got = tuple(lp.shape) if isinstance(lp, torch.Tensor) else type(lp).__name__
            raise InputError(f"logp() must return a non-empty floating tensor, got {got}")
        if not bool(torch.isfinite(lp).all()):
            raise InputError("logp() returned a NaN or inf log-probability")
        if not lp.requires_grad:
            raise InputError("logp() returned a tensor without an autograd graph to θ")
        flat = lp.reshape(-1)
        n = flat.numel()
        P = sum(t.numel() for t in thetas)
        u = torch.zeros(n, dtype=flat.dtype, device=flat.device, requires_grad=True)
        pruner = _CotangentPruner(u)
        with torch.autograd.graph.saved_tensors_hooks(pruner.pack, pruner.unpack):
            gt = torch.autograd.grad(flat, thetas, grad_outputs=u, create_graph=True, allow_unused=True)
        pruner.done()
    flat_ops = [entries[i][0] for i, g in enumerate(gt) if g is not None and not g.requires_grad]
    if flat_ops:
        raise HypothesesNotMet(
            f"the backward to {', '.join(map(repr, flat_ops))} is not differentiable (an operation in the "
            "forward has a backward that autograd cannot differentiate again, e.g. a custom Function with "
            "once_differentiable or a detached backward): G w cannot be taken by reverse-over-reverse; use "
            "a G-based or structured path"
        )
    live = [i for i, g in enumerate(gt) if g is not None]
    dead = [entries[i][0] for i, g in enumerate(gt) if g is None]
    if not live:
        detail = "no θ tensor reaches log p: every score is zero"
        return LambdaMaxResult(0.0, "autodiff-lanczos", 0, 0.0, n, P, "K", None, (detail,))
    op = _AutodiffGram(flat, [thetas[i] for i in live], u, [gt[i] for i in live])
    r = lanczos(op, n, dtype=flat.dtype, device=flat.device, tol=tol, max_iter=max_iter, seed=seed)
    structure = [
        f"{len(live)} θ tensor(s), P = {P}: Gᵀv by backward, G w by reverse-over-reverse on one recorded "
        f"forward; ⟨G Gᵀv, v⟩ = ‖Gᵀv‖² held on all {op.calls} products (worst relative gap {op.worst:.2g})"
    ]
    structure.append(
        f"first backward's graph: {pruner.dropped} saved tensor(s) depending on the cotangent "
        f"({pruner.dropped_bytes / 2**20:.1f} MiB summed over the tensors) not kept (never read by G w)"
    )
    if dead:
        structure.append(f"not reaching log p (zero scores): {', '.join(dead)}")
    return LambdaMaxResult(r.value, "autodiff-lanczos", r.iterations, r.residual, n, P, "K", None, tuple(structure))
