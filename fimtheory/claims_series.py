"""The series family: the perturbation series of λ_max(A + tE) (S), its remainders (S2) and
the sign of its second coefficient (SIGN).

Each claim with its hypotheses (and their float margins near the boundary), its float64 and
high-precision evaluators and its weakenings, declared through :mod:`fimtheory.claim_api`;
the coefficients come from the generated series (:mod:`fimtheory._generated.series`); the
rigorous enclosures are :data:`fimtheory.enclosures.ENCLOSURES` under the same ids. The sharp
remainders (S3, S3L) and S's weakening S-no-disc live in :mod:`fimtheory.claims_sharp`.
"""

from __future__ import annotations

import mpmath
import numpy as np

from fimtheory import bounds, spectral
from fimtheory._generated import series as _series
from fimtheory.adjudication import ADJUDICATION_RTOL
from fimtheory.claim_api import Outcome, declare_claim, declare_weakening
from fimtheory.claim_api import outcome as _outcome
from fimtheory.claim_support import (
    TINY,
    _gap_eta_margins,
    _gap_margins_of_A,
    _hypothesis_scale,
    _mp_coefficients,
    _mp_sym_norm,
    _norm2,
    _resolved,
)
from fimtheory.highprec import mp_eigh, mp_matrix, working_precision
from fimtheory.instances import MatrixPerturbation
from fimtheory.validation import EPS64

_S = "properties.claim_strategies:"


def _series_setup(inst: MatrixPerturbation):
    eig = spectral.eigen_data(inst.A)
    if inst.n < 2:
        return None, "n = 1: no gap"
    if not eig.gap_resolved():
        return None, "γ = 0 (top eigenvalue repeated within rounding)"
    eta = _norm2(inst.E)
    if not 2 * eta < eig.gap:
        return None, f"needs 2η < γ (η = {eta:.3g}, γ = {eig.gap:.3g})"
    return (eig, eta), ""


def _distinct_gap_eta_margins(inst: MatrixPerturbation) -> dict:
    w = np.linalg.eigvalsh(inst.A)[::-1]
    distinct = w[w < w[0]]
    if distinct.size == 0:
        return {}
    eta = _norm2(inst.E)
    return {"2η < (distinct) gap": (float(w[0] - distinct[0]) - 2 * eta) / _hypothesis_scale(w[::-1], eta)}


# --------------------------------------------------------------------------------------
# S — the series and its Cauchy estimates
# --------------------------------------------------------------------------------------


def _series_order() -> int:
    """Highest order the generated series provides (4 once a4 is derived, else 3)."""
    try:
        return min(4, len(_series.series_coefficients(np.array([2.0, 1.0]), np.eye(2), 4)))
    except (ValueError, IndexError):
        return 3


def _series_claim(inst: MatrixPerturbation) -> Outcome:
    setup, why = _series_setup(inst)
    if setup is None:
        return Outcome.not_met(why)
    eig, eta = setup
    order = _series_order()
    M = spectral.perturbation_in_eigenbasis(eig, inst.E)
    a = _series.series_coefficients(eig.eigenvalues, M, order)
    cb = [_series.coefficient_bound(k, eta, eig.gap) for k in range(1, order + 1)]
    margins = [(b - abs(x)) / max(b, TINY) for x, b in zip(a, cb)]
    top = spectral.lambda_max(inst.A + inst.E)
    ratio = 2 * eta / eig.gap
    tail = _series.coefficient_bound(order + 1, eta, eig.gap) / (1 - ratio)
    resid = abs(top - eig.lambda_max - float(np.sum(a)))
    margins.append((tail - resid) / max(tail, TINY))
    m = min(margins)
    ok = _resolved(tail, abs(eig.lambda_max) + eta, inst.n, factor=1e7)
    # Each a_k carries a relative error ~n·eps·‖A‖/γ whatever its size, so a coefficient bound
    # clearly violated is resolved even when the tail bound is below float resolution.
    coef = min(margins[:-1])
    if not ok and coef < -ADJUDICATION_RTOL and 1e4 * inst.n * EPS64 * max(abs(eig.lambda_max), TINY) < eig.gap:
        m, ok = coef, True
    return _outcome(m, ok, order=order, tail_bound=tail, residual=resid)


