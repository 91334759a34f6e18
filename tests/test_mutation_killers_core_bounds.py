"""Kill tests for the survivors of the numeric core's re-run in fimtheory/bounds.py, fim.py and
the generated series (docs/mutation_core_bounds.md).

Every test states a documented property against an independent reference: mpmath eigen-data
at 60 digits (mpmath.eigsy, not fimtheory.highprec), exact rational arithmetic
(fractions.Fraction) for the documented error estimate of SIGN, closed forms (1×1 and diagonal
problems, hand-computed residuals), and the documented error messages (anchored). SIGN's mpmath
fallback is observed through a wrapper of ``fimtheory.highprec.mp_eigh`` that returns the real
result: the precisions of its attempts (the documented ladder), the attempt's own eigen-data as
premises (exactly I and A's diagonal where its β is then exact), and once a planted fault (a
known non-orthogonality of the attempt's eigenvectors). All are deterministic and fast (about
5 CPU-s in all).
"""

from __future__ import annotations

import re
import warnings
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from fimtheory import bounds, fim
from fimtheory._generated import series
from fimtheory.errors import HypothesesNotMet, InputError
from fimtheory.spectral import HIGH_PRECISION_MAX_N, backward_error, eigen_data

EPS = float(np.finfo(float).eps)
BIG = 1e308  # A + E with two such entries overflows float64; each alone is finite


