"""fimtheory.spectral against independent references: the error estimates of the series
coefficients written out from their documented formulas in mpmath, the backward error in closed
form and against an mpmath residual, ‖E‖₂ by SVD, the escalation from float64 to mpmath (the
digits chosen, the doubling, the cap), and the errors that name the bad argument.

Tolerances: the accuracy contract rtol·(|a_k| + eps·C_k), C_k = η(2η/γ)^{k−1}; multiples of
n·eps·‖A‖; relative 1e-12 where a formula is evaluated twice (float rounding of a few terms).
"""

from __future__ import annotations

import math
import re
import warnings

import mpmath
import numpy as np
import pytest
from test_core_spectral_reference import _rotated_psd as _rotated
from test_core_spectral_reference import _sym

from fimtheory import spectral
from fimtheory.errors import HypothesesNotMet, InputError
from fimtheory.highprec import mp_eigh, mp_matrix, working_precision

EPS = np.finfo(float).eps
REF_DPS = 80


def _mp_coefficients(A, E, dps: int = REF_DPS):
    """λ1, γ and [a1, a2, a3] (mpf) from mp eigen-data and the Rayleigh–Schrödinger sums written out."""
    with working_precision(dps):
        eig = mp_eigh(A, dps)
        V = eig.eigenvectors
        M = V.T * mp_matrix(E) * V
        lam = eig.eigenvalues
        J = range(1, len(lam))
        d = {j: lam[0] - lam[j] for j in J}
        e = {j: (M[0, j] + M[j, 0]) / 2 for j in J}
        B = {(j, k): (M[j, k] + M[k, j]) / 2 for j in J for k in J}
        a1 = M[0, 0]
        s1 = mpmath.fsum(e[j] ** 2 / d[j] for j in J)
        s2 = mpmath.fsum(e[j] ** 2 / d[j] ** 2 for j in J)
        eRBRe = mpmath.fsum(e[j] * B[j, k] * e[k] / (d[j] * d[k]) for j in J for k in J)
        return lam[0], lam[0] - lam[1], [a1, s1, -a1 * s2 + eRBRe]


def _assert_contract(A, E, got, rtol=1e-8):
    _, gap, ref = _mp_coefficients(A, E)
    eta = float(np.linalg.norm(E, 2))
    for k, (g, r) in enumerate(zip(got, ref), start=1):
        c_k = eta * (2 * eta / float(gap)) ** (k - 1)
        assert abs(g - float(r)) <= rtol * (abs(float(r)) + EPS * c_k), (k, g, float(r))


def _documented_estimates(n, order, beta, gap, eta, eps_e, unit):
    """The estimate of :func:`spectral.series_coefficients_with_errors`, from its docstrings, at 60 digits:
    γ_lo = γ − 2β; for k with γ_lo > 2(k+1)β and C_k = η(2η/γ_lo)^{k−1},
    |δa_k| ≤ (k+1)(1+1/k)^k (4β/γ_lo) C_k + 2e·k·C_k·ε_E/η + 4n√n·u·C_k; inf elsewhere (with
    C_k = η(2η/γ)^{k−1}); 0 for E = 0."""
    with working_precision(60):
        beta, gap, eta, eps_e, unit = (mpmath.mpf(x) for x in (beta, gap, eta, eps_e, unit))
        gap_lo = gap - 2 * beta
        errs, scales = [], []
        for k in range(1, order + 1):
            if eta == 0:
                errs.append(0.0)
                scales.append(0.0)
            elif not gap_lo > 2 * (k + 1) * beta:
                errs.append(math.inf)
                scales.append(float(eta * (2 * eta / gap) ** (k - 1)))
            else:
                c = eta * (2 * eta / gap_lo) ** (k - 1)
                err_a = (k + 1) * (1 + mpmath.mpf(1) / k) ** k * (4 * beta / gap_lo) * c
                err_e = 2 * mpmath.e * k * c * eps_e / eta
                err_r = 4 * n * mpmath.sqrt(n) * unit * c
                errs.append(float(err_a + err_e + err_r))
                scales.append(float(c))
        return errs, scales


def _assert_same(got, ref, rel):
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        if math.isinf(r):
            assert math.isinf(float(g)) and float(g) > 0, (got, ref)
        else:
            assert float(g) == pytest.approx(r, rel=rel, abs=0), (got, ref)


# --------------------------------------------------------------------------------------
# _coefficient_error_estimates: the documented formula, term by term
# --------------------------------------------------------------------------------------

ESTIMATE_CASES = {
    # all three terms of the same size: n = 3, γ = 2, β = 1e-3, η = 0.3, ε_E = 1e-3, u = 1e-4
    "three terms comparable": (3, 4, 1e-3, 2.0, 0.3, 1e-3, 1e-4),
    # γ_lo = 1.5 = 2(k+1)β at k = 2 exactly: a1 has an estimate, a2..a4 do not
    "threshold at k = 2": (2, 4, 0.25, 2.0, 0.3, 1e-2, 1e-2),
    "E = 0": (3, 4, 1e-3, 2.0, 0.0, 0.0, 1e-4),
}