def _series_claim_mp(inst, dps):
    order = _series_order()
    with working_precision(dps):
        A, E = mp_matrix(inst.A), mp_matrix(inst.E)
        eig = mp_eigh(A, dps, vectors=True)
        eta = _mp_sym_norm(E)
        a = _mp_coefficients(eig, E, order)
        cb = [_series.coefficient_bound(k, eta, eig.gap) for k in range(1, order + 1)]
        ms = [(b - abs(x)) / b for x, b in zip(a, cb)]
        top = mp_eigh(A + E, dps).lambda_max
        tail = _series.coefficient_bound(order + 1, eta, eig.gap) / (1 - 2 * eta / eig.gap)
        ms.append((tail - abs(top - eig.lambda_max - sum(a))) / tail)
        return min(ms)


S = declare_claim(
    "S",
    title="series: |a_k| ≤ η(2η/γ)^{k−1} and the third-order remainder ≤ 8η⁴/(γ²(γ−2η))",
    statement="For γ > 0 and 2η < γ, the generated coefficients a_k of λ_max(A+tE) satisfy the "
    "Cauchy estimates |a_k| ≤ η(2η/γ)^{k−1}, and |λ_max(A+E) − λ1 − Σ_{k≤K} a_k| ≤ "
    "η(2η/γ)^K / (1 − 2η/γ) for the highest generated order K.",
    hypotheses=("A symmetric PSD", "E symmetric", "γ > 0", "2η < γ"),
    evaluate=_series_claim,
    evaluate_mp=_series_claim_mp,
    hypothesis_margins=_gap_eta_margins,
    strategy=_S + "S",
    paper_label="series (S)",
)


# --------------------------------------------------------------------------------------
# S2 — first- and second-order remainders
# --------------------------------------------------------------------------------------


def _s2(inst: MatrixPerturbation) -> Outcome:
    setup, why = _series_setup(inst)
    if setup is None:
        return Outcome.not_met(why)
    eig, eta = setup
    rb = bounds.remainder_bounds(eta, eig.gap)
    M = spectral.perturbation_in_eigenbasis(eig, inst.E)
    a1, a2 = _series.series_coefficients(eig.eigenvalues, M, 2)
    top = spectral.lambda_max(inst.A + inst.E)
    r1 = abs(top - eig.lambda_max - a1)
    r2 = abs(top - eig.lambda_max - a1 - a2)
    m1 = (rb.first - r1) / max(rb.first, TINY)
    m = min(m1, (rb.second - r2) / max(rb.second, TINY))
    scale = abs(eig.lambda_max) + eta
    ok = _resolved(rb.second, scale, inst.n, factor=1e7)
    if not ok and m1 < -ADJUDICATION_RTOL and _resolved(rb.first, scale, inst.n, factor=1e7):
        # The second remainder is below float resolution, but the first is resolved and clearly
        # violated: the claim's margin is ≤ m1 < 0 whatever the second part is.
        m, ok = m1, True
    return _outcome(m, ok, first_ratio=r1 / max(rb.first, TINY), second_ratio=r2 / max(rb.second, TINY))


def _s2_mp(inst, dps):
    with working_precision(dps):
        A, E = mp_matrix(inst.A), mp_matrix(inst.E)
        eig = mp_eigh(A, dps, vectors=True)
        eta = _mp_sym_norm(E)
        a1, a2 = _mp_coefficients(eig, E, 2)
        top = mp_eigh(A + E, dps).lambda_max
        b1 = _series.remainder_bound_first(eta, eig.gap)
        b2 = _series.remainder_bound_second(eta, eig.gap)
        return min((b1 - abs(top - eig.lambda_max - a1)) / b1, (b2 - abs(top - eig.lambda_max - a1 - a2)) / b2)


