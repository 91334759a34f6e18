"""Eigen-data of symmetric matrices and the perturbation series of λ_max(A + tE).

The series coefficients come from :mod:`fimtheory._generated.series`, the module that
``python -m symbolic.generate`` writes from the sympy derivation (Rayleigh–Schrödinger).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fimtheory._generated import series as _series
from fimtheory.errors import HypothesesNotMet, InputError
from fimtheory.validation import (
    EPS64,
    as_matrix,
    as_psd,
    as_symmetric,
    as_vector,
    check_finite_scalar,
    check_same_shape,
)


@dataclass(frozen=True)
class EigenData:
    """Spectrum of a symmetric matrix in descending order.

    Attributes
    ----------
    eigenvalues : (n,) ndarray, λ1 ≥ λ2 ≥ … ≥ λn.
    eigenvectors : (n, n) ndarray, column j is the unit eigenvector of eigenvalues[j].
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def lambda_min(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def top_vector(self) -> np.ndarray:
        return self.eigenvectors[:, 0]

    @property
    def gap(self) -> float:
        """γ = λ1 − λ2 (0 for a 1×1 matrix would be meaningless; there it is +inf)."""
        if self.eigenvalues.shape[0] < 2:
            return float("inf")
        return float(self.eigenvalues[0] - self.eigenvalues[1])

    def gap_resolved(self) -> bool:
        """Whether γ exceeds the backward error of the eigen-solver (≈ n·eps·‖A‖).

        Below that, float64 cannot tell a simple top eigenvalue from a repeated one.
        """
        n = self.eigenvalues.shape[0]
        scale = max(abs(self.lambda_max), abs(self.lambda_min), np.finfo(float).tiny)
        return self.gap > 16.0 * n * EPS64 * scale


def eigen_data(A, name: str = "A") -> EigenData:
    """Eigenvalues (descending) and eigenvectors of a symmetric matrix."""
    a = as_symmetric(A, name)
    w, V = np.linalg.eigh(a)
    return EigenData(w[::-1].copy(), V[:, ::-1].copy())


def lambda_max(A, name: str = "A") -> float:
    """Largest eigenvalue of a symmetric matrix."""
    return float(np.linalg.eigvalsh(as_symmetric(A, name))[-1])


def _perturbation_for(eig: EigenData, E) -> np.ndarray:
    e = as_symmetric(E, "E")
    n = eig.eigenvalues.shape[0]
    if e.shape != (n, n):
        raise InputError(f"E must have the shape of A, ({n}, {n}), got {e.shape}")
    return e


def perturbation_in_eigenbasis(eig: EigenData, E) -> np.ndarray:
    """M = VᵀEV: the matrix elements E_jk = v_jᵀ E v_k of a perturbation (E finite, symmetric)."""
    E = _perturbation_for(eig, E)
    M = eig.eigenvectors.T @ E @ eig.eigenvectors
    return 0.5 * (M + M.T)


#: Largest n for which :func:`perturbation_coefficients` falls back to mpmath (O(n³) at
#: 50+ digits: about 0.3 s for n = 19, 2 s for n = 40, 20 s for n = 80).
HIGH_PRECISION_MAX_N = 64
_MAX_DPS = 400


@dataclass(frozen=True)
class SeriesCoefficients:
    """λ1 and the series coefficients of λ_max(A + tE), each with an a-posteriori error estimate.

    Attributes
    ----------
    lambda1 : float
        λ_max(A), rounded to float64 from the working precision.
    coefficients : (order,) ndarray
        [a1, …, a_order].
    error_estimates : (order,) ndarray
        Estimated |computed − exact| of each coefficient at the working precision (before the
        final rounding to float64, which adds at most half an ulp).
    natural_scales : (order,) ndarray
        C_k = η(2η/γ)^{k−1}, the Cauchy bound on |a_k| (the size a_k has unless it cancels).
    dps : int or None
        None when float64 sufficed, else the mpmath decimal precision that was used.
    """

    lambda1: float
    coefficients: np.ndarray
    error_estimates: np.ndarray
    natural_scales: np.ndarray
    dps: int | None


def _power(x, m: int):
    """x**m for x ≥ 0 (float or mpf); a float power beyond float64 is inf, not OverflowError."""
    try:
        return x**m
    except OverflowError:
        return float("inf")


def _coefficient_error_estimates(n, order, beta, gap, eta, eps_e, unit):
    """A-posteriori error estimates of a_1..a_order (see :func:`series_coefficients_with_errors`).

    ``beta``: backward error of the eigen-data of A (‖ΔA‖₂ with the computed data exact for
    A + ΔA); ``gap``: computed γ; ``eta``: ‖E‖₂; ``eps_e``: backward error of M = VᵀEV as a
    perturbation of E; ``unit``: unit roundoff of the working precision. Works on floats and
    mpf. Returns (errors, natural scales), errors = inf where the estimate does not apply.
    """
    gap_lo = gap - 2 * beta  # |λ̂_j − λ_j| ≤ β (Weyl) for both ends of the gap
    errs, scales = [], []
    for k in range(1, order + 1):
        if eta == 0:
            errs.append(0 * unit)
            scales.append(0 * unit)
            continue
        if not gap_lo > 2 * (k + 1) * beta:
            errs.append(float("inf"))
            scales.append(eta * _power(2 * eta / gap, k - 1))
            continue
        c_k = eta * _power(2 * eta / gap_lo, k - 1)
        # f(s, t) = λ_max(A + sD + tE), ‖D‖ = 1, is analytic with |f − λ1| ≤ |s| + |t|η on
        # |s| + |t|η < γ/2; Cauchy in t and Schwarz in s (radii (1−x)γ/2, xγ/(2η),
        # x = k/(k+1)) give |a_k(A + ΔA) − a_k(A)| ≤ (k+1)(1+1/k)^k (4β/γ) C_k.
        err_a = (k + 1) * (1 + 1 / k) ** k * (4 * beta / gap_lo) * c_k
        # a_k is homogeneous of degree k in E: Schwarz in E + zD, |z| < η/k.
        err_e = 2 * math.e * k * c_k * eps_e / eta
        # rounding in the series formulas themselves (≤ 2^{k−1} terms, each ≤ η^k/γ^{k−1}).
        err_r = 4 * n * math.sqrt(n) * unit * c_k
        errs.append(err_a + err_e + err_r)
        scales.append(c_k)
    return errs, scales


def _accepted(coeffs, errs, scales, rtol) -> bool:
    """Whether every error estimate is finite and meets the contract rtol·(|a_k| + eps·C_k).

    The bound is formed in Python floats as rtol·|a_k| + rtol·eps·C_k: each term is finite
    (rtol < 1, C_k finite) and a sum beyond float64 is +inf, above any finite estimate, not a
    warning. An infinite or nan estimate is never accepted.
    """
    r, u = float(rtol), float(EPS64)
    return all(
        math.isfinite(float(err)) and float(err) <= r * abs(float(a)) + r * u * float(c)
        for a, err, c in zip(coeffs, errs, scales)
    )


def _check_scales_representable(scales, eta: float, gap: float) -> None:
    """InputError where a natural scale C_k is beyond float64: the contract cannot be stated there."""
    for k, c in enumerate(scales, start=1):
        if not math.isfinite(float(c)):
            raise InputError(
                f"the natural scale C_{k} = η(2η/γ)^{k - 1} of a{k} is not representable in float64 "
                f"(η = ‖E‖₂ = {eta:.3g}, γ = {gap:.3g}), so the accuracy of a{k} cannot be stated; "
                f"rescale E (a_k(sE) = s^k·a_k(E)) or ask for order < {k}"
            )


def backward_error(A, eig: EigenData) -> float:
    """β with the computed eigen-data exact for some A + ΔA, ‖ΔA‖₂ ≲ β (an a-posteriori estimate):
    ‖AV − VΛ‖_F + ‖A‖₂‖VᵀV − I‖_F + n·eps·‖A‖₂ (the last term covers rounding in the residual)."""
    a = as_matrix(A, "A", square=True)
    V, lam = eig.eigenvectors, eig.eigenvalues
    n = lam.shape[0]
    if a.shape != (n, n):
        raise InputError(f"A must have the shape of the eigen-data, ({n}, {n}), got {a.shape}")
    norm_a = max(abs(eig.lambda_max), abs(eig.lambda_min))
    nonorth = V.T @ V - np.eye(n)
    return float(np.linalg.norm(a @ V - V * lam) + norm_a * np.linalg.norm(nonorth) + n * EPS64 * norm_a)


def _float_attempt(a, e, eig: EigenData, order: int):
    n = a.shape[0]
    V, lam = eig.eigenvectors, eig.eigenvalues
    nonorth = V.T @ V - np.eye(n)
    beta = backward_error(a, eig)
    w_e = np.linalg.eigvalsh(e)
    eta = float(max(abs(w_e[0]), abs(w_e[-1])))
    absV = np.abs(V)
    # ‖E‖₂ near the largest float: M, ε_E and the coefficients overflow to inf (inf·0 = nan in
    # ε_E); the caller checks the coefficients with isfinite and _accepted refuses inf and nan
    # estimates, so such input goes to high precision (or is refused) without warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        eps_e = float(
            2 * n * EPS64 * np.max(np.sum(absV.T @ np.abs(e) @ absV, axis=1)) + 2 * eta * np.linalg.norm(nonorth)
        )
        M = perturbation_in_eigenbasis(eig, e)
        coeffs = np.asarray(_series.series_coefficients(lam, M, order), dtype=float)
    errs, scales = _coefficient_error_estimates(n, order, beta, eig.gap, eta, eps_e, EPS64)
    return coeffs, np.array(errs, float), np.array(scales, float), eta


