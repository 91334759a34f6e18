"""From a claim's float outcome on a real-model instance to a status, as ``fimtheory verify`` decides.

The decision, per instance (one quantized draw, one ensemble, one σ stream):

1. hypotheses not met → ``"hypotheses not met"`` with the claim's reason (never verified);
2. a float margin that holds and that float64 resolves (the claim does not ask for
   adjudication) → ``"verified"``;
3. otherwise the sign is decided at high precision on the *exact float64 inputs* of the
   instance by :func:`fimtheory.claims.adjudicate`: ``holds`` / ``tie`` → ``"verified"``,
   ``violated`` (a rigorous enclosure of the margin below 0) → ``"falsified"``, ``undecided``
   → ``"inconclusive"`` with the reason. An E that is exactly zero is a proved tie (every
   E-term vanishes) and needs no arithmetic. Without an instance, above ``max_dim`` or with
   the adjudication budget spent, the instance is ``"inconclusive"`` with that reason —
   a float margin alone never falsifies anything;
4. a float margin that float64 resolves below −ADJUDICATION_RTOL while the reference says
   the claim holds is an implementation/reference disagreement → ``"error"``
   (:func:`fimtheory.claims.disagrees`), as in ``verify``.

:func:`fimtheory.claims.adjudicate` returns an ``Adjudication`` (``verdict``, ``holds``,
``margin``, ``enclosure``, ``dps``, ``reason``). An older tuple ``(holds, mp_margin)`` without
an enclosure is accepted too: a negative mp margin is then ``"inconclusive"`` (a violation
is not certified), never ``"falsified"``.
"""

from __future__ import annotations

import math

import numpy as np

from fimtheory.claims import Outcome, adjudicate, disagrees
from fimtheory.instances import MatrixPerturbation

#: Status words of a claim decision (``measured`` / ``skipped`` rows are not decisions).
DECISION_STATUSES = ("verified", "falsified", "inconclusive", "hypotheses not met", "error")

try:  # raised by adjudicators that cross-check the mp margin against the enclosure
    from fimtheory.claims import ReferenceDisagreement as _REFERENCE_DISAGREEMENT
except ImportError:  # pragma: no cover - an older fimtheory.claims

    class _REFERENCE_DISAGREEMENT(Exception):  # noqa: N801 - never raised
        pass


_VERDICT_STATUS = {"holds": "verified", "tie": "verified", "violated": "falsified", "undecided": "inconclusive"}


def _mp_float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):  # pragma: no cover - an mpf always converts
        return float("nan")


def read_adjudication(result) -> dict:
    """The fields of an adjudication result (an ``Adjudication`` or an old ``(holds, m)``)."""
    verdict = getattr(result, "verdict", None)
    if verdict is not None:
        enc = getattr(result, "enclosure", None)
        return {
            "verdict": str(verdict),
            "mp_margin": _mp_float(result.margin),
            "mp_dps": int(getattr(result, "dps", 0) or 0),
            "enclosure": None if enc is None else [_mp_float(enc[0]), _mp_float(enc[1])],
            "adjudication_reason": str(getattr(result, "reason", "")),
        }
    holds, margin = result
    m = _mp_float(margin)
    if holds:
        verdict = "tie" if m == 0 else "holds"
        why = f"high-precision margin {m:.6g}"
    else:
        verdict = "undecided"
        why = f"high-precision margin {m:.6g} < 0 without a rigorous enclosure: a violation is not certified"
    return {"verdict": verdict, "mp_margin": m, "mp_dps": 0, "enclosure": None, "adjudication_reason": why}


