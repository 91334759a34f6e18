"""Tractable approximations of λ_max of the empirical FIM (docs/theory.md §5).

- AH, :func:`heuristic`: Rayleigh quotient at ḡ/‖ḡ‖, optionally after k power steps.
  Guarantee: ‖ḡ‖² ≤ λ̂_H ≤ λ_max (the quotient of a PSD matrix never decreases under power
  steps, by log-convexity of the spectral moments).
- AB, :func:`two_sided`: certified-by-construction L ≤ λ_max ≤ U from cheap quantities.

Everything is computed from the scores G (n×P) without forming F when n < P.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fimtheory.errors import HypothesesNotMet, InputError
from fimtheory.fim import score_matrix
from fimtheory.validation import as_symmetric, check_positive_int, power_of_two_scale, rescale

__all__ = [
    "HeuristicEstimate",
    "TwoSidedBound",
    "heuristic",
    "lanczos_ritz",
    "power_of_two_scale",
    "structural_rank_bound",
    "two_sided",
]


def _fim_matvec(G: np.ndarray, x: np.ndarray) -> np.ndarray:
    """F x = Gᵀ(Gx)/n without forming F."""
    return G.T @ (G @ x) / G.shape[0]


@dataclass(frozen=True)
class HeuristicEstimate:
    """λ̂_H with the lower guarantee ‖ḡ‖² and the vector it is the Rayleigh quotient of."""

    value: float
    mean_score_norm_sq: float
    power_steps: int
    vector: np.ndarray = field(repr=False)


def heuristic(G, *, power_steps: int = 0) -> HeuristicEstimate:
    """AH: Rayleigh quotient of F at ḡ/‖ḡ‖ after ``power_steps`` power iterations.

    Hypothesis: ḡ ≠ 0 (at an exact maximum-likelihood fit ḡ = 0 and the start is undefined).
    """
    G = score_matrix(G)
    steps = check_positive_int(power_steps, "power_steps", minimum=0)
    c = power_of_two_scale(G)
    Gs = G / c  # exact; every quantity below is computed at unit scale and rescaled by c²
    gbar = Gs.mean(axis=0)
    if not np.any(gbar):
        raise HypothesesNotMet("AH needs a nonzero mean score ḡ (the start vector ḡ/‖ḡ‖)")
    # ‖ḡ‖ can underflow although ḡ ≠ 0 (entries below 1e-154): normalise ḡ scaled by a power
    # of two (exact; the same x bit for bit wherever ‖ḡ‖² does not underflow).
    u = gbar / power_of_two_scale(gbar)
    x = u / np.linalg.norm(u)
    for _ in range(steps):
        y = _fim_matvec(Gs, x)
        ny = np.linalg.norm(y)
        if ny == 0.0:
            break
        x = y / ny
    value = float(rescale(x @ _fim_matvec(Gs, x) / (x @ x), c, 2, "the heuristic λ̂_H"))
    return HeuristicEstimate(value, float(rescale(gbar @ gbar, c, 2, "‖ḡ‖²")), steps, x)


def lanczos_ritz(K: np.ndarray, steps: int, start: np.ndarray) -> tuple[float, np.ndarray]:
    """Largest Ritz value of ``steps`` Lanczos steps (full reorthogonalisation) on symmetric K.

    Returns (value, unit Ritz vector). The value is the Rayleigh quotient of the returned
    vector, recomputed directly, so ``value ≤ λ_max(K)`` up to rounding in that quotient.
    Steps beyond n, or beyond an invariant subspace (β_j ≤ 1e-14·|α_j|), add nothing; at
    k = n (or the dimension of the Krylov space) the value is the top eigenvalue of K on that
    space, λ_max(K) for a start not orthogonal to the top eigenvector.

    Raises
    ------
    InputError
        K not a finite square symmetric matrix (within :func:`~fimtheory.validation.symmetry_tolerance`),
        ``steps`` < 1, or ``start`` not a finite nonzero vector of length n.
    """
    steps = check_positive_int(steps, "steps")
    K = as_symmetric(K, "K")
    start = np.asarray(start)
    if (
        start.dtype.kind not in "fiu"
        or start.shape != (K.shape[0],)
        or not np.all(np.isfinite(start))
        or not np.any(start)
    ):
        raise InputError(f"start must be a finite nonzero vector of length {K.shape[0]}")
    start = start.astype(np.float64)
    c = power_of_two_scale(K)
    K = K / c
    n = K.shape[0]
    k = min(steps, n)
    Q = np.zeros((n, k))
    alpha = np.zeros(k)
    beta = np.zeros(k)
    q = start / np.linalg.norm(start / np.max(np.abs(start))) / np.max(np.abs(start))
    used = 0
    for j in range(k):
        Q[:, j] = q
        w = K @ q
        alpha[j] = q @ w
        w -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)
        w -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)
        used = j + 1
        b = np.linalg.norm(w)
        if j + 1 < k:
            beta[j] = b
            if b <= 1e-14 * max(abs(alpha[j]), 1e-300):
                break
            q = w / b
    T = np.diag(alpha[:used]) + np.diag(beta[: used - 1], 1) + np.diag(beta[: used - 1], -1)
    theta, S = np.linalg.eigh(T)
    y = Q[:, :used] @ S[:, -1]
    y /= np.linalg.norm(y)
    return float(rescale(y @ K @ y, c, 1, "the Ritz value")), y


@dataclass(frozen=True)
class TwoSidedBound:
    """L ≤ λ_max(F) ≤ U with every ingredient named.

    ``lower_terms``: max_i ‖g_i‖²/n, ‖ḡ‖², max_k F_kk, Ritz value of k-step Lanczos,
    (tr K^q / rank)^{1/q}. ``upper_terms``: tr F, max row sum of |K|, (tr K^q)^{1/q}.
    """

    lower: float
    upper: float
    lower_terms: dict
    upper_terms: dict
    lanczos_steps: int
    q: int

    @property
    def ratio(self) -> float:
        """U / L (1 means the bracket is exact); inf when L = 0."""
        return self.upper / self.lower if self.lower > 0 else float("inf")


def _trace_power_root(K: np.ndarray, q: int) -> float:
    """(tr K^q)^{1/q} for PSD K by repeated squaring, each product renormalised by a power of
    two (exact), so neither K^q nor its trace can overflow or underflow whatever q and n."""
    result, rlog = None, 0
    base, blog = K.copy(), 0  # the true base is base·2^blog
    e = q
    while e:
        if e & 1:
            result, rlog = (base.copy(), blog) if result is None else (result @ base, rlog + blog)
            c = power_of_two_scale(result)
            result, rlog = result / c, rlog + int(np.frexp(c)[1]) - 1
        e >>= 1
        if e:
            base, blog = base @ base, 2 * blog
            c = power_of_two_scale(base)
            base, blog = base / c, blog + int(np.frexp(c)[1]) - 1
    t = max(float(np.trace(result)), 0.0)  # K PSD: tr K^q ≥ 0
    return t ** (1.0 / q) * float(np.exp2(rlog / q)) if t > 0 else 0.0


def structural_rank_bound(G: np.ndarray) -> int:
    """r = min(P, number of nonzero rows) ≥ rank(G), exactly (no rounding can undercut it).

    A numerical rank could fall below the true rank, and then (tr K^q / r)^{1/q} could exceed
    λ_max; this bound keeps that lower bound rigorous.
    """
    G = score_matrix(G)
    return int(min(G.shape[1], np.count_nonzero(np.any(G != 0, axis=1))))


def two_sided(G, *, lanczos_steps: int = 3, q: int = 4) -> TwoSidedBound:
    """AB: rigorous (in exact arithmetic) L ≤ λ_max(F) ≤ U for F = GᵀG/n.

    Parameters
    ----------
    G : (n, P) scores.
    lanczos_steps : Krylov dimension for the Ritz lower bound (≥ 1; started at ḡ on the
        Gram side, i.e. at Gḡ, or at the largest row when ḡ = 0).
    q : power for the trace bounds, ≥ 1. (tr K^q)^{1/q} decreases to λ_max as q grows.

    The rank in (tr K^q / r)^{1/q} is :func:`structural_rank_bound`, an exact upper bound.
    """
    G0 = score_matrix(G)
    k = check_positive_int(lanczos_steps, "lanczos_steps")
    q = check_positive_int(q, "q")
    c = power_of_two_scale(G0)
    G = G0 / c  # exact scaling: all terms are computed at unit scale and rescaled by c²
    n = G.shape[0]
    K = G @ G.T / n
    K = 0.5 * (K + K.T)
    gbar = G.mean(axis=0)
    diagF = np.einsum("ij,ij->j", G, G) / n
    row_norms_sq = np.einsum("ij,ij->i", G, G)
    start = G @ gbar
    if not np.any(start):
        start = np.zeros(n)
        start[int(np.argmax(row_norms_sq))] = 1.0
    ritz, _ = lanczos_ritz(K, k, start) if np.any(K) else (0.0, None)
    trace = float(np.trace(K))
    rank = structural_rank_bound(G)
    trq_root = _trace_power_root(K, q)
    lower_terms = {
        "max_row_norm_sq_over_n": float(np.max(row_norms_sq) / n),
        "mean_score_norm_sq": float(gbar @ gbar),
        "max_fim_diagonal": float(np.max(diagF)),
        "lanczos_ritz": float(ritz),
        "trace_power_over_rank": float(trq_root / rank ** (1.0 / q)) if rank else 0.0,
    }
    upper_terms = {
        "trace": trace,
        "max_abs_row_sum_gram": float(np.max(np.sum(np.abs(K), axis=1))),
        "trace_power_root": float(trq_root),
    }
    lower_terms = {key: float(rescale(val, c, 2, f"AB term {key}")) for key, val in lower_terms.items()}
    upper_terms = {key: float(rescale(val, c, 2, f"AB term {key}")) for key, val in upper_terms.items()}
    return TwoSidedBound(max(lower_terms.values()), min(upper_terms.values()), lower_terms, upper_terms, k, q)