def _mp_attempt(a, e, order: int, dps: int, eta: float):
    import mpmath

    from fimtheory.highprec import mp_eigh, mp_matrix, working_precision

    n = a.shape[0]
    with working_precision(dps):
        am, em = mp_matrix(a), mp_matrix(e)
        eig = mp_eigh(am, dps)
        V = eig.eigenvectors
        lam = eig.eigenvalues
        norm_a = max(abs(lam[0]), abs(lam[-1]))
        D = mpmath.diag(lam)
        residual = am * V - V * D
        nonorth = V.T * V - mpmath.eye(n)
        unit = mpmath.mpf(10) ** (-dps)
        beta = mpmath.mnorm(residual, "f") + norm_a * mpmath.mnorm(nonorth, "f") + n * unit * norm_a
        Mm = V.T * em * V
        Mo = np.empty((n, n), dtype=object)
        for i in range(n):
            for j in range(n):
                Mo[i, j] = (Mm[i, j] + Mm[j, i]) / 2
        eta_mp = mpmath.mpf(eta) * (1 + mpmath.mpf(2) ** -40)  # float ‖E‖₂, padded
        eps_e = 2 * n * unit * eta_mp * n + 2 * eta_mp * mpmath.mnorm(nonorth, "f")
        coeffs = list(_series.series_coefficients(np.array(lam, dtype=object), Mo, order))
        errs, scales = _coefficient_error_estimates(n, order, beta, lam[0] - lam[1], eta_mp, eps_e, unit)
        out = (
            float(lam[0]),
            np.array([float(c) for c in coeffs]),
            np.array([float(x) for x in errs]),
            np.array([float(x) for x in scales]),
        )
    return out


