"""The claims as Hypothesis properties (fast coverage), and the runner's teeth."""

from __future__ import annotations

import dataclasses
import importlib.util
import math

import hypothesis.strategies as st
import mpmath
import numpy as np
import pytest

from fimtheory.claims import REGISTRY, Claim, Outcome, get_claim
from fimtheory.instances import MatrixPerturbation
from properties import verify as verify_module
from properties.certify import parse_exact
from properties.claim_strategies import strategy_for
from properties.serialize import instance_from_json, instance_to_json
from properties.verify import ClaimReport, check_property, exit_status, targeting_for, verify_claim

HAVE_FIM_EXPANSION = importlib.util.find_spec("fimtheory._generated.fim_expansion") is not None
NEEDS_MODELS = {"P3.2"}


@pytest.mark.parametrize("claim_id", list(REGISTRY))
def test_claim_verified_under_ci_profile(claim_id):
    if claim_id in NEEDS_MODELS and not HAVE_FIM_EXPANSION:
        pytest.skip("fimtheory._generated.fim_expansion not generated yet (python -m symbolic.generate)")
    report = verify_claim(get_claim(claim_id), profile="ci", seed=0, max_examples=40)
    assert report.status == "verified", report.to_json()
    assert report.examples == report.examples_requested == 40
    assert report.undecided == 0
    # Adjudications are recorded with both margins and agree in sign with their verdict: on a
    # verified claim every one holds — a strict claim needs mp margin > 0, a non-strict one
    # >= 0 or a tie (which a strict claim can never be credited with).
    strict = get_claim(claim_id).strict
    for adj in report.adjudications:
        assert adj["holds"] is True, adj
        if adj["verdict"] == "tie":
            assert not strict, adj
        else:
            assert adj["verdict"] == "holds", adj
            assert (adj["mp_margin"] > 0) if strict else (adj["mp_margin"] >= 0), adj


def _wrong_weyl(inst: MatrixPerturbation) -> Outcome:
    """A planted error: 'λ_max(A+E) ≥ λ_max(A) + λ_max(E)' (Weyl's upper bound read as a lower one)."""
    top = np.linalg.eigvalsh(inst.A + inst.E)[-1]
    rhs = np.linalg.eigvalsh(inst.A)[-1] + np.linalg.eigvalsh(inst.E)[-1]
    scale = np.abs(np.linalg.eigvalsh(inst.A)).max() + np.abs(np.linalg.eigvalsh(inst.E)).max()
    return Outcome(True, float((top - rhs) / scale), bool((top - rhs) / scale <= 1e-6))


def _wrong_weyl_mp(inst, dps):
    from fimtheory.highprec import mp_eigh, mp_matrix, working_precision

    with working_precision(dps):
        top = mp_eigh(mp_matrix(inst.A) + mp_matrix(inst.E), dps).lambda_max
        la = mp_eigh(inst.A, dps)
        le = mp_eigh(inst.E, dps)
        scale = max(abs(x) for x in la.eigenvalues) + max(abs(x) for x in le.eigenvalues)
        return (top - la.lambda_max - le.lambda_max) / scale


def _wrong_weyl_iv(inst, dps):
    """Rigorous enclosure of the same margin (a violation is certified only from one)."""
    from fimtheory import enclosures as en
    from fimtheory.highprec import working_precision

    with working_precision(dps):
        top = en.iv_lambda_max(en.iv_sum(inst.A, inst.E))
        la, le = en.float_eigenvalue_enclosures(inst.A), en.float_eigenvalue_enclosures(inst.E)
        m = (top - la[0] - le[0]) / (en.iv_sym_norm(la) + en.iv_sym_norm(le))
        return en.lo(m), en.hi(m)


WRONG = Claim(
    "WRONG",
    "planted",
    "λ_max(A+E) ≥ λ_max(A)+λ_max(E)",
    (),
    _wrong_weyl,
    _wrong_weyl_mp,
    "properties.claim_strategies:W",
    evaluate_iv=_wrong_weyl_iv,
)


