"""S2's strategy draws around its hypothesis 2η < γ, so that ``verify --claim S2`` tests the
hypothesis check itself.

Below the boundary S2 holds; in the band γ/2 ≤ η < γ (and above γ) the hypothesis fails and the
remainder bounds 2η²/(γ − 2η), 4η³/(γ(γ − 2η)) are negative while the remainders are not, so an
evaluator whose check let such an instance through would apply a false bound. Every ρ = η/γ here
is measured against an independent reference (dense float64 eigenvalues and 2-norm; mpmath's
``eigsy`` at 50 digits for the remainders), never against the evaluator under test.
"""

from __future__ import annotations

import inspect
import re

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from fimtheory import bounds, claims_series
from fimtheory.claims import get_claim
from fimtheory.errors import HypothesesNotMet, InputError
from properties import verify
from properties.claim_strategies import S2_BAND_REGIONS, s2_hypothesis_band, strategy_for
from properties.verify import check_property

_PINNED = settings(
    max_examples=200,
    database=None,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.generate],
)


def _rho(inst) -> float:
    """η/γ from dense float64: ‖E‖₂ over the gap of A's two largest eigenvalues."""
    w = np.linalg.eigvalsh(inst.A)
    return float(np.linalg.norm(inst.E, 2) / (w[-1] - w[-2]))


def _draw(strategy) -> list:
    found = []

    @_PINNED
    @given(strategy)
    def collect(inst):
        found.append(inst)

    with verify._without_local_constants():  # the same draws in every process
        collect()
    return found


def _region(rho: float) -> str:
    return "below" if rho < 0.5 else "band" if rho < 1.0 else "above"


def test_s2_strategy_draws_on_both_sides_of_the_boundary_and_evaluate_agrees():
    drawn = _draw(strategy_for("S2"))
    by_region = {"below": 0, "band": 0, "above": 0}
    near = 0
    for inst in drawn:
        rho = _rho(inst)
        by_region[_region(rho)] += 1
        near += 0.45 <= rho < 0.5
        out = get_claim("S2").evaluate(inst)
        # no draw lies within float resolution of ρ = 1/2 (10⁻⁶ relative at the closest)
        assert abs(2 * rho - 1) > 1e-7, rho
        assert out.hypotheses_met is (2 * rho < 1), (rho, out.reason)
        if not out.hypotheses_met:
            assert out.reason.startswith("needs 2η < γ"), out.reason
    assert by_region["band"] >= 5 and by_region["above"] >= 5 and near >= 5, (by_region, near)
    assert by_region["below"] > by_region["band"] + by_region["above"], by_region


@pytest.mark.parametrize("region", S2_BAND_REGIONS)
def test_each_region_draws_what_it_says(region):
    lo, hi = {"below": (0.45, 0.5 * (1 - 1e-6)), "band": (0.5 * (1 + 1e-6), 1 - 5e-7), "above": (1 + 1e-6, 1.25)}[
        region
    ]
    drawn = _draw(s2_hypothesis_band(regions=(region,)))
    assert len(drawn) >= 50
    for inst in drawn:
        w = np.linalg.eigvalsh(inst.A)
        assert w[0] >= -1e-12 * w[-1] and 2 <= inst.n <= 5  # A ⪰ 0 up to rounding
        assert lo * (1 - 1e-12) <= _rho(inst) <= hi * (1 + 1e-12), (region, _rho(inst))


@pytest.mark.parametrize("regions", [("inside",), (), ("band", "middle")])
def test_region_names_are_checked(regions):
    with pytest.raises(InputError, match="regions must be a non-empty subset"):
        _draw(s2_hypothesis_band(regions=regions))


def _mp_remainders(inst, dps=50):
    """(γ, η, |λ' − λ1 − a1|, |λ' − λ1 − a1 − a2|) from mpmath.eigsy, a1 = vᵀEv,
    a2 = Σ_j (v_jᵀEv)²/(λ1 − λj) in A's eigenbasis."""
    with mpmath.workdps(dps):
        A, E = mpmath.matrix(inst.A.tolist()), mpmath.matrix(inst.E.tolist())
        lam, V = mpmath.eigsy(A)
        order = sorted(range(inst.n), key=lambda i: -lam[i])
        lam1 = lam[order[0]]
        v = V[:, order[0]]
        a1 = (v.T * E * v)[0, 0]
        a2 = sum(((V[:, j].T * E * v)[0, 0]) ** 2 / (lam1 - lam[j]) for j in order[1:])
        gap = lam1 - lam[order[1]]
        eta = max(abs(x) for x in mpmath.eigsy(E)[0])
        top = max(mpmath.eigsy(A + E)[0])
        return gap, eta, abs(top - lam1 - a1), abs(top - lam1 - a1 - a2)


def test_in_the_band_the_bounds_are_negative_and_the_remainders_are_not():
    """On every band draw S2's inequality itself fails (bound < 0 ≤ remainder), so using the
    bounds there is wrong; bounds.remainder_bounds refuses those instances."""
    drawn = _draw(s2_hypothesis_band(regions=("band",)))[:40]
    positive_remainder = 0
    for inst in drawn:
        gap, eta, r1, r2 = _mp_remainders(inst)
        with mpmath.workdps(50):
            assert gap / 2 < eta < gap
            b1 = 2 * eta**2 / (gap - 2 * eta)
            b2 = 4 * eta**3 / (gap * (gap - 2 * eta))
            assert b1 < 0 and b2 < 0 and r1 >= 0 and r2 >= 0
            assert r1 > b1 and r2 > b2  # |λ' − λ1 − a1 − a2| ≤ 4η³/(γ(γ − 2η)) is false
            positive_remainder += r2 > mpmath.mpf(10) ** -20 * eta
        w = np.linalg.eigvalsh(inst.A)
        with pytest.raises(HypothesesNotMet, match="2η < γ"):
            bounds.remainder_bounds(float(np.linalg.norm(inst.E, 2)), float(w[-1] - w[-2]))
    assert positive_remainder >= len(drawn) // 2


def _weakened_series_setup():
    """claims_series._series_setup with its check 2η < γ weakened to η < γ (the planted bug of
    tests/test_planted_bugs.py, applied in this process only)."""
    src = inspect.getsource(claims_series._series_setup)
    assert src.count("if not 2 * eta < eig.gap:") == 1, "the check moved: update this test"
    ns = dict(vars(claims_series))
    exec(src.replace("if not 2 * eta < eig.gap:", "if not eta < eig.gap:"), ns)  # noqa: S102
    return ns["_series_setup"]


def test_verify_counts_the_band_as_not_met_and_catches_a_weakened_check(monkeypatch):
    claim = get_claim("S2")
    good = check_property(claim, strategy_for("S2"), profile="ci", seed=0)
    assert good.status == "verified" and good.examples == good.examples_requested
    assert good.rejected > 0 and good.not_met_reasons == {"needs 2η < γ": good.rejected}
    monkeypatch.setattr(claims_series, "_series_setup", _weakened_series_setup())
    bad = check_property(claim, strategy_for("S2"), profile="ci", seed=0)
    # The weakened check lets a band instance through; bounds.remainder_bounds checks 2η < γ
    # again and raises: the run ends in an error naming the hypothesis and the instance's η, γ.
    assert bad.status == "error", bad.to_json()
    found = re.fullmatch(r"HypothesesNotMet: S2 needs 2η < γ; got η = (\S+), γ = (\S+)", bad.error)
    assert found, bad.error
    eta, gap = float(found[1]), float(found[2])
    assert gap <= 2 * eta * (1 + 1e-5) and eta <= gap * (1 + 1e-5), (eta, gap)
