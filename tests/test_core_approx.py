"""fimtheory.approx (AH heuristic, AB two-sided bound, Lanczos) against dense λ_max.

λ_max reference: scipy.linalg.svdvals(G)[0]² / n. Tolerance c·max(n, P)·eps·λ_max.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.linalg

from fimtheory import approx, highprec
from fimtheory.errors import HypothesesNotMet

EPS = np.finfo(np.float64).eps
_R = np.random.default_rng(3)
_g = _R.standard_normal((2, 5))

CASES = {
    "n>P": _R.standard_normal((12, 4)) + 0.5,
    "n<P": _R.standard_normal((4, 10)) + 0.3,
    "square": _R.standard_normal((6, 6)) + 0.2,
    "rank-2 of 8x6": (_R.standard_normal((8, 2)) + 1) @ _R.standard_normal((2, 6)),
    "rank-1": np.outer(_R.uniform(0.5, 2, 5), _R.standard_normal(7)),
    "duplicate rows": np.vstack([_g, _g, _g, _g[:1]]),
    "1x1": np.array([[2.5]]),
    "single row": _R.standard_normal((1, 5)),
    "single column": _R.standard_normal((7, 1)) + 1,
    "orthogonal equal rows": np.eye(4, 6) * 3.0,
    "scaled 1e-60": 1e-60 * (_R.standard_normal((5, 3)) + 0.5),
    "scaled 1e60": 1e60 * (_R.standard_normal((3, 5)) + 0.5),
}


def _lam(G):
    return scipy.linalg.svdvals(np.asarray(G, float))[0] ** 2 / G.shape[0]


def _tol(G, c=64.0):
    return c * max(G.shape) * EPS * max(_lam(G), np.finfo(float).tiny)


@pytest.mark.parametrize("name", list(CASES))
def test_heuristic_bracket_and_monotone_in_power_steps(name):
    G = CASES[name]
    lam, tol = _lam(G), _tol(G)
    gbar = G.mean(axis=0)
    prev = -np.inf
    for k in range(6):
        est = approx.heuristic(G, power_steps=k)
        assert est.power_steps == k
        assert est.mean_score_norm_sq == pytest.approx(gbar @ gbar, rel=4 * EPS, abs=0)
        assert est.mean_score_norm_sq - tol <= est.value <= lam + tol
        assert est.value >= prev - tol, f"not non-decreasing at k = {k}"
        prev = est.value
    # with steps = 0 it is exactly the Rayleigh quotient at ḡ (checked in mp)
    est0 = approx.heuristic(G)
    with highprec.working_precision(40):
        Gm = highprec.mp_matrix(G)
        gm = highprec.mp_matrix(gbar.reshape(-1, 1))
        Gg = Gm * gm
        rq = (Gg.T * Gg)[0, 0] / G.shape[0] / (gm.T * gm)[0, 0]
        assert abs(mpmath.mpf(est0.value) - rq) <= tol


def test_heuristic_reaches_lambda_max_with_power_steps():
    G = CASES["n>P"]
    assert approx.heuristic(G, power_steps=200).value == pytest.approx(_lam(G), rel=1e-10, abs=0)


@pytest.mark.parametrize(
    "G",
    [np.vstack([_g[:1], -_g[:1]]), np.zeros((3, 4)), np.array([[1.0, -2.0], [-1.0, 2.0]])],
    ids=["antithetic pair", "zero", "2x2 antithetic"],
)
def test_heuristic_needs_nonzero_mean_score(G):
    with pytest.raises(HypothesesNotMet, match=r"nonzero mean score"):
        approx.heuristic(G)


def test_heuristic_with_rounding_sized_mean_still_brackets():
    """[g1; g2; −g1; −g2] has ḡ = O(eps) in float (summation order), not exactly 0: the start
    is then noise, but λ̂_H is still a Rayleigh quotient, so ‖ḡ‖² ≤ λ̂_H ≤ λ_max."""
    G = np.vstack([_g, -_g])
    gbar = G.mean(axis=0)
    if not np.any(gbar):
        pytest.skip("this platform sums the rows exactly")
    est = approx.heuristic(G)
    assert est.mean_score_norm_sq <= est.value <= _lam(G) + _tol(G)


@pytest.mark.parametrize(
    "scale",
    [
        1e-60,
        1e60,
        1e-100,
        1e100,
    ],
)
def test_heuristic_is_scale_covariant(scale):
    """λ̂_H(sG) = s²·λ̂_H(G) whenever s²·λ_max is a normal float."""
    G = CASES["n>P"]
    a = approx.heuristic(G, power_steps=3).value
    b = approx.heuristic(scale * G, power_steps=3).value
    assert b == pytest.approx(scale * scale * a, rel=1e-12, abs=0)


ALL_CASES = {**CASES, "antithetic rows": np.vstack([_g, -_g]), "zero": np.zeros((3, 4))}


@pytest.mark.parametrize("name", list(ALL_CASES))
@pytest.mark.parametrize(("k", "q"), [(1, 1), (3, 4), (8, 16)])
def test_two_sided_brackets_lambda_max(name, k, q):
    G = ALL_CASES[name]
    lam, tol = _lam(G), _tol(G)
    b = approx.two_sided(G, lanczos_steps=k, q=q)
    assert b.lanczos_steps == k and b.q == q
    assert set(b.lower_terms) == {
        "max_row_norm_sq_over_n",
        "mean_score_norm_sq",
        "max_fim_diagonal",
        "lanczos_ritz",
        "trace_power_over_rank",
    }
    assert set(b.upper_terms) == {"trace", "max_abs_row_sum_gram", "trace_power_root"}
    for key, v in b.lower_terms.items():
        assert np.isfinite(v) and v <= lam + tol, key
    for key, v in b.upper_terms.items():
        assert np.isfinite(v) and v >= lam - tol, key
    assert b.lower == max(b.lower_terms.values()) and b.upper == min(b.upper_terms.values())
    if lam == 0:
        assert b.lower == b.upper == 0.0 and b.ratio == np.inf
    else:
        assert b.ratio >= 1 - tol / lam


@pytest.mark.parametrize(
    "scale",
    [
        1e-100,
        1e-150,
        1e100,
        1e150,
    ],
)
def test_two_sided_at_extreme_scales(scale):
    G = scale * CASES["n>P"]
    lam, tol = _lam(G), _tol(G)
    b = approx.two_sided(G)
    for v in b.lower_terms.values():
        assert np.isfinite(v) and v <= lam + tol
    assert b.lower_terms["lanczos_ritz"] >= 0.5 * lam  # 3 Lanczos steps on a 12x12 Gram matrix


def test_two_sided_tightens_with_q_and_lanczos_steps():
    G = CASES["n>P"]
    lam = _lam(G)
    roots = [approx.two_sided(G, q=q).upper_terms["trace_power_root"] for q in (1, 2, 4, 8, 16, 32)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(roots, roots[1:])), roots  # (tr K^q)^{1/q} ↓ λ_max
    assert roots[-1] / lam < 1.02 and roots[0] / lam > 1.05
    ritz = [approx.two_sided(G, lanczos_steps=k).lower_terms["lanczos_ritz"] for k in (1, 2, 3, 4)]
    assert all(b >= a * (1 - 1e-12) for a, b in zip(ritz, ritz[1:])), ritz
    ratios = [approx.two_sided(G, lanczos_steps=k, q=q).ratio for k, q in ((1, 1), (2, 4), (4, 32))]
    assert ratios[0] > ratios[1] > ratios[2] >= 1.0
    assert ratios[-1] < 1.02


@pytest.mark.parametrize("name", ["n>P", "n<P", "square", "rank-2 of 8x6", "duplicate rows"])
def test_lanczos_ritz_full_dimension_equals_lambda_max(name):
    G = CASES[name]
    n = G.shape[0]
    K = G @ G.T / n
    K = 0.5 * (K + K.T)
    start = _R.standard_normal(n)  # generic start: not deficient in the top direction
    lam = np.linalg.eigvalsh(K)[-1]
    for steps in (n, n + 3):
        val, y = approx.lanczos_ritz(K, steps, start)
        assert abs(val - lam) <= 64 * n * EPS * lam
        assert np.linalg.norm(y) == pytest.approx(1.0, abs=8 * EPS)
        assert np.linalg.norm(K @ y - val * y) <= 1e-6 * lam


def test_lanczos_ritz_rejects_zero_steps():
    from fimtheory.errors import InputError

    with pytest.raises(InputError):
        approx.lanczos_ritz(np.eye(2), 0, np.ones(2))
