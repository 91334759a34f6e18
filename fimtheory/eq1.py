"""The paper's Eq. 1 and the matrices it could approximate; the companion's KL statistic.

The companion code of arXiv:2606.28432 estimates λ_max of "the per-token empirical FIM" from
the top-K token probabilities of one decoding step by the closed form

    λ̂ = q₁ (1 − q₁) (1 + ½ H_norm(q)),

q the top-K probabilities renormalised to sum 1 (sorted, q₁ the largest) and H_norm(q) their
Shannon entropy divided by log of the number of positive entries. Three matrices are candidates
for what λ̂ approximates; this module computes each exactly:

- the softmax Fisher with respect to the logits, M(p) = diag(p) − ppᵀ = E_{y∼p}[(e_y − p)(e_y − p)ᵀ]
  (:func:`softmax_fisher_lambda_max`, exact by its secular equation; bounds in
  :func:`softmax_fisher_bounds`);
- the empirical one for the emitted token y, (e_y − p)(e_y − p)ᵀ, whose only nonzero eigenvalue
  is ‖e_y − p‖² = 1 − 2p_y + ‖p‖² (:func:`empirical_logit_fisher_lambda`);
- the parameter-space per-token FIM Jᵀ M J, which needs the model (torch_checks).

It also reimplements the companion's KL statistic between consecutive steps (sorted top-K
vectors padded with 1e-12; :func:`sorted_padded_kl`) beside honest alternatives
(:func:`kl_divergence` on full distributions over the same tokens).

numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from fimtheory.errors import InputError

EPS64 = float(np.finfo(float).eps)

#: |Σp − 1| allowed for a probability vector (relative to its length).
SUM_RTOL = 64 * EPS64


def _prob_vector(p, name: str = "p", *, normalised: bool = True) -> np.ndarray:
    a = np.asarray(p, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise InputError(f"{name} must be a non-empty 1-D probability vector, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name} has NaN or infinite entries")
    if np.any(a < 0):
        raise InputError(f"{name} has negative entries (min {a.min():.3g})")
    total = math.fsum(a.tolist())
    if normalised and abs(total - 1.0) > SUM_RTOL * a.size:
        raise InputError(f"{name} must sum to 1 (sum = {total!r}); renormalise it first")
    if not normalised and total <= 0:
        raise InputError(f"{name} has no positive entry")
    return a


def normalised_entropy(q) -> float:
    """H(q)/log(m) for the m > 1 positive entries of a probability vector q (0 when m ≤ 1),
    in [0, 1] — the companion's H_norm."""
    q = _prob_vector(q, "q")
    pos = q[q > 0]
    if pos.size <= 1:
        return 0.0
    h = -math.fsum((pos * np.log(pos)).tolist())
    return min(1.0, max(0.0, h / math.log(pos.size)))


def _top_k_sorted(p, k: int) -> np.ndarray:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    a = _prob_vector(p, "p", normalised=False)
    return np.sort(a)[::-1][:k]


def top_k(p, k: int) -> np.ndarray:
    """The k largest entries of p, descending, renormalised to sum 1 (the companion's q)."""
    a = _top_k_sorted(p, k)
    return a / math.fsum(a.tolist())


def eq1_lambda_hat(p, *, k: int = 20) -> float:
    """Eq. 1: q₁(1 − q₁)(1 + ½ H_norm(q)), q = :func:`top_k` (p, k), to a few ulps.

    ``p`` may be a full distribution or the top-K probabilities already (any positive scale:
    they are renormalised, as the companion's softmax over the top-K log-probabilities does).
    1 − q₁ is evaluated as (Σ_{i≥2} a_i)/Σ a_i, without the cancellation of 1 − q₁ as q₁ → 1.
    """
    a = _top_k_sorted(p, k)
    total = math.fsum(a.tolist())
    q1 = float(a[0]) / total
    rest = math.fsum(a[1:].tolist()) / total
    return q1 * rest * (1.0 + 0.5 * normalised_entropy(a / total))