def _s2_repeated_top(inst: MatrixPerturbation) -> Outcome:
    """Weakening: S2's first-order bound with λ1 repeated, γ taken to the next *distinct*
    eigenvalue and a1 = vᵀEv for a chosen top eigenvector v (drops γ > 0)."""
    if inst.v is None:
        return Outcome.not_met("this weakening needs a chosen top eigenvector v")
    w = np.linalg.eigvalsh(inst.A)[::-1]
    distinct = w[w < w[0]]
    if distinct.size == 0:
        return Outcome.not_met("A has a single distinct eigenvalue")
    gap = float(w[0] - distinct[0])
    eta = _norm2(inst.E)
    if not 2 * eta < gap:
        return Outcome.not_met("needs 2η < (distinct) gap")
    v = inst.v / np.linalg.norm(inst.v)
    b1 = float(_series.remainder_bound_first(eta, gap))
    r1 = abs(spectral.lambda_max(inst.A + inst.E) - w[0] - float(v @ inst.E @ v))
    return _outcome((b1 - r1) / max(b1, TINY), _resolved(b1, abs(w[0]) + eta, inst.n, factor=1e7))


def _s2_repeated_top_mp(inst, dps):
    with working_precision(dps):
        A, E = mp_matrix(inst.A), mp_matrix(inst.E)
        eig = mp_eigh(A, dps)
        lam = eig.eigenvalues
        # The chosen v and the distinct gap are those of the float instance (exact inputs).
        w = np.linalg.eigvalsh(inst.A)[::-1]
        k = int(np.argmax(w < w[0]))
        gap = lam[0] - lam[k]
        eta = _mp_sym_norm(E)
        v = mp_matrix(inst.v.reshape(-1, 1))
        e11 = (v.T * E * v)[0, 0] / (v.T * v)[0, 0]
        b1 = _series.remainder_bound_first(eta, gap)
        top = mp_eigh(A + E, dps).lambda_max
        return (b1 - abs(top - lam[0] - e11)) / b1


S2 = declare_claim(
    "S2",
    title="remainders: |λ'−λ1−a1| ≤ 2η²/(γ−2η), |λ'−λ1−a1−a2| ≤ 4η³/(γ(γ−2η))",
    statement="For symmetric PSD A with γ > 0, symmetric E with η = ‖E‖₂ < γ/2, λ' = λ_max(A+E).",
    hypotheses=("A symmetric PSD", "E symmetric", "γ > 0", "2η < γ"),
    evaluate=_s2,
    evaluate_mp=_s2_mp,
    hypothesis_margins=_gap_eta_margins,
    strategy=_S + "S2",
    paper_label="S2",
    weakenings=(
        declare_weakening(
            "S2-repeated-top",
            title="first-order S2 bound when λ1 is repeated "
            "(γ to the next distinct eigenvalue, a1 = vᵀEv for a chosen top v)",
            dropped="γ > 0",
            evaluate=_s2_repeated_top,
            evaluate_mp=_s2_repeated_top_mp,
            hypothesis_margins=_distinct_gap_eta_margins,
            strategy=_S + "S2-repeated-top",
        ),
    ),
)


# --------------------------------------------------------------------------------------
# SIGN — a2 ≥ 0 and its two-sided bounds
# --------------------------------------------------------------------------------------


def _sign(inst: MatrixPerturbation) -> Outcome:
    eig = spectral.eigen_data(inst.A)
    if inst.n < 2 or not eig.gap_resolved():
        return Outcome.not_met("γ = 0 (top eigenvalue repeated within rounding)")
    lo, hi = bounds.sign_bounds(inst.A, inst.E, eig)
    M = spectral.perturbation_in_eigenbasis(eig, inst.E)
    a2 = float(_series.series_coefficients(eig.eigenvalues, M, 2)[1])
    # Relative to η²/γ, the natural size of a2 (hi ≤ η²/γ always). Dividing by hi itself
    # would turn an exact zero (P⊥Ev = 0, e.g. E = I) into noise/noise ≈ ±1.
    scale = max(_norm2(inst.E) ** 2 / eig.gap, TINY)
    m = min(a2 - lo, hi - a2) / scale
    return _outcome(m, _resolved(hi, scale, inst.n), a2=a2, lower=lo, upper=hi)