def series_coefficients_with_errors(A, E, order: int = 3, *, rtol: float = 1e-8) -> SeriesCoefficients:
    """Coefficients of λ_max(A + tE) = λ1 + Σ_k a_k t^k with an a-posteriori accuracy guarantee.

    Accuracy contract: every returned a_k satisfies (up to the quality of the estimate below)

        |a_k(returned) − a_k(exact)| ≤ rtol·(|a_k| + eps·C_k),    C_k = η(2η/γ)^{k−1},

    with η = ‖E‖₂, γ = λ1 − λ2 and eps = 2⁻⁵² (C_k is the Cauchy bound on |a_k|, so the
    absolute term only matters for coefficients that cancel below float64 resolution of
    their natural size). The error of the float64 route is estimated from the backward error
    β = ‖AV − VΛ‖_F + ‖A‖‖VᵀV − I‖_F + n·eps·‖A‖ of the computed eigen-data, propagated
    through the series by Cauchy/Schwarz estimates of the analytic map (A, E) ↦ a_k:
    |δa_k| ≲ (k+1)(1+1/k)^k (4β/γ) C_k, plus the rounding of M = VᵀEV and of the formulas.
    When that estimate exceeds the contract (small gaps, cancelling coefficients) the
    coefficients are recomputed with :func:`fimtheory.highprec.mp_eigh` and the generated
    series on mpmath numbers, at a precision chosen from the estimate and checked again.

    Raises
    ------
    HypothesesNotMet
        The top eigenvalue is not simple within float64 resolution (no series), or the
        contract needs high precision and n > :data:`HIGH_PRECISION_MAX_N`, or even
        high precision cannot meet it.
    InputError
        Malformed A or E (see :func:`perturbation_coefficients`), a bad ``rtol``, or a
        coefficient or natural scale C_k (k ≤ order) that is not representable in float64
        (the contract cannot be stated there; a_k(sE) = s^k·a_k(E), so rescale E).
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= order <= 4:
        raise InputError(f"order must be an integer in 1..4, got {order!r}")
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float, np.floating)) or not 4 * EPS64 <= rtol < 1:
        raise InputError(f"rtol must be a number in [4·eps, 1), got {rtol!r}")
    order = int(order)
    a = as_psd(A, "A")
    e = as_symmetric(E, "E")
    check_same_shape(a, e)
    eig = eigen_data(a)
    n = a.shape[0]
    if n > 1 and not eig.gap_resolved():
        raise HypothesesNotMet(
            f"the top eigenvalue of A is not simple: gap {eig.gap:.3g} is below float64 "
            f"resolution; the perturbation series needs γ > 0"
        )
    if n == 1:  # λ(A + tE) = A + tE exactly
        coeffs = np.array([e[0, 0]] + [0.0] * (order - 1))
        return SeriesCoefficients(eig.lambda_max, coeffs, np.zeros(order), np.abs(coeffs), None)
    coeffs, errs, scales, eta = _float_attempt(a, e, eig, order)
    _check_scales_representable(scales, eta, eig.gap)
    if np.all(np.isfinite(coeffs)) and _accepted(coeffs, errs, scales, rtol):
        return SeriesCoefficients(eig.lambda_max, coeffs, errs, scales, None)
    with np.errstate(over="ignore", invalid="ignore"):  # inf/inf estimates (overflowing C_k) give nan
        worst = int(np.argmax(errs / np.maximum(rtol * (np.abs(coeffs) + EPS64 * scales), np.finfo(float).tiny)))
        ratio = float(np.max(np.where(scales > 0, errs / np.maximum(EPS64 * scales, np.finfo(float).tiny), 0.0)))
    why = (
        f"float64 cannot deliver a{worst + 1} to rtol {rtol:g}: estimated error {errs[worst]:.3g} "
        f"for a value {coeffs[worst]:.6g} (γ = {eig.gap:.3g}, "
        f"‖A‖ = {max(abs(eig.lambda_max), abs(eig.lambda_min)):.3g})"
    )
    if n > HIGH_PRECISION_MAX_N:
        raise HypothesesNotMet(
            f"{why}; the high-precision fallback is limited to n ≤ {HIGH_PRECISION_MAX_N}, got n = {n}"
        )
    # Errors scale with the unit roundoff: choose digits so that even the absolute floor is met.
    need = 16 + (math.log10(ratio) if np.isfinite(ratio) and ratio > 1 else 16.0)
    dps = int(min(_MAX_DPS, max(30, math.ceil(need - math.log10(rtol) + 10))))
    while True:
        lam1, mcoeffs, merrs, mscales = _mp_attempt(a, e, order, dps, eta)
        _check_scales_representable(mscales, eta, eig.gap)
        if not np.all(np.isfinite(mcoeffs)):
            raise InputError(f"a series coefficient of λ_max(A + tE) is not representable in float64: {mcoeffs}")
        if _accepted(mcoeffs, merrs, mscales, rtol):
            return SeriesCoefficients(lam1, mcoeffs, merrs, mscales, dps)
        if dps >= _MAX_DPS:
            raise HypothesesNotMet(f"{why}; not met at {dps} digits either (estimated errors {merrs.tolist()})")
        dps = min(_MAX_DPS, 2 * dps)


def perturbation_coefficients(A, E, order: int = 3, *, rtol: float = 1e-8) -> tuple[float, np.ndarray]:
    """Taylor coefficients of λ_max(A + tE) = λ1 + t a1 + t² a2 + t³ a3 + …

    Parameters
    ----------
    A : (n, n) array_like
        Symmetric positive semidefinite; its top eigenvalue must be simple (γ > 0
        resolved in float64, :meth:`EigenData.gap_resolved`).
    E : (n, n) array_like
        Symmetric perturbation.
    order : int, 1..4
        Number of coefficients returned.
    rtol : float, keyword-only
        Relative accuracy of every coefficient (see the contract below), in [4·eps, 1).

    Returns
    -------
    lambda1 : float
        λ_max(A).
    coefficients : (order,) ndarray
        [a1, …, a_order] from the symbolic derivation (module fimtheory._generated.series).

    Accuracy
    --------
    |a_k(returned) − a_k| ≤ rtol·(|a_k| + eps·η(2η/γ)^{k−1}) by an a-posteriori estimate;
    computed in float64 when its estimated error allows, else in mpmath at the precision the
    estimate asks for. :func:`series_coefficients_with_errors` returns the estimates.

    Raises
    ------
    HypothesesNotMet
        When the top eigenvalue of A is repeated within rounding (the series does not exist),
        or the accuracy contract cannot be met (see :func:`series_coefficients_with_errors`).
    InputError
        Malformed A or E (not square, not symmetric, A not PSD, shapes differ, NaN/inf), an
        ``order`` outside 1..4 or a bad ``rtol``; or E whose coefficient scale overflows: a
        coefficient a_k or its natural scale C_k = η(2η/γ)^{k−1} (k ≤ order) not representable in
        float64, where the contract cannot be stated — rescale E (a_k(sE) = s^k·a_k(E)) or ask
        for a lower order.
    """
    res = series_coefficients_with_errors(A, E, order, rtol=rtol)
    return res.lambda1, res.coefficients


def series_value(lambda1: float, coefficients, t: float = 1.0) -> float:
    """Truncated series λ1 + Σ_k a_k t^k; :class:`InputError` on non-finite input or overflow."""
    lambda1 = check_finite_scalar(lambda1, "lambda1")
    t = check_finite_scalar(t, "t")
    c = as_vector(coefficients, "coefficients")
    with np.errstate(over="ignore", invalid="ignore"):
        powers = t ** np.arange(1, c.shape[0] + 1)
        value = float(lambda1 + np.dot(c, powers))
    if not np.isfinite(value):
        raise InputError(f"the truncated series at t = {t!r} overflows float64")
    return value


def off_top_residual_norm_sq(eig: EigenData, E) -> float:
    """‖P⊥Ev‖² with v the top eigenvector: the quantity whose vanishing makes a2 = 0."""
    v = eig.top_vector
    Ev = _perturbation_for(eig, E) @ v
    r = Ev - v * (v @ Ev)
    c = float(np.max(np.abs(r))) or 1.0  # ‖r‖² = c²‖r/c‖²: no overflow or underflow in the sum
    value = c * c * float((r / c) @ (r / c))
    if not np.isfinite(value):
        raise InputError("‖P⊥Ev‖² overflows float64; rescale E")
    return value