def test_runner_falsifies_a_wrong_claim_and_shrinks_it():
    report = check_property(WRONG, strategy_for("W"), profile="ci", seed=0, max_examples=100)
    assert report.status == "falsified"
    cx = report.counterexample
    inst = instance_from_json(cx["instance"])
    # the counterexample replays: the wrong inequality fails on it in float and at 50 digits
    assert _wrong_weyl(inst).margin < 0
    # every falsification went through the adjudicator: a violation verdict with its margin
    assert cx["verdict"] == "violated"
    assert float(cx["mp_margin"]) < 0 and cx["float_margin"] < 0
    # ... certified by a rigorous enclosure, stored with exact endpoints, strictly below 0
    lo, hi = parse_exact(cx["enclosure"]["lo_exact"]), parse_exact(cx["enclosure"]["hi_exact"])
    assert lo <= hi < 0
    # the stored mp margin (15 digits) lies in the enclosure up to its own rounding
    assert abs(mpmath.mpf(cx["mp_margin"]) - hi) <= (hi - lo) + 1e-13 * abs(hi)
    # a 1×1 instance cannot violate it (equality): the reported one is a genuine one
    assert inst.A.shape[0] >= 2


def test_runner_counts_unmet_hypotheses_separately():
    claim = get_claim("S2")
    # A strategy whose instances never meet S2's hypotheses: a repeated top eigenvalue.
    report = check_property(claim, strategy_for("S2-repeated-top"), profile="ci", seed=0, max_examples=20)
    assert report.examples == 0
    assert report.rejected > 0
    assert report.status == "hypotheses not met"


def test_runner_reports_a_crash_as_error_not_verdict():
    def boom(inst):
        raise ZeroDivisionError("planted crash")

    crashing = dataclasses.replace(WRONG, id="CRASH", evaluate=boom)
    report = check_property(crashing, strategy_for("W"), profile="ci", seed=0, max_examples=5)
    assert report.status == "error"
    assert "planted crash" in report.error


def test_instances_roundtrip_bit_exactly():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((4, 4))
    A = A @ A.T
    E = rng.standard_normal((4, 4))
    inst = MatrixPerturbation(A, 0.5 * (E + E.T), v=None, origin="roundtrip")
    back = instance_from_json(instance_to_json(inst))
    assert np.array_equal(back.A, inst.A) and np.array_equal(back.E, inst.E)
    assert back.A.tobytes() == inst.A.tobytes()


def test_every_claim_and_weakening_has_a_strategy():
    for claim in REGISTRY.values():
        assert strategy_for(claim.strategy) is not None
        for w in claim.weakenings:
            assert strategy_for(w.strategy) is not None


# --------------------------------------------------------------------------------------
# "verified" only when earned: the requested examples ran, nothing undecided
# --------------------------------------------------------------------------------------


def _scalar_claim(evaluate, *, cid="STUB", strict=False, mp=None):
    """A claim for runner tests (instances from :func:`_tagged`)."""
    return Claim(cid, "stub", "stub", (), evaluate, mp or (lambda inst, dps: mpmath.mpf(1)), "unused", strict=strict)


def _tagged(ints):
    """Instances tagged by an integer k: A = [[k]], E = 0 (serialisable like real ones)."""
    return ints.map(lambda k: MatrixPerturbation(np.array([[float(k)]]), np.zeros((1, 1)), v=None, origin="stub"))


INTS = _tagged(st.integers(0, 10**6))


def _tag(inst) -> int:
    return int(inst.A[0, 0])


def _always_holds(inst):
    return Outcome(True, 1.0, False)


def test_mostly_rejected_strategy_is_inconclusive_not_verified():
    # Only 1 draw in 400 meets the "hypotheses": Hypothesis gives up long before 50 valid examples.
    def picky(inst):
        return _always_holds(inst) if _tag(inst) % 400 == 0 else Outcome.not_met("not a multiple of 400")

    claim = _scalar_claim(picky)
    report = check_property(claim, _tagged(st.integers(0, 10**9)), profile="ci", seed=0, max_examples=50)
    assert 0 < report.examples < 50  # some valid examples: the old runner called this "verified"
    assert report.status == "inconclusive", report.to_json()
    assert f"{report.examples} of 50 requested examples ran" in report.stop_reason
    assert "Hypothesis stopped" in report.stop_reason and "missed the hypotheses" in report.stop_reason
    assert exit_status([report], "ci") == 3 and exit_status([report], "quick") == 0