def _mp_a2_and_residual(inst, dps):
    """(mp eigen-data of A, a2, ‖P⊥Ev‖²) at the current working precision."""
    A, E = mp_matrix(inst.A), mp_matrix(inst.E)
    eig = mp_eigh(A, dps, vectors=True)
    a2 = _mp_coefficients(eig, E, 2)[1]
    v = eig.vector(0)
    Ev = E * v
    r = Ev - v * (v.T * Ev)[0, 0]
    return eig, a2, (r.T * r)[0, 0]


def _sign_mp(inst, dps):
    with working_precision(dps):
        eig, a2, r2 = _mp_a2_and_residual(inst, dps)
        lo, hi = _series.sign_bounds(eig.eigenvalues[0], eig.eigenvalues[1], eig.eigenvalues[-1], r2)
        scale = _mp_sym_norm(mp_matrix(inst.E)) ** 2 / eig.gap
        if scale == 0:
            return mpmath.mpf(0) if a2 == 0 else -abs(a2)
        return min(a2 - lo, hi - a2) / scale


def _sign_lambda1_denominator(inst: MatrixPerturbation) -> Outcome:
    """Weakening: a2 ≥ ‖P⊥Ev‖²/λ1 for symmetric A that need not be PSD (drops A ⪰ 0, which is
    what lets λ1 − λ_min ≤ λ1)."""
    eig = spectral.eigen_data(inst.A)
    if inst.n < 2 or not eig.gap_resolved() or eig.lambda_max <= 0:
        return Outcome.not_met("needs γ > 0 and λ1 > 0")
    r2 = spectral.off_top_residual_norm_sq(eig, inst.E)
    M = spectral.perturbation_in_eigenbasis(eig, inst.E)
    a2 = float(_series.series_coefficients(eig.eigenvalues, M, 2)[1])
    hi = r2 / eig.gap
    ok = _resolved(hi, _norm2(inst.E) ** 2 / eig.gap, inst.n, factor=1e7)
    return _outcome((a2 - r2 / eig.lambda_max) / max(hi, TINY), ok)


def _sign_lambda1_denominator_mp(inst, dps):
    with working_precision(dps):
        eig, a2, r2 = _mp_a2_and_residual(inst, dps)
        hi = r2 / eig.gap
        return (a2 - r2 / eig.lambda_max) / hi if hi else mpmath.mpf(0)


SIGN = declare_claim(
    "SIGN",
    title="a2 ≥ 0: ‖P⊥Ev‖²/(λ1−λ_min) ≤ a2 ≤ ‖P⊥Ev‖²/γ",
    statement="For symmetric PSD A with γ > 0 and symmetric E, the second-order coefficient a2 of "
    "λ_max(A+tE) lies between ‖P⊥Ev‖²/(λ1−λ_min) and ‖P⊥Ev‖²/γ.",
    hypotheses=("A symmetric PSD", "E symmetric", "γ > 0"),
    evaluate=_sign,
    evaluate_mp=_sign_mp,
    hypothesis_margins=_gap_margins_of_A,
    strategy=_S + "SIGN",
    paper_label="SIGN",
    weakenings=(
        declare_weakening(
            "SIGN-lambda1-denominator",
            title="a2 ≥ ‖P⊥Ev‖²/λ1 for symmetric A not PSD",
            dropped="A ⪰ 0",
            evaluate=_sign_lambda1_denominator,
            evaluate_mp=_sign_lambda1_denominator_mp,
            hypothesis_margins=_gap_margins_of_A,
            strategy=_S + "SIGN-lambda1-denominator",
        ),
    ),
)


def claims() -> list:
    """The family's claims, in registry order."""
    return [S, S2, SIGN]
