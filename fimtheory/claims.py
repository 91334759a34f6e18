"""The claim registry: every result of docs/theory.md as an object that can be checked per instance.

A :class:`Claim` states its hypotheses and conclusion. ``evaluate(instance)`` returns an
:class:`Outcome`: whether the instance meets the hypotheses (if not, it is never counted as
verified) and a *relative* signed margin of the conclusion (≥ 0 holds; > 0 for strict
claims), plus whether float64 cannot settle the sign (``needs_adjudication``). Then
``evaluate_mp(instance, dps)`` recomputes the margin from the exact float inputs at ``dps``
digits, and :func:`adjudicate` raises the precision until successive values agree; a
counterexample needs more: a rigorous interval enclosure of the margin below zero
(:mod:`fimtheory.enclosures`, or the claim's own ``evaluate_iv``).

Each claim also lists its :class:`Weakening` s — the statement with a hypothesis dropped or
the conclusion strengthened — which the counterexample search must falsify.

Instances are drawn by Hypothesis strategies named in ``strategy`` (resolved by the
``properties`` package; fimtheory never imports it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import mpmath
import numpy as np

from fimtheory import approx, bounds, spectral
from fimtheory._generated import series as _series
from fimtheory.adjudication import (
    ADJUDICATION_GUARD_DIGITS,
    ADJUDICATION_MAX_DPS,
    ADJUDICATION_MAX_START_DPS,
    ADJUDICATION_RTOL,
    HYPOTHESIS_BAND,
    REFERENCE_DISAGREEMENT,
    VERDICTS,
    Adjudication,
    ReferenceDisagreement,
    adjudicate,
    disagrees,
    start_dps,
)
from fimtheory.departure import elevation_margins, profiles
from fimtheory.errors import UnknownIdError
from fimtheory.highprec import mp_eigh, mp_matrix, working_precision
from fimtheory.instances import (
    DepartureInstance,
    MatrixPerturbation,
    NoiseEnsemble,
    ParameterEnsemble,
    PartitionInstance,
    ScoreInstance,
)
from fimtheory.monitor import ThresholdPartition
from fimtheory.validation import EPS64

TINY = np.finfo(float).tiny


@dataclass(frozen=True)
class Outcome:
    """Result of evaluating a claim (or weakening) on one instance in float64.

    Attributes
    ----------
    hypotheses_met : bool
    reason : str — the hypothesis that failed, when not met.
    margin : float — relative signed margin of the conclusion (dimensionless).
    needs_adjudication : bool — the margin is to be re-decided at high precision (it is near
        or below zero, or float64 cannot resolve it at all).
    details : dict — named intermediate quantities (all floats), for reports.
    float_resolved : bool — float64 resolves this margin to well within ADJUDICATION_RTOL, so a
        float margin below −ADJUDICATION_RTOL that the high-precision reference calls "holds"
        is a disagreement between the implementation and the reference (an error), not a
        rounding effect.
    hypothesis_margins : dict — name → float margin (> 0 when met, relative to n × the scale of
        its terms) of each hypothesis whose boundary float64 can approach (2η < γ, γ > 0,
        ḡ ≠ 0); an entry at or below HYPOTHESIS_BAND marks the instance for adjudication, which
        re-decides the hypothesis in interval arithmetic.
    """

    hypotheses_met: bool
    margin: float = float("nan")
    needs_adjudication: bool = False
    reason: str = ""
    details: dict = field(default_factory=dict)
    float_resolved: bool = True
    hypothesis_margins: dict = field(default_factory=dict)

    @staticmethod
    def not_met(reason: str, **details) -> Outcome:
        return Outcome(False, float("nan"), False, reason, details)


def _outcome(margin: float, scale_ok: bool = True, **details) -> Outcome:
    adj = (not scale_ok) or not (margin > ADJUDICATION_RTOL)
    return Outcome(True, float(margin), adj, "", details, float_resolved=scale_ok)


@dataclass(frozen=True)
class Weakening:
    """A claim with a hypothesis dropped or its conclusion strengthened: must be falsifiable."""

    id: str
    title: str
    dropped: str
    evaluate: Callable[[object], Outcome]
    evaluate_mp: Callable[[object, int], object]
    strategy: str
    strict: bool = False
    #: Optional rigorous evaluator (instance, dps) -> (lo, hi) enclosing the exact margin;
    #: when None, :data:`fimtheory.enclosures.ENCLOSURES` is used (by id).
    evaluate_iv: Callable[[object, int], tuple] | None = None


@dataclass(frozen=True)
class Claim:
    """A checked result. See module docstring for the protocol."""

    id: str
    title: str
    statement: str
    hypotheses: tuple
    evaluate: Callable[[object], Outcome]
    evaluate_mp: Callable[[object, int], object] | None
    strategy: str
    paper_label: str = ""
    strict: bool = False
    weakenings: tuple = ()
    note: str = ""
    #: Optional rigorous evaluator (instance, dps) -> (lo, hi) enclosing the exact margin;
    #: when None, :data:`fimtheory.enclosures.ENCLOSURES` is used (by id).
    evaluate_iv: Callable[[object, int], tuple] | None = None

    def holds(self, margin) -> bool:
        return margin > 0 if self.strict else margin >= 0

    def weakening(self, wid: str) -> Weakening:
        for w in self.weakenings:
            if w.id == wid:
                return w
        known = ", ".join(w.id for w in self.weakenings) or "none"
        raise UnknownIdError(f"claim {self.id} has no weakening {wid!r}; known: {known}")

    def describe(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "paper_label": self.paper_label,
            "statement": self.statement,
            "hypotheses": list(self.hypotheses),
            "strict": self.strict,
            "weakenings": [{"id": w.id, "title": w.title, "dropped": w.dropped} for w in self.weakenings],
            "note": self.note,
        }


# --------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------


def _norm2(a: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvalsh(a)))) if a.size else 0.0


def _mp_sym_norm(m) -> mpmath.mpf:
    e = mp_eigh(m, mpmath.mp.dps)
    return max(abs(e.eigenvalues[0]), abs(e.eigenvalues[-1]))


def _mp_coefficients(eig, E_mp, order: int):
    """a1..a_order at mp precision, through the generated series on object arrays."""
    V = eig.eigenvectors
    M = V.T * E_mp * V
    n = M.rows
    Mo = np.empty((n, n), dtype=object)
    for i in range(n):
        for j in range(n):
            Mo[i, j] = (M[i, j] + M[j, i]) / 2
    lam = np.array(eig.eigenvalues, dtype=object)
    return list(_series.series_coefficients(lam, Mo, order))


def _resolved(value: float, scale: float, n: int, factor: float = 1e4) -> bool:
    """Whether a float64 quantity of size ``value`` stands above rounding noise at ``scale``:
    |value| > factor·n·eps·scale. A margin *divided by* ``value`` carries a float error of about
    n·eps·scale/|value| (measured ≤ 1.4× that), so margins normalised by a bound pass
    ``factor=1e7``: resolved then means accurate to ~1e-7, within ADJUDICATION_RTOL."""
    return abs(value) > factor * n * EPS64 * max(scale, TINY)


def _rel(x, scale):
    return x / scale if scale > 0 else x


# --------------------------------------------------------------------------------------
# W — Weyl
# --------------------------------------------------------------------------------------


def _weyl(inst: MatrixPerturbation) -> Outcome:
    A, E = inst.A, inst.E
    scale = _norm2(A) + _norm2(E)
    idx = bounds.weyl_index_margins(A, E)
    lo, hi = bounds.weyl_bounds(A, E)
    top = spectral.lambda_max(A + E)
    m = min(top - lo, hi - top, float(np.nanmin(idx)))
    return _outcome(_rel(m, scale), lower_margin=top - lo, upper_margin=hi - top)


def _weyl_mp(inst: MatrixPerturbation, dps: int):
    with working_precision(dps):
        la = mp_eigh(inst.A, dps).eigenvalues
        le = mp_eigh(inst.E, dps).eigenvalues
        ls = mp_eigh(mp_matrix(inst.A) + mp_matrix(inst.E), dps).eigenvalues
        n = len(la)
        ms = [la[i] + le[j] - ls[i + j] for i in range(n) for j in range(n) if i + j < n]
        ms.append(ls[0] - la[0] - le[-1])
        scale = max(abs(la[0]), abs(la[-1])) + max(abs(le[0]), abs(le[-1]))
        return _rel(min(ms), scale)


def _weyl_no_lambda_min(inst: MatrixPerturbation) -> Outcome:
    """Weakening: λ_max(A+E) ≥ λ_max(A) for any symmetric E (drops the λ_min(E) term)."""
    top = spectral.lambda_max(inst.A + inst.E)
    la = spectral.lambda_max(inst.A)
    scale = _norm2(inst.A) + _norm2(inst.E)
    return _outcome(_rel(top - la, scale))


def _weyl_no_lambda_min_mp(inst, dps):
    with working_precision(dps):
        top = mp_eigh(mp_matrix(inst.A) + mp_matrix(inst.E), dps).lambda_max
        la = mp_eigh(inst.A, dps).lambda_max
        scale = abs(la) + _mp_sym_norm(mp_matrix(inst.E))
        return _rel(top - la, scale)


# --------------------------------------------------------------------------------------
# R — directional (Rayleigh) bound; T4.3a is R on FIMs perturbed by quantization
# --------------------------------------------------------------------------------------


def _top_vector_check(inst: MatrixPerturbation):
    eig = spectral.eigen_data(inst.A)
    if inst.v is None:
        return eig, eig.top_vector, ""
    v = inst.v / np.linalg.norm(inst.v)
    resid = np.linalg.norm(inst.A @ v - eig.lambda_max * v)
    if resid > 64 * inst.n * EPS64 * max(abs(eig.lambda_max), TINY):
        return eig, v, f"v is not a top eigenvector of A (residual {resid:.3g})"
    return eig, v, ""


def _directional(inst: MatrixPerturbation) -> Outcome:
    eig, v, why = _top_vector_check(inst)
    if why:
        return Outcome.not_met(why)
    top = spectral.lambda_max(inst.A + inst.E)
    e11 = float(v @ inst.E @ v)
    if inst.v is None:
        # The claim is for *every* unit top eigenvector. When λ1 is repeated within rounding
        # the computed v is one arbitrary member of the top eigenspace, so the worst one is
        # checked: min over unit v in span(V_c) of vᵀEv = λ_min(V_cᵀ E V_c).
        tol = 16.0 * inst.n * EPS64 * max(abs(eig.lambda_max), abs(eig.lambda_min), TINY)
        k = int(np.count_nonzero(eig.eigenvalues >= eig.lambda_max - tol))
        if k > 1:
            Vc = eig.eigenvectors[:, :k]
            e11 = float(np.linalg.eigvalsh(Vc.T @ inst.E @ Vc)[0])
    scale = abs(eig.lambda_max) + _norm2(inst.E)
    return _outcome(_rel(top - eig.lambda_max - e11, scale), e11=e11)


def _directional_mp(inst: MatrixPerturbation, dps: int):
    # For a given v the claim is the Rayleigh inequality λ_max(A+E) ≥ vᵀ(A+E)v/vᵀv (equal to
    # λ1 + E_11 when v is an exact top eigenvector), which is what we adjudicate.
    with working_precision(dps):
        A, E = mp_matrix(inst.A), mp_matrix(inst.E)
        top = mp_eigh(A + E, dps).lambda_max
        eig = mp_eigh(A, dps)
        if inst.v is None:
            # The same top cluster as the float evaluation (its size from the float spectrum):
            # min of the Rayleigh quotient of A+E over its span, λ_min(UᵀEU) + λ1 when the
            # cluster is an exact eigenspace and ≤ λ_max(A+E) always (no false violation).
            w = spectral.eigen_data(inst.A).eigenvalues
            tol = 16.0 * inst.n * EPS64 * max(abs(w[0]), abs(w[-1]), TINY)
            k = int(np.count_nonzero(w >= w[0] - tol))
            v = eig.vector(0)
            rq = eig.lambda_max + (v.T * E * v)[0, 0]
            if k > 1:
                U = eig.eigenvectors[:, :k]
                C = U.T * (A + E) * U
                rq = mp_eigh((C + C.T) / 2, dps).eigenvalues[-1]
        else:
            v = mp_matrix(inst.v.reshape(-1, 1))
            rq = (v.T * (A + E) * v)[0, 0] / (v.T * v)[0, 0]
        scale = abs(eig.lambda_max) + _mp_sym_norm(E)
        return _rel(top - rq, scale)


def _directional_any_vector(inst: MatrixPerturbation) -> Outcome:
    """Weakening: λ_max(A+E) ≥ λ1 + vᵀEv for *any* unit v (drops "v is a top eigenvector")."""
    if inst.v is None:
        return Outcome.not_met("this weakening needs a vector v")
    v = inst.v / np.linalg.norm(inst.v)
    top = spectral.lambda_max(inst.A + inst.E)
    la = spectral.lambda_max(inst.A)
    scale = abs(la) + _norm2(inst.E)
    return _outcome(_rel(top - la - float(v @ inst.E @ v), scale))


def _directional_any_vector_mp(inst, dps):
    with working_precision(dps):
        A, E = mp_matrix(inst.A), mp_matrix(inst.E)
        v = mp_matrix(inst.v.reshape(-1, 1))
        top = mp_eigh(A + E, dps).lambda_max
        la = mp_eigh(A, dps).lambda_max
        scale = abs(la) + _mp_sym_norm(E)
        return _rel(top - la - (v.T * E * v)[0, 0] / (v.T * v)[0, 0], scale)


def _quant_directional(inst: MatrixPerturbation) -> Outcome:
    eig = spectral.eigen_data(inst.A)
    if inst.n > 1 and not eig.gap_resolved():
        return Outcome.not_met("γ = 0 (top eigenvalue of F repeated within rounding)")
    return _directional(inst)


def _per_draw_third_order(inst: MatrixPerturbation) -> Outcome:
    """Weakening of T4.3: per draw, λ_max(F+E) ≥ λ_max(F) − 4η³/(γ(γ−2η))."""
    eig = spectral.eigen_data(inst.A)
    eta = _norm2(inst.E)
    if not 2 * eta < eig.gap:
        return Outcome.not_met("needs 2η < γ")
    top = spectral.lambda_max(inst.A + inst.E)
    rem = float(_series.remainder_bound_second(eta, eig.gap))
    return _outcome(_rel(top - eig.lambda_max + rem, abs(eig.lambda_max) + eta), eta=eta)


def _per_draw_third_order_mp(inst, dps):
    with working_precision(dps):
        A, E = mp_matrix(inst.A), mp_matrix(inst.E)
        eig = mp_eigh(A, dps)
        eta = _mp_sym_norm(E)
        top = mp_eigh(A + E, dps).lambda_max
        rem = _series.remainder_bound_second(eta, eig.gap)
        return _rel(top - eig.lambda_max + rem, abs(eig.lambda_max) + eta)


# --------------------------------------------------------------------------------------
# S, S2, SIGN — the series, its remainders, the sign of a2
# --------------------------------------------------------------------------------------


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


# Float margins of the hypotheses whose boundary float64 can approach (Outcome.hypothesis_margins):
# each is > 0 when met, relative to n × the scale of its terms, so a value ≤ HYPOTHESIS_BAND
# is within rounding reach of the boundary and the instance is re-decided in interval
# arithmetic by the adjudicator.


def _hypothesis_scale(w: np.ndarray, eta: float = 0.0) -> float:
    return w.shape[0] * max(abs(float(w[0])), abs(float(w[-1])), TINY) + w.shape[0] * eta


def _gap_margins(A: np.ndarray) -> dict:
    w = np.linalg.eigvalsh(A)
    if w.shape[0] < 2:
        return {}
    return {"γ > 0": float(w[-1] - w[-2]) / _hypothesis_scale(w)}


def _gap_eta_margins(inst: MatrixPerturbation) -> dict:
    w = np.linalg.eigvalsh(inst.A)
    if inst.n < 2:
        return {}
    eta = _norm2(inst.E)
    gap = float(w[-1] - w[-2])
    scale = _hypothesis_scale(w, eta)
    return {"γ > 0": gap / scale, "2η < γ": (gap - 2 * eta) / scale}


def _distinct_gap_eta_margins(inst: MatrixPerturbation) -> dict:
    w = np.linalg.eigvalsh(inst.A)[::-1]
    distinct = w[w < w[0]]
    if distinct.size == 0:
        return {}
    eta = _norm2(inst.E)
    return {"2η < (distinct) gap": (float(w[0] - distinct[0]) - 2 * eta) / _hypothesis_scale(w[::-1], eta)}


def _mean_score_nonzero(inst: ScoreInstance):
    """ḡ ≠ 0, decided exactly in float: math.fsum is correctly rounded, so a column sum is 0
    in float exactly when it is 0 in exact arithmetic."""
    if not any(math.fsum(col) != 0.0 for col in np.asarray(inst.G, dtype=float).T):
        return Outcome.not_met("ḡ = 0 in exact arithmetic (the float mean is rounding noise)")
    return {}


_HYPOTHESIS_MARGINS = {
    "S": _gap_eta_margins,
    "S2": _gap_eta_margins,
    "S2-repeated-top": _distinct_gap_eta_margins,
    "SIGN": lambda inst: _gap_margins(inst.A),
    "SIGN-lambda1-denominator": lambda inst: _gap_margins(inst.A),
    "T4.3a": lambda inst: _gap_margins(inst.A),
    "T4.3a-per-draw": _gap_eta_margins,
    "T4.3c": lambda inst: _gap_margins(inst.F),
    "T4.3c-no-genericity": lambda inst: _gap_margins(inst.F),
    "AH": _mean_score_nonzero,
    "AH-accurate": _mean_score_nonzero,
}


def _with_hypothesis_margins(evaluate, margins_of):
    """Wrap a float evaluator: attach the hypothesis margins to a met Outcome and mark it for
    adjudication when one lies within HYPOTHESIS_BAND of its boundary (or return the exact
    'not met' that ``margins_of`` may decide)."""

    def run(inst):
        out = evaluate(inst)
        if not out.hypotheses_met:
            return out
        margins = margins_of(inst)
        if isinstance(margins, Outcome):
            return margins
        near = any(not v > HYPOTHESIS_BAND for v in margins.values())
        return replace(out, hypothesis_margins=margins, needs_adjudication=out.needs_adjudication or near)

    run.__name__ = getattr(evaluate, "__name__", "evaluate")
    run.__doc__ = getattr(evaluate, "__doc__", None)
    run.__wrapped__ = evaluate
    return run


def _attach_hypothesis_margins(subject):
    margins_of = _HYPOTHESIS_MARGINS.get(subject.id)
    if margins_of is not None:
        subject = replace(subject, evaluate=_with_hypothesis_margins(subject.evaluate, margins_of))
    if isinstance(subject, Claim) and subject.weakenings:
        subject = replace(subject, weakenings=tuple(_attach_hypothesis_margins(w) for w in subject.weakenings))
    return subject


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
        eig = mp_eigh(A, dps)
        eta = _mp_sym_norm(E)
        a = _mp_coefficients(eig, E, order)
        cb = [_series.coefficient_bound(k, eta, eig.gap) for k in range(1, order + 1)]
        ms = [(b - abs(x)) / b for x, b in zip(a, cb)]
        top = mp_eigh(A + E, dps).lambda_max
        tail = _series.coefficient_bound(order + 1, eta, eig.gap) / (1 - 2 * eta / eig.gap)
        ms.append((tail - abs(top - eig.lambda_max - sum(a))) / tail)
        return min(ms)


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
        eig = mp_eigh(A, dps)
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
    eig = mp_eigh(A, dps)
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


# --------------------------------------------------------------------------------------
# T4.3 (b, c) — expectation over a finite zero-mean noise ensemble
# --------------------------------------------------------------------------------------


def _ensemble_stats(F: np.ndarray, Es: list[np.ndarray]):
    eig = spectral.eigen_data(F)
    tops = np.array([spectral.lambda_max(F + E) for E in Es])
    etas = np.array([_norm2(E) for E in Es])
    a2s = []
    for E in Es:
        M = spectral.perturbation_in_eigenbasis(eig, E)
        a2s.append(float(_series.series_coefficients(eig.eigenvalues, M, 2)[1]))
    return eig, tops, etas, np.array(a2s)


def _t43b(inst: NoiseEnsemble) -> Outcome:
    if not inst.exact_mean_is_zero():
        return Outcome.not_met("the noise ensemble's mean is not exactly zero")
    Es = inst.scaled()
    eig = spectral.eigen_data(inst.F)
    tops = np.array([spectral.lambda_max(inst.F + E) for E in Es])
    etas = np.array([_norm2(E) for E in Es])
    scale = abs(eig.lambda_max) + float(etas.max())
    jensen = float(np.mean(tops) - eig.lambda_max)
    margins = {"jensen": jensen / scale}
    eta_bar = float(etas.max())
    if inst.F.shape[0] > 1 and eig.gap_resolved() and 2 * eta_bar < eig.gap:
        _, _, _, a2s = _ensemble_stats(inst.F, Es)
        lower = eig.lambda_max + a2s.mean() - 4 * np.mean(etas**3) / (eig.gap * (eig.gap - 2 * eta_bar))
        margins["second_order"] = float(np.mean(tops) - lower) / scale
    m = min(margins.values())
    return _outcome(m, _resolved(jensen if jensen else TINY, scale, inst.F.shape[0]), **margins)


def _t43b_mp(inst: NoiseEnsemble, dps):
    with working_precision(dps):
        F = mp_matrix(inst.F)
        Es = [mp_matrix(E) for E in inst.scaled()]
        eig = mp_eigh(F, dps)
        tops = [mp_eigh(F + E, dps).lambda_max for E in Es]
        etas = [_mp_sym_norm(E) for E in Es]
        mean_top = sum(tops) / len(tops)
        scale = abs(eig.lambda_max) + max(etas)
        ms = [(mean_top - eig.lambda_max) / scale]
        eta_bar = max(etas)
        if F.rows > 1 and eig.gap > 0 and 2 * eta_bar < eig.gap:
            a2 = sum(_mp_coefficients(eig, E, 2)[1] for E in Es) / len(Es)
            lower = (
                eig.lambda_max + a2 - 4 * (sum(e**3 for e in etas) / len(etas)) / (eig.gap * (eig.gap - 2 * eta_bar))
            )
            ms.append((mean_top - lower) / scale)
        return min(ms)


def _nonzero_mean_jensen(inst: NoiseEnsemble) -> Outcome:
    """Weakening of T4.3(b): E λ_max(F+E) ≥ λ_max(F) without E[E] = 0."""
    Es = inst.scaled()
    eig = spectral.eigen_data(inst.F)
    tops = np.array([spectral.lambda_max(inst.F + E) for E in Es])
    scale = abs(eig.lambda_max) + max(_norm2(E) for E in Es)
    return _outcome(float(np.mean(tops) - eig.lambda_max) / scale)


def _nonzero_mean_jensen_mp(inst, dps):
    with working_precision(dps):
        F = mp_matrix(inst.F)
        Es = [mp_matrix(E) for E in inst.scaled()]
        eig = mp_eigh(F, dps)
        tops = [mp_eigh(F + E, dps).lambda_max for E in Es]
        scale = abs(eig.lambda_max) + max(_mp_sym_norm(E) for E in Es)
        return (sum(tops) / len(tops) - eig.lambda_max) / scale


def critical_scale(lambda_gap: float, mean_a2: float, mean_eta3: float, eta_bar: float) -> float:
    """s_c such that s²E[a2] − 4s³E[η³]/(γ(γ − 2sη̄)) > 0 for all 0 < s < s_c (T4.3c).

    Solving the inequality gives s_c = E[a2]γ² / (2E[a2]γη̄ + 4E[η³]); it never exceeds γ/(2η̄).
    """
    return mean_a2 * lambda_gap**2 / (2 * mean_a2 * lambda_gap * eta_bar + 4 * mean_eta3)


def _generic(eig, Es) -> bool:
    v = eig.top_vector
    for E in Es:
        Ev = E @ v
        r = Ev - v * (v @ Ev)
        if _resolved(float(np.linalg.norm(r)), _norm2(E), E.shape[0]):
            return True
    return False


def _t43c_core(inst: NoiseEnsemble, require_generic: bool) -> Outcome:
    if not inst.exact_mean_is_zero():
        return Outcome.not_met("the noise ensemble's mean is not exactly zero")
    Es = inst.scaled()
    eig = spectral.eigen_data(inst.F)
    if inst.F.shape[0] < 2 or not eig.gap_resolved():
        return Outcome.not_met("γ = 0 (top eigenvalue of F repeated within rounding)")
    if require_generic and not _generic(eig, Es):
        return Outcome.not_met("genericity fails: P⊥Ev = 0 for every draw")
    _, _, etas, a2s = _ensemble_stats(inst.F, Es)
    ea2, eeta3, eta_bar = float(a2s.mean()), float(np.mean(etas**3)), float(etas.max())
    if ea2 > 0:
        s = 0.5 * critical_scale(eig.gap, ea2, eeta3, eta_bar)
    else:
        # Non-generic: no positive leading term; test at a scale inside the analytic disc.
        s = 0.25 * eig.gap / max(eta_bar, TINY)
    tops = np.array([spectral.lambda_max(inst.F + s * E) for E in Es])
    scale = abs(eig.lambda_max)
    m = float(np.mean(tops) - eig.lambda_max) / max(scale, TINY)
    predicted = s * s * ea2
    ok = _resolved(predicted, scale, inst.F.shape[0])
    # The margin is tiny by construction (s = s_c/2), so the generic 1e-6 band would send
    # every instance to mpmath. Each λ_max comes from a backward-stable symmetric solver
    # (error ≤ c·n·eps·‖matrix‖), so a margin above that bound (c = 128, two eigenvalues) has a
    # certain sign; only margins within it are adjudicated.
    n = inst.F.shape[0]
    rounding = 128 * n * EPS64 * (scale + s * eta_bar) / max(scale, TINY)
    needs = (not ok) or not (m > rounding)
    details = {"s": s, "predicted_elevation": predicted, "mean_a2": ea2, "rounding_bound": rounding}
    return Outcome(True, m, needs, "", details, float_resolved=ok)


def _t43c_mp(inst: NoiseEnsemble, dps, require_generic=True):
    out = _t43c_core(inst, require_generic)
    s = mpmath.mpf(out.details["s"])
    with working_precision(dps):
        F = mp_matrix(inst.F)
        Es = [mp_matrix(s * E) for E in inst.scaled()]
        lam = mp_eigh(F, dps).lambda_max
        tops = [mp_eigh(F + E, dps).lambda_max for E in Es]
        return (sum(tops) / len(tops) - lam) / abs(lam)


# --------------------------------------------------------------------------------------
# T4.3d — the parameter level (docs/theory.md §3(d)): restored with model labels
# --------------------------------------------------------------------------------------


def _param_fims(inst: ParameterEnsemble) -> tuple[np.ndarray, list[np.ndarray]]:
    from fimtheory import models

    if inst.labels == "model":
        base = models.model_label_fim(inst.model, inst.X, inst.theta, inst.theta)
        pert = [models.model_label_fim(inst.model, inst.X, inst.theta, inst.theta + d) for d in inst.deltas]
    else:
        base = models.fim(inst.model, inst.X, inst.y, inst.theta)
        pert = [models.fim(inst.model, inst.X, inst.y, inst.theta + d) for d in inst.deltas]
    return base, pert


def _t43d(inst: ParameterEnsemble) -> Outcome:
    """T4.3d: with labels from the model's predictive at θ, λ_max(F_π(θ+δ)) ≥ λ_max(F_π(θ)) for
    every δ (per draw, no remainder): F_π(θ+δ) − F_π(θ) = (1/n)Σ(Δμ_i⊗x_i)(Δμ_i⊗x_i)ᵀ ⪰ 0."""
    if inst.labels != "model":
        return Outcome.not_met("labels are not the model's predictive at θ")
    base, pert = _param_fims(inst)
    lam = spectral.lambda_max(base)
    if lam <= 0:
        return Outcome.not_met("F_π(θ) = 0")
    m = min(spectral.lambda_max(F) - lam for F in pert) / lam
    return _outcome(m, True, lambda1=lam)


def _mp_param_lambdas(inst: ParameterEnsemble, dps: int):
    from fimtheory import models

    n = inst.X.shape[0]

    def fim_mp(theta_eval):
        if inst.labels == "empirical":
            G = models.mp_scores(inst.model, inst.X, inst.y, theta_eval)
            return G.T * G / n
        pi = models.mp_predictive(inst.model, inst.X, inst.theta)
        F = None
        for c in range(len(pi[0])):
            yc = np.full(n, c, dtype=int) if inst.model == "softmax" else np.full(n, float(c))
            G = models.mp_scores(inst.model, inst.X, yc, theta_eval)
            for i in range(n):
                for j in range(G.cols):
                    G[i, j] *= mpmath.sqrt(pi[i][c])
            term = G.T * G / n
            F = term if F is None else F + term
        return F

    with working_precision(dps):
        lam = mp_eigh(fim_mp(inst.theta), dps).lambda_max
        tops = [mp_eigh(fim_mp(inst.theta + d), dps).lambda_max for d in inst.deltas]
        return lam, tops


def _t43d_mp(inst: ParameterEnsemble, dps: int):
    lam, tops = _mp_param_lambdas(inst, dps)
    with working_precision(dps):  # at the working precision, not mpmath's default 15 digits
        return min(t - lam for t in tops) / lam


def _t43d_empirical(inst: ParameterEnsemble) -> Outcome:
    """Weakening: E_δ λ_max(F(θ+δ)) ≥ λ_max(F(θ)) for exactly zero-mean δ with the observed
    labels (drops the model-label hypothesis; docs/theory.md §3(d))."""
    if inst.labels != "empirical":
        return Outcome.not_met("this weakening is about the empirical-label FIM")
    if not inst.exact_mean_is_zero():
        return Outcome.not_met("the δ ensemble's mean is not exactly zero")
    base, pert = _param_fims(inst)
    lam = spectral.lambda_max(base)
    if lam <= 0:
        return Outcome.not_met("F(θ) = 0")
    m = (float(np.mean([spectral.lambda_max(F) for F in pert])) - lam) / lam
    return _outcome(m, True, lambda1=lam)


def _t43d_empirical_mp(inst: ParameterEnsemble, dps: int):
    lam, tops = _mp_param_lambdas(inst, dps)
    with working_precision(dps):
        return (mpmath.fsum(tops) / len(tops) - lam) / lam


# --------------------------------------------------------------------------------------
# AH, AB — approximations of λ_max from scores
# --------------------------------------------------------------------------------------


def _mp_scores(G):
    return mp_matrix(G)


def _mp_fim_parts(G: np.ndarray, dps: int):
    Gm = _mp_scores(G)
    n = G.shape[0]
    K = Gm * Gm.T / n
    F = Gm.T * Gm / n
    small = K if G.shape[0] <= G.shape[1] else F
    lam = mp_eigh(small, dps).lambda_max
    gbar = mpmath.matrix([[sum(Gm[i, j] for i in range(n)) / n] for j in range(G.shape[1])])
    return Gm, K, F, lam, gbar


def _ah(inst: ScoreInstance) -> Outcome:
    gbar = inst.G.mean(axis=0)
    if not np.any(gbar):
        return Outcome.not_met("ḡ = 0: the heuristic's start vector is undefined")
    # The margin is scale-invariant: evaluate on the exactly rescaled G/c (c a power of two), where
    # λ_max neither underflows (scores near 1e-170: λ ≈ 1e-340 read 0) nor overflows.
    c = float(approx.power_of_two_scale(inst.G))
    Gs = inst.G / c
    est = approx.heuristic(Gs, power_steps=inst.power_steps)
    lam = (
        spectral.lambda_max(Gs.T @ Gs / Gs.shape[0])
        if Gs.shape[1] <= Gs.shape[0]
        else spectral.lambda_max(Gs @ Gs.T / Gs.shape[0])
    )
    scale = max(lam, TINY)
    m = min(est.value - est.mean_score_norm_sq, lam - est.value) / scale
    return _outcome(m, True, estimate=est.value * c * c, lambda_max=lam * c * c, accuracy=est.value / scale)


def _ah_mp(inst: ScoreInstance, dps):
    with working_precision(dps):
        _, _, F, lam, gbar = _mp_fim_parts(inst.G, dps)
        x = gbar
        gn2 = (gbar.T * gbar)[0, 0]
        for _ in range(inst.power_steps):
            x = F * x
            x = x / mpmath.sqrt((x.T * x)[0, 0])
        rq = (x.T * F * x)[0, 0] / (x.T * x)[0, 0]
        return min(rq - gn2, lam - rq) / lam


def _ah_exact(inst: ScoreInstance) -> Outcome:
    """Weakening: λ̂_H equals λ_max to 1% (accuracy is measured, never promised)."""
    out = _ah(inst)
    if not out.hypotheses_met:
        return out
    return _outcome(out.details["accuracy"] - 0.99)


def _ah_exact_mp(inst, dps):
    with working_precision(dps):
        _, _, F, lam, gbar = _mp_fim_parts(inst.G, dps)
        x = gbar
        for _ in range(inst.power_steps):
            x = F * x
            x = x / mpmath.sqrt((x.T * x)[0, 0])
        rq = (x.T * F * x)[0, 0] / (x.T * x)[0, 0]
        return rq / lam - mpmath.mpf("0.99")


def _ab(inst: ScoreInstance) -> Outcome:
    # Relative margins are scale-invariant: evaluate on the exactly rescaled G/c, where λ_max and
    # the terms neither underflow (scores near 1e-170 read "F = 0") nor overflow.
    c = float(approx.power_of_two_scale(inst.G))
    Gs = inst.G / c
    b = approx.two_sided(Gs, lanczos_steps=inst.lanczos_steps, q=inst.q)
    n, p = Gs.shape
    small = Gs @ Gs.T / n if n <= p else Gs.T @ Gs / n
    lam = spectral.lambda_max(small)
    if lam == 0.0:
        return Outcome.not_met("F = 0: every bound is trivially 0")
    low = {k: (lam - v) / lam for k, v in b.lower_terms.items()}
    up = {k: (v - lam) / lam for k, v in b.upper_terms.items()}
    m = min(min(low.values()), min(up.values()))
    c2 = c * c
    return _outcome(m, True, ratio=b.ratio, lower=b.lower * c2, upper=b.upper * c2, lambda_max=lam * c2)


def _ab_mp(inst: ScoreInstance, dps):
    # The Ritz vector of the float run (on the rescaled Gram matrix, as two_sided builds it); its
    # Rayleigh quotient on the exact K is the lower bound adjudicated.
    Gs = inst.G / approx.power_of_two_scale(inst.G)
    Ks = Gs @ Gs.T / inst.G.shape[0]
    _, ritz_vec = approx.lanczos_ritz(0.5 * (Ks + Ks.T), inst.lanczos_steps, _lanczos_start(inst.G))
    with working_precision(dps):
        Gm, K, F, lam, gbar = _mp_fim_parts(inst.G, dps)
        n, p = inst.G.shape
        row = [sum(Gm[i, j] ** 2 for j in range(p)) for i in range(n)]
        diagF = [F[j, j] for j in range(p)]
        y = mp_matrix(ritz_vec.reshape(-1, 1))
        ritz = (y.T * K * y)[0, 0] / (y.T * y)[0, 0]
        Kq = K**inst.q
        trq = sum(Kq[i, i] for i in range(n))
        rank = approx.structural_rank_bound(inst.G)
        lows = [max(row) / n, (gbar.T * gbar)[0, 0], max(diagF), ritz, (trq / rank) ** (mpmath.mpf(1) / inst.q)]
        ups = [
            sum(K[i, i] for i in range(n)),
            max(sum(abs(K[i, j]) for j in range(n)) for i in range(n)),
            trq ** (mpmath.mpf(1) / inst.q),
        ]
        return min(min(lam - x for x in lows), min(u - lam for u in ups)) / lam


def numerical_rank(G: np.ndarray) -> int:
    """The usual numerical rank: singular values above max(n, P)·eps·σ1 (numpy's matrix_rank)."""
    return int(np.linalg.matrix_rank(G))


def _trace_power_with_rank(inst: ScoreInstance, rank: int) -> tuple[float, float]:
    n = inst.G.shape[0]
    c = approx.power_of_two_scale(inst.G)
    Gs = inst.G / c
    K = Gs @ Gs.T / n
    trq = float(np.trace(np.linalg.matrix_power(K, inst.q)))
    lam = spectral.lambda_max(K)
    return (max(trq, 0.0) / rank) ** (1.0 / inst.q), lam


def _ab_numerical_rank(inst: ScoreInstance) -> Outcome:
    """Weakening of AB: (tr K^q / r)^{1/q} ≤ λ_max with r the *numerical* rank (drops r ≥ rank)."""
    r = numerical_rank(inst.G)
    if r == 0:
        return Outcome.not_met("G = 0")
    term, lam = _trace_power_with_rank(inst, r)
    return _outcome((lam - term) / lam, True, numerical_rank=r, structural_rank=approx.structural_rank_bound(inst.G))


def _ab_numerical_rank_mp(inst: ScoreInstance, dps):
    r = numerical_rank(inst.G)
    with working_precision(dps):
        Gm = mp_matrix(inst.G)
        n = inst.G.shape[0]
        K = Gm * Gm.T / n
        lam = mp_eigh(K, dps).lambda_max
        Kq = K**inst.q
        trq = sum(Kq[i, i] for i in range(n))
        return (lam - (trq / r) ** (mpmath.mpf(1) / inst.q)) / lam


def _lanczos_start(G: np.ndarray) -> np.ndarray:
    """The start vector of approx.two_sided's Lanczos run, bit for bit: Gḡ computed on the
    exactly rescaled G/c (on G itself Gḡ underflows to 0 near 1e-170 and the start became the
    largest-row fallback), or the largest row when that is exactly zero."""
    Gs = G / approx.power_of_two_scale(G)
    start = Gs @ Gs.mean(axis=0)
    if not np.any(start):
        start = np.zeros(G.shape[0])
        start[int(np.argmax(np.einsum("ij,ij->i", Gs, Gs)))] = 1.0
    return start


# --------------------------------------------------------------------------------------
# P3.2 — input departure under LCM
# --------------------------------------------------------------------------------------


def _p32(inst: DepartureInstance, require_lcm: bool = True) -> Outcome:
    profs = profiles(inst)
    held = [p.monotone for p in profs]
    share = float(np.mean(held))
    if require_lcm and not all(held):
        worst = max(p.worst_decrease for p in profs)
        return Outcome.not_met(
            f"LCM fails on {held.count(False)}/{len(held)} paths (worst decrease {worst:.3g}, "
            f"resolution {profs[0].resolution:.3g})",
            lcm_share=share,
        )
    vals = np.array([p.values for p in profs])  # (inputs, grid)
    scale = max(float(np.max(np.abs(vals))), TINY)
    worst = math.inf
    for k in range(1, vals.shape[1]):
        m = elevation_margins(vals[:, 0], vals[:, k], inst.quantile)
        worst = min(worst, *m.values())
    # Exact in float: monotone float values dominate pointwise, and mean/quantile are
    # monotone functions of their (float) arguments, so no adjudication is needed.
    return Outcome(True, worst / scale, False, "", {"lcm_share": share, "resolution": profs[0].resolution})


# --------------------------------------------------------------------------------------
# C — completeness of the threshold partition
# --------------------------------------------------------------------------------------


def _partition_conclusion(part, sigmas, contains, n_cells) -> tuple[bool, str]:
    for s in sigmas:
        owners = [k for k in range(n_cells) if contains(k, s)]
        if len(owners) != 1:
            return False, f"σ = {s!r} lies in {len(owners)} cells {owners}"
        c = part(s)
        if c != owners[0]:
            return False, f"cell({s!r}) = {c} but σ lies in cell {owners[0]}"
    ordered = sorted(s for s in sigmas if not math.isnan(s))
    cells = [part(s) for s in ordered]
    if any(a > b for a, b in zip(cells, cells[1:])):
        return False, "cell index not monotone in σ"
    return True, ""


def _c(inst: PartitionInstance) -> Outcome:
    t = np.asarray(inst.thresholds, dtype=float)
    if not np.all(np.isfinite(t)) or (t.size > 1 and not np.all(np.diff(t) > 0)):
        return Outcome.not_met("thresholds not finite and strictly increasing")
    p = ThresholdPartition(t)
    ok, why = _partition_conclusion(p.cell, inst.sigmas, p.contains, p.n_cells)
    if ok:
        vec = p.cell(np.array(inst.sigmas)) if inst.sigmas else np.array([], dtype=np.int64)
        if list(vec) != [p.cell(s) for s in inst.sigmas]:
            ok, why = False, "vectorised cell() disagrees with scalar cell()"
    if ok:  # every ordered cell is non-empty: its lower end belongs to it
        for k in range(p.nan_cell):
            lo = -math.inf if k == 0 else float(t[k - 1])
            if p.cell(lo) != k:
                ok, why = False, f"cell {k} is empty"
                break
    if ok and inst.second_thresholds:
        t2 = np.asarray(inst.second_thresholds)
        if t2.size > 1 and not np.all(np.diff(t2) > 0):
            return Outcome.not_met("second thresholds not strictly increasing")
        from fimtheory.monitor import ProductPartition

        q = ThresholdPartition(t2)
        prod = ProductPartition([p, q])
        for a in inst.sigmas:
            for b in inst.sigmas[:4]:
                if prod.cell([a, b]) != (p.cell(a), q.cell(b)):
                    ok, why = False, "product partition disagrees with its factors"
    return Outcome(True, 1.0 if ok else -1.0, False, why, {})


def _naive_partition(thresholds, *, nan_cell: bool, top_closed: bool, closed_cells: bool):
    """A partition as a user might write it, with switches for each weakening."""
    t = list(thresholds)
    K = len(t) + 1

    def contains(k, s):
        if k == K:
            return nan_cell and math.isnan(s)
        lo = -math.inf if k == 0 else t[k - 1]
        hi = math.inf if k == K - 1 else t[k]
        if closed_cells or (top_closed and k == K - 1):
            return lo <= s <= hi
        return lo <= s < hi

    def cell(s):
        for k in range(K + 1):
            if contains(k, s):
                return k
        return -1

    return cell, contains, K + 1


def _c_weak(kind: str):
    def evaluate(inst: PartitionInstance) -> Outcome:
        t = np.asarray(inst.thresholds, dtype=float)
        if not np.all(np.isfinite(t)):
            return Outcome.not_met("thresholds must be finite")
        if kind == "repeated":
            if t.size > 1 and not np.all(np.diff(t) >= 0):
                return Outcome.not_met("thresholds must be non-decreasing")
        elif t.size > 1 and not np.all(np.diff(t) > 0):
            return Outcome.not_met("thresholds not strictly increasing")
        cell, contains, n = _naive_partition(
            t.tolist(),
            nan_cell=kind != "no-nan-cell",
            top_closed=kind != "open-top",
            closed_cells=kind == "closed-cells",
        )
        ok, why = _partition_conclusion(cell, inst.sigmas, contains, n)
        if ok and kind == "repeated":
            for k in range(n - 1):
                lo = -math.inf if k == 0 else float(t[k - 1])
                if cell(lo) != k:
                    ok, why = False, f"cell {k} is empty (repeated threshold)"
                    break
        return Outcome(True, 1.0 if ok else -1.0, False, why, {})

    return evaluate


def _exact_mp(evaluate):
    """For claims whose float evaluation is exact: the mp margin is the float margin."""

    def mp(inst, dps):
        return mpmath.mpf(evaluate(inst).margin)

    return mp


# --------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------

_S = "properties.claim_strategies:"

_CLAIMS = [
    Claim(
        "W",
        "Weyl: λ_max(A)+λ_min(E) ≤ λ_max(A+E) ≤ λ_max(A)+λ_max(E); λ_{i+j−1}(A+E) ≤ λ_i(A)+λ_j(E)",
        "For symmetric A, E: λ_{i+j−1}(A+E) ≤ λ_i(A) + λ_j(E) for all i+j−1 ≤ n, and λ_max(A+E) ≥ λ_max(A) + λ_min(E).",
        ("A symmetric (PSD in our instances)", "E symmetric"),
        _weyl,
        _weyl_mp,
        _S + "W",
        "Weyl (used in Thm 4.3)",
        weakenings=(
            Weakening(
                "W-no-lambda-min",
                "λ_max(A+E) ≥ λ_max(A) for any symmetric E",
                "the λ_min(E) term (E need not be PSD)",
                _weyl_no_lambda_min,
                _weyl_no_lambda_min_mp,
                _S + "W-no-lambda-min",
            ),
        ),
    ),
    Claim(
        "R",
        "directional bound: λ_max(A+E) ≥ λ1 + vᵀEv for every unit top eigenvector v",
        "For symmetric A with top eigenvalue λ1 (possibly repeated) and every unit v with "
        "Av = λ1 v: λ_max(A+E) ≥ λ1 + vᵀEv.",
        ("A symmetric PSD", "E symmetric", "v a unit top eigenvector of A"),
        _directional,
        _directional_mp,
        _S + "R",
        "Thm 4.3 (directional step)",
        weakenings=(
            Weakening(
                "R-any-vector",
                "λ_max(A+E) ≥ λ1 + vᵀEv for any unit v",
                "v is a top eigenvector",
                _directional_any_vector,
                _directional_any_vector_mp,
                _S + "R-any-vector",
            ),
        ),
    ),
    Claim(
        "S",
        "series: |a_k| ≤ η(2η/γ)^{k−1} and the third-order remainder ≤ 8η⁴/(γ²(γ−2η))",
        "For γ > 0 and 2η < γ, the generated coefficients a_k of λ_max(A+tE) satisfy the "
        "Cauchy estimates |a_k| ≤ η(2η/γ)^{k−1}, and |λ_max(A+E) − λ1 − Σ_{k≤K} a_k| ≤ "
        "η(2η/γ)^K / (1 − 2η/γ) for the highest generated order K.",
        ("A symmetric PSD", "E symmetric", "γ > 0", "2η < γ"),
        _series_claim,
        _series_claim_mp,
        _S + "S",
        "series (S)",
    ),
    Claim(
        "S2",
        "remainders: |λ'−λ1−a1| ≤ 2η²/(γ−2η), |λ'−λ1−a1−a2| ≤ 4η³/(γ(γ−2η))",
        "For symmetric PSD A with γ > 0, symmetric E with η = ‖E‖₂ < γ/2, λ' = λ_max(A+E).",
        ("A symmetric PSD", "E symmetric", "γ > 0", "2η < γ"),
        _s2,
        _s2_mp,
        _S + "S2",
        "S2",
        weakenings=(
            Weakening(
                "S2-repeated-top",
                "first-order S2 bound when λ1 is repeated "
                "(γ to the next distinct eigenvalue, a1 = vᵀEv for a chosen top v)",
                "γ > 0",
                _s2_repeated_top,
                _s2_repeated_top_mp,
                _S + "S2-repeated-top",
            ),
        ),
    ),
    Claim(
        "SIGN",
        "a2 ≥ 0: ‖P⊥Ev‖²/(λ1−λ_min) ≤ a2 ≤ ‖P⊥Ev‖²/γ",
        "For symmetric PSD A with γ > 0 and symmetric E, the second-order coefficient a2 of "
        "λ_max(A+tE) lies between ‖P⊥Ev‖²/(λ1−λ_min) and ‖P⊥Ev‖²/γ.",
        ("A symmetric PSD", "E symmetric", "γ > 0"),
        _sign,
        _sign_mp,
        _S + "SIGN",
        "SIGN",
        weakenings=(
            Weakening(
                "SIGN-lambda1-denominator",
                "a2 ≥ ‖P⊥Ev‖²/λ1 for symmetric A not PSD",
                "A ⪰ 0",
                _sign_lambda1_denominator,
                _sign_lambda1_denominator_mp,
                _S + "SIGN-lambda1-denominator",
            ),
        ),
    ),
    Claim(
        "T4.3a",
        "per draw: λ_max(F+E) ≥ λ_max(F) + E_11 (E from quantizing the weights)",
        "For an empirical FIM F with γ > 0 and the perturbation E = F(Q(θ)) − F(θ) caused by a "
        "quantizer Q: λ_max(F+E) ≥ λ_max(F) + v1ᵀEv1.",
        ("F an empirical FIM (PSD)", "γ > 0", "E symmetric (from quantization)"),
        _quant_directional,
        _directional_mp,
        _S + "T4.3a",
        "Thm 4.3 (a)",
        weakenings=(
            Weakening(
                "T4.3a-per-draw",
                "per draw: λ_max(F+E) ≥ λ_max(F) − 4η³/(γ(γ−2η))",
                "the E_11 term (its sign is not fixed)",
                _per_draw_third_order,
                _per_draw_third_order_mp,
                _S + "T4.3a-per-draw",
            ),
        ),
    ),
    Claim(
        "T4.3b",
        "in expectation: E λ_max(F+E) ≥ λ_max(F), and ≥ λ1 + E[a2] − 4E[η³]/(γ(γ−2η̄))",
        "For an empirical FIM F and a finite zero-mean distribution of symmetric E: Jensen's "
        "E λ_max(F+E) ≥ λ_max(F); if moreover γ > 0 and η ≤ η̄ < γ/2 on every draw, the "
        "second-order lower bound holds.",
        ("F PSD", "E[E] = 0 exactly", "for the second part: γ > 0, η̄ < γ/2"),
        _t43b,
        _t43b_mp,
        _S + "T4.3b",
        "Thm 4.3 (b)",
        weakenings=(
            Weakening(
                "T4.3b-nonzero-mean",
                "E λ_max(F+E) ≥ λ_max(F) for noise of nonzero mean",
                "E[E] = 0",
                _nonzero_mean_jensen,
                _nonzero_mean_jensen_mp,
                _S + "T4.3b-nonzero-mean",
            ),
        ),
    ),
    Claim(
        "T4.3c",
        "strict at leading order: E λ_max(F+sE) > λ_max(F) for 0 < s < s_c (genericity)",
        "For F PSD with γ > 0 and a finite zero-mean distribution of E with P(P⊥Ev ≠ 0) > 0: "
        "E[a2] > 0 and E λ_max(F+sE) > λ_max(F) for every 0 < s < s_c = "
        "E[a2]γ²/(2E[a2]γη̄ + 4E[η³]); checked at s = s_c/2.",
        ("F PSD", "γ > 0", "E[E] = 0 exactly", "genericity: P⊥Ev ≠ 0 for some draw"),
        lambda inst: _t43c_core(inst, True),
        _t43c_mp,
        _S + "T4.3c",
        "Thm 4.3 (c)",
        strict=True,
        weakenings=(
            Weakening(
                "T4.3c-no-genericity",
                "strict elevation without genericity (E commuting with F)",
                "genericity",
                lambda inst: _t43c_core(inst, False),
                lambda inst, dps: _t43c_mp(inst, dps, False),
                _S + "T4.3c-no-genericity",
                strict=True,
            ),
        ),
    ),
    Claim(
        "T4.3d",
        "parameter level, restored: with labels from the model at θ, λ_max(F_π(θ+δ)) ≥ λ_max(F_π(θ))",
        "For logistic or softmax regression with the FIM's labels distributed as the model's own "
        "predictive at the unquantized θ (F_π, the expected Fisher at θ with the label law held "
        "fixed): λ_max(F_π(θ+δ)) ≥ λ_max(F_π(θ)) for every δ, because F_π(θ+δ) − F_π(θ) = "
        "(1/n)Σ(Δμ_i⊗x_i)(Δμ_i⊗x_i)ᵀ ⪰ 0. With the observed labels the statement fails even in "
        "expectation over zero-mean δ (weakening T4.3d-empirical-labels; docs/parameter_level.md).",
        ("canonical-link model (logistic, softmax)", "labels distributed as p(·|x; θ) at the unperturbed θ"),
        _t43d,
        _t43d_mp,
        _S + "T4.3d",
        "Thm 4.3 at the parameter level (our extra hypothesis)",
        weakenings=(
            Weakening(
                "T4.3d-empirical-labels",
                "E_δ λ_max(F(θ+δ)) ≥ λ_max(F(θ)) for zero-mean δ with the observed labels",
                "labels from the model's predictive",
                _t43d_empirical,
                _t43d_empirical_mp,
                _S + "T4.3d-empirical-labels",
            ),
        ),
    ),
    Claim(
        "P3.2",
        "input departure under LCM raises Λ pointwise, in mean and in every quantile",
        "If t ↦ Λ(x + t u(x)) is non-decreasing on [0, T] for every calibration input x (LCM), "
        "then Λ(x_t) ≥ Λ(x) for all t, and the mean and q-quantile of {Λ(x_t)} are ≥ those of "
        "{Λ(x)}. Checked on logistic and softmax regression; LCM is checked on a uniform grid "
        "(resolution T/steps) and the conclusion asserted at the same grid points.",
        ("LCM along every displacement path (at the stated grid resolution)",),
        _p32,
        _exact_mp(_p32),
        _S + "P3.2",
        "Prop 3.2",
        weakenings=(
            Weakening(
                "P3.2-no-LCM",
                "departure raises Λ without LCM",
                "LCM",
                lambda inst: _p32(inst, require_lcm=False),
                _exact_mp(lambda inst: _p32(inst, require_lcm=False)),
                _S + "P3.2-no-LCM",
            ),
        ),
    ),
    Claim(
        "AH",
        "heuristic: ‖ḡ‖² ≤ λ̂_H ≤ λ_max (Rayleigh quotient at ḡ/‖ḡ‖, k power steps)",
        "For scores G with ḡ ≠ 0 and k ≥ 0 power steps, the Rayleigh quotient λ̂_H of F at "
        "F^k ḡ satisfies ‖ḡ‖² ≤ λ̂_H ≤ λ_max(F). Its accuracy λ̂_H/λ_max is measured.",
        ("ḡ ≠ 0",),
        _ah,
        _ah_mp,
        _S + "AH",
        "heuristic approximation",
        weakenings=(
            Weakening(
                "AH-accurate",
                "λ̂_H ≥ 0.99 λ_max",
                "(accuracy is not promised)",
                _ah_exact,
                _ah_exact_mp,
                _S + "AH-accurate",
            ),
        ),
    ),
    Claim(
        "AB",
        "two-sided: L ≤ λ_max(F) ≤ U (norms, diagonal, Lanczos Ritz, trace powers)",
        "L = max(max_i‖g_i‖²/n, ‖ḡ‖², max_k F_kk, k-step Lanczos Ritz value, (tr K^q/r)^{1/q}) "
        "≤ λ_max ≤ U = min(tr F, max_i (1/n)Σ_j|⟨g_i,g_j⟩|, (tr K^q)^{1/q}), r = min(P, #nonzero "
        "rows) ≥ rank.",
        ("F ≠ 0",),
        _ab,
        _ab_mp,
        _S + "AB",
        "rigorous two-sided approximation",
        weakenings=(
            Weakening(
                "AB-numerical-rank",
                "(tr K^q / r)^{1/q} ≤ λ_max with r the numerical rank (tolerance max(n,P)·eps·σ1)",
                "r ≥ rank(G) (the structural bound)",
                _ab_numerical_rank,
                _ab_numerical_rank_mp,
                _S + "AB-numerical-rank",
            ),
        ),
    ),
    Claim(
        "C",
        "completeness: every float64 σ (NaN, ±inf, ±0, subnormal) lies in exactly one cell",
        "For finite strictly increasing thresholds, the cells [τ_{k−1}, τ_k) (top cell closed at "
        "+∞) and a NaN cell partition float64: each σ in exactly one cell, cell(σ) agrees with "
        "membership, is monotone in σ, every cell is non-empty, and products of partitions are "
        "complete.",
        ("thresholds finite and strictly increasing",),
        _c,
        _exact_mp(_c),
        _S + "C",
        "completeness of the threshold partition",
        note="A top cell written C_K = {τ_{K−1} ≤ σ < +∞} leaves σ = +∞ in no cell; the "
        "suite closes the top cell and shows the open version is falsified (C-open-top).",
        weakenings=(
            Weakening(
                "C-repeated-thresholds",
                "partition with repeated thresholds",
                "strictly increasing thresholds",
                _c_weak("repeated"),
                _exact_mp(_c_weak("repeated")),
                _S + "C-repeated-thresholds",
            ),
            Weakening(
                "C-no-nan-cell",
                "partition without a NaN cell",
                "the NaN cell",
                _c_weak("no-nan-cell"),
                _exact_mp(_c_weak("no-nan-cell")),
                _S + "C",
            ),
            Weakening(
                "C-open-top",
                "top cell [τ_{K−1}, +∞) open at +∞ (the literal σ < +∞)",
                "the closed top cell",
                _c_weak("open-top"),
                _exact_mp(_c_weak("open-top")),
                _S + "C",
            ),
            Weakening(
                "C-closed-cells",
                "cells closed at both ends [τ_{k−1}, τ_k]",
                "half-open cells",
                _c_weak("closed-cells"),
                _exact_mp(_c_weak("closed-cells")),
                _S + "C",
            ),
        ),
    ),
]

_CLAIMS = [_attach_hypothesis_margins(c) for c in _CLAIMS]
REGISTRY: dict[str, Claim] = {c.id: c for c in _CLAIMS}

# The sharp one-sided bounds (KT, LL) and the weakening S-no-disc live in their own module,
# which appends them to the registry when imported.
from fimtheory import claims_sharp as _claims_sharp  # noqa: E402, F401


def _register_eq1() -> None:
    """Append Eq. 1 and the companion's KL statistic (fimtheory.claims_eq1: EQ1-M-BOUNDS,
    EQ1-RATIO, KL-SORTED) to the registry."""
    from fimtheory import claims_eq1

    for c in claims_eq1.claims():
        _CLAIMS.append(c)
        REGISTRY[c.id] = c


_register_eq1()


def get_claim(claim_id: str) -> Claim:
    """The claim with this id, or :class:`UnknownIdError` listing the known ids."""
    try:
        return REGISTRY[claim_id]
    except KeyError:
        raise UnknownIdError(f"unknown claim id {claim_id!r}; known: {', '.join(REGISTRY)}") from None


__all__ = [
    "ADJUDICATION_GUARD_DIGITS",
    "ADJUDICATION_MAX_DPS",
    "ADJUDICATION_MAX_START_DPS",
    "ADJUDICATION_RTOL",
    "HYPOTHESIS_BAND",
    "REFERENCE_DISAGREEMENT",
    "REGISTRY",
    "TINY",
    "VERDICTS",
    "Adjudication",
    "Claim",
    "Outcome",
    "ReferenceDisagreement",
    "Weakening",
    "adjudicate",
    "critical_scale",
    "disagrees",
    "get_claim",
    "numerical_rank",
    "start_dps",
]
