"""spectral / bounds against independent references: mpmath at 120 digits (the series written out
here by hand, not the generated module), closed forms for n = 2, and dense float64.

Tolerances are the accuracy contract of :func:`fimtheory.spectral.perturbation_coefficients`,
rtol·(|a_k| + eps·C_k) with C_k = η(2η/γ)^{k−1}, or multiples of n·eps·‖A‖.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from fimtheory import bounds, spectral
from fimtheory.errors import HypothesesNotMet, InputError
from fimtheory.highprec import mp_eigh, mp_matrix, working_precision

EPS = np.finfo(float).eps
REF_DPS = 120


def _wilkinson_plus(n: int, shift: float = 1.25) -> np.ndarray:
    """W_n^+ (diagonal |i − m|, unit off-diagonals) + shift·I: PSD, top pair split by ~1e-11."""
    m = (n - 1) // 2
    W = np.diag(np.abs(np.arange(-m, m + 1)).astype(float)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)
    return W + shift * np.eye(n)


def _rotated_psd(eigs, seed: int) -> np.ndarray:
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigs), len(eigs))))
    A = Q @ np.diag(eigs) @ Q.T
    return 0.5 * (A + A.T)


def _sym(n: int, seed: int) -> np.ndarray:
    X = np.random.default_rng(seed).standard_normal((n, n))
    return 0.5 * (X + X.T)


def _mp_reference(A, E, order: int, dps: int = REF_DPS):
    """λ1, [a1..a_order] (mpf) from mp eigen-data and the Rayleigh–Schrödinger sums written out."""
    with working_precision(dps):
        eig = mp_eigh(A, dps)
        V = eig.eigenvectors
        M = V.T * mp_matrix(E) * V
        lam = eig.eigenvalues
        n = len(lam)
        J = range(1, n)
        d = {j: lam[0] - lam[j] for j in J}
        e = {j: (M[0, j] + M[j, 0]) / 2 for j in J}
        B = {(j, k): (M[j, k] + M[k, j]) / 2 for j in J for k in J}
        a1 = M[0, 0]
        s1 = mpmath.fsum(e[j] ** 2 / d[j] for j in J)
        s2 = mpmath.fsum(e[j] ** 2 / d[j] ** 2 for j in J)
        s3 = mpmath.fsum(e[j] ** 2 / d[j] ** 3 for j in J)
        eRBRe = mpmath.fsum(e[j] * B[j, k] * e[k] / (d[j] * d[k]) for j in J for k in J)
        eRBRRe = mpmath.fsum(e[j] * B[j, k] * e[k] / (d[j] * d[k] ** 2) for j in J for k in J)
        BRe = {k: mpmath.fsum(B[k, j] * e[j] / d[j] for j in J) for k in J}
        eRBRBRe = mpmath.fsum(BRe[k] ** 2 / d[k] for k in J)
        coeffs = [a1, s1, -a1 * s2 + eRBRe, a1**2 * s3 - 2 * a1 * eRBRRe + eRBRBRe - s2 * s1]
        return eig.lambda_max, coeffs[:order], eig.gap


def _contract_tol(ref, eta, gap, k, rtol=1e-8):
    c_k = eta * (2 * eta / gap) ** (k - 1)
    return rtol * (abs(ref) + EPS * c_k)


def _assert_contract(A, E, order, got, rtol=1e-8):
    lam1, ref, gap = _mp_reference(A, E, order)
    eta = float(np.max(np.abs(np.linalg.eigvalsh(E))))
    for k in range(order):
        r = float(ref[k])
        tol = _contract_tol(r, eta, float(gap), k + 1, rtol)
        assert abs(got[k] - r) <= tol, (k + 1, got[k], r, tol)


# --------------------------------------------------------------------------------------
# perturbation_coefficients just above the gap threshold
# --------------------------------------------------------------------------------------

WILKINSON_CASES = {
    "W19+ diagonal E": (_wilkinson_plus(19), np.diag(np.arange(19.0)) / 19),
    "W19+ random E": (_wilkinson_plus(19), _sym(19, 0)),
    "W19+ E = e1e1ᵀ": (_wilkinson_plus(19), np.outer(np.eye(19)[0], np.eye(19)[0])),
}


@pytest.mark.parametrize("name", list(WILKINSON_CASES))
def test_coefficients_near_gap_threshold_meet_the_contract(name):
    """Old float64 code on 'W19+ diagonal E': a1 0.473681 (true 0.4736842), a2 2.74697e10
    (true 2.74594e10), a3 +2.33e16 (true −6.0958e-7, with eps·C_3 = 1.6e7)."""
    A, E = WILKINSON_CASES[name]
    res = spectral.series_coefficients_with_errors(A, E, 4)
    assert spectral.eigen_data(A).gap < 1e-10  # the regime: γ ~ 1e-11·‖A‖
    assert res.dps is not None  # float64 cannot deliver it: high precision was used
    _assert_contract(A, E, 4, res.coefficients)
    lam1, _, _ = _mp_reference(A, E, 1)
    assert abs(res.lambda1 - float(lam1)) <= 16 * A.shape[0] * EPS * abs(float(lam1))
    _, a = spectral.perturbation_coefficients(A, E, 4)
    np.testing.assert_array_equal(a, res.coefficients)


def test_w21_gap_below_float64_resolution_is_refused():
    """W21+: true γ ≈ 7e-14 (simple), but below 16·n·eps·‖A‖ = 8e-13: float64 cannot tell it from
    a repeated eigenvalue, so the series is refused rather than guessed."""
    A = _wilkinson_plus(21)
    _, _, gap = _mp_reference(A, np.zeros_like(A), 1)
    assert 0 < float(gap) < 16 * 21 * EPS * 11.25
    with pytest.raises(HypothesesNotMet, match=r"not simple"):
        spectral.perturbation_coefficients(A, _sym(21, 1), 3)


def _psd_with_gap(n, gap, seed, lam1=2.0):
    rest = np.random.default_rng(seed).uniform(0, lam1 - gap, n - 1)
    rest[0] = lam1 - gap
    return _rotated_psd(np.concatenate([[lam1], rest]), seed)


@pytest.mark.parametrize("rel_gap", [0.5, 1e-3, 1e-6, 1e-9, 1e-12])
@pytest.mark.parametrize("seed", range(3))
def test_coefficients_meet_the_contract_over_the_gap_range(rel_gap, seed):
    n = 6
    A = _psd_with_gap(n, 2.0 * rel_gap, seed)
    E = _sym(n, 100 + seed)
    res = spectral.series_coefficients_with_errors(A, E, 4)
    _assert_contract(A, E, 4, res.coefficients)


@pytest.mark.parametrize("rel_gap", [0.5, 1e-2, 1e-4, 1e-6, 1e-9, 1e-12])
@pytest.mark.parametrize("seed", range(4))
def test_float_error_estimate_bounds_the_actual_float_error(rel_gap, seed):
    """The a-posteriori estimate of the float64 route is an upper bound on its true error (the
    route is run even where the estimate then sends the computation to high precision)."""
    n = 7
    A = _psd_with_gap(n, 2.0 * rel_gap, seed)
    E = _sym(n, 200 + seed)
    eig = spectral.eigen_data(A)
    coeffs, errs, _, _ = spectral._float_attempt(A, E, eig, 4)
    _, ref, _ = _mp_reference(A, E, 4)
    for k in range(4):
        assert abs(coeffs[k] - float(ref[k])) <= errs[k], (k + 1, coeffs[k], float(ref[k]), errs[k])


def _mp_taylor_2x2(lam1, lam2, a, b, c, order, dps=REF_DPS):
    """Closed form λ_max(diag(λ1, λ2) + t[[a, b], [b, c]]) = mean + sqrt(half-difference² + b²t²)."""
    with working_precision(dps):
        L1, L2, A_, B_, C_ = (mpmath.mpf(x) for x in (lam1, lam2, a, b, c))

        def f(t):
            return (L1 + L2 + t * (A_ + C_)) / 2 + mpmath.sqrt(((L1 - L2 + t * (A_ - C_)) / 2) ** 2 + (B_ * t) ** 2)

        return [mpmath.diff(f, 0, k) / mpmath.factorial(k) for k in range(1, order + 1)]


@pytest.mark.parametrize("gap", [1.0, 1e-4, 1e-8, 1e-12])
@pytest.mark.parametrize(("a", "b", "c"), [(0.3, 0.7, -0.2), (0.0, 1.0, 0.0), (1.0, 0.0, 2.0), (-0.5, 1e-3, 0.5)])
def test_coefficients_against_the_2x2_closed_form(gap, a, b, c):
    lam1, lam2 = 1.0, 1.0 - gap
    A, E = np.diag([lam1, lam2]), np.array([[a, b], [b, c]])
    ref = _mp_taylor_2x2(lam1, lam2, a, b, c, 4)
    _, got = spectral.perturbation_coefficients(A, E, 4)
    eta = float(np.max(np.abs(np.linalg.eigvalsh(E))))
    real_gap = lam1 - lam2
    for k in range(4):
        tol = _contract_tol(float(ref[k]), eta, real_gap, k + 1)
        assert abs(got[k] - float(ref[k])) <= tol, (k + 1, got[k], float(ref[k]))


def test_one_by_one_series_is_exact():
    lam1, a = spectral.perturbation_coefficients(np.array([[2.5]]), np.array([[-0.75]]), 4)
    assert lam1 == 2.5
    np.testing.assert_array_equal(a, [-0.75, 0.0, 0.0, 0.0])


def test_zero_perturbation_has_zero_coefficients():
    res = spectral.series_coefficients_with_errors(_wilkinson_plus(19), np.zeros((19, 19)), 4)
    np.testing.assert_array_equal(res.coefficients, np.zeros(4))
    np.testing.assert_array_equal(res.error_estimates, np.zeros(4))


def test_large_n_beyond_the_high_precision_limit_raises():
    n = spectral.HIGH_PRECISION_MAX_N + 1
    eigs = np.concatenate([[1.0, 1.0 - 1e-11], np.linspace(0.5, 0.0, n - 2)])
    A = _rotated_psd(eigs, 3)
    with pytest.raises(HypothesesNotMet, match=r"float64 cannot deliver a\d .*limited to n ≤ 64"):
        spectral.perturbation_coefficients(A, _sym(n, 4), 2)


@pytest.mark.parametrize("rtol", [0.0, 1.0, -1e-3, 1e-17, float("nan"), "1e-8", True])
def test_rtol_validation(rtol):
    with pytest.raises(InputError, match=r"rtol must be a number"):
        spectral.perturbation_coefficients(np.diag([2.0, 1.0]), np.eye(2), 2, rtol=rtol)


# --------------------------------------------------------------------------------------
# a2 / SIGN on repeated and barely resolved top eigenvalues
# --------------------------------------------------------------------------------------


def _rotated_repeated(seed):
    """Q diag(1, 1, 0.5) Qᵀ: λ1 = λ2 exactly, float gap a few ulps."""
    return _rotated_psd([1.0, 1.0, 0.5], seed)


@pytest.mark.parametrize("seed", range(6))
def test_a2_and_sign_bounds_refuse_a_repeated_top(seed):
    """Old code returned e.g. a2 = 5.68e9 and SIGN (4.3e-6, 7.25e9) for this coefficient that
    does not exist."""
    A, E = _rotated_repeated(seed), _sym(3, seed)
    assert 0 <= spectral.eigen_data(A).gap < 16 * 3 * EPS
    with pytest.raises(HypothesesNotMet, match=r"a2 needs a simple top eigenvalue"):
        bounds.second_coefficient(A, E)
    with pytest.raises(HypothesesNotMet, match=r"SIGN needs a simple top eigenvalue"):
        bounds.sign_bounds(A, E)


@pytest.mark.parametrize("rel_gap", [1e-13, 1e-10, 1e-6, 0.25])
def test_a2_and_sign_bounds_just_above_the_threshold_are_right(rel_gap):
    A = _rotated_psd([1.0, 1.0 - rel_gap, 0.5, 0.1], 7)
    E = _sym(4, 8)
    assert spectral.eigen_data(A).gap_resolved()
    a2 = bounds.second_coefficient(A, E)
    _, ref, gap = _mp_reference(A, E, 2)
    eta = float(np.max(np.abs(np.linalg.eigvalsh(E))))
    assert abs(a2 - float(ref[1])) <= _contract_tol(float(ref[1]), eta, float(gap), 2)
    lo, hi = bounds.sign_bounds(A, E)
    # SIGN itself, at high precision: lo ≤ a2 ≤ hi up to the float error of the bounds.
    slack = 64 * 4 * EPS * eta**2 / float(gap) / rel_gap
    assert lo - slack <= float(ref[1]) <= hi + slack


def test_gap_threshold_is_sixteen_n_eps_norm():
    n = 3
    for factor, resolved in [(15.0, False), (17.0, True)]:
        A = np.diag([1.0, 1.0 - factor * n * EPS, 0.0])
        assert bool(spectral.eigen_data(A).gap_resolved()) is resolved
        if resolved:
            bounds.sign_bounds(A, np.ones((3, 3)))
        else:
            with pytest.raises(HypothesesNotMet):
                bounds.sign_bounds(A, np.ones((3, 3)))


# --------------------------------------------------------------------------------------
# R: directional_lower_bound with a given v
# --------------------------------------------------------------------------------------


def _mp_lambda_max(A):
    with working_precision(40):
        return float(mp_eigh(A, 40).lambda_max)


def test_directional_bound_refuses_a_vector_that_is_not_a_top_eigenvector():
    """Old code: λ1 + vᵀEv = 8 > λ_max(A+E) = 7 for v = e2."""
    A, E = np.diag([3.0, 2.0, 1.0]), np.diag([0.0, 5.0, 0.0])
    with pytest.raises(HypothesesNotMet, match=r"v is not a top eigenvector of A: Rayleigh deficit"):
        bounds.directional_lower_bound(A, E, np.array([0.0, 1.0, 0.0]))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-9, 1e-6, 1e-3, 0.3])
def test_directional_bound_is_a_lower_bound_or_refuses(seed, angle):
    """Whatever v: either HypothesesNotMet or a value ≤ λ_max(A+E) (mp) + 16·n·eps·(‖A‖+‖E‖)."""
    n = 5
    A = _rotated_psd([4.0, 3.0, 2.0, 1.0, 0.0], seed)
    E = _sym(n, 50 + seed)
    V = np.linalg.eigh(A)[1][:, ::-1]
    w = np.random.default_rng(seed).standard_normal(n)
    w -= V[:, 0] * (V[:, 0] @ w)
    v = np.cos(angle) * V[:, 0] + np.sin(angle) * w / np.linalg.norm(w)
    top = _mp_lambda_max(A + E)
    scale = 4.0 + float(np.max(np.abs(np.linalg.eigvalsh(E))))
    try:
        lb = bounds.directional_lower_bound(A, E, v)
    except HypothesesNotMet:
        assert angle > 1e-7  # a deficit of sin²(angle)·(λ1 − λ_j) above 16·n·eps·‖A‖
        return
    assert lb <= top + 32 * n * EPS * scale
    assert angle < 1e-6


def test_directional_bound_accepts_any_vector_of_a_repeated_top_eigenspace():
    A = _rotated_psd([2.0, 2.0, 1.0, 0.0], 11)
    V = np.linalg.eigh(A)[1][:, ::-1]
    E = _sym(4, 12)
    v = 0.6 * V[:, 0] + 0.8 * V[:, 1]
    lb = bounds.directional_lower_bound(A, E, v)
    assert lb == pytest.approx(2.0 + v @ E @ v, abs=64 * EPS * 3)
    assert lb <= _mp_lambda_max(A + E) + 64 * 4 * EPS * 3


# --------------------------------------------------------------------------------------
# SIGN bounds accuracy, and the remaining public helpers on bad input
# --------------------------------------------------------------------------------------


def _mp_sign_bounds(A, E, dps=REF_DPS):
    with working_precision(dps):
        eig = mp_eigh(A, dps)
        v = eig.vector(0)
        Em = mp_matrix(E)
        u = Em * v - v * (v.T * Em * v)[0, 0]
        r2 = (u.T * u)[0, 0]
        return r2 / (eig.eigenvalues[0] - eig.eigenvalues[-1]), r2 / eig.gap


@pytest.mark.parametrize(
    "case",
    ["W19+ random E", "W19+ diagonal E", "gap 1e-9", "gap 0.3", "E = I", "rank-deficient A"],
)
def test_sign_bounds_meet_their_accuracy_contract(case):
    """Old code on W19+ random E: upper bound 1.55072e12 against the true 1.55088e12 (1e-4)."""
    if case.startswith("W19+"):
        A, E = WILKINSON_CASES[case]
    elif case == "E = I":
        A, E = _psd_with_gap(5, 0.5, 1), np.eye(5)
    elif case == "rank-deficient A":
        A, E = _rotated_psd([2.0, 1.0, 0.0, 0.0, 0.0], 2), _sym(5, 3)
    else:
        A, E = _psd_with_gap(6, 2 * float(case.split()[1]), 4), _sym(6, 5)
    lo, hi = bounds.sign_bounds(A, E)
    ref_lo, ref_hi = _mp_sign_bounds(A, E)
    eta = float(np.max(np.abs(np.linalg.eigvalsh(E))))
    with working_precision(REF_DPS):
        w = mp_eigh(A, REF_DPS).eigenvalues
        gap, spread = float(w[0] - w[1]), float(w[0] - w[-1])
    assert abs(lo - float(ref_lo)) <= 1e-8 * (abs(float(ref_lo)) + EPS * eta**2 / spread)
    assert abs(hi - float(ref_hi)) <= 1e-8 * (abs(float(ref_hi)) + EPS * eta**2 / gap)


@pytest.mark.parametrize(
    ("fn", "args", "match"),
    [
        (spectral.perturbation_in_eigenbasis, (spectral.eigen_data(np.eye(2)), np.ones((3, 3))), r"shape of A"),
        (
            spectral.perturbation_in_eigenbasis,
            (spectral.eigen_data(np.eye(2)), [[0, np.nan], [np.nan, 0]]),
            r"non-finite",
        ),
        (
            spectral.off_top_residual_norm_sq,
            (spectral.eigen_data(np.eye(2)), [[0.0, 1.0], [0.0, 0.0]]),
            r"not symmetric",
        ),
        (
            spectral.off_top_residual_norm_sq,
            (spectral.eigen_data(np.diag([2.0, 1.0])), 1e200 * np.ones((2, 2))),
            r"overflows",
        ),
        (spectral.series_value, (1.0, [1.0, 2.0], float("nan")), r"t must be finite"),
        (spectral.series_value, (1.0, [1.0, np.inf], 1.0), r"non-finite"),
        (spectral.series_value, (1.0, [1.0, 1.0], 1e200), r"overflows"),
        (bounds.coefficient_bounds, (0.1, 1.0, 0), r"order must be >= 1"),
        (bounds.coefficient_bounds, (0.1, 1.0, 1.5), r"order must be an integer"),
        (bounds.weyl_bounds, (np.diag([1e308, 0.0]), np.diag([1e308, 0.0])), r"A \+ E overflows"),
        (bounds.sign_bounds, (np.diag([2.0, 1.0]), np.eye(2), None), None),
    ],
    ids=[
        "M wrong shape",
        "M NaN",
        "residual non-symmetric E",
        "residual overflow",
        "series t NaN",
        "series inf coefficient",
        "series overflow",
        "coefficient bounds order 0",
        "coefficient bounds order 1.5",
        "weyl overflow",
        "sign bounds valid",
    ],
)
def test_public_helpers_refuse_bad_input(fn, args, match):
    """Before: each returned a number (NaN, inf, or a value for the wrong matrix) or an empty array."""
    if match is None:
        fn(*args)
        return
    with pytest.raises(InputError, match=match):
        fn(*args)


def test_symmetric_matrices_near_float64_max_are_not_turned_into_inf():
    """Before: as_symmetric's 0.5·(a + aᵀ) overflowed, so λ_max(diag(1.5e308, 1)) was inf."""
    A = np.array([[1.5e308, 1e300], [1e300, 1.0]])
    assert spectral.lambda_max(A) == pytest.approx(1.5e308, rel=4 * EPS)
    eig = spectral.eigen_data(A)
    assert np.all(np.isfinite(eig.eigenvalues)) and np.all(np.isfinite(eig.eigenvectors))