def empirical_logit_fisher_lambda(p, y: int) -> float:
    """λ_max of (e_y − p)(e_y − p)ᵀ = ‖e_y − p‖² = (1 − p_y)² + Σ_{i≠y} p_i² (exact to a few ulps)."""
    p = _prob_vector(p)
    if isinstance(y, bool) or not isinstance(y, (int, np.integer)) or not 0 <= y < p.size:
        raise InputError(f"y must be a token index in [0, {p.size}), got {y!r}")
    rest = np.delete(p, int(y))
    return math.fsum([(1.0 - float(p[y])) ** 2, *(rest * rest).tolist()])


def softmax_fisher(p) -> np.ndarray:
    """The dense matrix M(p) = diag(p) − ppᵀ (for small vocabularies; O(V²) memory)."""
    p = _prob_vector(p)
    return np.diag(p) - np.outer(p, p)


def softmax_fisher_bounds(p) -> tuple[float, float]:
    """Closed-form bounds L ≤ λ_max(M(p)) ≤ U, p sorted descending p₁ ≥ p₂ ≥ …:

    - L = max(p₂, μ₂), μ₂ the top eigenvalue of M's compression to span{e₁, e₂}
      (Rayleigh–Ritz; μ₂ ≥ p₁(1 − p₁), the Rayleigh quotient at e₁), and p₂ by interlacing of
      the rank-one downdate diag(p) − ppᵀ;
    - U = min(p₁, Σ p_i(1 − p_i)): interlacing again, and the trace of M, which bounds λ_max
      when M ⪰ 0, i.e. when the float vector's exact sum is ≤ 1 (otherwise U = p₁).

    Each is evaluated in float64 to within a few ulps of its exact value.

    Both are attained: p = (½, ½) gives L = U = ½; a point mass gives 0.

    A single entry (n = 1) has no second coordinate to compress to: M(p) is the 1×1 matrix
    p₁(1 − p₁), and L = U = p₁(1 − p₁) (padding p₂ = 0 would give L = max(p₁(1 − p₁), 0),
    above λ_max when the accepted sum 1 ± 64·eps puts p₁ above 1).
    """
    p = np.sort(_prob_vector(p))[::-1]
    p1 = float(p[0])
    if p.size == 1:
        head = p1 * (1.0 - p1)
        return head, head
    p2 = float(p[1]) if p.size > 1 else 0.0
    a, b, c = p1 * (1.0 - p1), p2 * (1.0 - p2), -p1 * p2
    mu2 = 0.5 * (a + b) + math.hypot(0.5 * (a - b), c)
    lower = max(p2, mu2)
    upper = p1
    if math.fsum([*p.tolist(), -1.0]) <= 0:  # exact sign of Σp − 1: M ⪰ 0 iff Σp ≤ 1
        upper = min(upper, math.fsum((p * (1.0 - p)).tolist()))  # trace of M, without cancellation
    return lower, max(lower, upper)


def _secular_function(p1: float, head: float, rest: np.ndarray):
    """g(λ) = head − λ − (p₁ − λ) Σ_{i≥2} p_i²/(p_i − λ), head = p₁(1 − p₁) computed without
    cancellation: (p₁ − λ)·f(λ) for the secular function f of diag(p) − ppᵀ."""

    def g(lam: float) -> float:
        return head - lam - (p1 - lam) * float(np.sum(rest * rest / (rest - lam)))

    return g


def _secular_root(p1: float, head: float, rest: np.ndarray, lo: float, hi: float) -> float:
    """The zero of :func:`_secular_function` in the bracket [lo, hi] (g > 0 below it), by
    bisection to the last float."""
    g = _secular_function(p1, head, rest)
    for _ in range(2200):
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            break
        if g(mid) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def softmax_fisher_lambda_max(p) -> float:
    """λ_max(diag(p) − ppᵀ) to a relative accuracy of about 10·eps, in O(V) memory and time.

    The eigenvalues of the rank-one downdate D − ppᵀ, D = diag(p), are the roots of the secular
    equation f(λ) = 1 − Σ_i p_i²/(p_i − λ) together with every repeated value of p. With
    p₁ > p₂ the largest root is the unique zero of f on (p₂, p₁), where f decreases; with
    p₁ = p₂ it is p₁ itself (eigenvector e₁ − e₂). The root is bracketed by
    :func:`softmax_fisher_bounds` and found by bisection on g(λ) = (p₁ − λ) f(λ)
    = p₁(1 − p₁) − λ − (p₁ − λ) Σ_{i≥2} p_i²/(p_i − λ), whose terms are all of the size of λ,
    so the relative accuracy holds as λ → 0 (p₁ → 1) too.
    """
    p = np.sort(_prob_vector(p))[::-1]
    p1 = float(p[0])
    head = p1 * (1.0 - p1)
    rest = p[1:]
    rest = rest[rest > 0]
    if rest.size == 0:  # a point mass: M = diag(p₁(1 − p₁), 0, …)
        return max(0.0, head)
    p2 = float(rest[0])
    if p2 == p1:
        return p1

    lo, hi = softmax_fisher_bounds(p)
    return _secular_root(p1, head, rest, max(lo, p2), hi)