def test_more_examples_requested_than_the_strategy_has_is_inconclusive():
    claim = _scalar_claim(_always_holds)
    report = check_property(claim, _tagged(st.sampled_from([1, 2, 3])), profile="quick", seed=0, max_examples=50)
    assert report.examples == 3 and report.examples_requested == 50
    assert report.status == "inconclusive"
    assert "exhausted after 3 distinct examples of 50 requested" in report.stop_reason


def test_reached_count_matches_hypothesis_generation_statistics():
    report = check_property(_scalar_claim(_always_holds), INTS, profile="ci", seed=0, max_examples=60)
    assert report.status == "verified" and report.examples == 60 and report.stop_reason == ""
    assert report.hypothesis_statistics["generate"]["valid"] == 60
    assert report.hypothesis_statistics["stopped_because"] == "settings.max_examples=60"


def test_examples_are_counted_during_generation_only_not_while_shrinking():
    calls = []

    def counting_wrong_weyl(inst):
        calls.append(1)
        return _wrong_weyl(inst)

    claim = dataclasses.replace(WRONG, evaluate=counting_wrong_weyl)
    report = check_property(claim, strategy_for("W"), profile="ci", seed=0, max_examples=100)
    assert report.status == "falsified"
    gen = report.hypothesis_statistics["generate"]
    # the generation phase ran valid examples, then the first failing one ("interesting")
    assert report.examples == gen.get("valid", 0) + gen["interesting"]
    assert report.hypothesis_statistics["shrink"]  # shrinking happened ...
    assert len(calls) > report.examples + report.rejected  # ... and was not counted


class _FakeAdjudication:
    def __init__(self, verdict, holds, margin, enclosure=None, dps=200, reason="", hypotheses_met=True):
        self.verdict, self.holds, self.margin = verdict, holds, mpmath.mpf(margin)
        self.enclosure, self.dps, self.reason = enclosure, dps, reason
        self.hypotheses_met = hypotheses_met

    def __iter__(self):
        yield self.holds
        yield self.margin


def test_undecided_instances_make_the_claim_inconclusive_and_the_run_goes_on(monkeypatch):
    def near_tie(inst):
        return Outcome(True, 0.0, True)

    def fake(subject, inst, outcome, dps=50):
        if _tag(inst) % 3 == 0:
            return _FakeAdjudication("undecided", None, 0, dps=400, reason="enclosure straddles 0 at 400 digits")
        return _FakeAdjudication("tie", True, 0, dps=100, reason="tie")

    monkeypatch.setattr(verify_module, "adjudicate", fake)
    report = check_property(_scalar_claim(near_tie), INTS, profile="ci", seed=0, max_examples=40)
    assert report.examples == 40  # not stopped at the first undecided instance
    assert report.undecided > 0 and report.ties == 40 - report.undecided
    assert report.adjudicated == 40 and report.max_dps == 400
    assert report.status == "inconclusive"
    assert "undecided" in report.stop_reason and "straddles 0 at 400 digits" in report.stop_reason
    assert report.undecided_instances and report.undecided_instances[0]["reason"]
    doc = report.to_json()
    assert {"examples_requested", "examples", "ties", "undecided", "adjudicated", "max_dps", "stop_reason"} <= set(doc)
    assert exit_status([report], "thorough") == 3


def test_a_float_violation_is_falsified_only_through_the_adjudicator(monkeypatch):
    # float64 says "violated" and does not even ask for adjudication; the adjudicator cannot
    # decide: inconclusive, never falsified (the old runner falsified on the float sign).
    def float_violation(inst):
        return Outcome(True, -1e-9, False, float_resolved=False)

    monkeypatch.setattr(
        verify_module, "adjudicate", lambda *a, **k: _FakeAdjudication("undecided", None, 0, reason="no enclosure")
    )
    report = check_property(_scalar_claim(float_violation), INTS, profile="ci", seed=0, max_examples=10)
    assert report.status == "inconclusive" and report.counterexample is None


