"""Eigenvalue bounds of docs/theory.md §2: Weyl (W), directional (R), remainders (S, S2), SIGN.

Each function returns the bound(s); the claims in :mod:`fimtheory.claims` turn them into
signed margins. The remainder constants come from the generated module
(:mod:`fimtheory._generated.series`), derived in ``symbolic/``.

SIGN's high-precision fallback (:func:`sign_bounds`): it recomputes A's own eigen-data with
mpmath at 40, 80 and then 160 digits; an attempt is accepted only when its own a-posteriori
estimate (:func:`_sign_bounds_error` with β = ‖AV − VΛ‖_F + ‖A‖‖VᵀV − I‖_F + n·10⁻ᵈᵖˢ·‖A‖ and
unit 10⁻ᵈᵖˢ) meets the contract for both bounds, and :class:`HypothesesNotMet` is raised when
even 160 digits do not. Because it works from A alone, eigen-data ``eig`` that are not A's
(whose large backward error the float64 estimate sees) still give A's bounds there, up to A's
gaps that 160 digits resolve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fimtheory._generated import series as _series
from fimtheory.errors import HypothesesNotMet, InputError
from fimtheory.spectral import (
    HIGH_PRECISION_MAX_N,
    EigenData,
    backward_error,
    eigen_data,
    off_top_residual_norm_sq,
    perturbation_coefficients,
)
from fimtheory.validation import (
    EPS64,
    as_psd,
    as_symmetric,
    as_vector,
    check_finite_scalar,
    check_positive_int,
    check_same_shape,
    power_of_two_scale,
)


def _pair(A, E):
    a = as_psd(A, "A")
    e = as_symmetric(E, "E")
    check_same_shape(a, e)
    with np.errstate(over="ignore"):
        if not np.all(np.isfinite(a + e)):
            raise InputError("A + E overflows float64; rescale A and E")
    return a, e


def weyl_bounds(A, E) -> tuple[float, float]:
    """Weyl: λ_max(A) + λ_min(E) ≤ λ_max(A+E) ≤ λ_max(A) + λ_max(E). Returns (lower, upper)."""
    a, e = _pair(A, E)
    la = np.linalg.eigvalsh(a)[-1]
    we = np.linalg.eigvalsh(e)
    return float(la + we[0]), float(la + we[-1])


def weyl_index_margins(A, E) -> np.ndarray:
    """Margins λ_i(A) + λ_j(E) − λ_{i+j−1}(A+E) for all i + j − 1 ≤ n (all must be ≥ 0).

    Returns the (n, n) array with NaN where i + j − 1 > n; indices are 1-based in the math,
    0-based here: entry [i, j] is the margin for λ_{i+1}(A), λ_{j+1}(E), λ_{i+j+1}(A+E).
    """
    a, e = _pair(A, E)
    n = a.shape[0]
    la = np.linalg.eigvalsh(a)[::-1]
    le = np.linalg.eigvalsh(e)[::-1]
    ls = np.linalg.eigvalsh(a + e)[::-1]
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    k = i + j
    out = np.full((n, n), np.nan)
    ok = k < n
    out[ok] = la[i[ok]] + le[j[ok]] - ls[k[ok]]
    return out


#: Multiple of n·eps·‖A‖₂ below which a Rayleigh-quotient deficit λ1 − vᵀAv of a unit vector
#: is rounding (the same multiple as :meth:`fimtheory.spectral.EigenData.gap_resolved`).
TOP_VECTOR_TOLERANCE_FACTOR = 16.0


def top_vector_tolerance(eig: EigenData) -> float:
    """Rayleigh deficit accepted for a top eigenvector: 16·n·eps·max(|λ1|, |λn|, tiny).

    ``tiny`` is the smallest normal float64 (2⁻¹⁰²²): the floor keeps the tolerance at 16·n units
    of the smallest subnormal or more, above the absolute rounding of vᵀAv for a subnormal A, so
    that A's own computed top eigenvector is accepted at every scale (for the zero matrix the
    tolerance is 16·n·eps·tiny, not 0).
    """
    n = eig.eigenvalues.shape[0]
    scale = max(abs(eig.lambda_max), abs(eig.lambda_min), np.finfo(float).tiny)
    return TOP_VECTOR_TOLERANCE_FACTOR * n * EPS64 * scale


def directional_lower_bound(A, E, v=None) -> float:
    """R: λ_max(A+E) ≥ λ1 + vᵀEv for every unit top eigenvector v of A.

    With ``v`` omitted, the computed top eigenvector is used; a given ``v`` is normalised and
    must be a top eigenvector: its Rayleigh deficit λ1 − vᵀAv (≥ 0 for any unit v, and the
    exact amount by which λ1 + vᵀEv can exceed the valid bound vᵀ(A+E)v) must not exceed
    :func:`top_vector_tolerance`, 16·n·eps·‖A‖₂. By ‖(A − λ1)v‖² ≥ γ(λ1 − vᵀAv) this admits
    any v whose residual ‖Av − λ1v‖ is below √(16·n·eps·‖A‖₂·γ). The returned value then
    exceeds λ_max(A+E) by at most that tolerance plus rounding.

    Raises
    ------
    HypothesesNotMet
        ``v`` is not a top eigenvector of A within that tolerance.
    """
    a, e = _pair(A, E)
    eig = eigen_data(a)
    if v is None:
        v = eig.top_vector
    else:
        v = as_vector(v, "v")
        if v.shape[0] != a.shape[0]:
            raise InputError(f"v has length {v.shape[0]}, expected {a.shape[0]}")
        norm = np.linalg.norm(v / np.max(np.abs(v))) * np.max(np.abs(v)) if np.any(v) else 0.0
        if norm == 0.0:
            raise InputError("v must be a nonzero vector")
        v = v / norm
        deficit = float(eig.lambda_max - v @ a @ v)
        tol = top_vector_tolerance(eig)
        if abs(deficit) > tol:
            resid = float(np.linalg.norm(a @ v - eig.lambda_max * v))
            raise HypothesesNotMet(
                f"v is not a top eigenvector of A: Rayleigh deficit λ1 − vᵀAv = {deficit:.3g} exceeds "
                f"{tol:.3g} (16·n·eps·‖A‖), residual ‖Av − λ1v‖ = {resid:.3g}; R needs a unit top eigenvector"
            )
    return float(eig.lambda_max + v @ e @ v)


@dataclass(frozen=True)
class RemainderBounds:
    """Explicit remainders of the λ_max series (docs/theory.md §2, S2), valid when 2η < γ.

    Attributes
    ----------
    eta : ‖E‖₂.  gap : γ = λ1 − λ2.
    first : bound on |λ_max(A+E) − λ1 − a1|, 2η²/(γ − 2η).
    second : bound on |λ_max(A+E) − λ1 − a1 − a2|, 4η³/(γ(γ − 2η)).
    """

    eta: float
    gap: float
    first: float
    second: float


def remainder_bounds(eta: float, gap: float) -> RemainderBounds:
    """S2 bounds for ‖E‖₂ = eta and gap γ; raise :class:`HypothesesNotMet` unless 2η < γ."""
    eta = check_finite_scalar(eta, "eta", nonnegative=True)
    gap = check_finite_scalar(gap, "gap", nonnegative=True)
    if not 2.0 * eta < gap:
        raise HypothesesNotMet(f"S2 needs 2η < γ; got η = {eta:.6g}, γ = {gap:.6g}")
    return RemainderBounds(
        eta,
        gap,
        float(_series.remainder_bound_first(eta, gap)),
        float(_series.remainder_bound_second(eta, gap)),
    )


def coefficient_bounds(eta: float, gap: float, order: int = 4) -> np.ndarray:
    """Cauchy estimates |a_k| ≤ η (2η/γ)^{k−1}, k = 1..order (need γ > 0)."""
    eta = check_finite_scalar(eta, "eta", nonnegative=True)
    gap = check_finite_scalar(gap, "gap", positive=True)
    order = check_positive_int(order, "order")
    return np.array([_series.coefficient_bound(k, eta, gap) for k in range(1, order + 1)], float)


def _require_simple_top(eig: EigenData, what: str) -> None:
    n = eig.eigenvalues.shape[0]
    if n < 2 or not eig.gap_resolved():
        raise HypothesesNotMet(
            f"{what} needs a simple top eigenvalue (γ > 0): γ = {eig.gap:.3g} is not above "
            f"the float64 resolution 16·n·eps·‖A‖ (n = {n}); the top eigenvalue may be repeated"
        )


def _sign_bounds_error(n, beta, lam1, lam2, lamn, r2, eta, unit):
    """Estimated errors of (lower, upper) from the backward error β of the eigen-data: the top
    vector is off by sin θ ≲ β/(γ − 2β) (Davis–Kahan), so u = P⊥Ev moves by ≲ 3ηθ + n·unit·η,
    ‖u‖² by 2‖u‖δu + δu², and each denominator by 2β."""
    gap, spread = lam1 - lam2, lam1 - lamn
    if not gap > 4 * beta:
        return float("inf"), float("inf")
    theta = beta / (gap - 2 * beta)
    du = 3 * eta * theta + n * unit * eta
    dr2 = 2 * r2**0.5 * du + du * du
    # r2·2β/((d − 2β)·d) as (r2/d)·(2β/(d − 2β)): the product of two denominators underflows
    # to 0 for ‖A‖ ≲ 1e-154, each factor here is in range wherever the bound itself is.
    err_hi = dr2 / (gap - 2 * beta) + r2 / gap * (2 * beta / (gap - 2 * beta))
    err_lo = dr2 / (spread - 2 * beta) + r2 / spread * (2 * beta / (spread - 2 * beta))
    return err_lo, err_hi


def sign_bounds(A, E, eig: EigenData | None = None, *, rtol: float = 1e-8) -> tuple[float, float]:
    """SIGN: ‖P⊥Ev‖²/(λ1 − λ_min) ≤ a2 ≤ ‖P⊥Ev‖²/γ. Returns (lower, upper).

    Needs γ > 0 resolved in float64 (:meth:`~fimtheory.spectral.EigenData.gap_resolved`,
    γ > 16·n·eps·‖A‖): below that the top eigenvalue may be repeated and a2 does not exist.
    ``eig``, when given, must be ``eigen_data(A)``.

    Accuracy: each bound b is returned with |b − b_exact| ≤ rtol·(|b| + eps·η²/d) (d its
    denominator, η = ‖E‖₂), by an a-posteriori estimate from the backward error of the eigen-data
    (the top vector's error is ≲ β/γ); when float64 cannot deliver that (small γ), the bounds are
    recomputed with mpmath (n ≤ :data:`fimtheory.spectral.HIGH_PRECISION_MAX_N`, else
    :class:`HypothesesNotMet`). The estimate and the test against the allowance are homogeneous of
    degree 2 in E and are evaluated for E/c, c a power of two with max|E/c| in [0.5, 1) (exact:
    the same decisions wherever nothing over- or underflows): η² may exceed float64 while the
    bounds do not.
    """
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float, np.floating)) or not 4 * EPS64 <= rtol < 1:
        raise InputError(f"rtol must be a number in [4·eps, 1), got {rtol!r}")
    a, e = _pair(A, E)
    eig = eig or eigen_data(a)
    if eig.eigenvalues.shape[0] != a.shape[0]:
        raise InputError(f"eig has {eig.eigenvalues.shape[0]} eigenvalues, A is {a.shape[0]}×{a.shape[0]}")
    _require_simple_top(eig, "SIGN")
    n = a.shape[0]
    r2 = off_top_residual_norm_sq(eig, e)
    lam1, lam2, lamn = eig.lambda_max, float(eig.eigenvalues[1]), eig.lambda_min
    lo, hi = _series.sign_bounds(lam1, lam2, lamn, r2)
    w_e = np.linalg.eigvalsh(e)
    c = power_of_two_scale(e)  # the estimate and its test at the scale of E/c (see the docstring)
    eta = float(max(abs(w_e[0]), abs(w_e[-1]))) / c
    err_lo, err_hi = _sign_bounds_error(n, backward_error(a, eig), lam1, lam2, lamn, r2 / c / c, eta, EPS64)

    def ok(lo_, hi_, elo, ehi, gap, spread):
        lo_, hi_ = lo_ / c / c, hi_ / c / c
        return elo <= rtol * (abs(lo_) + EPS64 * eta**2 / spread) and ehi <= rtol * (abs(hi_) + EPS64 * eta**2 / gap)

    if ok(lo, hi, err_lo, err_hi, lam1 - lam2, lam1 - lamn):
        return float(lo), float(hi)
    if n > HIGH_PRECISION_MAX_N:
        raise HypothesesNotMet(
            f"SIGN bounds: float64 error estimate {float(err_hi) * c * c:.3g} exceeds rtol {rtol:g} of {hi:.6g} "
            f"(γ = {eig.gap:.3g}); the high-precision fallback is limited to n ≤ {HIGH_PRECISION_MAX_N}"
        )
    import mpmath

    from fimtheory.highprec import mp_eigh, mp_matrix, working_precision

    for dps in (40, 80, 160):
        with working_precision(dps):
            am, em = mp_matrix(a), mp_matrix(e)
            mp_eig = mp_eigh(am, dps)
            V = mp_eig.eigenvectors
            lam = mp_eig.eigenvalues
            unit = mpmath.mpf(10) ** (-dps)
            norm_a = max(abs(lam[0]), abs(lam[-1]))
            beta = (
                mpmath.mnorm(am * V - V * mpmath.diag(lam), "f")
                + norm_a * mpmath.mnorm(V.T * V - mpmath.eye(n), "f")
                + n * unit * norm_a
            )
            v = mp_eig.vector(0)
            ev = em * v
            u = ev - v * (v.T * ev)[0, 0]
            r2m = (u.T * u)[0, 0]
            elo, ehi = _sign_bounds_error(n, beta, lam[0], lam[1], lam[-1], r2m / c / c, mpmath.mpf(eta), unit)
            if not ehi < float("inf"):  # γ ≤ 4β at this precision (λ1 repeated?): no bounds to form
                continue
            lo_m, hi_m = _series.sign_bounds(lam[0], lam[1], lam[-1], r2m)
            if ok(float(lo_m), float(hi_m), float(elo), float(ehi), float(lam[0] - lam[1]), float(lam[0] - lam[-1])):
                return float(lo_m), float(hi_m)
    raise HypothesesNotMet(f"SIGN bounds: not accurate to rtol {rtol:g} even at 160 digits (γ = {eig.gap:.3g})")


def second_coefficient(A, E, *, rtol: float = 1e-8) -> float:
    """a2 of λ_max(A+tE), from the generated series (convenience for SIGN).

    Same accuracy contract and errors as :func:`fimtheory.spectral.perturbation_coefficients`
    (a2 to relative accuracy ``rtol``, in high precision when float64 cannot deliver it);
    raises :class:`HypothesesNotMet` when γ is not resolved (the coefficient does not exist).
    """
    a, e = _pair(A, E)
    _require_simple_top(eigen_data(a), "a2")
    return float(perturbation_coefficients(a, e, 2, rtol=rtol)[1][1])