@pytest.mark.parametrize("name", list(ESTIMATE_CASES))
@pytest.mark.parametrize("kind", ["float", "mpf"])
def test_coefficient_error_estimates_are_the_documented_formula(name, kind):
    n, order, beta, gap, eta, eps_e, unit = ESTIMATE_CASES[name]
    ref_errs, ref_scales = _documented_estimates(n, order, beta, gap, eta, eps_e, unit)
    args = (beta, gap, eta, eps_e, unit)
    if kind == "mpf":
        with working_precision(40):
            args = tuple(mpmath.mpf(x) for x in args)
            errs, scales = spectral._coefficient_error_estimates(n, order, *args)
    else:
        errs, scales = spectral._coefficient_error_estimates(n, order, *args)
    _assert_same(errs, ref_errs, 1e-13)
    _assert_same(scales, ref_scales, 1e-13)
    if name == "E = 0":
        assert [float(x) for x in errs] == [0.0] * order and [float(x) for x in scales] == [0.0] * order


def test_coefficient_error_estimates_of_a_huge_perturbation_are_inf_not_overflow():
    """C_k = η(2η/γ)^{k−1} beyond float64 is inf (Python's float ** raises OverflowError)."""
    errs, scales = spectral._coefficient_error_estimates(2, 4, 1e-16, 1.0, 1e120, 1e-16, EPS)
    assert all(math.isfinite(x) for x in errs[:2]) and all(math.isinf(x) for x in errs[2:])
    assert scales[1] == pytest.approx(2e240, rel=1e-14) and all(math.isinf(x) for x in scales[2:])


# --------------------------------------------------------------------------------------
# backward_error: closed forms and an mp residual
# --------------------------------------------------------------------------------------


def test_backward_error_of_exact_eigen_data_is_the_rounding_floor():
    """A = diag(3, 1, 0.5) with V = I: no residual, V orthogonal: β = n·eps·‖A‖ exactly."""
    A = np.diag([3.0, 1.0, 0.5])
    eig = spectral.EigenData(np.array([3.0, 1.0, 0.5]), np.eye(3))
    assert spectral.backward_error(A, eig) == pytest.approx(3 * EPS * 3.0, rel=1e-15, abs=0)


def test_backward_error_counts_non_orthogonality():
    """V = (1+δ)I: AV − VΛ = 0, VᵀV − I = (2δ+δ²)I: β = ‖A‖√n(2δ+δ²) + n·eps·‖A‖."""
    d = 2.0**-20
    A = np.diag([3.0, 1.0, 0.5])
    eig = spectral.EigenData(np.array([3.0, 1.0, 0.5]), (1 + d) * np.eye(3))
    expected = 3.0 * math.sqrt(3) * (2 * d + d * d) + 3 * EPS * 3.0
    assert spectral.backward_error(A, eig) == pytest.approx(expected, rel=1e-14, abs=0)


@pytest.mark.parametrize("seed", range(3))
def test_backward_error_bounds_the_mp_residual_and_is_of_rounding_size(seed):
    n = 6
    A = _rotated(np.linspace(2.0, 0.1, n), seed)
    eig = spectral.eigen_data(A)
    beta = spectral.backward_error(A, eig)
    with working_precision(50):
        V = mp_matrix(eig.eigenvectors)
        R = mp_matrix(A) * V - V * mpmath.diag([mpmath.mpf(x) for x in eig.eigenvalues])
        residual = float(mpmath.mnorm(R, "f"))
    assert residual <= beta <= 64 * n * EPS * 2.0


def test_backward_error_refuses_an_a_that_does_not_fit_the_eigen_data():
    eig = spectral.eigen_data(np.diag([3.0, 1.0, 0.5]))
    with pytest.raises(InputError, match=re.escape("A must have the shape of the eigen-data, (3, 3), got (1, 1)")):
        spectral.backward_error(np.ones((1, 1)), eig)
    with pytest.raises(InputError, match=r"^A must be square"):
        spectral.backward_error(np.ones((1, 3)), eig)
    with pytest.raises(InputError, match=r"^A has a non-finite entry"):
        spectral.backward_error(np.diag([np.nan, 1.0, 0.5]), eig)


# --------------------------------------------------------------------------------------
# _float_attempt and _mp_attempt: the estimate's inputs are the documented quantities
# --------------------------------------------------------------------------------------

E_SPECTRA = {"most negative dominates": [-3.0, 0.5, 1.0, 2.0], "most positive dominates": [-1.0, 0.0, 0.5, 3.0]}


@pytest.mark.parametrize("name", list(E_SPECTRA))
def test_float_attempt_estimate_is_the_documented_one(name):
    n = 4
    A = _rotated([2.0, 1.2, 0.7, 0.1], 5)
    E = _rotated(E_SPECTRA[name], 6)
    eig = spectral.eigen_data(A)
    coeffs, errs, scales, eta = spectral._float_attempt(A, E, eig, 4)
    assert eta == pytest.approx(np.linalg.norm(E, 2), rel=8 * n * EPS, abs=0)  # ‖E‖₂ by SVD
    assert errs.dtype == np.float64 and scales.dtype == np.float64 and coeffs.dtype == np.float64
    V = eig.eigenvectors
    nonorth = np.linalg.norm(V.T @ V - np.eye(n))
    assert nonorth > 0  # else the non-orthogonality terms would not show
    # ε_E: rounding of VᵀEV (|fl(XY) − XY| ≤ n·eps|X||Y|, twice) + the non-orthogonality of V
    eps_e = 2 * n * EPS * np.max(np.sum(np.abs(V).T @ np.abs(E) @ np.abs(V), axis=1)) + 2 * eta * nonorth
    beta = spectral.backward_error(A, eig)
    ref_errs, ref_scales = _documented_estimates(n, 4, beta, eig.gap, eta, eps_e, EPS)
    _assert_same(errs, ref_errs, 1e-12)
    _assert_same(scales, ref_scales, 1e-12)
    _, _, ref = _mp_coefficients(A, E)
    for k in range(3):  # and the estimate holds
        assert abs(coeffs[k] - float(ref[k])) <= errs[k]