def test_a_certified_violation_stores_its_enclosure(monkeypatch):
    def float_violation(inst):
        return Outcome(True, -0.5, False, float_resolved=False)

    enclosure = (mpmath.mpf("-0.51"), mpmath.mpf("-0.49"))
    monkeypatch.setattr(
        verify_module,
        "adjudicate",
        lambda *a, **k: _FakeAdjudication("violated", False, -0.5, enclosure, 50, "violation certified at 50 digits"),
    )
    report = check_property(_scalar_claim(float_violation), INTS, profile="ci", seed=0, max_examples=10)
    assert report.status == "falsified"
    cx = report.counterexample
    assert cx["verdict"] == "violated" and cx["dps"] == 50
    stored = cx["enclosure"]
    assert [parse_exact(stored["lo_exact"]), parse_exact(stored["hi_exact"])] == list(enclosure)
    assert mpmath.mpf(stored["lo"]) <= enclosure[0] and mpmath.mpf(stored["hi"]) >= enclosure[1]  # outward
    assert cx["adjudication_reason"] == "violation certified at 50 digits"
    assert exit_status([report], "quick") == 1


def test_a_hypothesis_disproved_at_high_precision_counts_as_not_met(monkeypatch):
    def near_boundary(inst):
        return Outcome(True, 0.5, True)  # margin holds, but a hypothesis sits at its boundary

    def fake(subject, inst, outcome, dps=50):
        if _tag(inst) % 2:
            return _FakeAdjudication("undecided", None, 0, reason="gap ≤ 0 certified", hypotheses_met=False)
        return _FakeAdjudication("holds", True, 0.5)

    monkeypatch.setattr(verify_module, "adjudicate", fake)
    report = check_property(_scalar_claim(near_boundary), INTS, profile="ci", seed=0, max_examples=30)
    assert report.status == "verified" and report.examples == 30 and report.undecided == 0
    assert report.rejected > 0 and report.not_met_reasons == {"hypothesis fails at high precision": report.rejected}


def test_a_reference_disagreement_is_an_error_with_its_instance(monkeypatch):
    from fimtheory.claims import ReferenceDisagreement

    def needs_adjudication(inst):
        return Outcome(True, 0.0, True)

    def fake(subject, inst, outcome, dps=50):
        raise ReferenceDisagreement(
            "STUB: mp settled at -1 but the enclosure is >= 0 (implementation disagrees with the reference)"
        )

    monkeypatch.setattr(verify_module, "adjudicate", fake)
    report = check_property(_scalar_claim(needs_adjudication), INTS, profile="ci", seed=0, max_examples=10)
    assert report.status == "error"
    assert "disagrees with the reference" in report.error
    assert report.counterexample["kind"] == "implementation disagreement"
    assert report.counterexample["instance"]["type"] == "MatrixPerturbation"


def test_exit_status_by_profile():
    def rep(status):
        return ClaimReport("X", status=status)

    assert exit_status([rep("verified"), rep("hypotheses not met")], "thorough") == 0
    for profile in ("quick", "ci", "thorough"):
        assert exit_status([rep("falsified"), rep("inconclusive")], profile) == 1
    for bad in ("inconclusive", "error"):
        assert exit_status([rep("verified"), rep(bad)], "ci") == 3
        assert exit_status([rep("verified"), rep(bad)], "thorough") == 3
        assert exit_status([rep("verified"), rep(bad)], "quick") == 0


def test_targeting_is_off_only_where_measured_to_stop_the_run_early():
    # T4.3c stopped at ~390 of 2000 and S3 at 4,273 of 10,000 with the target phase on;
    # T4.3c-S draws T4.3c's ensembles (measurement in properties.verify.TARGETING)
    off = {"T4.3c", "S3", "T4.3c-S"}
    assert all(targeting_for(c) is False for c in off)
    assert all(targeting_for(c) for c in REGISTRY if c not in off)


@pytest.mark.slow
def test_t43c_reaches_requested_examples_beyond_the_target_phase_threshold():
    # >= 1000 requested examples switch Hypothesis' target phase on; with it T4.3c stopped
    # at ~390 of 2000 (overruns). With the per-claim setting it reaches them all.
    report = verify_claim(get_claim("T4.3c"), profile="thorough", seed=1, max_examples=1200)
    assert report.targeting is False
    assert report.status == "verified", report.stop_reason
    assert report.examples == 1200
    assert math.isfinite(report.worst_margin) and report.worst_margin >= 0


