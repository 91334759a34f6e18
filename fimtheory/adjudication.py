"""Adjudication: the high-precision verdict on a margin float64 could not settle.

A claim's float64 evaluator returns an :class:`fimtheory.claims.Outcome` whose margin may be
too close to zero (or too badly resolved) for float64 to decide its sign. :func:`adjudicate`
then recomputes the margin with the claim's ``evaluate_mp`` on a precision ladder
(d0, 2·d0, 4·d0, …) until successive values agree, and confirms a violation only through a
rigorous interval enclosure of the exact margin (:mod:`fimtheory.enclosures`, or the claim's
own ``evaluate_iv``). :func:`disagrees` tells a float implementation that resolves a clear
violation the reference rejects (an error, never a verdict).

This module knows claims only through their protocol (``id``, ``strict``, ``evaluate_mp``,
``evaluate_iv``) and outcomes through their attributes, so it imports no claim family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import mpmath
import numpy as np

from fimtheory.errors import FimTheoryError, InputError
from fimtheory.highprec import working_precision
from fimtheory.validation import EPS64

if TYPE_CHECKING:
    from fimtheory.claims import Outcome

#: Relative margins below this are re-decided at high precision.
ADJUDICATION_RTOL = 1e-6
#: Highest working precision (decimal digits) of the adjudication ladder dps, 2·dps, 4·dps, …
ADJUDICATION_MAX_DPS = 1600
#: Highest starting precision chosen from an instance's dynamic range.
ADJUDICATION_MAX_START_DPS = 400
#: Digits added to the instance's dynamic range (log10 of max/min nonzero |entry|) for the
#: starting precision.
ADJUDICATION_GUARD_DIGITS = 30
#: A float hypothesis margin (> 0 when met, relative to n × the scale of its terms) at or below
#: this is within float64's reach of its boundary: the instance is adjudicated and the
#: hypothesis re-decided in interval arithmetic.
HYPOTHESIS_BAND = 1e4 * EPS64


def disagrees(outcome: Outcome, holds_at_high_precision: bool) -> bool:
    """True when float64 *resolves* a clearly violated margin (below −ADJUDICATION_RTOL) that the
    high-precision reference says holds: the float implementation under test is wrong (or the
    two evaluations compute different things). Such an instance is an error, never verified.

    Also True when :func:`adjudicate` found the claim's mp evaluator contradicted by its rigorous
    interval enclosure on this outcome (recorded in ``outcome.details``)."""
    if outcome.hypotheses_met and outcome.details.get(REFERENCE_DISAGREEMENT):
        return True
    return bool(
        outcome.hypotheses_met
        and outcome.float_resolved
        and holds_at_high_precision
        and outcome.margin < -ADJUDICATION_RTOL
    )


#: The verdicts of :func:`adjudicate`.
VERDICTS = ("holds", "tie", "violated", "undecided")


#: Key under which :func:`adjudicate` records, in ``outcome.details``, that the claim's mp
#: evaluator disagrees with its rigorous enclosure (read by :func:`disagrees`).
REFERENCE_DISAGREEMENT = "reference_disagreement"


class ReferenceDisagreement(FimTheoryError):
    """Raised by :func:`adjudicate` when the claim's mp evaluator settles on a violation that
    its rigorous interval enclosure excludes: the mp evaluator computes something other than
    the claim's margin (an implementation/reference disagreement, never a verdict). The
    message names both values; ``outcome.details`` records it too (see :func:`disagrees`)."""


@dataclass(frozen=True, eq=False)
class Adjudication:
    """The verdict of :func:`adjudicate` on one instance.

    Attributes
    ----------
    verdict : str
        ``"holds"`` — successive high-precision margins agree and have the claim's sign;
        ``"tie"`` — a non-strict claim whose margin is 0 to the resolution of the ladder
        (|margin| ≤ 10^−d at 2d digits after ≤ 10^−d/2 at d digits): counted as holding;
        ``"violated"`` — a rigorous enclosure of the exact margin lies below 0 (strict claims:
        at or below 0, e.g. an exactly proved 0);
        ``"undecided"`` — none of these (no rigorous evaluator, an enclosure that does not
        exclude 0, margins that did not settle by ADJUDICATION_MAX_DPS, or a hypothesis that
        fails at high precision: then ``hypotheses_met`` is False). Callers report the
        instance as inconclusive, never as verified or falsified.
    holds : bool or None
        True for "holds" and "tie", False only for "violated", None for "undecided".
    margin : mpmath.mpf
        The mp margin at the final precision (0 for a tie).
    enclosure : tuple or None
        (lo, hi) mpf: a rigorous enclosure of the margin, when one was computed.
    dps : int
        The final working precision (decimal digits).
    reason : str
        One readable line saying how the verdict was reached.
    hypotheses_met : bool
        False when a hypothesis of the claim was proved false at high precision (the
        instance is then "hypotheses not met", verdict "undecided").
    ladder : tuple
        The (dps, mp margin) pairs computed, in order.

    Iterating yields ``(holds, margin)``, so ``holds, margin = adjudicate(...)`` keeps working,
    and an Adjudication compares equal to that pair.
    """

    verdict: str
    holds: bool | None
    margin: object
    enclosure: tuple | None
    dps: int
    reason: str
    hypotheses_met: bool = True
    ladder: tuple = ()

    def __iter__(self):
        yield self.holds
        yield self.margin

    def __eq__(self, other):
        if isinstance(other, tuple):
            return tuple(self) == other
        if isinstance(other, Adjudication):
            return (self.verdict, self.holds, self.margin, self.enclosure, self.dps, self.hypotheses_met) == (
                other.verdict,
                other.holds,
                other.margin,
                other.enclosure,
                other.dps,
                other.hypotheses_met,
            )
        return NotImplemented

    __hash__ = None

    @property
    def certified(self) -> bool:
        """Whether the verdict is a certified violation."""
        return self.verdict == "violated"


def _instance_arrays(instance):
    for value in getattr(instance, "__dict__", {}).values():
        if isinstance(value, np.ndarray):
            yield value
        elif isinstance(value, tuple | list):
            yield from (x for x in value if isinstance(x, np.ndarray))


def start_dps(instance, dps: int) -> int:
    """The first precision of the ladder: at least ``dps``, and at least the instance's
    dynamic range in digits (log10 of max/min nonzero |entry| over its arrays) plus
    ADJUDICATION_GUARD_DIGITS, capped at ADJUDICATION_MAX_START_DPS."""
    big, small = 0.0, math.inf
    for a in _instance_arrays(instance):
        if a.dtype.kind not in "fiu" or a.size == 0:
            continue
        x = np.abs(a[np.isfinite(a)].astype(float))
        x = x[x > 0]
        if x.size:
            big, small = max(big, float(x.max())), min(small, float(x.min()))
    if big == 0.0:
        return dps
    digits = math.ceil(math.log10(big) - math.log10(small))
    return max(dps, min(ADJUDICATION_MAX_START_DPS, digits + ADJUDICATION_GUARD_DIGITS))


def _nstr(x, digits: int = 5) -> str:
    return mpmath.nstr(x, digits) if isinstance(x, mpmath.mpf) else repr(x)


def _mp_ladder(subject, instance, d0: int):
    """Evaluate the mp margin at d0, 2·d0, 4·d0, … until two successive values agree.

    Returns (kind, margin, dps, rungs): kind "settled" (|m_2d − m_d| ≤ min(10^−d/2, |m_2d|/4)),
    "tie" (|m_d| ≤ 10^−d/2 and |m_2d| ≤ 10^−d), "stalled" (twice in a row the values agree in
    their leading digits but the difference does not shrink as the precision doubles: the mp
    evaluator's error does not depend on ``dps``, e.g. a step done in float) or "unsettled"
    (ADJUDICATION_MAX_DPS reached).
    """
    d = d0
    prev = subject.evaluate_mp(instance, d)
    rungs = [(d, prev)]
    near_prev = None  # the previous difference, when it was ≤ |m|/4 but above the band
    while 2 * d <= ADJUDICATION_MAX_DPS:
        D = 2 * d
        m = subject.evaluate_mp(instance, D)
        rungs.append((D, m))
        with working_precision(D):
            m, prev = mpmath.mpf(m), mpmath.mpf(prev)
            if mpmath.isfinite(m) and mpmath.isfinite(prev):
                band = mpmath.mpf(10) ** (-(d // 2))
                if abs(prev) <= band and abs(m) <= mpmath.mpf(10) ** (-d):
                    return "tie", m, D, tuple(rungs)
                diff = abs(m - prev)
                if diff <= band and diff <= abs(m) / 4:
                    return "settled", m, D, tuple(rungs)
                if diff <= abs(m) / 4:
                    if near_prev is not None and diff * 1000 >= near_prev:
                        return "stalled", m, D, tuple(rungs)
                    near_prev = diff
                else:
                    near_prev = None
        d, prev = D, m
    return "unsettled", prev, d, tuple(rungs)


def _enclose(subject, instance, d0: int, strict: bool, *, attempts: int):
    """Rigorous enclosure of the margin from d0 digits, doubling (at most ``attempts`` rungs,
    and not above ADJUDICATION_MAX_DPS) until it excludes 0 on either side.

    Returns (enclosure or None, dps, note, hypotheses_failed).
    """
    from fimtheory import enclosures

    d, enc, note = d0, None, ""
    for _ in range(attempts):
        if d > ADJUDICATION_MAX_DPS:
            break
        try:
            lo, hi = enclosures.margin_enclosure(subject, instance, d)
        except enclosures.HypothesisFails as exc:
            return None, d, str(exc), True
        except enclosures.NoEnclosure as exc:
            return enc, d, str(exc), False
        except enclosures.EnclosureError as exc:
            note = str(exc)
            d *= 2
            continue
        enc = (lo, hi)
        if (hi <= 0 if strict else hi < 0) or (lo > 0 if strict else lo >= 0):
            return enc, d, "", False
        note = f"the enclosure [{_nstr(lo)}, {_nstr(hi)}] at {d} digits does not exclude 0"
        d *= 2
    return enc, d // 2 if enc is not None else d, note, False


def _enclosure_verdict(enc, strict: bool):
    lo, hi = enc
    if hi <= 0 if strict else hi < 0:
        return "violated"
    if lo > 0 if strict else lo >= 0:
        return "holds"
    return None


def _near_hypotheses(outcome) -> list:
    margins = getattr(outcome, "hypothesis_margins", None) or {}
    return sorted(k for k, v in margins.items() if not v > HYPOTHESIS_BAND)


def adjudicate(claim_or_weakening, instance, outcome: Outcome, dps: int = 50) -> Adjudication:
    """Decide, at high precision, the sign of a margin float64 could not settle.

    1. **Precision ladder.** The claim's ``evaluate_mp`` margin is computed at d0, 2·d0,
       4·d0, … (d0 = :func:`start_dps`, at least ``dps``) up to ADJUDICATION_MAX_DPS, until two
       successive values agree (|m_2d − m_d| ≤ min(10^−d/2, |m_2d|/4)) — so a margin whose
       terms lie below the resolution of d digits is never read at d digits — or collapse
       to zero (|m_d| ≤ 10^−d/2 and |m_2d| ≤ 10^−d: a *tie*).
    2. **Verdict.** A settled margin with the claim's sign *holds*. A tie of a non-strict
       claim is a *tie* (counted as holding, margin reported as 0). A settled violation, or a
       tie of a strict claim, is *violated* only when a rigorous interval enclosure of the
       exact margin (:mod:`fimtheory.enclosures`, or the claim's ``evaluate_iv``) has upper end
       < 0 (strict: ≤ 0, e.g. a proved exact 0), escalating its precision up to
       ADJUDICATION_MAX_DPS. An enclosure with lower end > 0 *holds* a strict tie; one with
       lower end ≥ 0 (strict: > 0) that contradicts a settled mp violation means the mp
       evaluator is wrong: :class:`ReferenceDisagreement` is raised. Otherwise
       — no rigorous evaluator, an enclosure that never excludes 0, margins that never
       settle — the verdict is *undecided* (never violated).
    3. **Hypotheses.** Every enclosure re-decides the claim's hypotheses in interval
       arithmetic; one that certainly fails makes the verdict *undecided* with
       ``hypotheses_met=False`` ("hypotheses not met"), never a violation. An instance whose
       float hypothesis margins lie within HYPOTHESIS_BAND of the boundary
       (``outcome.hypothesis_margins``) has its hypotheses re-decided this way even when the
       margin holds.

    Returns an :class:`Adjudication` (unpacks as ``holds, margin``). Raises
    :class:`ReferenceDisagreement` (see 2.) and :class:`InputError` for a bad ``dps``.
    """
    if isinstance(dps, bool) or not isinstance(dps, int) or dps < 20:
        raise InputError(f"dps must be an integer >= 20, got {dps!r}")
    subject = claim_or_weakening
    strict = bool(getattr(subject, "strict", False))
    d0 = start_dps(instance, dps)
    kind, m, D, rungs = _mp_ladder(subject, instance, d0)
    rule = "> 0" if strict else "≥ 0"

    if kind in ("unsettled", "stalled"):
        vals = ", ".join(f"{_nstr(x, 8)} at {d}" for d, x in rungs)
        why = (
            f"mp margins did not settle up to {D} digits"
            if kind == "unsettled"
            else "the mp margin does not converge as the precision doubles (the mp evaluator loses precision)"
        )
        return Adjudication("undecided", None, m, None, D, f"{why} ({vals})", ladder=rungs)

    if kind == "settled" and (m > 0 if strict else m >= 0):
        adj = Adjudication(
            "holds", True, m, None, D, f"margin {_nstr(m)} {rule}, agreeing at {D // 2} and {D} digits", ladder=rungs
        )
        return _recheck_hypotheses(subject, instance, outcome, adj, strict)

    if kind == "tie" and not strict:
        adj = Adjudication(
            "tie",
            True,
            mpmath.mpf(0),
            None,
            D,
            f"tie: |margin| ≤ 1e-{D // 2} at {D} digits (value {_nstr(m, 3)}); counted as holding",
            ladder=rungs,
        )
        return _recheck_hypotheses(subject, instance, outcome, adj, strict)

    # A settled violation, or a tie of a strict claim: only a rigorous enclosure decides.
    attempts = 2 if kind == "tie" else max(1, int(math.log2(ADJUDICATION_MAX_DPS / D)) + 1)
    enc, d_enc, note, hyp_failed = _enclose(subject, instance, D, strict, attempts=attempts)
    margin = mpmath.mpf(0) if kind == "tie" else m
    what = f"strict claim with margin 0 to {D // 2} digits" if kind == "tie" else f"mp margin {_nstr(m)} at {D} digits"
    if hyp_failed:
        return Adjudication(
            "undecided",
            None,
            margin,
            None,
            d_enc,
            f"hypotheses not met at high precision: {note}",
            hypotheses_met=False,
            ladder=rungs,
        )
    verdict = _enclosure_verdict(enc, strict) if enc is not None else None
    if verdict is None:
        why = note or "no rigorous enclosure"
        return Adjudication("undecided", None, margin, enc, max(D, d_enc), f"{what}, but {why}", ladder=rungs)
    lo, hi = enc
    if verdict == "violated":
        if lo == hi == 0:
            reason = f"exact tie proved at {d_enc} digits (enclosure [0, 0]): fails the strict claim"
        else:
            reason = f"violation certified at {d_enc} digits: margin in [{_nstr(lo)}, {_nstr(hi)}]"
        return Adjudication("violated", False, margin, enc, d_enc, reason, ladder=rungs)
    if kind == "settled":
        # The mp margin settled on a violation that the rigorous enclosure excludes: the mp
        # evaluator computes something other than the claim's margin. The claim holds on the
        # instance (the enclosure proves it), and the disagreement is an error of the code.
        msg = (
            f"{subject.id}: the {D}-digit mp margin {_nstr(m)} settled on a violation, but the rigorous "
            f"enclosure [{_nstr(lo)}, {_nstr(hi)}] at {d_enc} digits is {rule}: the mp evaluator disagrees "
            "with the reference enclosure"
        )
        details = getattr(outcome, "details", None)
        if isinstance(details, dict):
            details[REFERENCE_DISAGREEMENT] = msg
        raise ReferenceDisagreement(f"{msg} (implementation disagrees with the reference)")
    return Adjudication(
        "holds",
        True,
        margin,
        enc,
        d_enc,
        f"{what}, but the rigorous enclosure [{_nstr(lo)}, {_nstr(hi)}] at {d_enc} digits is {rule}",
        ladder=rungs,
    )


def _recheck_hypotheses(subject, instance, outcome, adj: Adjudication, strict: bool) -> Adjudication:
    """For an instance whose float hypotheses lie near their boundary: re-decide them (and the
    margin) in interval arithmetic; a failed hypothesis turns the verdict into "hypotheses not
    met" (undecided), an undecidable one into undecided."""
    near = _near_hypotheses(outcome)
    if not near:
        return adj
    from fimtheory import enclosures

    names = ", ".join(near)
    if not enclosures.has_enclosure(subject):
        return replace(
            adj,
            verdict="undecided",
            holds=None,
            reason=f"hypotheses {names} near their boundary and no rigorous evaluator to re-decide them",
        )
    enc, d, note, failed = _enclose(subject, instance, adj.dps, strict, attempts=2)
    if failed:
        return replace(
            adj,
            verdict="undecided",
            holds=None,
            hypotheses_met=False,
            dps=max(adj.dps, d),
            reason=f"hypotheses not met at high precision: {note}",
        )
    if enc is None:
        return replace(
            adj,
            verdict="undecided",
            holds=None,
            dps=max(adj.dps, d),
            reason=f"hypotheses {names} near their boundary could not be re-decided: {note}",
        )
    return replace(adj, enclosure=enc, reason=f"{adj.reason}; hypotheses {names} re-decided in interval arithmetic")