def test_mp_attempt_estimate_is_the_documented_one():
    """At dps digits: β from the mp residual and non-orthogonality, u = 10^−dps, η padded by 2^−40,
    ε_E = 2n²·u·η + 2η‖VᵀV − I‖_F, γ = λ1 − λ2 of the mp eigenvalues."""
    n, dps, order = 4, 40, 4
    A = _rotated([2.0, 1.0, 0.6, 0.1], 7)  # λ2 = λ1/2: ‖A‖ is λ1, not λ2
    E = _sym(n, 8)
    eta = float(np.linalg.norm(E, 2))
    lam1, coeffs, errs, scales = spectral._mp_attempt(A, E, order, dps, eta)
    with working_precision(dps):
        eig = mp_eigh(mp_matrix(A), dps)
        V, lam = eig.eigenvectors, eig.eigenvalues
        unit = mpmath.mpf(10) ** (-dps)
        norm_a = lam[0]
        nonorth = mpmath.mnorm(V.T * V - mpmath.eye(n), "f")
        residual = mpmath.mnorm(mp_matrix(A) * V - V * mpmath.diag(lam), "f")
        beta = residual + norm_a * nonorth + n * unit * norm_a
        eta_mp = mpmath.mpf(eta) * (1 + mpmath.mpf(2) ** -40)
        eps_e = 2 * n * n * unit * eta_mp + 2 * eta_mp * nonorth
        ref_errs, ref_scales = _documented_estimates(n, order, beta, lam[0] - lam[1], eta_mp, eps_e, unit)
        assert lam1 == float(lam[0])
    _assert_same(errs, ref_errs, 1e-14)
    _assert_same(scales, ref_scales, 1e-14)
    _, _, ref = _mp_coefficients(A, E)
    for k in range(3):
        assert abs(coeffs[k] - float(ref[k])) <= 0.5 * math.ulp(float(ref[k])) + errs[k]


# --------------------------------------------------------------------------------------
# series_coefficients_with_errors: routes, escalation, messages
# --------------------------------------------------------------------------------------

# diag A, diag E: V = I and M = E exactly, so a2 = a3 = 0 exactly and float64 cannot meet the
# absolute floor eps·C_k for them: the high-precision route is taken.
COMMUTING = (np.diag([2.0, 1.0, 0.5]), np.diag([0.3, -0.2, 0.1]))


def _record_mp_attempts(monkeypatch, fail_first=0, limit=12):
    """Wrap spectral._mp_attempt: record the digits of each call; the first ``fail_first`` calls
    report estimates that cannot be accepted; more than ``limit`` calls fail the test."""
    calls, real = [], spectral._mp_attempt

    def attempt(a, e, order, dps, eta):
        calls.append(dps)
        assert len(calls) <= limit, f"no end to the precision escalation: {calls}"
        if len(calls) <= fail_first:
            return 1.0, np.zeros(order), np.full(order, np.inf), np.ones(order)
        return real(a, e, order, dps, eta)

    monkeypatch.setattr(spectral, "_mp_attempt", attempt)
    return calls


def _documented_first_dps(A, E, order, rtol, errs=None):
    """max(30, ⌈16 + log10 R − log10 rtol + 10⌉), R = max_k err_k/(eps·C_k) of the float64 route
    (16 in place of log10 R where R is not a finite number > 1), at most 400."""
    eig = spectral.eigen_data(A)
    _, f_errs, scales, _ = spectral._float_attempt(A, E, eig, order)
    errs = f_errs if errs is None else errs
    ratio = max((e / (EPS * c) for e, c in zip(errs, scales) if c > 0), default=0.0)
    need = 16 + (math.log10(ratio) if math.isfinite(ratio) and ratio > 1 else 16.0)
    return min(400, max(30, math.ceil(need - math.log10(rtol) + 10)))