def _kl(p: np.ndarray, q: np.ndarray, eps: float) -> float:
    p = p / p.sum()
    q = q / q.sum()
    return float(np.sum(p * np.log((p + eps) / (q + eps))))


def sorted_padded_kl(p, q, *, eps: float = 1e-12) -> float:
    """The companion's step-to-step statistic: KL between the two top-K probability vectors
    *sorted in descending order*, the shorter padded with ``eps``, both renormalised, with
    ``eps`` added inside the logarithm.

    Sorting discards which token carries which probability, so two steps that predict
    disjoint tokens with the same probability profile score 0: this is not a divergence
    between the model's predictive distributions.
    """
    if not (isinstance(eps, float) and eps >= 0 and math.isfinite(eps)):
        raise InputError(f"eps must be a finite float >= 0, got {eps!r}")
    a = np.sort(_prob_vector(p, "p", normalised=False))[::-1]
    b = np.sort(_prob_vector(q, "q", normalised=False))[::-1]
    n = max(a.size, b.size)
    a = np.concatenate([a, np.full(n - a.size, eps)])
    b = np.concatenate([b, np.full(n - b.size, eps)])
    return _kl(a, b, eps)


def kl_divergence(p, q) -> float:
    """KL(p ‖ q) = Σ p_i log(p_i/q_i) of two distributions over the same tokens (index i is
    token i); +inf when p puts mass where q has none."""
    p = _prob_vector(p, "p")
    q = _prob_vector(q, "q")
    if p.shape != q.shape:
        raise InputError(f"p and q must be over the same tokens, got shapes {p.shape} and {q.shape}")
    m = p > 0
    if np.any(q[m] == 0):
        return math.inf
    return max(0.0, math.fsum((p[m] * (np.log(p[m]) - np.log(q[m]))).tolist()))


def softmax_fisher_sharp_bounds(p) -> tuple[float, float]:
    """Sharper closed-form bounds L* ≤ λ_max(M(p)) ≤ U* (p sorted descending, m ≥ 2 positive
    entries, S = Σp, s = S − p₁):

    - L* = max(L, R(u)), L from :func:`softmax_fisher_bounds` and R(u) the Rayleigh quotient at
      u = e₁ − (m − 1)⁻¹ Σ_{i≥2, p_i>0} e_i,
      R(u) = [p₁(1 − p₁) + 2p₁s/(m − 1) + s(1 − s)/(m − 1)²]·(m − 1)/m, which for S = 1 is
      exactly p₁(1 − p₁)·m/(m − 1) (attained by the uniform distribution on m tokens);
    - U* = min(U, max_i p_i(1 + S − 2p_i)), U from :func:`softmax_fisher_bounds` and the second
      term Gershgorin's (row i: centre p_i(1 − p_i), radius p_i(S − p_i)); for S = 1 it is
      2p₁(1 − p₁) (attained for m = 2).

    For S = 1 the two give p₁(1 − p₁)·m/(m − 1) ≤ λ_max ≤ 2p₁(1 − p₁), i.e. the exact sandwich
    ½(1 + ½H) ≤ λ̂/λ_max ≤ (1 − 1/m)(1 + ½H) of Eq. 1 (docs/theory.md, EQ1-RATIO). Each
    term is evaluated in float64 from non-negative parts, to a few ulps.
    """
    lower, upper = softmax_fisher_bounds(p)
    a = np.sort(_prob_vector(p))[::-1]
    pos = a[a > 0]
    m = int(pos.size)
    if m < 2:
        return lower, upper
    p1 = float(pos[0])
    s = math.fsum(pos[1:].tolist())
    total = p1 + s
    n1 = m - 1
    ru = (p1 * (1.0 - p1) + 2.0 * p1 * s / n1 + s * (1.0 - s) / (n1 * n1)) * n1 / m
    gersh_first = p1 * (s + (1.0 - p1))  # p₁(1 + S − 2p₁) without cancellation
    gersh_rest = float(np.max(pos[1:] * ((1.0 + total) - 2.0 * pos[1:])))
    lower = max(lower, ru)
    upper = min(upper, max(gersh_first, gersh_rest))
    return lower, max(lower, upper)


