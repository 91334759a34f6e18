"""fimtheory.spectral and fimtheory.bounds: eigen-data vs scipy.linalg.eigh, the series
coefficients vs mpmath finite differences of λ_max(A + tE), and the bounds W, R, S2, SIGN.

Tolerances: eigenvalues to c·n·eps·‖A‖; coefficients a_k to c·n·eps·κ·η^k/γ^{k−1} with
κ = ‖A‖/γ (the eigenvector condition number that enters E_jk = v_jᵀEv_k).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.linalg
from scipy.stats import ortho_group

from fimtheory import bounds, highprec, spectral
from fimtheory._generated import series as _series
from fimtheory.errors import HypothesesNotMet, InputError

EPS = np.finfo(np.float64).eps
_R = np.random.default_rng(11)


def _sym(n, scale=1.0):
    X = _R.standard_normal((n, n))
    return scale * 0.5 * (X + X.T)


def _psd(eigs, seed=0):
    Q = ortho_group.rvs(len(eigs), random_state=seed)
    A = Q @ np.diag(eigs) @ Q.T
    return 0.5 * (A + A.T)


def _aat(n, r, scale=1.0):
    X = _R.standard_normal((n, r))
    return scale * (X @ X.T)


SYM_CASES = {
    "diag(2,1)": np.diag([2.0, 1.0]),
    "random PSD 5": _psd([5.0, 3.0, 2.0, 1.0, 0.5], 1),
    "AAT rank 2 of 6": _aat(6, 2),
    "AAT rank 1 of 4": _aat(4, 1),
    "zero 3": np.zeros((3, 3)),
    "1x1": np.array([[4.0]]),
    "repeated top": _psd([3.0, 3.0, 1.0], 2),
    "repeated all": 2.0 * np.eye(4),
    "indefinite": _sym(5),
    "tiny 1e-150": _psd([3.0, 2.0, 1.0], 3) * 1e-150,
    "huge 1e150": _psd([3.0, 2.0, 1.0], 4) * 1e150,
}


def _norm(A):
    return float(np.max(np.abs(np.linalg.eigvalsh(A)))) if A.size else 0.0


def _tol(A, c=64.0):
    return c * A.shape[0] * EPS * max(_norm(A), np.finfo(float).tiny)


@pytest.mark.parametrize("name", list(SYM_CASES))
def test_eigen_data_matches_scipy_eigh(name):
    A = SYM_CASES[name]
    n = A.shape[0]
    e = spectral.eigen_data(A)
    w, V = scipy.linalg.eigh(A)
    tol = _tol(A)
    np.testing.assert_allclose(e.eigenvalues, w[::-1], rtol=0, atol=tol)
    assert np.all(np.diff(e.eigenvalues) <= 0)
    assert e.lambda_max == e.eigenvalues[0] and e.lambda_min == e.eigenvalues[-1]
    assert spectral.lambda_max(A) == pytest.approx(w[-1], abs=tol)
    # eigenvectors: orthonormal, small residual, and the same subspaces as scipy's (up to sign)
    X = e.eigenvectors
    np.testing.assert_allclose(X.T @ X, np.eye(n), rtol=0, atol=64 * n * EPS)
    assert np.linalg.norm(A @ X - X * e.eigenvalues) <= tol
    ref = V[:, ::-1]
    for lam in np.unique(np.round(e.eigenvalues / max(_norm(A), 1e-300), 8)):
        cols = np.flatnonzero(np.isclose(e.eigenvalues / max(_norm(A), 1e-300), lam, atol=1e-8))
        P1 = X[:, cols] @ X[:, cols].T
        P2 = ref[:, cols] @ ref[:, cols].T
        np.testing.assert_allclose(P1, P2, rtol=0, atol=1e-8)
    if e.gap_resolved():
        np.testing.assert_allclose(np.abs(e.top_vector @ ref[:, 0]), 1.0, atol=1e-8)


@pytest.mark.parametrize("name", list(SYM_CASES))
def test_gap_and_gap_resolved(name):
    A = SYM_CASES[name]
    e = spectral.eigen_data(A)
    w = np.linalg.eigvalsh(A)[::-1]
    if A.shape[0] == 1:
        assert e.gap == np.inf
        return
    assert e.gap == pytest.approx(w[0] - w[1], abs=_tol(A))
    simple = name not in ("zero 3", "repeated top", "repeated all")
    assert e.gap_resolved() == simple


@pytest.mark.parametrize("scale", [1e-150, 1e-20, 1.0, 1e20, 1e150])
@pytest.mark.parametrize(("gap", "resolved"), [(0.0, False), (4 * EPS, False), (1e-12, True), (0.5, True)])
def test_gap_resolved_is_scale_invariant_and_thresholded(scale, gap, resolved):
    A = np.diag([1.0 + gap, 1.0, 0.25]) * scale
    assert spectral.eigen_data(A).gap_resolved() == resolved


# --------------------------------------------------------------------------------------
# perturbation coefficients vs high-precision finite differences
# --------------------------------------------------------------------------------------

SERIES_CASES = {
    "diag(3,1,0.5), Wigner E": (np.diag([3.0, 1.0, 0.5]), _sym(3)),
    "PSD 4, random E": (_psd([4.0, 2.5, 1.0, 0.1], 5), _sym(4)),
    "AAT rank 2 (+gap) of 5": (_aat(5, 2) + np.diag([3.0, 0, 0, 0, 0]), _sym(5)),
    "n = 2": (np.diag([2.0, 1.0]), np.array([[0.3, -0.7], [-0.7, 0.2]])),
    "1x1": (np.array([[2.0]]), np.array([[-0.75]])),
    "E commutes (diag)": (np.diag([3.0, 2.0, 1.0]), np.diag([0.5, -1.0, 2.0])),
    "small gap 1e-3": (np.diag([1.001, 1.0, 0.2]), _sym(3) * 1e-3),
    "scaled 1e-100": (_psd([3.0, 1.0, 0.5], 6) * 1e-100, _sym(3) * 1e-100),
    "scaled 1e100": (_psd([3.0, 1.0, 0.5], 7) * 1e100, _sym(3) * 1e100),
}


def _mp_taylor(A, E, order, dps=60, h=None, m=4):
    """Taylor coefficients of f(t) = λ_max(A + tE) at 0, from a degree-2m polynomial through
    f(kh), k = −m..m, all in mpmath at ``dps`` digits (error O(h^{2m+1−k}) + 10^−dps/h^k)."""
    with highprec.working_precision(dps):
        Am, Em = highprec.mp_matrix(A), highprec.mp_matrix(E)
        s = max(abs(x) for x in A.flat) or 1.0
        ratio = (max(abs(x) for x in E.flat) or 1.0) / s
        hh = mpmath.mpf(h if h is not None else 1e-7) / ratio
        ks = list(range(-m, m + 1))
        f = [highprec.mp_eigh(Am + (k * hh) * Em, dps).lambda_max for k in ks]
        V = mpmath.matrix([[mpmath.mpf(k) ** j for j in range(2 * m + 1)] for k in ks])
        c = mpmath.lu_solve(V, mpmath.matrix(f))
        return [c[j] / hh**j for j in range(1, order + 1)]


@pytest.mark.parametrize("name", list(SERIES_CASES))
def test_perturbation_coefficients_match_mp_finite_differences(name):
    A, E = SERIES_CASES[name]
    n = A.shape[0]
    order = min(4, _generated_order())  # a4 too, once the symbolic derivation provides it
    lam1, a = spectral.perturbation_coefficients(A, E, order)
    ref = _mp_taylor(A, E, order)
    assert lam1 == pytest.approx(np.linalg.eigvalsh(A)[-1], abs=_tol(A))
    eta = _norm(E)
    gap = spectral.eigen_data(A).gap if n > 1 else 1.0
    kappa = max(_norm(A), eta) / gap
    for k in range(order):
        scale_k = eta * (eta / gap) ** k  # η^{k+1}/γ^k without under/overflow
        tol = 16 * n * EPS * kappa * scale_k + 1e-20 * scale_k  # + FD truncation, h ~ 1e-7: O(h^6)
        assert abs(a[k] - float(ref[k])) <= tol, (k + 1, a[k], float(ref[k]), tol)


def test_series_has_known_closed_form_on_2x2():
    """λ_max(diag(2,1) + t[[0,b],[b,0]]) = 1.5 + sqrt(0.25 + b²t²) ⇒ a1 = 0, a2 = b², a3 = 0."""
    b = 0.375
    _, a = spectral.perturbation_coefficients(np.diag([2.0, 1.0]), np.array([[0.0, b], [b, 0.0]]), 3)
    np.testing.assert_allclose(a, [0.0, b * b, 0.0], rtol=0, atol=8 * EPS)


@pytest.mark.parametrize(
    "A",
    [np.eye(3), np.diag([1.0, 1.0, 0.5]), _psd([2.0, 2.0, 1.0], 8), np.zeros((2, 2)), np.diag([1 + 4 * EPS, 1.0])],
    ids=["identity", "diag repeated", "rotated repeated", "zero", "gap 4eps"],
)
def test_repeated_top_eigenvalue_raises_hypotheses_not_met(A):
    with pytest.raises(HypothesesNotMet, match=r"not simple"):
        spectral.perturbation_coefficients(A, np.ones_like(A), 2)


@pytest.mark.parametrize("order", [0, 5, -1, 1.5, True, "2", None])
def test_order_validation(order):
    with pytest.raises(InputError, match=r"order must be an integer in 1\.\.4"):
        spectral.perturbation_coefficients(np.diag([2.0, 1.0]), np.eye(2), order)


def _generated_order():
    return len(_series.series_coefficients(np.array([2.0, 1.0]), np.eye(2), 4))


@pytest.mark.parametrize(
    "order",
    [
        1,
        2,
        3,
        pytest.param(
            4,
            marks=pytest.mark.xfail(
                _generated_order() < 4,
                strict=True,
                reason="BUG: order=4 is accepted but the generated series returns only 3 coefficients",
            ),
        ),
    ],
)
def test_order_gives_that_many_coefficients(order):
    _, a = spectral.perturbation_coefficients(np.diag([3.0, 2.0, 1.0]), _sym(3), order)
    assert a.shape == (order,)


def test_series_value_and_off_top_residual():
    A, E = SERIES_CASES["PSD 4, random E"]
    lam1, a = spectral.perturbation_coefficients(A, E, 3)
    t = 1e-3
    expected = lam1 + a[0] * t + a[1] * t**2 + a[2] * t**3
    assert spectral.series_value(lam1, a, t) == pytest.approx(expected, rel=4 * EPS, abs=0)
    e = spectral.eigen_data(A)
    v = e.top_vector
    r = E @ v - v * (v @ E @ v)
    assert spectral.off_top_residual_norm_sq(e, E) == pytest.approx(r @ r, rel=64 * EPS, abs=0)
    assert spectral.off_top_residual_norm_sq(spectral.eigen_data(np.diag([2.0, 1.0])), np.diag([1.0, 5.0])) == 0.0


# --------------------------------------------------------------------------------------
# bounds
# --------------------------------------------------------------------------------------

PAIR_CASES = {
    "diag(2,1) / diag(-1,1)": (np.diag([2.0, 1.0]), np.diag([-1.0, 1.0])),
    "random PSD / Wigner": (_psd([5.0, 2.0, 1.0, 0.3], 9), _sym(4)),
    "AAT rank 2 / Wigner": (_aat(6, 2), _sym(6)),
    "zero / Wigner": (np.zeros((3, 3)), _sym(3)),
    "repeated top / Wigner": (_psd([3.0, 3.0, 3.0, 1.0], 10), _sym(4)),
    "E = -A": (_psd([3.0, 2.0, 1.0], 11), -_psd([3.0, 2.0, 1.0], 11)),
    "E = 0": (_psd([3.0, 2.0, 1.0], 12), np.zeros((3, 3))),
    "1x1": (np.array([[2.0]]), np.array([[-5.0]])),
    "huge E": (np.diag([1.0, 0.5]), _sym(2, 1e8)),
    "tiny 1e-150": (_psd([3.0, 2.0, 1.0], 13) * 1e-150, _sym(3, 1e-150)),
    "huge 1e150": (_psd([3.0, 2.0, 1.0], 14) * 1e150, _sym(3, 1e150)),
}


def _pair_tol(A, E, c=64.0):
    return c * A.shape[0] * EPS * max(_norm(A) + _norm(E), np.finfo(float).tiny)


@pytest.mark.parametrize("name", list(PAIR_CASES))
def test_weyl_bounds_and_index_margins(name):
    A, E = PAIR_CASES[name]
    n = A.shape[0]
    tol = _pair_tol(A, E)
    lo, hi = bounds.weyl_bounds(A, E)
    top = np.linalg.eigvalsh(A + E)[-1]
    assert lo - tol <= top <= hi + tol
    assert lo == pytest.approx(np.linalg.eigvalsh(A)[-1] + np.linalg.eigvalsh(E)[0], abs=tol)
    M = bounds.weyl_index_margins(A, E)
    i, j = np.indices((n, n))
    assert np.array_equal(np.isnan(M), i + j >= n), "NaN exactly where i + j − 1 > n"
    assert np.all(M[~np.isnan(M)] >= -tol)


def test_weyl_index_margins_known_values():
    M = bounds.weyl_index_margins(np.diag([2.0, 1.0]), np.diag([-1.0, 1.0]))
    # λ(A) = (2, 1), λ(E) = (1, −1), λ(A+E) = (2, 1)
    np.testing.assert_array_equal(M, [[1.0, 0.0], [1.0, np.nan]])


@pytest.mark.parametrize("name", list(PAIR_CASES))
def test_directional_lower_bound_below_lambda_max(name):
    A, E = PAIR_CASES[name]
    tol = _pair_tol(A, E)
    top = np.linalg.eigvalsh(A + E)[-1]
    assert bounds.directional_lower_bound(A, E) <= top + tol
    # every top eigenvector of a repeated top eigenvalue (random unit vectors in the eigenspace)
    w, V = np.linalg.eigh(A)
    top_cols = V[:, np.abs(w - w[-1]) <= _tol(A)]
    for _ in range(8):
        v = top_cols @ _R.standard_normal(top_cols.shape[1])
        lb = bounds.directional_lower_bound(A, E, v=3.0 * v)  # v is normalised
        assert lb <= top + tol
        assert lb == pytest.approx(w[-1] + v @ E @ v / (v @ v), abs=tol)


def test_directional_lower_bound_is_attained_for_commuting_e():
    assert bounds.directional_lower_bound(np.diag([2.0, 1.0]), np.diag([0.5, 0.25])) == 2.5


def _random_s2_case(seed, rho):
    r = np.random.default_rng(seed)
    n = int(r.integers(2, 7))
    eigs = np.sort(r.uniform(0, 1, n))[::-1] * 10 ** r.uniform(-2, 2)
    eigs[0] = eigs[1] + r.uniform(0.05, 2.0) * max(eigs[0], 1e-3)
    A = _psd(eigs, seed)
    X = r.standard_normal((n, n))
    E = 0.5 * (X + X.T)
    gap = eigs[0] - eigs[1]
    E *= rho * gap / 2 / _norm(E)
    return A, E


@pytest.mark.parametrize("rho", [0.01, 0.3, 0.7, 0.95])
@pytest.mark.parametrize("seed", range(6))
def test_s2_remainders_hold_against_mp(seed, rho):
    A, E = _random_s2_case(seed, rho)
    n = A.shape[0]
    e = spectral.eigen_data(A)
    eta = _norm(E)
    rb = bounds.remainder_bounds(eta, e.gap)
    lam1, (a1, a2) = spectral.perturbation_coefficients(A, E, 2)
    with highprec.working_precision(40):
        top = highprec.mp_eigh(highprec.mp_matrix(A) + highprec.mp_matrix(E), 40).lambda_max
        r1 = abs(top - lam1 - a1)
        r2 = abs(top - lam1 - a1 - a2)
    tol = 256 * n * EPS * (_norm(A) + eta) * (_norm(A) / e.gap)
    assert float(r1) <= rb.first + tol
    assert float(r2) <= rb.second + tol
    # the Cauchy estimates on the coefficients
    cb = bounds.coefficient_bounds(eta, e.gap, 3)
    _, a = spectral.perturbation_coefficients(A, E, 3)
    assert np.all(np.abs(a) <= cb * (1 + 1e-9) + tol)


@pytest.mark.parametrize(("eta", "gap"), [(1.0, 2.0), (1.0, 1.5), (0.0, 0.0), (2.0, 1.0), (0.5, 1.0 - 1e-16)])
def test_remainder_bounds_raise_when_two_eta_not_below_gap(eta, gap):
    with pytest.raises(HypothesesNotMet, match=r"2η < γ"):
        bounds.remainder_bounds(eta, gap)


def test_remainder_and_coefficient_bounds_values():
    rb = bounds.remainder_bounds(0.1, 1.0)
    assert rb.first == pytest.approx(2 * 0.01 / 0.8, rel=4 * EPS, abs=0)
    assert rb.second == pytest.approx(4 * 0.001 / 0.8, rel=4 * EPS, abs=0)
    assert bounds.remainder_bounds(0.0, 1.0).first == 0.0
    np.testing.assert_allclose(bounds.coefficient_bounds(0.1, 1.0, 4), [0.1, 0.02, 0.004, 0.0008], rtol=4 * EPS)


@pytest.mark.parametrize(
    "scale",
    [
        1e-150,
        1e-100,
        1e100,
        1e150,
    ],
)
def test_remainder_bounds_are_homogeneous_of_degree_one(scale):
    """Both S2 remainders scale like η: bounds(sη, sγ) = s·bounds(η, γ) whenever that is a float."""
    rb, rbs = bounds.remainder_bounds(0.1, 1.0), bounds.remainder_bounds(0.1 * scale, scale)
    assert rbs.first == pytest.approx(scale * rb.first, rel=64 * EPS, abs=0)
    assert rbs.second == pytest.approx(scale * rb.second, rel=64 * EPS, abs=0)


@pytest.mark.parametrize("name", [k for k in SERIES_CASES if k != "1x1"] + ["random 6"])
def test_sign_bounds_bracket_a2(name):
    A, E = SERIES_CASES[name] if name in SERIES_CASES else (_psd([6, 5, 4, 3, 2, 1.0], 15), _sym(6))
    lo, hi = bounds.sign_bounds(A, E)
    a2 = bounds.second_coefficient(A, E)
    assert a2 == spectral.perturbation_coefficients(A, E, 2)[1][1]
    e = spectral.eigen_data(A)
    tol = 256 * A.shape[0] * EPS * (_norm(E) ** 2 / e.gap) * (_norm(A) / e.gap)
    assert 0.0 <= lo <= hi
    assert lo - tol <= a2 <= hi + tol
    r2 = spectral.off_top_residual_norm_sq(e, E)
    assert lo == pytest.approx(r2 / (e.lambda_max - e.lambda_min), rel=8 * EPS, abs=0)
    assert hi == pytest.approx(r2 / e.gap, rel=8 * EPS, abs=0)


@pytest.mark.parametrize("seed", range(5))
def test_sign_bounds_are_equal_for_n_2(seed):
    r = np.random.default_rng(seed)
    A = _psd(np.sort(r.uniform(0, 3, 2))[::-1], seed)
    X = r.standard_normal((2, 2))
    E = X + X.T
    lo, hi = bounds.sign_bounds(A, E)
    assert lo == hi  # λ_min = λ2 when n = 2
    assert bounds.second_coefficient(A, E) == pytest.approx(lo, rel=1e-9, abs=0)


def test_sign_bounds_zero_for_commuting_perturbation():
    lo, hi = bounds.sign_bounds(np.diag([3.0, 2.0, 1.0]), np.diag([1.0, -2.0, 5.0]))
    assert lo == hi == 0.0 == bounds.second_coefficient(np.diag([3.0, 2.0, 1.0]), np.diag([1.0, -2.0, 5.0]))


@pytest.mark.parametrize("A", [np.array([[1.0]]), np.eye(3), np.zeros((2, 2))], ids=["1x1", "identity", "zero"])
def test_sign_bounds_need_a_simple_top(A):
    with pytest.raises(HypothesesNotMet, match=r"γ > 0"):
        bounds.sign_bounds(A, np.ones_like(A))