def test_table_columns_align_for_long_claim_ids():
    from properties.verify import format_table

    reps = [ClaimReport("W", examples=3, examples_requested=3), ClaimReport("EQ1-M-BOUNDS", examples=1)]
    lines = format_table(reps).splitlines()
    head, rows = lines[0], lines[2:4]
    col = head.index("status")
    assert [r[col:].split()[0] for r in rows] == ["verified", "verified"]
    assert rows[0].index("3/3") + 3 == rows[1].index("1/0") + 3 == head.index("examples") + len("examples")


def test_examples_do_not_depend_on_which_project_modules_are_imported(tmp_path, monkeypatch):
    # Hypothesis draws some values from the numeric constants of local modules in sys.modules;
    # verify pins that pool, so importing a module full of constants changes nothing.
    import importlib
    import sys

    def run():
        rep = check_property(get_claim("W"), strategy_for("W"), profile="quick", seed=7, max_examples=60)
        assert rep.local_constants_pinned is True
        return [(a["float_margin"], a["mp_margin"]) for a in rep.adjudications], rep.worst_margin, rep.ties

    before = run()
    floats = [0.1234567, -3.75e-7, 2.5e12, 1e-300, 7.0, -0.0, 13.0, 0.3333, 1e5, 2.0**-40]
    values, ints = ", ".join(map(repr, floats)), ", ".join(map(str, range(500)))
    (tmp_path / "many_constants_mod.py").write_text(f"VALUES = [{values}]\nINTS = [{ints}]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("many_constants_mod")
    try:
        assert run() == before
    finally:
        sys.modules.pop("many_constants_mod", None)


def _s2_with_hypothesis_margin(value: float):
    """S2 whose outcomes claim "hypotheses met" while reporting ``value`` as the 2η < γ margin."""
    s2 = get_claim("S2")

    def evaluate(inst):
        out = s2.evaluate(inst)
        if not out.hypotheses_met:
            return out
        return dataclasses.replace(out, hypothesis_margins={**out.hypothesis_margins, "2η < γ": value})

    return dataclasses.replace(s2, id="S2-margin-planted", evaluate=evaluate)


def test_a_met_outcome_with_a_clearly_failing_hypothesis_margin_is_an_error():
    # A hypothesis check that lets an instance through while the evaluator's own margin says the
    # hypothesis fails beyond rounding is a bug of the code: an error with the instance, never a
    # rejection ("hypotheses not met") and never a verdict.
    from fimtheory.adjudication import HYPOTHESIS_BAND

    report = check_property(
        _s2_with_hypothesis_margin(-1e3 * HYPOTHESIS_BAND), strategy_for("S2"), profile="ci", seed=0, max_examples=10
    )
    assert report.status == "error"
    assert "disagrees with the reference" in report.error and "2η < γ = -" in report.error
    assert report.counterexample and report.counterexample["kind"] == "implementation disagreement"
    assert report.rejected == 0 or "hypothesis fails at high precision" not in report.not_met_reasons


@pytest.mark.parametrize("factor", [-0.5, 0.0, 0.5, 2.0])
def test_hypothesis_margins_within_rounding_or_met_are_not_contradictions(factor):
    from fimtheory.adjudication import HYPOTHESIS_BAND

    out = Outcome(True, 1.0, True, hypothesis_margins={"2η < γ": factor * HYPOTHESIS_BAND, "γ > 0": 1.0})
    assert verify_module.contradicted_hypotheses(out) == ""
    out = Outcome(True, 1.0, True, hypothesis_margins={"2η < γ": -1.01 * HYPOTHESIS_BAND, "γ > 0": -2.0})
    assert verify_module.contradicted_hypotheses(out) == "2η < γ = -2.24e-12, γ > 0 = -2"
    # an outcome that already says "not met" is a rejection, not a contradiction
    not_met = Outcome(False, float("nan"), True, reason="needs 2η < γ", hypothesis_margins={"2η < γ": -1.0})
    assert verify_module.contradicted_hypotheses(not_met) == ""
