"""The departure family, Proposition 3.2: an input departure under local coordinate
monotonicity (LCM) raises Λ pointwise, in mean and in every quantile (P3.2).

The claim with its hypothesis, its (exact) float64 evaluator and its weakening, declared
through :mod:`fimtheory.claim_api`; the profiles come from :mod:`fimtheory.departure`; the
rigorous enclosures are :data:`fimtheory.enclosures.ENCLOSURES` under the same ids.
"""

from __future__ import annotations

import math

import numpy as np

from fimtheory.claim_api import Outcome, declare_claim, declare_weakening, exact_mp
from fimtheory.claim_support import TINY
from fimtheory.departure import elevation_margins, profiles
from fimtheory.instances import DepartureInstance

_S = "properties.claim_strategies:"


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


def _p32_no_lcm(inst: DepartureInstance) -> Outcome:
    return _p32(inst, require_lcm=False)


P32 = declare_claim(
    "P3.2",
    title="input departure under LCM raises Λ pointwise, in mean and in every quantile",
    statement="If t ↦ Λ(x + t u(x)) is non-decreasing on [0, T] for every calibration input x (LCM), "
    "then Λ(x_t) ≥ Λ(x) for all t, and the mean and q-quantile of {Λ(x_t)} are ≥ those of "
    "{Λ(x)}. Checked on logistic and softmax regression; LCM is checked on a uniform grid "
    "(resolution T/steps) and the conclusion asserted at the same grid points.",
    hypotheses=("LCM along every displacement path (at the stated grid resolution)",),
    evaluate=_p32,
    evaluate_mp=exact_mp(_p32),
    strategy=_S + "P3.2",
    paper_label="Prop 3.2",
    weakenings=(
        declare_weakening(
            "P3.2-no-LCM",
            title="departure raises Λ without LCM",
            dropped="LCM",
            evaluate=_p32_no_lcm,
            evaluate_mp=exact_mp(_p32_no_lcm),
            strategy=_S + "P3.2-no-LCM",
        ),
    ),
)


def claims() -> list:
    """The family's claims, in registry order."""
    return [P32]