def _raises(exc, pattern, fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stray RuntimeWarning is not the documented error
        with pytest.raises(exc) as info:
            fn(*args, **kw)
    assert re.search(pattern, str(info.value)), str(info.value)
    return info.value


def _mp_sign_reference(a, e, dps=60):
    """(lower, upper) = ‖P⊥Ev‖²/(λ1 − λn), ‖P⊥Ev‖²/(λ1 − λ2) from mpmath.eigsy at ``dps`` digits."""
    with mpmath.workdps(dps):
        am, em = mpmath.matrix(a.tolist()), mpmath.matrix(e.tolist())
        w, V = mpmath.eigsy(am)
        order = sorted(range(len(w)), key=lambda i: -w[i])
        v = V[:, order[0]]
        ev = em * v
        u = ev - v * (v.T * ev)[0, 0]
        r2 = (u.T * u)[0, 0]
        l1, l2, ln = w[order[0]], w[order[1]], w[order[-1]]
        return float(r2 / (l1 - ln)), float(r2 / (l1 - l2)), float(l1 - ln), float(l1 - l2)


def _eta(e):
    return float(np.max(np.abs(np.linalg.eigvalsh(e))))


# --------------------------------------------------------------------------------------
# _pair: A + E overflowing float64 is bad input, reported as such (no RuntimeWarning)
# --------------------------------------------------------------------------------------

OVER_A = np.diag([BIG, 0.0])
OVER_E = np.diag([BIG, 0.0])  # a + e overflows; a − e = 0 does not


@pytest.mark.parametrize(
    "fn", [bounds.weyl_bounds, bounds.weyl_index_margins, bounds.directional_lower_bound, bounds.sign_bounds]
)
def test_pair_rejects_a_sum_that_overflows_with_the_documented_message(fn):
    _raises(InputError, r"^A \+ E overflows float64; rescale A and E$", fn, OVER_A, OVER_E)


def test_pair_accepts_the_largest_sum_that_is_finite():
    # 2·(max/2) = max is finite: accepted; Weyl's bounds are then attained (E commutes with A):
    # λ_max(A + E) = max, lower λ1(A) + λmin(E) = max/2 (to eigvalsh's rounding).
    half = np.finfo(float).max / 2
    lo, hi = bounds.weyl_bounds(np.diag([half, 0.0]), np.diag([half, 0.0]))
    assert np.isfinite(hi) and hi == pytest.approx(2 * half, rel=8 * EPS) and lo == pytest.approx(half, rel=8 * EPS)


# --------------------------------------------------------------------------------------
# _sign_bounds_error: the documented estimate, evaluated in exact rational arithmetic
# --------------------------------------------------------------------------------------


def _documented_estimate(n, beta, lam1, lam2, lamn, r2_sqrt, eta, unit):
    """The docstring's estimate: θ = β/(γ − 2β), δu = 3ηθ + n·unit·η, δ(‖u‖²) = 2‖u‖δu + δu²;
    a bound r2/d with d moved by 2β: δr2/(d − 2β) + r2·2β/((d − 2β)·d). Exact (Fractions)."""
    F = Fraction
    beta, lam1, lam2, lamn, ru, eta, unit = (F(x) for x in (beta, lam1, lam2, lamn, r2_sqrt, eta, unit))
    r2 = ru * ru
    gap, spread = lam1 - lam2, lam1 - lamn
    theta = beta / (gap - 2 * beta)
    du = 3 * eta * theta + n * unit * eta
    dr2 = 2 * ru * du + du * du
    hi = dr2 / (gap - 2 * beta) + r2 * 2 * beta / ((gap - 2 * beta) * gap)
    lo = dr2 / (spread - 2 * beta) + r2 * 2 * beta / ((spread - 2 * beta) * spread)
    return float(lo), float(hi)


@pytest.mark.parametrize(
    "n,beta,lam1,lam2,lamn,r2_sqrt,eta,unit",
    [
        (3, 0.0625, 3.0, 2.0, 0.5, 0.375, 0.75, 2.0**-10),  # dyadic: every input exact
        (5, 1e-3, 7.0, 6.5, 1.25, 0.3, 2.5, 1e-4),
        (2, 0.25, 4.0, 2.5, 2.5, 1.5, 3.0, 0.125),  # n = 2: λ2 = λn
    ],
)
def test_sign_bounds_error_is_the_documented_estimate(n, beta, lam1, lam2, lamn, r2_sqrt, eta, unit):
    got = bounds._sign_bounds_error(n, beta, lam1, lam2, lamn, r2_sqrt**2, eta, unit)
    want = _documented_estimate(n, beta, lam1, lam2, lamn, r2_sqrt, eta, unit)
    assert got == pytest.approx(want, rel=1e-12)


def test_sign_bounds_error_is_infinite_once_the_gap_is_not_above_4_beta():
    # At γ = 4β exactly (dyadic: no rounding) the estimate refuses; just above it is finite.
    assert bounds._sign_bounds_error(3, 0.25, 2.0, 1.0, 0.0, 0.25, 1.0, EPS) == (float("inf"), float("inf"))
    lo, hi = bounds._sign_bounds_error(3, 0.25, 2.125, 1.0, 0.0, 0.25, 1.0, EPS)  # γ = 4.5β
    assert np.isfinite(lo) and np.isfinite(hi)
    assert (lo, hi) == pytest.approx(_documented_estimate(3, 0.25, 2.125, 1.0, 0.0, 0.5, 1.0, EPS), rel=1e-12)


# --------------------------------------------------------------------------------------
# sign_bounds: argument checks
# --------------------------------------------------------------------------------------

A3 = np.diag([3.0, 1.0, 0.5])
E3 = np.array([[0.2, 0.1, 0.05], [0.1, -0.3, 0.0], [0.05, 0.0, 0.1]])


BAD_RTOLS = [0.0, 1e-17, 4 * EPS * (1 - EPS), 1.0, 1.5, 2.0, -1e-8, float("nan"), "1e-8", None, True]


@pytest.mark.parametrize("rtol", BAD_RTOLS)
def test_sign_bounds_rejects_an_rtol_outside_4eps_to_1(rtol):
    _raises(InputError, r"^rtol must be a number in \[4·eps, 1\), got ", bounds.sign_bounds, A3, E3, rtol=rtol)


@pytest.mark.parametrize("rtol", [4 * EPS, 1e-8, 0.5, 1 - EPS])
def test_sign_bounds_accepts_rtol_from_4eps_up_to_below_1_and_meets_it(rtol):
    lo, hi = bounds.sign_bounds(A3, E3, rtol=rtol)
    rlo, rhi, spread, gap = _mp_sign_reference(A3, E3)
    eta = _eta(E3)
    assert abs(lo - rlo) <= rtol * (abs(rlo) + EPS * eta**2 / spread) + 2 * EPS * abs(rlo)
    assert abs(hi - rhi) <= rtol * (abs(rhi) + EPS * eta**2 / gap) + 2 * EPS * abs(rhi)


def test_sign_bounds_rejects_eigen_data_of_another_size_naming_both_sizes():
    other = eigen_data(np.diag([4.0, 3, 2, 1]))
    _raises(InputError, r"^eig has 4 eigenvalues, A is 3×3$", bounds.sign_bounds, A3, E3, other)


def test_sign_bounds_reports_eigen_data_that_do_not_belong_to_a():
    # eig of another matrix (same size): the a-posteriori estimate sees it (huge backward error),
    # the mpmath fallback finds A's top eigenvalue repeated, and no precision can help.
    A = np.diag([1.0, 1.0, 0.0])
    _raises(
        HypothesesNotMet,
        r"^SIGN bounds: not accurate to rtol 1e-08 even at 160 digits \(γ = 0\.5\)$",
        bounds.sign_bounds,
        A,
        E3,
        eigen_data(np.diag([1.0, 0.5, 0.0])),
    )


def test_sign_bounds_with_foreign_eigen_data_are_still_those_of_a():
    # eig of another matrix: the estimate sees its huge backward error, and the mpmath fallback
    # recomputes A's own eigen-data. Here A's top gap is 2e-60: 40 digits cannot resolve it, 80 can.
    d = 1e-60
    A = np.array([[1.0, d, 0.0], [d, 1.0, 0.0], [0.0, 0.0, 0.0]])
    lo, hi = bounds.sign_bounds(A, E3, eigen_data(np.diag([1.0, 0.5, 0.0])))
    rlo, rhi, _, gap = _mp_sign_reference(A, E3, dps=150)
    assert gap == pytest.approx(2 * d, rel=1e-12)
    assert lo == pytest.approx(rlo, rel=1e-8) and hi == pytest.approx(rhi, rel=1e-8)


# --------------------------------------------------------------------------------------
# sign_bounds: exact zeros (E = 0, and E commuting with a diagonal A) in float64, any n
# --------------------------------------------------------------------------------------


def test_sign_bounds_of_a_zero_perturbation_are_exactly_zero():
    big = np.diag(np.r_[1.0, np.linspace(0.5, 0.0, HIGH_PRECISION_MAX_N)])  # n > the mpmath limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bounds.sign_bounds(A3, np.zeros((3, 3))) == (0.0, 0.0)
        assert bounds.sign_bounds(big, np.zeros_like(big)) == (0.0, 0.0)


def _commuting_case(eta, scale):
    """n = 65 (above the mpmath limit), A diagonal with γ = 0.1·scale, spread = 0.15·scale, and a
    diagonal E (‖E‖ = eta): P⊥Ev = 0, so both bounds are exactly 0. eigh is exact on diagonal
    input, so the backward error is n·eps·‖A‖ and the documented estimate, ≈ (2015·eps)²·η²/d,
    is ~0.2 of the contract's absolute term rtol·eps·η²/d at rtol = 4e-9."""
    n = HIGH_PRECISION_MAX_N + 1
    lam = np.r_[1.0, 0.9, np.linspace(0.85, 0.9, n - 2, endpoint=False)] * scale
    e = np.diag(np.r_[eta, np.linspace(-0.5, 0.5, n - 1) * eta])
    return np.diag(lam), e


@pytest.mark.parametrize("eta", [1e-2, 1.0, 1e2])
@pytest.mark.parametrize("scale", [1e-3, 1.0])
def test_sign_bounds_deliver_exact_zero_bounds_in_float64_for_n_above_the_mpmath_limit(eta, scale):
    a, e = _commuting_case(eta, scale)
    assert bounds.sign_bounds(a, e, rtol=4e-9) == (0.0, 0.0)


def test_sign_bounds_above_the_mpmath_limit_say_so_when_float64_cannot_deliver_rtol():
    a, e = _commuting_case(1.0, 1.0)
    _raises(
        HypothesesNotMet,
        r"^SIGN bounds: float64 error estimate \S+ exceeds rtol 1e-12 of 0 \(γ = 0\.1\); "
        r"the high-precision fallback is limited to n ≤ 64$",
        bounds.sign_bounds,
        a,
        e,
        rtol=1e-12,
    )


class _FallbackEntered(Exception):
    pass


def test_sign_bounds_fall_back_to_mpmath_up_to_exactly_the_documented_size(monkeypatch):
    # n = HIGH_PRECISION_MAX_N takes the mpmath path (stubbed: only whether it is entered matters).
    import fimtheory.highprec as hp

    def entered(*args, **kw):
        raise _FallbackEntered

    monkeypatch.setattr(hp, "mp_eigh", entered)
    n = HIGH_PRECISION_MAX_N
    a = np.diag(np.r_[1.0, 0.9, np.linspace(0.85, 0.9, n - 2, endpoint=False)])
    e = np.diag(np.linspace(-1.0, 1.0, n))
    with pytest.raises(_FallbackEntered):
        bounds.sign_bounds(a, e, rtol=1e-12)


# --------------------------------------------------------------------------------------
# sign_bounds: the stated accuracy near a small gap (float64 is not enough; mpmath is used)
# --------------------------------------------------------------------------------------


def _near_degenerate(sign, gap=1e-4, scale=1.0):
    """γ = 1e-4·scale, E = ±wwᵀ with w 1e-3 off the top eigenvector: float64's bounds are off by
    ~1e-9 relative, so at rtol = 1e-10 the estimate must send them to mpmath. ‖E‖ = 1 comes from
    the single eigenvalue ±1 (the other two are 0)."""
    rng = np.random.default_rng(20261201)
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    a = Q @ np.diag(np.array([1.0, 1.0 - gap, 0.3]) * scale) @ Q.T
    a = 0.5 * (a + a.T)
    eig = eigen_data(a)
    w = eig.top_vector + 1e-3 * eig.eigenvectors[:, 1]
    w /= np.linalg.norm(w)
    return a, sign * np.outer(w, w)


@pytest.mark.parametrize("sign,scale", [(1.0, 1.0), (-1.0, 1.0), (1.0, 1e-200)])
def test_sign_bounds_meet_rtol_near_a_small_gap(sign, scale):
    # scale 1e-200: ‖A‖ far below 1 (the contract is scale-covariant in A at fixed E)
    a, e = _near_degenerate(sign, scale=scale)
    rtol = 1e-10
    lo, hi = bounds.sign_bounds(a, e, rtol=rtol)
    rlo, rhi, spread, gap = _mp_sign_reference(a, e)
    eta = _eta(e)
    assert abs(lo - rlo) <= rtol * (abs(rlo) + EPS * eta**2 / spread)
    assert abs(hi - rhi) <= rtol * (abs(rhi) + EPS * eta**2 / gap)
    assert 0 < lo < hi  # a real bracket: λ1 − λn > γ


def test_float64_alone_is_not_accurate_enough_in_the_small_gap_case():
    # The premise of the test above: float64's bounds miss rtol = 1e-10 there.
    from fimtheory.spectral import off_top_residual_norm_sq

    a, e = _near_degenerate(1.0)
    eig = eigen_data(a)
    r2 = off_top_residual_norm_sq(eig, e)
    hi64 = r2 / (eig.lambda_max - eig.eigenvalues[1])
    _, rhi, _, _ = _mp_sign_reference(a, e)
    assert abs(hi64 - rhi) > 1e-10 * abs(rhi)


# --------------------------------------------------------------------------------------
# second_coefficient and coefficient_bounds
# --------------------------------------------------------------------------------------


def test_second_coefficient_names_a2_when_the_top_eigenvalue_is_repeated():
    _raises(HypothesesNotMet, r"^a2 needs a simple top eigenvalue", bounds.second_coefficient, np.eye(3), E3)


@pytest.mark.parametrize("rtol", [0.0, 1.0, 2.0])
def test_second_coefficient_passes_rtol_on(rtol):
    with pytest.raises(InputError, match="rtol"):
        bounds.second_coefficient(A3, E3, rtol=rtol)


def test_second_coefficient_needs_only_a2_accurate_for_n_above_the_mpmath_limit():
    # n = 65, A diagonal, E an "arrow" (first row and column, E11 = 1e-4, no other entries):
    # a2 = Σ_j E1j²/(λ1 − λj) is large and float64 delivers it to rtol = 1e-8;
    # a3 = −E11·Σ_j E1j²/d_j² (≈ −3e-5) is below what float64 can certify at that rtol — which
    # does not concern a2: second_coefficient must not raise HypothesesNotMet for it.
    n = HIGH_PRECISION_MAX_N + 1
    lam = np.r_[1.0, 0.9, np.linspace(0.85, 0.9, n - 2, endpoint=False)]
    row = np.linspace(0.5, 1.0, n - 1) * 1e-2
    e = np.zeros((n, n))
    e[0, 1:] = e[1:, 0] = row
    e[0, 0] = 1e-4
    want = float(np.sum(row**2 / (1.0 - lam[1:])))
    assert bounds.second_coefficient(np.diag(lam), e) == pytest.approx(want, rel=1e-10)


def test_second_coefficient_is_the_closed_form_a2():
    # a2 = Σ_j M_{1j}²/(λ1 − λj) for diagonal A (M = E).
    want = 0.1**2 / (3.0 - 1.0) + 0.05**2 / (3.0 - 0.5)
    assert bounds.second_coefficient(A3, E3, rtol=1e-12) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("order", [0, -2])
def test_coefficient_bounds_name_the_order_argument(order):
    _raises(InputError, rf"^order must be >= 1, got {order}$", bounds.coefficient_bounds, 1.0, 2.0, order)


# --------------------------------------------------------------------------------------
# directional_lower_bound and top_vector_tolerance
# --------------------------------------------------------------------------------------


def test_top_vector_tolerance_is_16_n_eps_times_the_largest_eigenvalue_magnitude():
    # Any symmetric A's eigen-data (indefinite here): 16·n·eps·max(|λ1|, |λn|), no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bounds.top_vector_tolerance(eigen_data(np.diag([1.0, -5.0, 2.0]))) == 16 * 3 * EPS * 5.0
        assert bounds.top_vector_tolerance(eigen_data(np.diag([7.0, 0.0]))) == 16 * 2 * EPS * 7.0


def test_directional_lower_bound_accepts_a_deficit_equal_to_the_tolerance():
    # A = diag(1, 1 − 2⁻⁴⁷), v = e2: deficit λ1 − vᵀAv = 2⁻⁴⁷ = 16·2·eps·1 exactly ("must not exceed").
    a = np.diag([1.0, 1.0 - 2.0**-47])
    e = np.array([[0.0, 0.25], [0.25, 0.5]])
    assert bounds.top_vector_tolerance(eigen_data(a)) == 2.0**-47
    assert bounds.directional_lower_bound(a, e, np.array([0.0, 1.0])) == 1.0 + 0.5
    # one ulp more deficit is refused
    with pytest.raises(HypothesesNotMet):
        bounds.directional_lower_bound(np.diag([1.0, 1.0 - 2.0**-47 - 2.0**-53]), e, np.array([0.0, 1.0]))


def test_directional_lower_bound_reports_deficit_tolerance_and_residual_of_a_wrong_vector():
    # A = diag(3, 1, 0), v = (0.6, 0.8, 0): deficit 3 − (1.08 + 0.64) = 1.28, Av − 3v = (0, −1.6, 0).
    a = np.diag([3.0, 1.0, 0.0])
    tol = 16 * 3 * EPS * 3.0
    _raises(
        HypothesesNotMet,
        r"^v is not a top eigenvector of A: Rayleigh deficit λ1 − vᵀAv = 1\.28 exceeds "
        rf"{re.escape(f'{tol:.3g}')} \(16·n·eps·‖A‖\), residual ‖Av − λ1v‖ = 1\.6; R needs a unit top eigenvector$",
        bounds.directional_lower_bound,
        a,
        np.eye(3),
        np.array([0.6, 0.8, 0.0]),
    )


# --------------------------------------------------------------------------------------
# fim: overflow is reported naming the quantity
# --------------------------------------------------------------------------------------

HUGE_G = np.full((2, 3), 1e200)  # GᵀG/n and GGᵀ/n have entries 1e400 (P = 3 > n = 2: Gram path)


@pytest.mark.parametrize(
    "fn,what",
    [
        (fim.empirical_fim, "the empirical FIM GᵀG/n"),
        (fim.gram_matrix, "the Gram matrix GGᵀ/n"),
        (fim.fim_spectrum, "the FIM spectrum"),
    ],
)
def test_fim_overflow_names_the_quantity(fn, what):
    _raises(InputError, rf"^{re.escape(what)} overflows float64 \(its largest entry exceeds ", fn, HUGE_G)


def test_fim_spectrum_overflow_named_on_the_fim_path_too():
    _raises(InputError, r"^the FIM spectrum overflows float64", fim.fim_spectrum, HUGE_G.T)  # n = 3 > P = 2


# --------------------------------------------------------------------------------------
# generated series: n = 1 (a 1×1 matrix: λ(a + tm) = a + tm exactly)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_series_coefficients_of_a_1x1_matrix_are_m_then_zeros(order):
    got = series.series_coefficients([2.5], [[-0.75]], order)
    assert list(got) == [-0.75] + [0.0] * (order - 1)


# --------------------------------------------------------------------------------------
# sign_bounds: float64 is used only when BOTH bounds meet the documented estimate
# --------------------------------------------------------------------------------------


def _decision_case():
    """n = 65 (no mpmath fallback), A = diag(1, 1 − 2⁻¹⁸, 0, …, 0), E = diag(1, 0, …, 0): eigh is
    exact on diagonal input, so P⊥Ev = 0 (both bounds exactly 0) and the backward error is the
    documented n·eps·‖A‖. The two bounds' thresholds rtol* = estimate/(eps·η²/d) differ by the
    factors d/(d − 2β) only, a band of relative width ≈ 2β/γ ≈ 7e-9 between them."""
    n = HIGH_PRECISION_MAX_N + 1
    lam = np.r_[1.0, 1.0 - 2.0**-18, np.zeros(n - 2)]
    e = np.zeros((n, n))
    e[0, 0] = 1.0
    return np.diag(lam), e, lam


def _documented_thresholds(n, lam1, lam2, lamn, eta):
    """rtol at which each bound's documented estimate equals its allowance (r2 = 0), in Fractions:
    θ = β/(γ − 2β), δu = 3ηθ + n·eps·η, estimate δu²/(d − 2β), allowance rtol·eps·η²/d."""
    F = Fraction
    beta = F(n) * F(EPS) * F(max(abs(lam1), abs(lamn)))  # backward_error's n·eps·‖A‖ (exact eigh)
    gap, spread = F(lam1) - F(lam2), F(lam1) - F(lamn)
    du = 3 * F(eta) * (beta / (gap - 2 * beta)) + F(n) * F(EPS) * F(eta)
    t_lo = du * du / (spread - 2 * beta) / (F(EPS) * F(eta) ** 2 / spread)
    t_hi = du * du / (gap - 2 * beta) / (F(EPS) * F(eta) ** 2 / gap)
    return t_lo, t_hi


def test_sign_bounds_use_float64_only_when_both_bounds_meet_the_estimate():
    a, e, lam = _decision_case()
    eig = eigen_data(a)
    n = a.shape[0]
    # premise: eigh is exact on this diagonal input (a signed permutation), so the backward error
    # is the documented n·eps·‖A‖ alone
    assert np.all(np.isin(eig.eigenvectors, [-1.0, 0.0, 1.0]))
    assert backward_error(a, eig) == n * EPS * 1.0
    t_lo, t_hi = _documented_thresholds(n, 1.0, lam[1], 0.0, 1.0)
    assert t_lo < t_hi and 4 * EPS < t_lo and t_hi < 1 and (t_hi - t_lo) / t_hi > 1e-9
    # rtol above both thresholds: float64's exact zeros
    assert bounds.sign_bounds(a, e, rtol=float(t_hi * Fraction(101, 100))) == (0.0, 0.0)
    # rtol between them: the lower bound would be accepted, the upper is not, so float64 must not
    # be used, and n > 64 has no fallback
    between = float((t_lo + t_hi) / 2)
    _raises(
        HypothesesNotMet,
        r"^SIGN bounds: float64 error estimate \S+ exceeds rtol \S+ of 0 .*limited to n ≤ 64$",
        bounds.sign_bounds,
        a,
        e,
        rtol=between,
    )
    _raises(HypothesesNotMet, r"limited to n ≤ 64$", bounds.sign_bounds, a, e, rtol=float(t_lo * Fraction(99, 100)))


# --------------------------------------------------------------------------------------
# sign_bounds: eigen-data that are not A's, where only 160 digits resolve A's gap
# --------------------------------------------------------------------------------------


def test_sign_bounds_with_foreign_eigen_data_and_a_gap_only_160_digits_resolve():
    # A's top pair 1 ± 1e-146 (γ = 2e-146): 40 and 80 digits see a repeated eigenvalue, 160 digits
    # resolve it. λn = 1 − 2⁻⁵⁰ (spread ≈ 8.9e-16, far below λ1 + λn) and E = diag(0, 0, 1): A's
    # top vector is (1, 1, 0)/√2 exactly, so P⊥Ev = 0 and both bounds are exactly 0 (closed form).
    # The documented estimate at 160 digits is ~1e-3 of the allowance rtol·eps·η²/d of each bound.
    d = 1e-146
    a = np.array([[1.0, d, 0.0], [d, 1.0, 0.0], [0.0, 0.0, 1.0 - 2.0**-50]])
    e = np.diag([0.0, 0.0, 1.0])
    _, _, spread, gap = _mp_sign_reference(a, e, dps=300)
    assert gap == pytest.approx(2 * d, rel=1e-12) and spread == pytest.approx(2.0**-50, rel=1e-12)
    rtol = 1e-8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = bounds.sign_bounds(a, e, eigen_data(np.diag([1.0, 0.5, 0.25])), rtol=rtol)
    assert abs(lo - 0.0) <= rtol * EPS / spread
    assert abs(hi - 0.0) <= rtol * EPS / gap


# --------------------------------------------------------------------------------------
# top_vector_tolerance: the floor at the smallest normal number (subnormal A)
# --------------------------------------------------------------------------------------


def test_top_vector_tolerance_is_floored_at_the_smallest_normal_number():
    tiny = float(np.finfo(float).tiny)
    assert bounds.top_vector_tolerance(eigen_data(np.zeros((3, 3)))) == 16 * 3 * EPS * tiny
    sub = np.diag([3e-315, 1e-315])
    assert bounds.top_vector_tolerance(eigen_data(sub)) == 16 * 2 * EPS * tiny
    assert bounds.top_vector_tolerance(eigen_data(sub)) > 0


@pytest.mark.parametrize("scale", [1e-315, 1e-318])
def test_directional_lower_bound_accepts_the_computed_top_vector_of_a_subnormal_a(scale):
    # vᵀAv of a subnormal A is rounded to whole units of the smallest subnormal, so the deficit of
    # A's own computed top eigenvector can be ±1 unit while 16·n·eps·‖A‖ underflows to 0; that
    # vector is a top eigenvector to working accuracy and must be accepted, with the value of
    # v omitted (λ1 + vᵀEv).
    rng = np.random.default_rng(1)
    nonzero = 0
    for _ in range(5):
        x = rng.standard_normal((4, 4))
        a = (x @ x.T) * scale
        eig = eigen_data(a)
        v = eig.top_vector
        assert 16 * 4 * EPS * eig.lambda_max == 0.0  # the unfloored tolerance underflows to 0 here
        nonzero += float(eig.lambda_max - v @ a @ v) != 0.0
        e = np.eye(4) * scale
        assert bounds.directional_lower_bound(a, e, v) == bounds.directional_lower_bound(a, e)
    assert nonzero >= 1  # premise: at least one computed top vector has a nonzero deficit


@pytest.mark.parametrize("d", [1e-148, 2.9e-148])
def test_sign_bounds_refuse_when_even_160_digits_do_not_meet_rtol(d):
    # As above with A's gap γ = 2d: the documented 160-digit estimate, evaluated with only its last
    # term n·10⁻¹⁶⁰·‖A‖ for β (the other two are ≥ 0 and the estimate grows with β), already
    # exceeds the allowance of the upper bound (~9 times at d = 1e-148, by 8% at d = 2.9e-148), so
    # no attempt meets rtol: HypothesesNotMet.
    a = np.array([[1.0, d, 0.0], [d, 1.0, 0.0], [0.0, 0.0, 1.0 - 2.0**-50]])
    e = np.diag([0.0, 0.0, 1.0])
    rtol = 1e-8
    with mpmath.workdps(300):
        w = sorted(mpmath.eigsy(mpmath.matrix(a.tolist()))[0], reverse=True)
        gap, n, eta = w[0] - w[1], 3, mpmath.mpf(1)
        beta = n * mpmath.mpf(10) ** -160 * abs(w[0])
        du = 3 * eta * beta / (gap - 2 * beta) + n * mpmath.mpf(10) ** -160 * eta
        estimate_hi = du**2 / (gap - 2 * beta)  # r2 = 0: the upper bound's documented estimate
        ratio = estimate_hi / (rtol * mpmath.mpf(EPS) * eta**2 / gap)
    assert float(gap) == pytest.approx(2 * d, rel=1e-12) and ratio > 1
    _raises(
        HypothesesNotMet,
        r"^SIGN bounds: not accurate to rtol 1e-08 even at 160 digits \(γ = 0\.5\)$",
        bounds.sign_bounds,
        a,
        e,
        eigen_data(np.diag([1.0, 0.5, 0.25])),
        rtol=rtol,
    )


# --------------------------------------------------------------------------------------
# sign_bounds: the fallback's documented precision ladder (40, then 80, then 160 digits)
# --------------------------------------------------------------------------------------


def _ladder_case(which):
    """(A, E, eig, rtol, the digits the documented ladder tries, the attempt expected to resolve
    A's gap). ``near``: A's own eig, γ = 1e-4 (float64 misses rtol = 1e-10, 40 digits suffice);
    ``gap80``/``gap160``: eig not A's, A's top pair 1 ± d with d = 1e-60 (0 at 40 digits, resolved
    at 80) and d = 1e-146 (0 at 40 and 80 digits, resolved at 160)."""
    if which == "near":
        a, e = _near_degenerate(1.0)
        return a, e, None, 1e-10, [40]
    d = {"gap80": 1e-60, "gap160": 1e-146}[which]
    a = np.array([[1.0, d, 0.0], [d, 1.0, 0.0], [0.0, 0.0, 1.0 - 2.0**-50]])
    if which == "gap80":
        a[2, 2] = 0.0
        e = E3
    else:
        e = np.diag([0.0, 0.0, 1.0])
    return a, e, eigen_data(np.diag([1.0, 0.5, 0.25])), 1e-8, [40, 80] if which == "gap80" else [40, 80, 160]


@pytest.mark.parametrize("which", ["near", "gap80", "gap160"])
def test_sign_bounds_fallback_tries_40_then_80_then_160_digits(which, monkeypatch):
    # The module docstring's ladder: A's eigen-data at 40, then 80, then 160 digits, each attempt
    # accepted only when its own estimate meets the contract. Recorded here: the digits of every
    # attempt (the precision mp_eigh is called with). Each attempt below the resolving one must be
    # refused by the documented estimate — premise checked from that attempt's own eigenvalues:
    # λ1 − λ2 ≤ 4·n·10⁻ᵈᵖˢ·λ1 ≤ 4β, so the estimate is infinite — and the resolving one meets rtol
    # (the returned bounds against mpmath.eigsy at 300 digits).
    import fimtheory.highprec as hp

    a, e, eig, rtol, want = _ladder_case(which)
    real = hp.mp_eigh
    attempts = []

    def recording(m, dps, **kw):
        out = real(m, dps, **kw)
        attempts.append((dps, out.eigenvalues[0], out.eigenvalues[1]))
        return out

    monkeypatch.setattr(hp, "mp_eigh", recording)
    lo, hi = bounds.sign_bounds(a, e, eig, rtol=rtol)
    assert [dps for dps, _, _ in attempts] == want
    n = a.shape[0]
    for dps, l1, l2 in attempts[:-1]:
        with mpmath.workdps(dps):
            assert l1 - l2 <= 4 * n * mpmath.mpf(10) ** -dps * abs(l1)
    rlo, rhi, spread, gap = _mp_sign_reference(a, e, dps=300)
    eta = _eta(e)
    assert abs(lo - rlo) <= rtol * (abs(rlo) + EPS * eta**2 / spread)
    assert abs(hi - rhi) <= rtol * (abs(rhi) + EPS * eta**2 / gap)


# --------------------------------------------------------------------------------------
# sign_bounds: the 40-digit attempt's acceptance where its β is known exactly
# --------------------------------------------------------------------------------------

_G = 2.0**-50  # A's top gap
_T = 2.0**-26  # E's coupling of A's top two coordinates: ‖P⊥Ev‖² = 2⁻⁵² = eps, the worst case


def _exact_beta_case(d):
    """n = 64 (the mpmath limit), A = [[1, d], [d, 1 − 2⁻⁵⁰]] ⊕ 0, E = T·(e1e2ᵀ + e2e1ᵀ) + e3e3ᵀ
    (‖E‖ = 1). At 40 digits A's eigen-data are the identity and A's diagonal exactly for d ≤ 1e-41
    (mpmath's Jacobi sweep rotates nothing; checked from the recorded attempt), so the attempt's
    residual AV − VΛ is A's off-diagonal part and VᵀV − I = 0, both computed exactly, and its β is
    ‖offdiag‖_F + n·10⁻⁴⁰·1 to ~1e-40. Its top vector is e1, so ‖P⊥Ev‖² = T² = 2⁻⁵², the bounds are
    2⁻⁵²/1 and 2⁻⁵²/2⁻⁵⁰, and every ingredient of the allowances rtol·(|b| + eps·η²/d) is a power
    of two: the acceptance is round(estimate) ≤ rtol·(|b| + eps·η²/d) with an exact right side."""
    n = HIGH_PRECISION_MAX_N
    a = np.zeros((n, n))
    a[0, 0], a[1, 1], a[0, 1], a[1, 0] = 1.0, 1.0 - _G, d, d
    e = np.zeros((n, n))
    e[0, 1] = e[1, 0] = _T
    e[2, 2] = 1.0
    return a, e


def _attempt_thresholds(n, beta, gap, spread, r2, eta, unit):
    """Each bound's rtol* = documented estimate / (|b| + eps·η²/d), at 300 digits: θ = β/(γ − 2β)
    (the gap for both bounds), δu = 3ηθ + n·unit·η, δ(‖u‖²) = 2‖u‖δu + δu², estimate
    δ(‖u‖²)/(d − 2β) + (r2/d)·2β/(d − 2β). Returns (t_lo, t_hi, estimate_lo, estimate_hi)."""
    with mpmath.workdps(300):
        theta = beta / (gap - 2 * beta)
        du = 3 * eta * theta + n * unit * eta
        dr2 = 2 * mpmath.sqrt(r2) * du + du * du
        out = []
        for d in (spread, gap):
            est = dr2 / (d - 2 * beta) + r2 / d * (2 * beta / (d - 2 * beta))
            out.append((est / (r2 / d + mpmath.mpf(EPS) * eta**2 / d), est, r2 / d + mpmath.mpf(EPS) * eta**2 / d))
        return out


def _rtols_two_ulps_around_the_threshold(n, beta, unit):
    """rtol two ulps above and two below the larger documented threshold of a 40-digit attempt
    with error β on the exact-β block case (γ = _G, spread 1, ‖P⊥Ev‖² = _T², η = 1), each checked
    at 300 digits to lie clearly on its side: above, both estimates ≤ rtol·c with room for the
    40-digit evaluation (≪ 1e-30); below, the larger one exceeds rtol·c by more than an ulp, so it
    cannot round down to it. The right sides c are exact (powers of two)."""
    (t_lo, est_lo, c_lo), (t_hi, est_hi, c_hi) = _attempt_thresholds(
        n, beta, mpmath.mpf(_G), mpmath.mpf(1), mpmath.mpf(_T) ** 2, mpmath.mpf(1), unit
    )
    assert float(c_hi) == 0.5 and float(c_lo) == 2.0**-51
    t = max(t_lo, t_hi)
    assert 4 * EPS < t < 1e-14
    above = float(np.nextafter(np.nextafter(float(t), 1.0), 1.0))
    below = float(np.nextafter(np.nextafter(float(t), 0.0), 0.0))
    with mpmath.workdps(300):
        assert est_lo * (1 + mpmath.mpf(10) ** -30) <= above * c_lo
        assert est_hi * (1 + mpmath.mpf(10) ** -30) <= above * c_hi
        worst, c = (est_hi, c_hi) if t_hi >= t_lo else (est_lo, c_lo)
        side = float(below * c)
        assert worst * (1 - mpmath.mpf(10) ** -30) > side + (np.nextafter(side, 1.0) - side)
    return above, below


def _block_reference(d):
    """(lower, upper) of the case above in closed form at 100 digits: the 2×2 block's top vector
    (cos φ, sin φ) with tan 2φ = 2d/γ0, ‖P⊥Ev‖² = T²·cos²2φ, γ = √(γ0² + 4d²), λn = 0."""
    with mpmath.workdps(100):
        g0, dd, t = mpmath.mpf(_G), mpmath.mpf(d), mpmath.mpf(_T)
        root = mpmath.sqrt(g0**2 + 4 * dd**2)
        r2 = t**2 * (g0 / root) ** 2
        lam1 = (2 - g0 + root) / 2
        return float(r2 / lam1), float(r2 / root), float(lam1), float(root)


@pytest.mark.parametrize(("d", "scale"), [(0.0, 1.0), (1e-41, 1.0), (0.0, 2.0**-20), (0.0, 2.0**20)])
def test_sign_bounds_accept_the_40_digit_attempt_exactly_where_its_documented_estimate_meets_rtol(
    d, scale, monkeypatch
):
    # The ladder's acceptance rule at the 40-digit attempt, on an input where that attempt's β
    # (‖AV − VΛ‖_F + ‖A‖‖VᵀV − I‖_F + n·10⁻⁴⁰·‖A‖, documented) is exact: the documented estimate's
    # threshold rtol* is computed at 300 digits; two ulps above it the 40-digit attempt must be
    # accepted (one attempt), two below it refused (the 80-digit attempt follows). rtol* is
    # ≈ 1.45e-15, in [4·eps, 1). The premises (exact eigen-data, exact right sides, margins above
    # the rounding of the estimate to float64) are asserted. E scaled by a power of two gives the
    # same thresholds (estimate and allowance are homogeneous of degree 2 in E) and bounds × scale².
    import fimtheory.highprec as hp

    a, e = _exact_beta_case(d)
    e = e * scale
    n = a.shape[0]
    foreign = eigen_data(np.diag(np.r_[1.0, 0.5, np.zeros(n - 2)]))
    assert _eta(e) == scale
    real = hp.mp_eigh
    attempts = []

    def recording(m, dps, **kw):
        out = real(m, dps, **kw)
        attempts.append((dps, out))
        return out

    monkeypatch.setattr(hp, "mp_eigh", recording)
    with mpmath.workdps(300):
        unit = mpmath.mpf(10) ** -40
        beta = mpmath.sqrt(2) * mpmath.mpf(d) + n * unit * 1  # ‖offdiag‖_F + 0 + n·unit·‖A‖
    above, below = _rtols_two_ulps_around_the_threshold(n, beta, unit)
    rlo, rhi, spread, gap = _block_reference(d)
    rlo, rhi = rlo * scale**2, rhi * scale**2
    for rtol, want in ((above, [40]), (below, [40, 80])):
        attempts.clear()
        lo, hi = bounds.sign_bounds(a, e, foreign, rtol=rtol)
        # premise, from the attempt itself: its eigen-data are exactly I and A's diagonal
        dps, first = attempts[0]
        V, lam = first.eigenvectors, first.eigenvalues
        assert dps == 40 and [lam[0], lam[1], lam[-1]] == [1, 1 - mpmath.mpf(_G), 0]
        assert all(V[i, j] == (1 if i == j else 0) for i in range(n) for j in range(n))
        assert [dps for dps, _ in attempts] == want, rtol
        assert abs(lo - rlo) <= rtol * (abs(rlo) + EPS * scale**2 / spread)
        assert abs(hi - rhi) <= rtol * (abs(rhi) + EPS * scale**2 / gap)


def test_sign_bounds_charge_the_attempt_for_its_eigenvectors_non_orthogonality(monkeypatch):
    # Fault injection into the case above (d = 0): the 40-digit attempt's eigen-data are A's exact
    # ones with one planted entry V[3, 2] = 2⁻¹³⁰ (two null-space vectors of A, 2⁻¹³⁰ ≈ 7e-40 from
    # orthogonal: a few units of 10⁻⁴⁰, as an eigensolver may leave them). Then AV − VΛ = 0 and
    # VᵀV − I has the two entries 2⁻¹³⁰ (its diagonal 2⁻²⁶⁰ is below the attempt's resolution),
    # all exact in the attempt's arithmetic, so the documented β = ‖A‖·‖VᵀV − I‖_F + n·10⁻⁴⁰·‖A‖ =
    # √2·2⁻¹³⁰ + 64·10⁻⁴⁰ is known; the attempt must be accepted two ulps above the documented
    # threshold and refused two below it (then the real 80-digit attempt).
    import fimtheory.highprec as hp

    a, e = _exact_beta_case(0.0)
    n = a.shape[0]
    foreign = eigen_data(np.diag(np.r_[1.0, 0.5, np.zeros(n - 2)]))
    real = hp.mp_eigh
    attempts = []

    def planted(m, dps, **kw):
        out = real(m, dps, **kw)
        if dps == 40:
            V = out.eigenvectors.copy()
            V[3, 2] = mpmath.mpf(2) ** -130
            out = hp.MpEigen(list(out.eigenvalues), V, dps)
        attempts.append((dps, out))
        return out

    monkeypatch.setattr(hp, "mp_eigh", planted)
    with mpmath.workdps(300):
        V = mpmath.eye(n)
        V[3, 2] = mpmath.mpf(2) ** -130
        unit = mpmath.mpf(10) ** -40
        beta = mpmath.mnorm(V.T * V - mpmath.eye(n), "f") + n * unit * 1
        assert abs(beta / (mpmath.sqrt(2) * mpmath.mpf(2) ** -130 + n * unit) - 1) < mpmath.mpf(10) ** -60
    above, below = _rtols_two_ulps_around_the_threshold(n, beta, unit)
    rlo, rhi, spread, gap = _block_reference(0.0)
    for rtol, want in ((above, [40]), (below, [40, 80])):
        attempts.clear()
        lo, hi = bounds.sign_bounds(a, e, foreign, rtol=rtol)
        assert [dps for dps, _ in attempts] == want, rtol
        assert abs(lo - rlo) <= rtol * (abs(rlo) + EPS / spread)
        assert abs(hi - rhi) <= rtol * (abs(rhi) + EPS / gap)


# --------------------------------------------------------------------------------------
# sign_bounds: ‖E‖ near the top of float64 (the bounds are homogeneous of degree 2 in E)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [500, 512, 600, 1000])
def test_sign_bounds_of_a_perturbation_above_2_to_the_512_are_its_exact_bounds(k):
    # A = diag(1, 1/2, 0), E = 2^k·e1e1ᵀ + (e1e2ᵀ + e2e1ᵀ): A's top vector is e1 exactly, P⊥Ev = e2,
    # so the bounds are exactly 1/(1 − 0) = 1 and 1/(1 − 1/2) = 2 for every k, while η = ‖E‖₂ ≈ 2^k.
    # For k ≥ 512 η² is not a float64 (before: a bare OverflowError from the allowance eps·η²/d);
    # every step of the bounds is exact here, so they equal the closed form, at rtol = 1e-8 from
    # float64 and at 4·eps from the 40-digit attempt.
    a = np.diag([1.0, 0.5, 0.0])
    e = np.zeros((3, 3))
    e[0, 0], e[0, 1], e[1, 0] = 2.0**k, 1.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bounds.sign_bounds(a, e) == (1.0, 2.0)
        assert bounds.sign_bounds(a, e, rtol=4 * EPS) == (1.0, 2.0)


def test_sign_bounds_report_the_float64_estimate_of_the_bounds_as_given():
    # The decision case above with E scaled by 2^40 (the decisions are homogeneous of degree 2 in E):
    # the refusal names the upper bound's documented estimate for this E, (2^40)² times the one at
    # ‖E‖ = 1 (Fractions), to the three digits printed.
    a, e, lam = _decision_case()
    n = a.shape[0]
    t_lo, t_hi = _documented_thresholds(n, 1.0, lam[1], 0.0, 1.0)
    gap = Fraction(1) - Fraction(lam[1])
    estimate = t_hi * Fraction(EPS) / gap * 2**80  # t·eps·η²/γ with η = 2^40
    err = _raises(
        HypothesesNotMet,
        r"^SIGN bounds: float64 error estimate \S+ exceeds rtol \S+ of 0 .*limited to n ≤ 64$",
        bounds.sign_bounds,
        a,
        e * 2.0**40,
        rtol=float((t_lo + t_hi) / 2),
    )
    printed = float(re.search(r"estimate (\S+) exceeds", str(err)).group(1))
    assert printed == pytest.approx(float(estimate), rel=5e-3)


@pytest.mark.parametrize("k", [-20, 0, 20, 40])
def test_sign_bounds_use_float64_at_every_scale_of_e_where_its_estimate_meets_rtol(k, monkeypatch):
    # A3, E3·2^k: the documented float64 estimate (β = the backward error of eigen_data(A3), Fractions)
    # is far below its allowance at rtol = 1e-8 and, homogeneous of degree 2 in E, equally so at
    # every k: float64's bounds are returned (no mpmath attempt), within the contract of the
    # 60-digit mpmath reference.
    import fimtheory.highprec as hp
    from fimtheory.spectral import off_top_residual_norm_sq

    eig = eigen_data(A3)
    lam = eig.eigenvalues
    r2 = off_top_residual_norm_sq(eig, E3)
    eta = _eta(E3)
    est_lo, est_hi = _documented_estimate(3, backward_error(A3, eig), lam[0], lam[1], lam[-1], r2**0.5, eta, EPS)
    lo0, hi0 = series.sign_bounds(lam[0], lam[1], lam[-1], r2)
    assert est_lo <= 1e-3 * 1e-8 * (lo0 + EPS * eta**2 / (lam[0] - lam[-1]))
    assert est_hi <= 1e-3 * 1e-8 * (hi0 + EPS * eta**2 / (lam[0] - lam[1]))
    tried = []
    real = hp.mp_eigh
    monkeypatch.setattr(hp, "mp_eigh", lambda m, dps, **kw: (tried.append(dps), real(m, dps, **kw))[1])
    e = E3 * 2.0**k
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = bounds.sign_bounds(A3, e, rtol=1e-8)
    assert tried == []
    rlo, rhi, spread, gap = _mp_sign_reference(A3, e)
    assert abs(lo - rlo) <= 1e-8 * (abs(rlo) + EPS * (eta * 2.0**k) ** 2 / spread)
    assert abs(hi - rhi) <= 1e-8 * (abs(rhi) + EPS * (eta * 2.0**k) ** 2 / gap)


def test_sign_bounds_use_float64_only_when_both_bounds_meet_the_estimate_for_a_wide_e():
    # The decision case with an all-ones block J/8 on coordinates 2..65 added to E: it leaves
    # P⊥Ev = 0 and the thresholds (η cancels between estimate and allowance when P⊥Ev = 0) but
    # makes ‖E‖₂ = 8 while max|E| = 1, so η/c = 4 at the unit scale.
    a, e, lam = _decision_case()
    n = a.shape[0]
    e = e.copy()
    e[1:, 1:] += 1.0 / 8
    assert _eta(e) == pytest.approx(8.0, rel=1e-14)
    t_lo, t_hi = _documented_thresholds(n, 1.0, lam[1], 0.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bounds.sign_bounds(a, e, rtol=float(t_hi * Fraction(101, 100))) == (0.0, 0.0)
    _raises(HypothesesNotMet, r"limited to n ≤ 64$", bounds.sign_bounds, a, e, rtol=float((t_lo + t_hi) / 2))