def renormalised_softmax_fisher_lambda_max(a) -> float:
    """λ_max(M(q)) for q = a/Σa (the exact renormalisation of a non-negative vector a, e.g. the
    top-K probabilities), to a relative accuracy of about 10·eps.

    The secular function g(λ) = q₁(1 − q₁) − λ − (q₁ − λ) Σ_{i≥2} q_i²/(q_i − λ) is evaluated
    with q₁(1 − q₁) = (a₁/Σa)(Σ_{i≥2} a_i/Σa), so nothing cancels as q₁ → 1; the root is
    bracketed by q₂ ≤ λ and the Rayleigh/Gershgorin sandwich
    q₁(1 − q₁)·m/(m − 1) ≤ λ_max ≤ min(q₁, 2q₁(1 − q₁)) (m positive entries).
    """
    a = np.sort(_prob_vector(a, "a", normalised=False))[::-1]
    a = a[a > 0]
    total = math.fsum(a.tolist())
    q = a / total
    if q.size == 1:
        return 0.0
    q1 = float(q[0])
    head = q1 * (math.fsum(a[1:].tolist()) / total)
    rest = q[1:]
    q2 = float(rest[0])
    if a[0] == a[1]:
        return q1
    m = a.size

    lo = max(q2, head * m / (m - 1) * (1.0 - 1e-12))
    hi = min(q1, 2.0 * head * (1.0 + 1e-12))
    g = _secular_function(q1, head, rest)
    if not (lo < hi and (lo == q2 or g(lo) > 0) and (hi == q1 or g(hi) < 0)):
        lo, hi = q2, q1
    return _secular_root(q1, head, rest, lo, hi)


def eq1_ratio_sandwich(p, *, k: int = 20) -> tuple[float, float, int]:
    """(½(1 + ½H), (1 − 1/m)(1 + ½H), m) for q = :func:`top_k` (p, k) with m ≥ 2 positive
    entries: the proved bounds of λ̂/λ_max(M(q)) (Gershgorin and the Rayleigh quotient above)."""
    q = top_k(p, k)
    m = int(np.count_nonzero(q))
    if m < 2:
        raise InputError("the top-k distribution has fewer than 2 positive entries: λ_max(M(q)) = 0")
    f = 1.0 + 0.5 * normalised_entropy(q)
    return 0.5 * f, (1.0 - 1.0 / m) * f, m


def aligned_kl(p, q, *, eps: float = 1e-12) -> float:
    """Σ p_i log((p_i + ε)/(q_i + ε)) of two renormalised vectors over the *same* tokens (index
    i is token i; the union support handled explicitly by zeros): the companion's formula
    without the sort. By the rearrangement inequality it is ≥ :func:`sorted_padded_kl`
    (p, q, eps=eps), with equality when p and q rank the tokens alike."""
    if not (isinstance(eps, float) and eps >= 0 and math.isfinite(eps)):
        raise InputError(f"eps must be a finite float >= 0, got {eps!r}")
    a = _prob_vector(p, "p", normalised=False)
    b = _prob_vector(q, "q", normalised=False)
    if a.shape != b.shape:
        raise InputError(f"p and q must be over the same tokens, got shapes {a.shape} and {b.shape}")
    return _kl(a, b, eps)
