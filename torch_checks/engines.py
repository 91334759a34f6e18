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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from fimtheory.errors import InputError

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
    """

    value: float
    method: str
    iterations: int
    residual: float
    n: int
    P: int
    operator: str
    vector: torch.Tensor | None = None


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
        tol_eff = max(tol, 64·eps(dtype)) (a float32 run cannot resolve 1e-10).
    max_iter : int, optional
        Default min(dim, 500). Reaching ``dim`` steps spans the whole space: exact.
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
    """
    if dim < 1:
        raise InputError(f"dim must be >= 1, got {dim}")
    eps = torch.finfo(dtype).eps
    tol_eff = max(float(tol), 64.0 * eps)
    m = min(dim, max_iter or 500)
    gen = torch.Generator().manual_seed(int(seed))
    q = torch.randn(dim, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
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
        alphas.append(alpha)
        if k == 0:
            ev = np.array([alpha])
            s = np.ones(1)
        else:
            # only the largest Ritz pair of the tridiagonal T_k: O(k) work per step
            ev, sv = eigh_tridiagonal(np.array(alphas), np.array(betas), select="i",
                                      select_range=(k, k))
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
    y = Q[:iters].T @ torch.as_tensor(s, dtype=dtype).to(device)
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
# structured Gram path: per-sample gradients that are rank one per Linear layer
# --------------------------------------------------------------------------------------


def structured_gram(
    model: torch.nn.Module,
    per_sample_logp,
    param_names,
    *,
    check_rows: int = 0,
    score_rows=None,
) -> torch.Tensor:
    """K = GGᵀ/n **without forming G**, for scores that are rank one per ``nn.Linear`` layer.

    For a Linear layer z = W a + b whose output row i influences only the log-likelihood term
    of sample i, the score of sample i on (W, b) is (δ_i ⊗ a_i, δ_i) with δ_i = ∂ log p_i/∂z_i,
    so K_ij = Σ_layers (δ_i·δ_j)(a_i·a_j + [b ∈ θ]) / n. One batched forward/backward pass gives
    every a_i and δ_i (δ through zero probe tensors added to the layer outputs); K costs
    n²(d_in + d_out) per layer instead of n²·P and the n×P score matrix is never built.

    Hypothesis (the caller's to guarantee, checkable with ``check_rows``): every name in
    ``param_names`` is the weight or bias of an ``nn.Linear``, each layer output row belongs to
    one sample, and no later operation mixes samples (true for an MLP on independent samples,
    and for a transformer's *last* position-wise layer with per-token samples, where only
    position-wise LayerNorm and the head follow).

    Parameters
    ----------
    model : the module (its parameters are used as they are).
    per_sample_logp : callable () → tensor of n log-probabilities (one batched forward of
        ``model``; its Linear outputs must have n rows after flattening the leading axes).
    param_names : names of the parameters θ.
    check_rows : if > 0, recompute that many rows of K from ``score_rows(idx)`` (a callable
        returning the exact score rows G[idx] of the same samples) and raise
        :class:`fimtheory.errors.HypothesesNotMet` if they disagree beyond 1e-8·‖K‖.

    Returns
    -------
    K : (n, n) tensor, exactly symmetric.
    """
    from fimtheory.errors import HypothesesNotMet

    names = set(param_names)
    layers = []
    for mname, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            w, b = f"{mname}.weight" if mname else "weight", f"{mname}.bias" if mname else "bias"
            if w in names or b in names:
                layers.append((mod, w in names, b in names))
                names -= {w, b}
    if names:
        raise HypothesesNotMet(f"structured Gram needs nn.Linear weights/biases only; also got {sorted(names)}")
    if not layers:
        raise InputError("no nn.Linear parameter among param_names")
    acts, probes, handles = [], [], []

    def hook(mod, inp, out):
        e = torch.zeros_like(out, requires_grad=True)
        acts.append(inp[0].detach())
        probes.append(e)
        return out + e

    for mod, _, _ in layers:
        handles.append(mod.register_forward_hook(hook))
    try:
        with torch.enable_grad():
            lp = per_sample_logp()
            deltas = torch.autograd.grad(lp.sum(), probes)
    finally:
        for h in handles:
            h.remove()
    n = lp.numel()
    K = None
    for (_, has_w, has_b), a, d in zip(layers, acts, deltas):
        a, d = a.reshape(n, -1), d.reshape(n, -1)
        DD = d @ d.T
        term = DD * (a @ a.T) if has_w else torch.zeros_like(DD)
        if has_b:
            term = term + DD
        K = term if K is None else K + term
    K = 0.5 * (K + K.T) / n
    if check_rows:
        if score_rows is None:
            raise InputError("check_rows needs score_rows(idx) returning exact score rows")
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: min(check_rows, n)]
        Gs = score_rows(idx).to(K.dtype)
        direct = Gs @ Gs.T / n
        err = float((direct - K[idx][:, idx]).abs().max())
        scale = float(K.abs().max()) or 1.0
        if err > 1e-8 * scale:
            raise HypothesesNotMet(
                f"structured Gram disagrees with the score rows by {err:.3g} (‖K‖_max {scale:.3g}): "
                "the per-sample scores are not rank one per Linear layer for this model/subset"
            )
    return K


def lambda_max_structured(
    model, per_sample_logp, param_names, *, dense_max: int = 512, tol: float = 1e-10, **kw
) -> LambdaMaxResult:
    """λ_max(F) through :func:`structured_gram` (see its hypothesis).

    K is formed either way; its top eigenvalue comes from ``eigvalsh`` for n ≤ ``dense_max`` and
    from Lanczos on K (O(n²) per step, residual-checked to ``tol``) above, where a full
    eigendecomposition (O(n³)) would dominate the cost.
    """
    K = structured_gram(model, per_sample_logp, param_names, **kw)
    P = sum(p.numel() for name, p in model.named_parameters() if name in set(param_names))
    n = K.shape[0]
    if n <= dense_max:
        lam, _, res = _top_eigh(K, want_vector=False)
        return LambdaMaxResult(lam, "structured-gram", 0, res, n, P, "K", None)
    r = lanczos(lambda v: K @ v, n, dtype=K.dtype, device=K.device, tol=tol)
    return LambdaMaxResult(r.value, "structured-gram-lanczos", r.iterations, r.residual, n, P, "K", None)