def test_well_conditioned_series_stays_in_float64_with_small_stated_errors():
    A, E = _rotated([2.0, 1.0, 0.5, 0.2], 11), _sym(4, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = spectral.series_coefficients_with_errors(A, E, 3)
    assert res.dps is None  # float64 sufficed
    assert isinstance(res.error_estimates, np.ndarray) and res.error_estimates.shape == (3,)
    eta, gap = float(np.linalg.norm(E, 2)), spectral.eigen_data(A).gap
    C = np.array([eta * (2 * eta / gap) ** (k - 1) for k in range(1, 4)])
    np.testing.assert_allclose(res.natural_scales, C, rtol=1e-12)
    assert np.all(res.error_estimates <= 1e3 * 4 * EPS * C)  # rounding-sized for γ ~ ‖A‖
    _, _, ref = _mp_coefficients(A, E)
    assert np.all(np.abs(res.coefficients - np.array([float(r) for r in ref])) <= res.error_estimates)


def test_defaults_are_order_3_and_rtol_1e_8():
    A, E = _rotated([2.0, 1.0, 0.5], 13), _sym(3, 14)
    res = spectral.series_coefficients_with_errors(A, E)
    assert res.coefficients.shape == (3,)
    _assert_contract(A, E, res.coefficients, rtol=1e-8)


@pytest.mark.parametrize(("rtol", "order", "rtol_tag"), [(1e-8, 3, "1e-08"), (0.5, 2, "0.5")])
def test_cancelling_coefficients_go_to_high_precision_at_the_documented_digits(monkeypatch, rtol, order, rtol_tag):
    A, E = COMMUTING
    calls = _record_mp_attempts(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = spectral.series_coefficients_with_errors(A, E, order, rtol=rtol)
    assert calls == [_documented_first_dps(A, E, order, rtol)] and res.dps == calls[0]
    if rtol == 0.5:
        assert res.dps == 30  # the floor
    np.testing.assert_array_equal(res.coefficients, [0.3] + [0.0] * (order - 1))
    assert isinstance(res.error_estimates, np.ndarray)
    tol = rtol * (np.abs(res.coefficients) + EPS * res.natural_scales)
    assert np.all(res.error_estimates <= tol)
    eta = 0.3
    C = np.array([eta * (2 * eta / 1.0) ** (k - 1) for k in range(1, order + 1)])
    np.testing.assert_allclose(res.natural_scales, C, rtol=1e-10)


@pytest.mark.parametrize("ratio", [1.0, 2.0, math.inf])
def test_digits_follow_the_float_estimate_at_the_boundaries(monkeypatch, ratio):
    """R = 1 is not above the floor (16 extra digits), R = 2 is (log10 2), R = inf means 16."""
    A, E = COMMUTING
    real = spectral._float_attempt

    def float_attempt(a, e, eig, order):
        coeffs, errs, scales, eta = real(a, e, eig, order)
        return coeffs, EPS * scales * ratio, scales, eta

    monkeypatch.setattr(spectral, "_float_attempt", float_attempt)
    calls = _record_mp_attempts(monkeypatch)
    res = spectral.series_coefficients_with_errors(A, E, 2, rtol=1e-8)
    expected = {1.0: 50, 2.0: 35, math.inf: 50}[ratio]
    assert calls == [expected] and res.dps == expected


def test_digits_ignore_coefficients_whose_natural_scale_underflows(monkeypatch):
    """E ~ 1e-200 and γ ~ 50·eps: C_2..C_4 underflow to 0 and a3, a4 have no float64 estimate at
    all (γ_lo ≤ 2(k+1)β); the digits come from a1's estimate alone."""
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    A = Q @ np.diag([1.0, 1.0 - 51 * EPS, 0.2]) @ Q.T
    A = 0.5 * (A + A.T)
    E = 1e-200 * _sym(3, 18)
    _, errs, scales, _ = spectral._float_attempt(A, E, spectral.eigen_data(A), 4)
    assert scales[0] > 0 and np.all(scales[1:] == 0) and np.all(np.isinf(errs[2:]))  # the regime
    calls = _record_mp_attempts(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = spectral.series_coefficients_with_errors(A, E, 4)
    assert calls[0] == _documented_first_dps(A, E, 4, 1e-8) and res.dps is not None


def test_precision_doubles_until_accepted(monkeypatch):
    A, E = COMMUTING
    calls = _record_mp_attempts(monkeypatch, fail_first=1)
    res = spectral.series_coefficients_with_errors(A, E, 3)
    d0 = _documented_first_dps(A, E, 3, 1e-8)
    assert calls == [d0, 2 * d0] and res.dps == 2 * d0
    _assert_contract(A, E, res.coefficients)


def test_precision_is_capped_at_400_digits_then_refused(monkeypatch):
    A, E = COMMUTING
    calls = _record_mp_attempts(monkeypatch, fail_first=99)
    with pytest.raises(HypothesesNotMet, match=r"^float64 cannot deliver a\d .*; not met at 400 digits either"):
        spectral.series_coefficients_with_errors(A, E, 3)
    d0 = _documented_first_dps(A, E, 3, 1e-8)
    expected = [d0]
    while expected[-1] < 400:
        expected.append(min(400, 2 * expected[-1]))
    assert calls == expected


@pytest.mark.parametrize("scale", [1.0, 1e-10])
def test_refusal_beyond_the_high_precision_limit_names_the_worst_coefficient(scale):
    """n = 65, diag A and E: a2 = 0 exactly cannot be met in float64 (a1 can), and n > 64."""
    n = spectral.HIGH_PRECISION_MAX_N + 1
    A = np.diag(np.linspace(2.0, 0.0, n))
    E = scale * np.diag(np.random.default_rng(15).uniform(0.5, 1.0, n))
    msg = (
        r"^float64 cannot deliver a2 to rtol 1e-08: estimated error \S+ for a value 0 \(γ = 0\.0312, ‖A‖ = 2\); "
        r"the high-precision fallback is limited to n ≤ 64, got n = 65$"
    )
    with pytest.raises(HypothesesNotMet, match=msg):
        spectral.series_coefficients_with_errors(A, E, 2)


def test_refusal_names_the_coefficient_furthest_from_its_tolerance(monkeypatch):
    """Estimates err = [1e-30, 1] for a = [0, 1], C = [1, 1]: a1 is within its floor rtol·eps
    (ratio 4.5e-7), a2 misses rtol·(1 + eps) by 1e8: the message names a2."""
    real = spectral._float_attempt

    def float_attempt(a, e, eig, order):
        _, _, _, eta = real(a, e, eig, order)
        return np.array([0.0, 1.0]), np.array([1e-30, 1.0]), np.array([1.0, 1.0]), eta

    monkeypatch.setattr(spectral, "_float_attempt", float_attempt)
    monkeypatch.setattr(spectral, "HIGH_PRECISION_MAX_N", 1)
    with pytest.raises(
        HypothesesNotMet, match=r"^float64 cannot deliver a2 to rtol 1e-08: estimated error 1 for a value 1 "
    ):
        spectral.series_coefficients_with_errors(*COMMUTING, 2)


def test_refusal_diagnostics_of_extreme_estimates_give_no_warnings(monkeypatch):
    """a2 = C_2 = float max (|a2| + eps·C_2 overflows) and err_3/(eps·C_3) beyond float64: the
    message is still formed without floating-point warnings."""
    real, big = spectral._float_attempt, np.finfo(float).max

    def float_attempt(a, e, eig, order):
        _, _, _, eta = real(a, e, eig, order)
        # (a1 first: the acceptance test stops there, before the sums that would overflow)
        return np.array([0.0, big, 0.0]), np.array([np.inf, 1.0, 1e300]), np.array([1e-300, big, 1e-300]), eta

    monkeypatch.setattr(spectral, "_float_attempt", float_attempt)
    monkeypatch.setattr(spectral, "HIGH_PRECISION_MAX_N", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(HypothesesNotMet, match=r"^float64 cannot deliver a\d to rtol 1e-08"):
            spectral.series_coefficients_with_errors(*COMMUTING, 3)


def test_high_precision_limit_is_inclusive(monkeypatch):
    monkeypatch.setattr(spectral, "HIGH_PRECISION_MAX_N", 3)
    res = spectral.series_coefficients_with_errors(*COMMUTING, 2)
    assert res.dps is not None
    A4, E4 = np.diag([2.0, 1.0, 0.5, 0.25]), np.diag([0.3, -0.2, 0.1, 0.0])
    with pytest.raises(HypothesesNotMet, match=r"limited to n ≤ 3, got n = 4$"):
        spectral.series_coefficients_with_errors(A4, E4, 2)


@pytest.mark.parametrize(("s", "order", "first_bad"), [(1e200, 2, 2), (1e120, 4, 3)])
def test_unrepresentable_coefficient_is_an_input_error_without_warnings(s, order, first_bad):
    """λ_max(diag(1, 0) + t·s[[0, 1], [1, 0]]) = (1 + √(1 + 4s²t²))/2: a2 = s², a4 = −s⁴, beyond
    float64 here, and so is the natural scale C_k = s(2s)^{k−1} (C_3 = 4e360 for s = 1e120). Before the fix: a raw
    OverflowError (s = 1e120: C_4 = 8s⁴ as a Python float power) and RuntimeWarnings from the
    float64 route."""
    A, E = np.diag([1.0, 0.0]), np.array([[0.0, s], [s, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(
            InputError, match=rf"^the natural scale C_{first_bad} = .* of a{first_bad} is not representable"
        ):
            spectral.series_coefficients_with_errors(A, E, order)


def test_cancelling_overflowing_terms_in_float64_give_no_warnings():
    """A = diag(1, 0), E = s·[[1, 1], [1, 1]], s = 1e110: λ_max = 1 + st + s²t² + O(t⁴) (a3 = 0),
    but float64 forms a3 = −s·s² + s³ = −inf + inf, and C_3 = η(2η/γ)² = 2s(4s)² = 3.2e331 is
    beyond float64: the float64 route is dropped without warnings and a3 is refused (its
    accuracy rtol·(|a3| + eps·C_3) cannot be stated); a1, a2 come from high precision."""
    s = 1e110
    A, E = np.diag([1.0, 0.0]), np.full((2, 2), s)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=r"^the natural scale C_3 = η\(2η/γ\)\^2 of a3 is not representable"):
            spectral.series_coefficients_with_errors(A, E, 3)
        res = spectral.series_coefficients_with_errors(A, E, 2)
    assert res.dps is not None
    assert res.coefficients[0] == s and res.coefficients[1] == pytest.approx(s * s, rel=4 * EPS)


def test_one_by_one_series_fields():
    res = spectral.series_coefficients_with_errors(np.array([[2.5]]), np.array([[-0.75]]), 4)
    np.testing.assert_array_equal(res.coefficients, [-0.75, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(res.error_estimates, np.zeros(4))
    np.testing.assert_array_equal(res.natural_scales, [0.75, 0.0, 0.0, 0.0])  # η(2η/γ)^{k−1}, γ = inf
    assert res.dps is None and res.lambda1 == 2.5


@pytest.mark.parametrize("order", [0, 5, 2.0, True])
def test_order_is_validated_before_any_work(order):
    with pytest.raises(InputError, match=r"^order must be an integer in 1\.\.4"):
        spectral.series_coefficients_with_errors(np.array([[2.5]]), np.array([[-0.75]]), order)


@pytest.mark.parametrize("rtol", [1.0, 2.0, 1e-17, "1e-8", True])
def test_rtol_is_validated(rtol):
    with pytest.raises(InputError, match=r"^rtol must be a number in \[4·eps, 1\)"):
        spectral.series_coefficients_with_errors(np.diag([2.0, 1.0]), np.eye(2), 2, rtol=rtol)
    with pytest.raises(InputError, match=r"^rtol must be a number"):
        spectral.perturbation_coefficients(np.diag([2.0, 1.0]), np.eye(2), 2, rtol=rtol)


def test_smallest_rtol_is_accepted():
    res = spectral.series_coefficients_with_errors(np.array([[2.5]]), np.array([[-0.75]]), 2, rtol=4 * EPS)
    np.testing.assert_array_equal(res.coefficients, [-0.75, 0.0])
    res = spectral.series_coefficients_with_errors(
        np.diag([2.0, 1.0]), np.array([[0.5, 0.25], [0.25, 0.0]]), 2, rtol=4 * EPS
    )
    assert res.coefficients == pytest.approx([0.5, 0.0625], rel=4 * EPS, abs=0)  # a2 = b²/γ


# --------------------------------------------------------------------------------------
# eigen-data, series_value, off_top_residual_norm_sq: values and errors naming the argument
# --------------------------------------------------------------------------------------


def test_gap_resolved_is_strict_at_sixteen_n_eps_norm():
    n = 2
    tie = spectral.EigenData(np.array([1.0, 1.0 - 16 * n * EPS]), np.eye(n))
    above = spectral.EigenData(np.array([1.0, 1.0 - 16.5 * n * EPS]), np.eye(n))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tie.gap == 16 * n * EPS and not tie.gap_resolved()
        assert above.gap_resolved()
    neg = spectral.EigenData(np.array([-1.0, -1.0 - 16.5 * n * EPS]), np.eye(n))  # ‖A‖ = |λ_min|
    assert neg.gap_resolved()
    low = spectral.EigenData(np.array([0.5, 0.5 - 16.5 * n * EPS, -1.0]), np.eye(3))  # ‖A‖ = |λ_min| = 1
    assert not low.gap_resolved()
    # below float64's smallest normal the resolution is absolute: 16·n subnormal steps (eps·tiny)
    step = np.finfo(float).smallest_subnormal
    assert step == EPS * np.finfo(float).tiny
    assert not spectral.EigenData(np.array([30 * step, 0.0]), np.eye(2)).gap_resolved()
    assert spectral.EigenData(np.array([40 * step, 0.0]), np.eye(2)).gap_resolved()


def test_eigen_data_and_lambda_max_against_dense_eigh():
    A = _rotated([3.0, 1.5, 0.2, -0.4], 16)
    w, V = np.linalg.eigh(A)
    eig = spectral.eigen_data(A)
    np.testing.assert_allclose(eig.eigenvalues, w[::-1], rtol=0, atol=16 * 4 * EPS * 3)
    for j in range(4):  # eigenvectors up to sign
        assert abs(abs(eig.eigenvectors[:, j] @ V[:, 3 - j]) - 1) <= 1e-12
    assert spectral.lambda_max(A) == pytest.approx(w[-1], rel=0, abs=16 * 4 * EPS * 3)
    with pytest.raises(InputError, match=r"^A is not symmetric"):
        spectral.eigen_data([[1.0, 2.0], [0.0, 1.0]])
    with pytest.raises(InputError, match=r"^A is not symmetric"):
        spectral.lambda_max([[1.0, 2.0], [0.0, 1.0]])
    with pytest.raises(InputError, match=r"^E is not symmetric"):
        spectral.perturbation_in_eigenbasis(eig, [[1.0, 2.0], [0.0, 1.0]])
    with pytest.raises(InputError, match=re.escape("E must have the shape of A, (4, 4), got (2, 2)")):
        spectral.perturbation_in_eigenbasis(eig, np.eye(2))
    E = _sym(4, 17)
    np.testing.assert_allclose(
        spectral.perturbation_in_eigenbasis(eig, E),
        eig.eigenvectors.T @ E @ eig.eigenvectors,
        rtol=0,
        atol=64 * EPS * 4,
    )


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((float("nan"), [1.0], 1.0), r"^lambda1 must be finite"),
        ((1.0, [1.0], float("inf")), r"^t must be finite"),
        ((1.0, [1.0, float("nan")], 1.0), r"^coefficients has a non-finite entry"),
        ((1.0, [[1.0]], 1.0), r"^coefficients must be 1-D"),
        ((1.0, [1e308], 10.0), r"^the truncated series at t = 10\.0 overflows float64$"),  # overflow in the sum
        ((1.0, [0.0, 0.0], 1e200), r"^the truncated series at t = 1e\+200 overflows float64$"),  # 0·inf
    ],
)
def test_series_value_errors_name_the_problem_without_warnings(args, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=match):
            spectral.series_value(*args)


def test_off_top_residual_overflow_is_an_input_error():
    eig = spectral.eigen_data(np.diag([2.0, 1.0]))
    with pytest.raises(InputError, match="^" + re.escape("‖P⊥Ev‖² overflows float64; rescale E") + "$"):
        spectral.off_top_residual_norm_sq(eig, np.array([[0.0, 1e200], [1e200, 0.0]]))
    assert spectral.off_top_residual_norm_sq(eig, np.array([[0.0, 1e150], [1e150, 0.0]])) == pytest.approx(1e300)


# --------------------------------------------------------------------------------------
# Scales near the ends of float64: a value with a finite stated error, or a clear refusal
# --------------------------------------------------------------------------------------

FMAX = np.finfo(float).max


def _mp_first_coefficient(A, E, dps: int = 60):
    """a1 = v1ᵀ E v1 from mp eigen-data of A (E scaled into mp without overflow)."""
    with working_precision(dps):
        V = mp_eigh(mp_matrix(A), dps).eigenvectors
        v = V[:, 0]
        return (v.T * mp_matrix(E) * v)[0, 0]


def _near_fmax_cases():
    rng = np.random.default_rng(7)
    B = _sym(3, 11)
    B /= 1.01 * np.linalg.norm(B, 2)  # ‖B‖₂ < 1: 0.6·max·B stays finite, 2‖E‖₂ does not
    return {
        "diag(0.75 max, 0)": (np.diag([1.0, 0.0]), np.diag([0.75 * FMAX, 0.0])),
        "diag(-0.75 max, 0)": (np.diag([1.0, 0.0]), np.diag([-0.75 * FMAX, 0.0])),
        "off-diagonal 0.75 max": (np.diag([1.0, 0.0]), np.array([[0.0, 0.75 * FMAX], [0.75 * FMAX, 0.0]])),
        "diag(max(1 - 2^-30), 0)": (np.diag([1.0, 0.0]), np.diag([FMAX * (1 - 2.0**-30), 0.0])),
        "rotated A, 0.6 max B": (_rotated([1.0, 0.5, 0.25], int(rng.integers(1000))), 0.6 * FMAX * B),
    }


@pytest.mark.parametrize("name", list(_near_fmax_cases()))
def test_first_coefficient_of_a_perturbation_near_the_largest_float(name):
    """‖E‖₂ within a factor 2 of the largest float: a1 = v1ᵀEv1 is representable and comes
    with a finite stated error that meets the contract, without floating-point warnings. Before
    the fix: RuntimeWarning (2η·‖VᵀV − I‖_F = inf·0 in ε_E; M = (VᵀEV + (VᵀEV)ᵀ)/2 overflowing;
    |a1| + eps·C_1 beyond float64 in the acceptance test)."""
    A, E = _near_fmax_cases()[name]
    eta = float(np.linalg.svd(E, compute_uv=False)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = spectral.series_coefficients_with_errors(A, E, 1)
    ref = _mp_first_coefficient(A, E)
    a1, err, c1 = float(res.coefficients[0]), float(res.error_estimates[0]), float(res.natural_scales[0])
    assert math.isfinite(err) and math.isfinite(c1)
    assert c1 == pytest.approx(eta, rel=1e-10)  # C_1 = η (padded by 2⁻⁴⁰ at high precision)
    with working_precision(60):
        assert abs(mpmath.mpf(a1) - ref) <= mpmath.mpf(err) + EPS * abs(ref)  # + the final rounding
        assert mpmath.mpf(err) <= mpmath.mpf(1e-8) * (abs(ref) + mpmath.mpf(EPS) * c1)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_higher_orders_of_a_perturbation_near_the_largest_float_are_refused(order):
    """C_2 = η·2η/γ = 2·(0.75 max)² overflows: a2 (and higher) cannot be given an accuracy in
    float64; the refusal names a2 and asks for a rescaled E, without warnings (before the fix:
    RuntimeWarning, inf·0 in ε_E)."""
    A, E = np.diag([1.0, 0.0]), np.diag([0.75 * FMAX, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(
            InputError,
            match=r"^the natural scale C_2 = η\(2η/γ\)\^1 of a2 is not representable in float64 "
            r"\(η = ‖E‖₂ = 1\.35e\+308, γ = 1\), so the accuracy of a2 cannot be stated; "
            r"rescale E \(a_k\(sE\) = s\^k·a_k\(E\)\) or ask for order < 2$",
        ):
            spectral.series_coefficients_with_errors(A, E, order)


# λ_max(diag(1, 0) + t·s·P) in closed form (x = st, γ = 1):
#   P = [[1, 1], [1, 1]]: (1 + 2x)/2 + √(1/4 + x²) = 1 + x + x² − x⁴ + …, ‖P‖₂ = 2;
#   P = [[0, 1], [1, 0]]: 1/2 + √(1/4 + x²)        = 1 + x² − x⁴ + …,     ‖P‖₂ = 1.
SCALE_FAMILIES = {
    "ones": (np.ones((2, 2)), 2, [1, 1, 0, -1]),
    "off-diagonal": (np.array([[0.0, 1], [1, 0]]), 1, [0, 1, 0, -1]),
}


@pytest.mark.parametrize("family", list(SCALE_FAMILIES))
@pytest.mark.parametrize("s", [1e50, 1e100, 1e102, 1e103, 1e110, 1e150, 1e154, 1e155, 1e200, 1e300])
def test_large_scales_give_finite_stated_errors_or_refuse_the_first_unrepresentable_scale(family, s):
    """For every order: where every C_k = η(2η/γ)^{k−1} (k ≤ order) is a float, the coefficients
    are the closed form's within finite stated errors that meet the contract; where some C_k is
    beyond float64, InputError names the first such k. Never an inf error estimate or scale
    returned as accepted (before the fix: s = 1e110, ones, order 3 returned a3 with C_3 = inf)."""
    P, norm_p, unit_coeffs = SCALE_FAMILIES[family]
    A, E = np.diag([1.0, 0.0]), s * P
    with working_precision(40):
        eta = norm_p * mpmath.mpf(s)
        scales = [eta * (2 * eta) ** (k - 1) for k in range(1, 5)]
        refs = [c * mpmath.mpf(s) ** k for k, c in enumerate(unit_coeffs, start=1)]
    for order in range(1, 5):
        first_bad = next((k for k in range(1, order + 1) if scales[k - 1] > FMAX), None)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            if first_bad is not None:
                with pytest.raises(InputError, match=rf"^the natural scale C_{first_bad} = .* of a{first_bad} is not"):
                    spectral.series_coefficients_with_errors(A, E, order)
                continue
            res = spectral.series_coefficients_with_errors(A, E, order)
        assert np.all(np.isfinite(res.error_estimates)) and np.all(np.isfinite(res.natural_scales))
        with working_precision(40):
            for k in range(order):
                got, err, ref = mpmath.mpf(res.coefficients[k]), mpmath.mpf(res.error_estimates[k]), refs[k]
                assert float(res.natural_scales[k]) == pytest.approx(float(scales[k]), rel=1e-10)
                assert abs(got - ref) <= err + EPS * abs(ref), (order, k + 1)
                assert err <= mpmath.mpf(1e-8) * (abs(ref) + EPS * scales[k]), (order, k + 1)


def test_a_high_precision_scale_beyond_float64_is_refused(monkeypatch):
    """The high-precision route checks its own natural scales (C_k from its γ_lo and the padded η)
    the same way: an inf there is refused, naming the coefficient, not accepted."""
    real = spectral._mp_attempt

    def mp_attempt(a, e, order, dps, eta):
        lam1, coeffs, errs, scales = real(a, e, order, dps, eta)
        scales = scales.copy()
        scales[1] = np.inf
        return lam1, coeffs, errs, scales

    monkeypatch.setattr(spectral, "_mp_attempt", mp_attempt)
    with pytest.raises(InputError, match=r"^the natural scale C_2 = η\(2η/γ\)\^1 of a2 is not representable"):
        spectral.series_coefficients_with_errors(*COMMUTING, 3)


def test_acceptance_never_takes_an_infinite_or_nan_estimate_and_does_not_overflow():
    """_accepted: err ≤ rtol·(|a| + eps·C) as real numbers. |a| = C = max: the bound exceeds every
    float, so a finite estimate is accepted, without an overflow warning (before the fix:
    RuntimeWarning, overflow in scalar add); an inf or nan estimate is refused even where the
    bound is beyond float64 (before the fix: inf ≤ inf accepted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for rtol in (0.5, np.float64(0.5), 1e-8):
            assert spectral._accepted(np.array([FMAX]), np.array([1e300]), np.array([FMAX]), rtol)
            assert spectral._accepted(np.array([-FMAX]), np.array([0.0]), np.array([FMAX]), rtol)
            assert not spectral._accepted(np.array([FMAX]), np.array([np.inf]), np.array([FMAX]), rtol)
            assert not spectral._accepted(np.array([1.0]), np.array([np.inf]), np.array([np.inf]), rtol)
            assert not spectral._accepted(np.array([1.0]), np.array([np.nan]), np.array([1.0]), rtol)
        # the bound is rtol·|a| + rtol·eps·C exactly where it is a float: equality accepted, one ulp more not
        bound = 0.25 * 3.0 + 0.25 * EPS * 8.0
        assert spectral._accepted([3.0], [bound], [8.0], 0.25)
        assert not spectral._accepted([3.0], [np.nextafter(bound, 1.0)], [8.0], 0.25)
        assert not spectral._accepted([3.0, 1.0], [0.0, 1.0], [1.0, 1.0], 0.25)  # every coefficient counts


def test_refusal_diagnostics_of_infinite_coefficients_and_estimates_give_no_warnings(monkeypatch):
    """A float64 coefficient that overflowed (inf) with an inf estimate and a finite natural scale:
    the diagnostics (the worst coefficient, inf/inf there) are formed without floating-point
    warnings and the high-precision route decides."""
    real = spectral._float_attempt

    def float_attempt(a, e, eig, order):
        coeffs, errs, scales, eta = real(a, e, eig, order)
        coeffs, errs = coeffs.copy(), errs.copy()
        coeffs[1], errs[1] = np.inf, np.inf
        return coeffs, errs, scales, eta

    monkeypatch.setattr(spectral, "_float_attempt", float_attempt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = spectral.series_coefficients_with_errors(*COMMUTING, 3)
    assert res.dps is not None
    _assert_contract(*COMMUTING, res.coefficients)


def test_a_high_precision_coefficient_beyond_float64_is_refused(monkeypatch):
    """Where the high-precision coefficient rounds to ±inf in float64 (its natural scale a float),
    InputError says that the coefficient is not representable; nothing is returned."""
    real = spectral._mp_attempt

    def mp_attempt(a, e, order, dps, eta):
        lam1, coeffs, errs, scales = real(a, e, order, dps, eta)
        coeffs = coeffs.copy()
        coeffs[2] = -np.inf
        return lam1, coeffs, errs, scales

    monkeypatch.setattr(spectral, "_mp_attempt", mp_attempt)
    with pytest.raises(
        InputError, match=r"^a series coefficient of λ_max\(A \+ tE\) is not representable in float64: \["
    ):
        spectral.series_coefficients_with_errors(*COMMUTING, 3)