class Adjudicator:
    """Turns a claim's float :class:`~fimtheory.claims.Outcome` into a status (module docstring).

    Parameters
    ----------
    max_dim : int
        Largest instance dimension adjudicated at high precision (mp eigh is O(n³) Python
        operations: ~5 s for 64 × 64 at 50 digits, ~8× that for 128 × 128).
    dps : int
        Starting digits of an adjudication (it escalates on its own).
    budget : int
        Adjudications per run; beyond it an instance that needs one is ``inconclusive``.
    """

    def __init__(self, max_dim: int, dps: int, budget: int = 4):
        self.max_dim = max_dim
        self.dps = dps
        self.budget = budget
        self.used = 0

    def decide(self, claim, outcome: Outcome, instance=None, dim: int = 1) -> tuple[str, dict]:
        """(status, extra details) for ``outcome`` of ``claim`` on ``instance``.

        ``extra`` always has ``float_margin`` and ``adjudicated`` (bool); it has ``verdict``
        and ``mp_margin`` (and ``mp_dps``, ``enclosure``, ``adjudication_reason``) when the
        sign was decided at high precision or proved, ``reason`` when the status is
        ``inconclusive``, ``error`` or ``hypotheses not met``.
        """
        if not outcome.hypotheses_met:
            return "hypotheses not met", {"reason": outcome.reason, "adjudicated": False}
        m = float(outcome.margin)
        holds = claim.holds(m) if math.isfinite(m) else False
        extra: dict = {"float_margin": m, "adjudicated": False}
        if holds and not outcome.needs_adjudication:
            return "verified", extra
        if isinstance(instance, MatrixPerturbation) and not claim.strict and not np.any(instance.E):
            # E = 0 exactly: λ_max(A+E) = λ1 and every E-term vanishes, so the margin is 0 in
            # exact arithmetic — a tie, which a non-strict claim allows. A proof, not a float.
            extra.update(
                exact_zero_E=True,
                verdict="tie",
                mp_margin=0.0,
                adjudication_reason="E = 0 exactly: the margin is 0 (a tie)",
            )
            return "verified", extra
        if instance is None:
            return "inconclusive", {
                **extra,
                "reason": (
                    f"float margin {m:.3g} needs a high-precision decision and no exact instance "
                    "is available: not decided"
                ),
            }
        if dim > self.max_dim:
            return "inconclusive", {
                **extra,
                "reason": (
                    f"float margin {m:.3g} needs a high-precision decision; dimension {dim} > "
                    f"{self.max_dim} (the profile's mp_max_dim): not adjudicated"
                ),
            }
        if self.used >= self.budget:
            return "inconclusive", {
                **extra,
                "reason": (
                    f"float margin {m:.3g} needs a high-precision decision; the run's "
                    f"adjudication budget ({self.budget}) is spent"
                ),
            }
        self.used += 1
        try:
            result = adjudicate(claim, instance, outcome, self.dps)
        except _REFERENCE_DISAGREEMENT as exc:
            # The mp evaluator settles on a violation its rigorous enclosure excludes: the
            # evaluators disagree (an error), never a verdict.
            return "error", {
                **extra,
                "adjudicated": True,
                "verdict": "undecided",
                "reason": f"implementation disagrees with the reference: {exc}",
            }
        except (ArithmeticError, ValueError) as exc:  # e.g. a degenerate mp eigenproblem
            return "inconclusive", {
                **extra,
                "adjudicated": True,
                "verdict": "undecided",
                "reason": f"high-precision adjudication failed: {type(exc).__name__}: {exc}",
            }
        info = read_adjudication(result)
        extra.update(adjudicated=True, **info)
        if getattr(result, "hypotheses_met", True) is False:
            extra["reason"] = info["adjudication_reason"]
            return "hypotheses not met", extra
        if info["mp_dps"] == 0:
            extra["mp_dps"] = self.dps
        status = _VERDICT_STATUS.get(info["verdict"], "inconclusive")
        if status == "verified" and disagrees(outcome, True):
            extra["reason"] = (
                f"float64 resolves margin {m:.6g} but the high-precision reference "
                f"gives {info['mp_margin']:.6g}: the implementation disagrees "
                "with the reference"
            )
            return "error", extra
        if status == "inconclusive":
            extra["reason"] = info["adjudication_reason"] or "high-precision adjudication undecided"
        return status, extra
