"""Eq. 1, the softmax Fisher M(p) = diag(p) − ppᵀ and the companion's KL statistic (fimtheory.eq1),
against independent references: mpmath eigenvalues at 60 digits, dense float64 eigvalsh and
closed forms."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fimtheory import eq1
from fimtheory.errors import InputError

EPS = np.finfo(float).eps


def mp_lambda_max(p, dps: int = 60):
    with mpmath.workdps(dps):
        n = len(p)
        M = mpmath.matrix(n, n)
        for i in range(n):
            for j in range(n):
                M[i, j] = (mpmath.mpf(p[i]) if i == j else 0) - mpmath.mpf(p[i]) * mpmath.mpf(p[j])
        return float(max(mpmath.eigsy(M)[0]))


@st.composite
def distributions(draw, max_size: int = 10):
    """Probability vectors from flat to nearly point masses, with ties and zeros."""
    n = draw(st.integers(1, max_size))
    logits = draw(st.lists(st.floats(-40, 40), min_size=n, max_size=n))
    if n > 2 and draw(st.booleans()):
        logits[1] = logits[0]  # a tie at the top
    if n > 3 and draw(st.booleans()):
        logits[-1] = -math.inf  # an exact zero
    z = np.array(logits)
    p = np.exp(z - z.max())
    return p / p.sum()


@settings(max_examples=150, deadline=None, derandomize=True)
@given(distributions())
def test_lambda_max_matches_mpmath_to_a_few_eps(p):
    ref = mp_lambda_max(p)
    got = eq1.softmax_fisher_lambda_max(p)
    assert abs(got - ref) <= 8 * EPS * max(ref, 1e-300) + 1e-300


@settings(max_examples=150, deadline=None, derandomize=True)
@given(distributions())
def test_bounds_enclose_lambda_max(p):
    ref = mp_lambda_max(p)
    lo, hi = eq1.softmax_fisher_bounds(p)
    tol = 8 * EPS * max(ref, 1e-300)
    assert lo - tol <= ref <= hi + tol
    # each named bound on its own: p₂ and p₁(1 − p₁) below, p₁ and the trace above
    ps = np.sort(p)[::-1]
    assert (ps[1] if p.size > 1 else 0.0) - tol <= ref
    assert ps[0] * (1 - ps[0]) - tol <= ref
    assert ref <= ps[0] + tol
    if math.fsum([*p.tolist(), -1.0]) <= 0:  # M ⪰ 0: the trace bounds λ_max
        assert ref <= float(np.sum(p * (1 - p))) + tol


def test_dense_reference_on_a_real_vocabulary_size():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(2000, 0.05))
    dense = float(np.linalg.eigvalsh(eq1.softmax_fisher(p))[-1])
    assert eq1.softmax_fisher_lambda_max(p) == pytest.approx(dense, rel=2000 * EPS)


@pytest.mark.parametrize(
    "p,expected",
    [
        ([0.5, 0.5], 0.5),  # the bound p₁ is attained
        ([1.0], 0.0),
        ([1.0, 0.0, 0.0], 0.0),
        (np.full(20, 0.05), 0.05),  # uniform: 1/K
        ([0.25, 0.75], 2 * 0.25 * 0.75),  # two atoms: 2ab
    ],
)
def test_closed_forms(p, expected):
    assert eq1.softmax_fisher_lambda_max(p) == pytest.approx(expected, rel=4 * EPS, abs=0)


def test_eq1_matches_its_definition():
    q = np.array([0.5, 0.3, 0.2])
    h = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)) / math.log(3)
    assert eq1.eq1_lambda_hat(q) == pytest.approx(0.5 * 0.5 * (1 + 0.5 * h), rel=4 * EPS)
    # top-K truncation renormalises: the 21st token is dropped
    p = np.concatenate([np.full(20, 0.049), [0.02]])
    assert eq1.eq1_lambda_hat(p, k=20) == pytest.approx(0.05 * 0.95 * 1.5, rel=16 * EPS)


def test_ratio_to_the_softmax_fisher_reaches_the_ends_of_its_range():
    """λ̂/λ_max(M(q)) on the renormalised top-K q: 1.5(1 − 1/K) at the uniform q, → ½ on the
    two-atom family q = (1 − δ, δ) as δ → 0 (so Eq. 1 is not within 25% of λ_max(M))."""
    for k in (2, 5, 20):
        q = np.full(k, 1 / k)
        assert eq1.eq1_lambda_hat(q, k=k) / eq1.softmax_fisher_lambda_max(q) == pytest.approx(1.5 * (1 - 1 / k))
    d = 1e-9
    r = eq1.eq1_lambda_hat([1 - d, d]) / eq1.softmax_fisher_lambda_max([1 - d, d])
    assert 0.5 < r < 0.5 + 1e-6


def test_empirical_logit_fisher_differs_by_orders_of_magnitude_as_p_max_tends_to_1():
    p = np.array([1 - 1e-6, 1e-6])
    emp = eq1.empirical_logit_fisher_lambda(p, 0)  # (1 − p₁)² + p₂² = 2e-12
    assert emp == pytest.approx(2e-12, rel=1e-9)
    assert eq1.eq1_lambda_hat(p) / emp > 1e5
    # the emitted token is the unlikely one: ‖e_y − p‖² ≈ 2
    assert eq1.empirical_logit_fisher_lambda(p, 1) == pytest.approx(2, rel=1e-5)


def test_sorted_padded_kl_ignores_which_tokens_carry_the_mass():
    p = np.array([0.7, 0.2, 0.1, 0.0])
    q = np.array([0.0, 0.1, 0.2, 0.7])  # the opposite prediction
    assert eq1.sorted_padded_kl(p, q) == 0.0
    assert eq1.kl_divergence(p, q) == math.inf
    r = np.array([0.1, 0.2, 0.7, 0.0])
    assert eq1.kl_divergence(p, r) > 1.0 and eq1.sorted_padded_kl(p, r) == 0.0


def test_sorted_padded_kl_depends_on_the_padding():
    p, q = [0.6, 0.3, 0.1], [0.9, 0.1]
    values = {eps: eq1.sorted_padded_kl(p, q, eps=eps) for eps in (1e-12, 1e-6, 1e-3)}
    assert values[1e-12] > values[1e-6] > values[1e-3]
    assert values[1e-12] - values[1e-3] > 0.3


@pytest.mark.parametrize(
    "bad,match",
    [
        ([], "non-empty"),
        ([[0.5, 0.5]], "1-D"),
        ([0.5, float("nan")], "NaN"),
        ([1.5, -0.5], "negative"),
        ([0.5, 0.6], "sum to 1"),
    ],
)
def test_bad_probability_vectors_are_refused(bad, match):
    with pytest.raises(InputError, match=match):
        eq1.softmax_fisher_lambda_max(bad)


def test_bad_arguments_are_refused():
    with pytest.raises(InputError, match="token index"):
        eq1.empirical_logit_fisher_lambda([0.5, 0.5], 2)
    with pytest.raises(InputError, match="k must be"):
        eq1.eq1_lambda_hat([0.5, 0.5], k=0)
    with pytest.raises(InputError, match="eps"):
        eq1.sorted_padded_kl([0.5, 0.5], [0.5, 0.5], eps=-1.0)
    with pytest.raises(InputError, match="same tokens"):
        eq1.kl_divergence([0.5, 0.5], [1.0])


def test_sum_above_one_by_rounding_keeps_the_bounds_valid():
    """A float vector summing to 1 + 1e-16 makes M indefinite, and its λ_max exceeds the trace:
    the trace bound must then be dropped (found by the property test above)."""
    p = np.array([3e-17, 1.0, 8.5e-17])
    ref = mp_lambda_max(p)
    assert ref > float(np.sum(p * (1 - p)))  # the trace is not an upper bound here
    lo, hi = eq1.softmax_fisher_bounds(p)
    assert lo <= ref <= hi
    assert eq1.softmax_fisher_lambda_max(p) == pytest.approx(ref, rel=8 * EPS)


# ------------------------------------------------------------------ sharper bounds, renormalised q


def mp_lambda_max_renormalised(a, dps: int = 60):
    """Dense reference for λ_max(M(a/Σa)) with the renormalisation done in mp (exact q)."""
    with mpmath.workdps(dps):
        x = [mpmath.mpf(float(v)) for v in a]
        s = mpmath.fsum(x)
        q = [v / s for v in x]
        n = len(q)
        M = mpmath.matrix(n, n)
        for i in range(n):
            for j in range(n):
                M[i, j] = (q[i] if i == j else 0) - q[i] * q[j]
        return float(max(mpmath.eigsy(M)[0]))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(distributions())
def test_sharp_bounds_enclose_lambda_max_and_refine_the_simple_ones(p):
    ref = mp_lambda_max(p)
    lo, hi = eq1.softmax_fisher_sharp_bounds(p)
    lo0, hi0 = eq1.softmax_fisher_bounds(p)
    tol = 8 * EPS * max(ref, 1e-300)
    assert lo - tol <= ref <= hi + tol
    assert lo0 <= lo and hi <= hi0


@pytest.mark.parametrize("m", [2, 3, 7, 20])
def test_sharp_bounds_are_attained(m):
    """Uniform on m tokens: the Rayleigh term equals λ_max = 1/m; m = 2 with any split: the
    Gershgorin term 2p₁(1 − p₁) equals λ_max = 2p₁p₂."""
    p = np.full(m, 1.0 / m)
    lo, _ = eq1.softmax_fisher_sharp_bounds(p)
    assert math.isclose(lo, 1.0 / m, rel_tol=4 * EPS)
    p = np.array([0.75, 0.25])
    lo, hi = eq1.softmax_fisher_sharp_bounds(p)
    assert lo == pytest.approx(0.375, rel=4 * EPS) and hi == pytest.approx(0.375, rel=4 * EPS)


@pytest.mark.parametrize("delta", [1e-3, 1e-8, 1e-12, 1e-15])
def test_renormalised_lambda_max_keeps_its_relative_accuracy_near_a_point_mass(delta):
    """a = (1, δ/2, δ/2) un-normalised: rounding q₁ = a₁/Σa costs 1 − q₁ a relative error
    eps/δ, so λ_max(M(q_float)) is 5% wrong at δ = 1e-15 (measured); the renormalised routine stays
    within a few eps of the exact-q reference."""
    a = np.array([3.0, 1.5 * delta, 1.5 * delta])
    ref = mp_lambda_max_renormalised(a)
    got = eq1.renormalised_softmax_fisher_lambda_max(a)
    assert abs(got - ref) <= 16 * EPS * ref
    r = eq1.eq1_lambda_hat(a, k=3) / got
    lo, hi, m = eq1.eq1_ratio_sandwich(a, k=3)
    assert m == 3 and lo * (1 - 1e-13) <= r <= hi * (1 + 1e-13) and r > 0.5


def test_aligned_kl_and_sandwich_refuse_bad_input():
    with pytest.raises(InputError, match="same tokens"):
        eq1.aligned_kl([0.5, 0.5], [1.0])
    with pytest.raises(InputError, match="eps"):
        eq1.aligned_kl([0.5, 0.5], [0.5, 0.5], eps=-1.0)
    with pytest.raises(InputError, match="fewer than 2"):
        eq1.eq1_ratio_sandwich([1.0, 0.0, 0.0], k=3)
    assert eq1.aligned_kl([0.7, 0.3], [0.3, 0.7]) > eq1.sorted_padded_kl([0.7, 0.3], [0.3, 0.7]) == 0.0
