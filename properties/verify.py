"""Run the claims as Hypothesis properties, with mpmath adjudication of near-ties.

Per claim: draw instances from its strategy, skip (``assume``) those that miss the
hypotheses — counted as "hypotheses not met", never as verified — evaluate the margin in
float64, re-decide at ``dps`` digits every margin float64 cannot settle, steer the search
toward violations with ``hypothesis.target``, and stop at the first mpmath-confirmed
violation, which Hypothesis then shrinks.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, assume, given, settings, target
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Unsatisfiable

from fimtheory.claims import REGISTRY, Claim, adjudicate, disagrees, get_claim
from fimtheory.errors import InputError
from properties.claim_strategies import strategy_for
from properties.serialize import instance_to_json

PROFILES = {
    # quick: the whole `fimtheory verify` in well under 30 s on 2 cores.
    "quick": {"max_examples": 100, "derandomize": False},
    # ci: derandomized (the same examples on every run), a little more than quick.
    "ci": {"max_examples": 150, "derandomize": True},
    "thorough": {"max_examples": 10_000, "derandomize": False},
}


class ConfirmedViolation(AssertionError):
    """An mpmath-confirmed counterexample (raised inside the property so Hypothesis shrinks it)."""


class ImplementationDisagreement(AssertionError):
    """float64 resolves a clear violation that the high-precision reference does not confirm:
    the float code under test and the reference disagree (reported as an error)."""


@dataclass
class ClaimReport:
    id: str
    status: str = "verified"
    examples: int = 0
    rejected: int = 0
    worst_margin: float = math.inf
    adjudicated: int = 0
    adjudications: list = field(default_factory=list)
    counterexample: dict | None = None
    seconds: float = 0.0
    not_met_reasons: dict = field(default_factory=dict)
    error: str = ""

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "examples": self.examples,
            "rejected": self.rejected,
            "worst_margin": None if math.isinf(self.worst_margin) else self.worst_margin,
            "adjudicated": self.adjudicated,
            "adjudications": self.adjudications,
            "counterexample": self.counterexample,
            "seconds": round(self.seconds, 3),
            "not_met_reasons": self.not_met_reasons,
            "error": self.error,
        }


def hypothesis_settings(profile: str, max_examples: int | None = None) -> settings:
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    p = PROFILES[profile]
    return settings(
        max_examples=max_examples or p["max_examples"],
        derandomize=p["derandomize"],
        deadline=None,
        database=None,
        print_blob=False,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    )


def check_property(
    subject,
    strategy,
    *,
    profile: str = "quick",
    seed: int = 0,
    dps: int = 50,
    max_examples: int | None = None,
    report_id: str | None = None,
    keep_adjudications: int = 20,
) -> ClaimReport:
    """Run one claim (or weakening) as a Hypothesis property; see module docstring."""
    report = ClaimReport(report_id or subject.id)
    reasons: Counter = Counter()
    failure: dict = {}
    strict = getattr(subject, "strict", False)

    @given(strategy)
    def prop(instance):
        out = subject.evaluate(instance)
        if not out.hypotheses_met:
            report.rejected += 1
            reasons[out.reason.split(" (")[0]] += 1
            assume(False)
        report.examples += 1
        margin = out.margin
        holds = (margin > 0) if strict else (margin >= 0)
        if out.needs_adjudication:
            holds, mp_margin = adjudicate(subject, instance, out, dps)
            report.adjudicated += 1
            if len(report.adjudications) < keep_adjudications:
                report.adjudications.append(
                    {"float_margin": margin, "mp_margin": float(mp_margin), "dps": dps, "holds": bool(holds)}
                )
            if disagrees(out, holds):
                failure.clear()
                failure.update(instance=instance, float_margin=out.margin, mp_margin=str(mp_margin),
                               details=out.details, reason="implementation disagrees with the reference")
                raise ImplementationDisagreement(
                    f"{subject.id}: float64 margin {out.margin:.6g} (resolved) but the {dps}-digit "
                    f"reference gives {float(mp_margin):.6g}: the implementation disagrees with the reference"
                )
            margin = float(mp_margin)
        else:
            mp_margin = None
        if math.isfinite(margin):
            report.worst_margin = min(report.worst_margin, margin)
            target(-margin, label="negated margin")
        for key, value in out.details.items():
            # Steer toward the tightest case of each sub-bound too (e.g. S2's second-order
            # ratio, which the overall margin — dominated by the first-order one — hides).
            if key.endswith("_ratio") and isinstance(value, float) and math.isfinite(value):
                target(value, label=key)
        if not holds:
            failure.clear()
            failure.update(
                instance=instance,
                float_margin=out.margin,
                mp_margin=None if mp_margin is None else str(mp_margin),
                details=out.details,
                reason=out.reason,
            )
            raise ConfirmedViolation(f"{subject.id}: margin {margin!r}")

    run = hypothesis_seed(seed)(settings(hypothesis_settings(profile, max_examples))(prop))
    t0 = time.perf_counter()
    try:
        run()
    except ImplementationDisagreement as exc:
        report.status = "error"
        report.error = str(exc)
        report.counterexample = {
            "kind": "implementation disagreement",
            "instance": instance_to_json(failure["instance"]),
            "float_margin": failure["float_margin"],
            "mp_margin": failure["mp_margin"],
            "details": {k: _plain(v) for k, v in failure["details"].items()},
            "reason": failure["reason"],
        }
    except Unsatisfiable:
        pass  # every drawn instance missed the hypotheses: reported below, never as verified
    except ConfirmedViolation:
        report.status = "falsified"
        report.counterexample = {
            "instance": instance_to_json(failure["instance"]),
            "float_margin": failure["float_margin"],
            "mp_margin": failure["mp_margin"],
            "details": {k: _plain(v) for k, v in failure["details"].items()},
            "reason": failure["reason"],
        }
    except Exception as exc:  # a crash in the code under test is an error, not a verdict
        report.status = "error"
        report.error = f"{type(exc).__name__}: {exc}"
    report.seconds = time.perf_counter() - t0
    report.not_met_reasons = dict(reasons)
    if report.status == "verified" and report.examples == 0:
        report.status = "hypotheses not met"
    return report


def _plain(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def verify_claim(claim: Claim, **kw) -> ClaimReport:
    return check_property(claim, strategy_for(claim.strategy), **kw)


def verify(claim_ids=None, *, profile="quick", seed=0, dps=50, progress=None) -> list[ClaimReport]:
    claims = [get_claim(c) for c in claim_ids] if claim_ids else list(REGISTRY.values())
    reports = []
    for i, claim in enumerate(claims):
        if progress:
            progress(i, len(claims), claim.id)
        reports.append(verify_claim(claim, profile=profile, seed=seed, dps=dps))
    if progress:
        progress(len(claims), len(claims), "")
    return reports


def format_table(reports: list[ClaimReport]) -> str:
    head = f"{'claim':<8} {'examples':>8} {'not met':>8} {'worst margin':>13} {'adjud.':>6}  {'status':<18} {'s':>6}"
    lines = [head, "-" * len(head)]
    for r in reports:
        wm = "—" if math.isinf(r.worst_margin) else f"{r.worst_margin:.3e}"
        lines.append(
            f"{r.id:<8} {r.examples:>8} {r.rejected:>8} {wm:>13} {r.adjudicated:>6}  {r.status:<18} {r.seconds:>6.2f}"
        )
    return "\n".join(lines)
