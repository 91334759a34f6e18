"""The property runner's contract (properties/verify.py), stated as small, fast properties.

Written against the mutants of the whole module. Every test runs a scripted claim (instances
tagged by an integer, an evaluator whose margins and hypotheses are a stated function of the
tag) or a scripted adjudicator, so that what the report must say is known independently of
the runner: the examples and rejections the evaluator itself saw, the verdict the adjudicator
was told to give, the margins it returned, the exact text of a stop reason or an error.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import hypothesis.strategies as st
import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase

from fimtheory.claims import REGISTRY, Claim, Outcome, get_claim
from fimtheory.errors import InputError
from fimtheory.instances import MatrixPerturbation
from properties import verify as V
from properties.certify import parse_exact
from properties.serialize import instance_to_json

# ------------------------------------------------------------------------------ fixtures


def _inst(k: int) -> MatrixPerturbation:
    return MatrixPerturbation(np.array([[float(k)]]), np.zeros((1, 1)), v=None, origin="stub")


def _tag(inst) -> int:
    return int(inst.A[0, 0])


INTS = st.integers(0, 10**6).map(_inst)


def _claim(evaluate, *, cid="STUB", strict=False):
    return Claim(cid, "stub", "stub", (), evaluate, lambda inst, dps: mpmath.mpf(1), "unused", strict=strict)


class _Adj:
    """An adjudicator answer of the current contract."""

    def __init__(self, verdict, holds, margin, enclosure=None, dps=50, reason="", hypotheses_met=True):
        self.verdict, self.holds, self.margin = verdict, holds, margin
        self.enclosure, self.dps, self.reason, self.hypotheses_met = enclosure, dps, reason, hypotheses_met


def _run(evaluate, n=20, *, strict=False, profile="ci", **kw):
    return V.check_property(_claim(evaluate, strict=strict), INTS, profile=profile, seed=0, max_examples=n, **kw)


# --------------------------------------------------------------------------------- decide


def test_decide_reads_the_current_contract_field_by_field(monkeypatch):
    calls = []
    enc = [mpmath.mpf(-2), mpmath.mpf(-1)]

    def fake(subject, instance, outcome, dps):
        calls.append((subject, instance, outcome, dps))
        return _Adj("violated", False, mpmath.mpf(-1.5), enc, 123, "certified", True)

    monkeypatch.setattr(V, "adjudicate", fake)
    subj, inst, out = object(), object(), Outcome(True, -1.0, True)
    d = V.decide(subj, inst, out, 77)
    assert calls == [(subj, inst, out, 77)]
    assert d == V.Decision(
        "violated", False, mpmath.mpf(-1.5), (mpmath.mpf(-2), mpmath.mpf(-1)), 123, "certified", True
    )
    assert type(d.enclosure) is tuple and type(d.dps) is int and type(d.verdict) is str


def test_decide_fills_what_an_answer_leaves_out(monkeypatch):
    # only verdict/holds/margin: no enclosure, the precision asked for, no reason, hypotheses met
    monkeypatch.setattr(V, "adjudicate", lambda *a: SimpleNamespace(verdict="holds", holds=True, margin=2))
    assert V.decide(None, None, None, 61) == V.Decision("holds", True, 2, None, 61, "", True)
    answer = SimpleNamespace(verdict="undecided", holds=None, margin=0, enclosure=None, dps=90.0, reason=7)
    answer.hypotheses_met = 0
    monkeypatch.setattr(V, "adjudicate", lambda *a: answer)
    d = V.decide(None, None, None, 61)
    assert d == V.Decision("undecided", None, 0, None, 90, "7", False)
    assert d.hypotheses_met is False and type(d.dps) is int and d.reason == "7"


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ((None, 5), V.Decision("undecided", None, 5, None, 44, "adjudicator could not decide")),
        ((True, 0), V.Decision("tie", True, 0, None, 44, "exact tie at high precision")),
        ((True, mpmath.mpf(0)), V.Decision("tie", True, mpmath.mpf(0), None, 44, "exact tie at high precision")),
        ((True, 0.25), V.Decision("holds", True, 0.25, None, 44, "")),
        ((1, 0.25), V.Decision("holds", True, 0.25, None, 44, "")),
        ((False, -3), V.Decision("violated", False, -3, None, 44, "")),
        ((0, 0), V.Decision("violated", False, 0, None, 44, "")),
    ],
)
def test_decide_reads_the_old_pair_contract(monkeypatch, pair, expected):
    monkeypatch.setattr(V, "adjudicate", lambda *a: pair)
    d = V.decide(None, None, None, 44)
    assert d == expected
    assert d.holds is expected.holds and d.hypotheses_met is True


# ------------------------------------------------------------------------ check_property


def test_counts_examples_rejections_reasons_and_the_worst_margin():
    seen = []

    def ev(inst):
        k = _tag(inst)
        seen.append(k)
        if k % 3 == 0:
            return Outcome.not_met(f"k divisible by 3 (k={k})")
        return Outcome(True, 1.0 + k / 1e6, False)

    rep = _run(ev, 25)
    valid = [k for k in seen if k % 3]
    assert rep.status == "verified" and rep.stop_reason == "" and rep.error == ""
    assert rep.examples == len(valid) == rep.examples_requested == 25
    assert rep.rejected == len(seen) - len(valid) > 0
    assert rep.not_met_reasons == {"k divisible by 3": rep.rejected}
    assert rep.worst_margin == min(1.0 + k / 1e6 for k in valid)
    assert rep.adjudicated == rep.ties == rep.undecided == rep.max_dps == 0
    assert rep.adjudications == [] and rep.undecided_instances == [] and rep.counterexample is None
    assert rep.id == "STUB" and rep.targeting is True and rep.local_constants_pinned is True
    assert rep.hypothesis_statistics["generate"]["valid"] == 25
    assert rep.hypothesis_statistics["stopped_because"] == "settings.max_examples=25"


def test_report_id_and_targeting_choice():
    def holds(inst):
        return Outcome(True, 1.0, False)

    assert V.check_property(_claim(holds), INTS, profile="ci", max_examples=3, report_id="T4.3c").targeting is False
    rep = V.check_property(_claim(holds), INTS, profile="ci", max_examples=3, report_id="OTHER")
    assert rep.id == "OTHER" and rep.targeting is True
    rep = V.check_property(_claim(holds, cid="S3"), INTS, profile="ci", max_examples=3)
    assert rep.id == "S3" and rep.targeting is False
    rep = V.check_property(_claim(holds, cid="S3"), INTS, profile="ci", max_examples=3, targeting=1)
    assert rep.targeting is True
    rep = V.check_property(_claim(holds), INTS, profile="ci", max_examples=3, targeting=0)
    assert rep.targeting is False
    assert rep.examples == rep.examples_requested == 3 and rep.status == "verified"


def test_profile_default_number_of_examples():
    rep = V.check_property(_claim(lambda i: Outcome(True, 1.0, False)), INTS, profile="quick")
    assert rep.examples_requested == rep.examples == 100 and rep.status == "verified"


@pytest.mark.parametrize("seed", [-1, True, 1.5, "0", None])
def test_bad_seed_is_refused(seed):
    with pytest.raises(InputError, match="seed must be a non-negative integer"):
        V.check_property(_claim(lambda i: Outcome(True, 1.0, False)), INTS, seed=seed, max_examples=2)


def test_seed_zero_and_positive_are_accepted():
    for seed in (0, 5):
        rep = V.check_property(_claim(lambda i: Outcome(True, 1.0, False)), INTS, seed=seed, max_examples=2)
        assert rep.status == "verified"


@pytest.mark.parametrize("strict", [False, True])
def test_margin_zero_goes_to_the_adjudicator_only_for_a_strict_claim(monkeypatch, strict):
    asked = []

    def fake(subject, instance, outcome, dps):
        asked.append((subject.id, _tag(instance), outcome.margin, dps))
        return _Adj("holds", True, mpmath.mpf("0.5"), dps=dps + 1)

    monkeypatch.setattr(V, "adjudicate", fake)
    rep = V.check_property(
        _claim(lambda i: Outcome(True, 0.0, False), strict=strict), INTS, profile="ci", max_examples=8, dps=37
    )
    assert rep.status == "verified" and rep.examples == 8
    if strict:
        assert len(asked) == 8 and all(a[0] == "STUB" and a[2] == 0.0 and a[3] == 37 for a in asked)
        assert rep.adjudicated == 8 and rep.max_dps == 38 and rep.worst_margin == 0.5
    else:
        assert asked == [] and rep.adjudicated == 0 and rep.worst_margin == 0.0


def test_needs_adjudication_alone_sends_a_holding_margin_to_the_adjudicator(monkeypatch):
    asked = []
    monkeypatch.setattr(V, "adjudicate", lambda s, i, o, d: asked.append(_tag(i)) or _Adj("holds", True, 0.75))
    rep = _run(lambda i: Outcome(True, 0.5, True), 6)
    assert len(asked) == 6 and rep.adjudicated == 6 and rep.worst_margin == 0.75


def test_adjudications_are_recorded_field_by_field_and_capped(monkeypatch):
    enc = (mpmath.mpf(1) / 3, mpmath.mpf(2) / 3)

    def fake(subject, instance, outcome, dps):
        k = _tag(instance)
        if k % 2:
            return _Adj("tie", True, mpmath.mpf(0), None, 100 + k % 7, "tie at 100")
        return _Adj("holds", True, mpmath.mpf(k) + 1, enc, 60, "settled")

    monkeypatch.setattr(V, "adjudicate", fake)
    seen = []

    def ev(inst):
        seen.append(_tag(inst))
        return Outcome(True, 1e-9 * (_tag(inst) % 5), True)

    rep = _run(ev, 30, keep_adjudications=4)
    assert rep.adjudicated == 30 and len(seen) == 30
    assert rep.ties == sum(k % 2 for k in seen) and 0 < rep.ties < 30
    assert rep.max_dps == max(100 + k % 7 if k % 2 else 60 for k in seen)
    assert len(rep.adjudications) == 4
    for k, adj in zip(seen[:4], rep.adjudications, strict=True):
        assert adj["float_margin"] == 1e-9 * (k % 5)
        if k % 2:
            assert adj == {
                "float_margin": 1e-9 * (k % 5),
                "mp_margin": 0.0,
                "dps": 100 + k % 7,
                "verdict": "tie",
                "holds": True,
                "enclosure": None,
                "reason": "tie at 100",
            }
        else:
            assert adj["mp_margin"] == float(k + 1) and type(adj["mp_margin"]) is float
            assert (adj["dps"], adj["verdict"], adj["holds"], adj["reason"]) == (60, "holds", True, "settled")
            e = adj["enclosure"]
            assert parse_exact(e["lo_exact"]) == enc[0] and parse_exact(e["hi_exact"]) == enc[1]
    # the worst margin is the smallest mp margin (ties are 0)
    assert rep.worst_margin == (0.0 if rep.ties else min(k + 1.0 for k in seen))


def test_keep_adjudications_zero_keeps_none(monkeypatch):
    monkeypatch.setattr(V, "adjudicate", lambda *a: _Adj("undecided", None, 0, reason="r"))
    rep = _run(lambda i: Outcome(True, 0.0, True), 5, keep_adjudications=0)
    assert rep.adjudicated == 5 and rep.undecided == 5
    assert rep.adjudications == [] and rep.undecided_instances == []
    assert rep.status == "inconclusive" and rep.stop_reason == "5 of 5 instances undecided at the highest precision"


def test_undecided_instances_are_counted_recorded_and_do_not_set_the_worst_margin(monkeypatch):
    def fake(subject, instance, outcome, dps):
        if _tag(instance) % 2:
            return _Adj("undecided", None, mpmath.mpf(-7), None, 400, f"straddles 0 (k={_tag(instance)})")
        return _Adj("holds", True, mpmath.mpf("0.3"), None, 50, "")

    monkeypatch.setattr(V, "adjudicate", fake)
    seen = []

    def ev(inst):
        seen.append(_tag(inst))
        return Outcome(True, -0.001, False, float_resolved=False)

    rep = _run(ev, 20, keep_adjudications=3)
    odd = [k for k in seen if k % 2]
    assert rep.examples == 20 and rep.undecided == len(odd) > 3
    assert rep.adjudicated == 20 and rep.max_dps == 400
    assert rep.worst_margin == 0.3  # only the decided instances; the undecided −7 is no margin
    assert rep.status == "inconclusive" and rep.counterexample is None
    assert len(rep.undecided_instances) == 3
    for k, u in zip(odd[:3], rep.undecided_instances, strict=True):
        assert u == {"instance": instance_to_json(_inst(k)), "float_margin": -0.001, "reason": f"straddles 0 (k={k})"}
    assert rep.stop_reason == (
        f"{len(odd)} of 20 instances undecided at the highest precision (first: straddles 0 (k={odd[0]}))"
    )


@pytest.mark.parametrize("margin", [None, "not a number", 10**400])
def test_an_mp_margin_float_cannot_read_leaves_the_float_margin(monkeypatch, margin):
    monkeypatch.setattr(V, "adjudicate", lambda *a: _Adj("holds", True, margin))
    rep = _run(lambda i: Outcome(True, 0.125, True), 4, keep_adjudications=0)
    assert rep.status == "verified" and rep.worst_margin == 0.125


def test_a_hypothesis_failing_at_high_precision_is_rejected_not_an_example(monkeypatch):
    def fake(subject, instance, outcome, dps):
        if _tag(instance) % 2:
            return _Adj("undecided", None, 0, None, 50, "gap ≤ 0", hypotheses_met=False)
        return _Adj("holds", True, mpmath.mpf(2))

    monkeypatch.setattr(V, "adjudicate", fake)
    seen = []

    def ev(inst):
        seen.append(_tag(inst))
        return Outcome(True, 0.5, True)

    rep = _run(ev, 15)
    odd = sum(k % 2 for k in seen)
    assert rep.examples == 15 == len(seen) - odd and rep.rejected == odd > 0
    assert rep.not_met_reasons == {"hypothesis fails at high precision": odd}
    assert rep.undecided == 0 and rep.status == "verified" and rep.worst_margin == 2.0
    assert rep.adjudicated == len(seen)


def test_float_resolved_violation_that_the_reference_holds_is_an_error(monkeypatch):
    monkeypatch.setattr(V, "adjudicate", lambda *a: _Adj("holds", True, mpmath.mpf("0.25"), None, 77, "settled"))
    monkeypatch.setattr(V, "time", _Clock(0.0))
    got = []
    rep = _run(
        lambda i: Outcome(True, -0.5, False, "float says violated", {"first_ratio": 1.5}),
        10,
        progress=got.append,
        progress_interval=0.0,
    )
    assert rep.status == "error"
    # the first example fails; shrinking afterwards is neither counted nor reported as progress
    assert rep.adjudicated == len(rep.adjudications) == 1 and len(got) == 1 and rep.examples == 0
    assert rep.error == (
        "STUB: float64 margin -0.5 (resolved) but the 77-digit reference gives 0.25: "
        "the implementation disagrees with the reference"
    )
    cx = rep.counterexample
    assert cx == {
        "kind": "implementation disagreement",
        "instance": instance_to_json(_inst(0)),  # shrunk to the smallest tag
        "float_margin": -0.5,
        "mp_margin": "0.25",
        "verdict": "holds",
        "enclosure": None,
        "dps": 77,
        "adjudication_reason": "settled",
        "details": {"first_ratio": 1.5},
        "reason": "implementation disagrees with the reference",
    }
    assert V.exit_status([rep], "ci") == 3 and V.exit_status([rep], "quick") == 0


def test_float_violation_within_the_tolerance_is_no_disagreement(monkeypatch):
    # −1e-7 is above −ADJUDICATION_RTOL: float64 does not *clearly* violate; the reference holds
    monkeypatch.setattr(V, "adjudicate", lambda *a: _Adj("holds", True, mpmath.mpf("1e-9")))
    rep = _run(lambda i: Outcome(True, -1e-7, False), 5)
    assert rep.status == "verified" and rep.adjudicated == 5 and rep.worst_margin == 1e-9


def test_a_reference_disagreement_raised_by_the_adjudicator_is_an_error_without_decision(monkeypatch):
    from fimtheory.claims import ReferenceDisagreement

    def fake(*a):
        raise ReferenceDisagreement("mp and enclosure disagree on STUB")

    monkeypatch.setattr(V, "adjudicate", fake)
    monkeypatch.setattr(V, "time", _Clock(0.0))
    got = []
    rep = _run(
        lambda i: Outcome(True, 0.0, True, "", {"x": mpmath.mpf(2), "y": "s"}),
        10,
        progress=got.append,
        progress_interval=0,
    )
    assert rep.status == "error" and rep.error == "mp and enclosure disagree on STUB"
    assert len(got) == 1  # the first example fails; shrinking is not reported as progress
    assert rep.counterexample == {
        "kind": "implementation disagreement",
        "instance": instance_to_json(_inst(0)),
        "float_margin": 0.0,
        "mp_margin": None,
        "verdict": None,
        "enclosure": None,
        "dps": None,
        "adjudication_reason": None,
        "details": {"x": 2.0, "y": "s"},
        "reason": "implementation disagrees with the reference",
    }
    assert rep.adjudicated == 0 and rep.examples == 0


def test_a_certified_violation_falsifies_shrinks_and_counts_generation_only(monkeypatch):
    state = {"failed": False, "valid": 0, "rejected": 0}
    enc = (mpmath.mpf(-3), mpmath.mpf(-1))

    def fake(subject, instance, outcome, dps):
        state["failed"] = True
        return _Adj("violated", False, mpmath.mpf(-2), enc, 64, "violation certified at 64 digits")

    monkeypatch.setattr(V, "adjudicate", fake)

    def ev(inst):
        k = _tag(inst)
        if k % 2:
            state["rejected"] += not state["failed"]
            return Outcome.not_met(f"odd (k={k})")
        if k % 100 != 74:
            state["valid"] += not state["failed"]
            return Outcome(True, 1.0, False)
        state["last_failing"] = k
        return Outcome(True, -0.25, False, "below the bound", {"a_ratio": 2.0}, float_resolved=False)

    rep = _run(ev, 200)
    assert rep.status == "falsified" and rep.error == ""
    assert state["valid"] > 0 and state["rejected"] > 0  # this seed's draws hold and miss before failing
    assert rep.examples == state["valid"] + 1  # the valid ones before the failure, and the failure
    assert rep.rejected == state["rejected"] and rep.not_met_reasons == {"odd": state["rejected"]}
    assert rep.adjudicated == 1 and rep.max_dps == 64
    assert rep.worst_margin == -2.0
    cx = rep.counterexample
    # the failure stored is the last one run (Hypothesis replays its shrunk example last)
    assert cx["instance"] == instance_to_json(_inst(state["last_failing"]))
    assert (cx["float_margin"], cx["mp_margin"], cx["verdict"], cx["dps"]) == (
        -0.25,
        str(mpmath.mpf(-2)),
        "violated",
        64,
    )
    assert cx["adjudication_reason"] == "violation certified at 64 digits"
    assert cx["reason"] == "below the bound" and cx["details"] == {"a_ratio": 2.0}
    assert parse_exact(cx["enclosure"]["lo_exact"]) == -3 and parse_exact(cx["enclosure"]["hi_exact"]) == -1
    assert "kind" not in cx
    assert V.exit_status([rep], "quick") == 1


def test_a_crash_in_the_code_under_test_is_an_error_naming_it():
    def ev(inst):
        raise ZeroDivisionError("boom")

    rep = _run(ev, 5)
    assert rep.status == "error" and rep.error == "ZeroDivisionError: boom"
    assert rep.counterexample is None and rep.stop_reason == ""


def test_nothing_meets_the_hypotheses():
    rep = _run(lambda i: Outcome.not_met("never (ever)"), 10)
    assert rep.status == "hypotheses not met" and rep.examples == 0 and rep.rejected > 0
    assert rep.not_met_reasons == {"never": rep.rejected}
    assert rep.stop_reason.startswith(f"no drawn instance met the hypotheses ({rep.rejected} drawn instances missed")
    assert math.isinf(rep.worst_margin) and rep.to_json()["worst_margin"] is None


def test_a_strategy_with_no_valid_draw_is_inconclusive_not_verified():
    rep = V.check_property(
        _claim(lambda i: Outcome(True, 1.0, False)), INTS.filter(lambda i: False), profile="ci", max_examples=10
    )
    assert rep.status == "inconclusive" and rep.examples == rep.rejected == 0
    assert rep.stop_reason.startswith("no valid example: 0 of 10 requested examples ran; Hypothesis stopped: ")


def test_target_steers_on_the_negated_margin_and_on_finite_float_ratios(monkeypatch):
    calls = []
    monkeypatch.setattr(V, "target", lambda value, label: calls.append((label, value)))
    details = {"first_ratio": 0.5, "second_ratio": math.nan, "int_ratio": 3, "ratio_first": 0.1, "b_ratio": math.inf}
    seen = []

    def ev(inst):
        seen.append(_tag(inst))
        return Outcome(True, 0.25 + _tag(inst), False, "", dict(details))

    _run(ev, 5)
    expected = []
    for k in seen:
        expected += [("negated margin", -(0.25 + k)), ("first_ratio", 0.5)]
    assert calls == expected


def test_an_infinite_margin_is_neither_a_target_nor_the_worst_margin(monkeypatch):
    calls = []
    monkeypatch.setattr(V, "target", lambda value, label: calls.append((label, value)))
    rep = _run(lambda i: Outcome(True, math.inf, False), 5)
    assert calls == [] and math.isinf(rep.worst_margin) and rep.examples == 5 and rep.status == "verified"


class _Clock:
    """A fake ``time`` module: perf_counter advances by ``step`` at each call."""

    def __init__(self, step):
        self.t, self.step, self.calls = 0.0, step, 0

    def perf_counter(self):
        self.calls += 1
        self.t += self.step
        return self.t


def test_progress_is_called_every_interval_with_the_partial_report(monkeypatch):
    monkeypatch.setattr(V, "time", _Clock(0.0))  # a frozen clock: 0 s elapse
    got = []
    rep = _run(lambda i: Outcome(True, 1.0, False), 7, progress=got.append, progress_interval=0.0)
    assert len(got) == 7 and all(r is rep for r in got)  # elapsed 0 >= interval 0: every example
    assert rep.seconds == 0.0
    got.clear()
    rep = _run(lambda i: Outcome(True, 1.0, False), 7, progress=got.append, progress_interval=1e-9)
    assert got == []  # 0 s never reaches a positive interval


def test_progress_interval_counts_from_the_last_call(monkeypatch):
    clock = _Clock(1.0)  # each perf_counter call advances 1 s
    monkeypatch.setattr(V, "time", clock)
    got = []
    rep = _run(lambda i: Outcome(True, 1.0, False), 6, progress=lambda r: got.append(clock.t), progress_interval=1.0)
    # start: t=1 (state), then per example one call: t=2..7 (t0 at 2 is taken after the state)
    assert len(got) == 6
    assert rep.seconds == 7.0  # from t0 to the end: one clock read per example (6) and the end's
    got.clear()
    _run(lambda i: Outcome(True, 1.0, False), 6, progress=lambda r: got.append(clock.t), progress_interval=2.0)
    assert len(got) == 3  # every second example: 2 s since the last call


def test_no_progress_during_shrinking(monkeypatch):
    monkeypatch.setattr(V, "time", _Clock(0.0))
    monkeypatch.setattr(V, "adjudicate", lambda *a: _Adj("violated", False, mpmath.mpf(-1), (-2, -1)))
    got = []
    seen = {"n": 0}

    def ev(inst):
        seen["n"] += 1
        return Outcome(True, -1.0 if _tag(inst) >= 10 else 1.0, False, float_resolved=False)

    rep = _run(ev, 50, progress=got.append, progress_interval=0.0)
    assert rep.status == "falsified" and len(got) == rep.examples + rep.rejected < seen["n"]


def test_exceptions_the_runner_does_not_own_propagate_out_of_the_evaluator_as_errors():
    class Custom(Exception):
        pass

    def ev(inst):
        raise Custom("x (y)")

    rep = _run(ev, 3)
    assert rep.status == "error" and rep.error == "Custom: x (y)"


# ------------------------------------------------------------------ _settle_unfalsified


def _report(examples, requested, *, rejected=0, undecided=0, first=None, stats=None, targeting=True):
    rep = V.ClaimReport("X", examples_requested=requested, examples=examples, rejected=rejected, targeting=targeting)
    rep.undecided = undecided
    if first is not None:
        rep.undecided_instances = [{"reason": first}, {"reason": "second"}]
    rep.hypothesis_statistics = {} if stats is None else stats
    return rep


def test_settle_verified_needs_every_requested_example():
    rep = _report(10, 10, rejected=3)
    V._settle_unfalsified(rep, False)
    assert rep.status == "verified" and rep.stop_reason == ""
    rep = _report(11, 10)
    V._settle_unfalsified(rep, True)
    assert rep.status == "verified" and rep.stop_reason == ""


def test_settle_hypotheses_not_met_text():
    rep = _report(0, 10, rejected=4)
    V._settle_unfalsified(rep, False)
    assert rep.status == "hypotheses not met"
    assert rep.stop_reason == (
        "no drawn instance met the hypotheses (4 drawn instances missed the hypotheses; "
        "Hypothesis stopped: unknown (no Hypothesis statistics))"
    )
    rep = _report(0, 10, rejected=4, stats={"generate": {"valid": 0}, "stopped_because": "max_iterations"})
    V._settle_unfalsified(rep, True)
    assert rep.stop_reason == (
        "no drawn instance met the hypotheses (4 drawn instances missed the hypotheses, 0 draws overran "
        "Hypothesis' choice budget; Hypothesis stopped: max_iterations)"
    )


def test_settle_one_rejected_draw_and_no_example_is_hypotheses_not_met():
    rep = _report(0, 10, rejected=1)
    V._settle_unfalsified(rep, False)
    assert rep.status == "hypotheses not met"
    assert rep.stop_reason.startswith("no drawn instance met the hypotheses (1 drawn instances missed")


def test_settle_undecided_before_short_run_and_its_text():
    rep = _report(3, 10, undecided=2)  # short and undecided: the undecided reason wins
    V._settle_unfalsified(rep, False)
    assert rep.status == "inconclusive" and rep.stop_reason == "2 of 3 instances undecided at the highest precision"
    rep = _report(10, 10, undecided=1, first="did not settle")
    V._settle_unfalsified(rep, False)
    assert rep.stop_reason == "1 of 10 instances undecided at the highest precision (first: did not settle)"
    rep = _report(10, 10, undecided=1, first="")
    V._settle_unfalsified(rep, False)
    assert rep.stop_reason == "1 of 10 instances undecided at the highest precision"
    rep = _report(0, 10, rejected=2, undecided=1)  # no example at all: hypotheses not met first
    V._settle_unfalsified(rep, False)
    assert rep.status == "hypotheses not met"


def test_settle_short_run_texts():
    stats = {"generate": {"valid": 4, "overrun": 9}, "stopped_because": "max_iterations"}
    rep = _report(4, 10, rejected=5, stats=stats)
    V._settle_unfalsified(rep, False)
    assert rep.status == "inconclusive"
    assert rep.stop_reason == (
        "4 of 10 requested examples ran; Hypothesis stopped: max_iterations; 5 drawn instances missed the "
        "hypotheses, 9 draws overran Hypothesis' choice budget"
    )
    rep = _report(4, 10, rejected=5, stats=stats)
    V._settle_unfalsified(rep, True)  # some valid examples: no "no valid example" prefix
    assert rep.stop_reason.startswith("4 of 10 requested")
    rep = _report(0, 10, stats={"stopped_because": "x"}, targeting=False)
    V._settle_unfalsified(rep, False)  # no valid example but not unsatisfiable: no prefix
    assert rep.stop_reason == (
        "0 of 10 requested examples ran; Hypothesis stopped: x; 0 drawn instances missed the hypotheses; "
        "target phase off"
    )
    rep = _report(0, 10, stats={"stopped_because": "x"})
    V._settle_unfalsified(rep, True)
    assert rep.stop_reason == (
        "no valid example: 0 of 10 requested examples ran; Hypothesis stopped: x; "
        "0 drawn instances missed the hypotheses"
    )


def test_settle_exhausted_search_space():
    rep = _report(3, 50, stats={"stopped_because": "nothing left to do"})
    V._settle_unfalsified(rep, True)
    assert rep.status == "inconclusive"
    assert rep.stop_reason == "the strategy's search space was exhausted after 3 distinct examples of 50 requested"


# ---------------------------------------------------------------------------- exit_status


@pytest.mark.parametrize(
    ("statuses", "profile", "code"),
    [
        ([], "ci", 0),
        (["verified"], "thorough", 0),
        (["hypotheses not met"], "ci", 0),
        (["error"], "quick", 0),
        (["inconclusive"], "quick", 0),
        (["error"], "ci", 3),
        (["inconclusive"], "thorough", 3),
        (["verified", "error"], "thorough", 3),
        (["error", "falsified"], "ci", 1),
        (["falsified"], "quick", 1),
        (["inconclusive", "falsified"], "thorough", 1),
    ],
)
def test_exit_status_table(statuses, profile, code):
    assert V.exit_status([V.ClaimReport("X", status=s) for s in statuses], profile) == code


# --------------------------------------------------------------------- settings, phases


@pytest.mark.parametrize(
    ("profile", "n", "derandomize"), [("quick", 100, False), ("ci", 150, True), ("thorough", 10_000, False)]
)
def test_hypothesis_settings_per_profile(profile, n, derandomize):
    s = V.hypothesis_settings(profile)
    assert s.max_examples == n and s.derandomize is derandomize
    assert s.deadline is None and s.database is None and s.print_blob is False and s.report_multiple_bugs is False
    assert list(s.suppress_health_check) == list(HealthCheck)
    assert list(s.phases) == [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
    s = V.hypothesis_settings(profile, 7, targeting=False)
    assert s.max_examples == 7 and list(s.phases) == [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]
    assert V.hypothesis_settings(profile, 1).max_examples == 1


def test_hypothesis_settings_refuses_bad_arguments():
    with pytest.raises(InputError, match=r"^unknown profile 'fast'; known: quick, ci, thorough$"):
        V.hypothesis_settings("fast")
    for bad in (0, -3, 2.0, "5"):
        with pytest.raises(InputError, match=r"^max_examples must be a positive integer, got "):
            V.hypothesis_settings("ci", bad)


def test_targeting_for_defaults_on():
    assert V.targeting_for("T4.3c") is False and V.targeting_for("S3") is False
    assert V.targeting_for("W") is True and V.targeting_for("no such claim") is True


# ----------------------------------------------------------------- statistics and pool


def test_summarise_statistics_counts_per_phase():
    stats = {
        "generate-phase": {"test-cases": [{"status": "valid"}, {"status": "overrun"}, {"status": "valid"}, 3, {}]},
        "shrink-phase": {"test-cases": [{"status": "interesting"}]},
        "target-phase": {"test-cases": [{"status": "valid"}]},
        "stopped-because": 42,
    }
    assert V._summarise_statistics(stats) == {
        "generate": {"?": 1, "overrun": 1, "valid": 2},
        "shrink": {"interesting": 1},
        "stopped_because": "42",
    }
    assert list(V._summarise_statistics(stats)["generate"]) == ["?", "overrun", "valid"]
    assert V._summarise_statistics({}) == {}
    assert V._summarise_statistics({"generate-phase": None, "shrink-phase": {"test-cases": "x"}}) == {}


def test_without_local_constants_pins_an_empty_pool_and_restores_it():
    from hypothesis.internal.conjecture import providers

    original = providers._get_local_constants
    providers.CONSTANTS_CACHE.cache["sentinel"] = 1
    with V._without_local_constants() as pinned:
        assert pinned is True
        assert "sentinel" not in providers.CONSTANTS_CACHE.cache
        pool = providers._get_local_constants()
        assert type(pool) is type(original()) and not any(len(v) for v in vars(pool).values() if hasattr(v, "__len__"))
        providers.CONSTANTS_CACHE.cache["inside"] = 1
    assert providers._get_local_constants is original
    assert "inside" not in providers.CONSTANTS_CACHE.cache


def test_collect_statistics_fills_the_sink():
    sink: dict = {}
    rep = _run(lambda i: Outcome(True, 1.0, False), 4)
    assert rep.hypothesis_statistics == {"generate": {"valid": 4}, "stopped_because": "settings.max_examples=4"}
    with V._collect_statistics(sink):
        V.check_property  # noqa: B018 - the context alone must not fail
    assert isinstance(sink, dict)


# ------------------------------------------------------------------------------ reports


def test_claim_report_to_json_field_by_field():
    rep = V.ClaimReport(
        "Q",
        status="falsified",
        examples_requested=9,
        examples=8,
        rejected=2,
        worst_margin=-0.5,
        adjudicated=3,
        ties=1,
        undecided=1,
        max_dps=80,
        adjudications=[{"a": 1}],
        undecided_instances=[{"b": 2}],
        counterexample={"c": 3},
        seconds=1.23456,
        not_met_reasons={"r": 2},
        targeting=False,
        local_constants_pinned=True,
        stop_reason="s",
        hypothesis_statistics={"h": 1},
        error="e",
    )
    assert rep.to_json() == {
        "id": "Q",
        "status": "falsified",
        "examples_requested": 9,
        "examples": 8,
        "rejected": 2,
        "worst_margin": -0.5,
        "adjudicated": 3,
        "ties": 1,
        "undecided": 1,
        "max_dps": 80,
        "adjudications": [{"a": 1}],
        "undecided_instances": [{"b": 2}],
        "counterexample": {"c": 3},
        "seconds": 1.235,
        "not_met_reasons": {"r": 2},
        "targeting": False,
        "local_constants_pinned": True,
        "stop_reason": "s",
        "hypothesis_statistics": {"h": 1},
        "error": "e",
    }
    assert V.ClaimReport("Z", worst_margin=-math.inf).to_json()["worst_margin"] is None
    assert V.ClaimReport("Z", worst_margin=0.0).to_json()["worst_margin"] == 0.0


def test_enclosure_json_rounds_outward_and_stores_exact_endpoints():
    assert V._enclosure_json(None) is None
    with mpmath.workdps(50):
        lo, hi = mpmath.mpf(1) / 3, mpmath.mpf(2) / 3
    e = V._enclosure_json((lo, hi))
    assert set(e) == {"lo", "hi", "lo_exact", "hi_exact"}
    assert parse_exact(e["lo_exact"]) == lo and parse_exact(e["hi_exact"]) == hi
    with mpmath.workdps(80):
        assert mpmath.mpf(e["lo"]) <= lo < mpmath.mpf(e["lo"]) + mpmath.mpf("1e-25")
        assert mpmath.mpf(e["hi"]) - mpmath.mpf("1e-25") < hi <= mpmath.mpf(e["hi"])
        assert mpmath.mpf(e["lo"]) != lo and mpmath.mpf(e["hi"]) != hi  # 1/3, 2/3 are not decimal


def test_plain_and_instance_json_fallbacks():
    assert V._plain(mpmath.mpf("0.5")) == 0.5 and type(V._plain(3)) is float
    assert V._plain(None) == "None" and V._plain("abc") == "abc" and V._plain([1]) == "[1]"
    assert V._instance_json(_inst(4)) == instance_to_json(_inst(4))

    class Odd:
        def __repr__(self):
            return "Odd<1>"

    assert V._instance_json(Odd()) == {"type": "Odd", "repr": "Odd<1>"}


def test_remember_replaces_the_previous_failure():
    failure = {"stale": 1}
    V._remember(failure, "i", "o", None, "why")
    assert failure == {"instance": "i", "out": "o", "decision": None, "reason": "why"}


def test_format_table_text():
    reps = [
        V.ClaimReport("W", examples=3, examples_requested=3, worst_margin=0.00123456, seconds=1.234),
        V.ClaimReport("LONGER-ID-1", status="inconclusive", examples=1, examples_requested=5, stop_reason="short"),
        V.ClaimReport("N", status="hypotheses not met", stop_reason="none met", rejected=4),
        V.ClaimReport("E", status="error", error="Boom: x", adjudicated=2, ties=1, undecided=1),
        V.ClaimReport("E2", status="error"),
        V.ClaimReport("V", stop_reason="ignored for verified"),
        V.ClaimReport("I2", status="inconclusive"),
    ]
    w = 11
    head = (
        f"{'claim':<{w}} {'examples':>11} {'not met':>8} {'worst margin':>13} {'adjud.':>6} {'ties':>5} "
        f"{'undec.':>6}  {'status':<18} {'s':>7}"
    )
    expected = [
        head,
        "-" * len(head),
        "W"
        + " " * 10
        + " "
        + "3/3".rjust(11)
        + " "
        + "0".rjust(8)
        + " "
        + "1.235e-03".rjust(13)
        + " "
        + "0".rjust(6)
        + " "
        + "0".rjust(5)
        + " "
        + "0".rjust(6)
        + "  "
        + "verified".ljust(18)
        + " "
        + "1.23".rjust(7),
    ]
    lines = V.format_table(reps).splitlines()
    assert lines[:3] == expected
    assert lines[4].split() == ["N", "0/0", "4", "—", "0", "0", "0", "hypotheses", "not", "met", "0.00"]
    assert lines[5].split() == ["E", "0/0", "0", "—", "2", "1", "1", "error", "0.00"]
    assert lines[9:] == ["  LONGER-ID-1: short", "  N: none met", "  E: Boom: x"]
    assert len(lines) == 12
    short = V.format_table([V.ClaimReport("W")]).splitlines()
    assert len(short) == 3 and short[0] == (  # the claim column is at least 8 wide
        "claim       examples  not met  worst margin adjud.  ties undec.  status                   s"
    )
    assert short[1] == "-" * len(short[0])


# --------------------------------------------------------------------- verify, verify_claim


def test_verify_claim_runs_the_claims_own_strategy():
    claim = get_claim("W")
    rep = V.verify_claim(claim, profile="ci", seed=3, max_examples=3)
    assert rep.id == "W" and rep.examples == 3 and rep.status == "verified"


def test_verify_passes_its_options_and_reports_progress(monkeypatch):
    calls = []

    def fake_verify_claim(claim, **kw):
        calls.append((claim.id, kw))
        return V.ClaimReport(claim.id, status="verified")

    monkeypatch.setattr(V, "verify_claim", fake_verify_claim)
    prog, reports = [], []

    def heartbeat(r):
        return None

    out = V.verify(
        ["W", "S2"],
        profile="thorough",
        seed=4,
        dps=70,
        progress=lambda i, n, c: prog.append((i, n, c)),
        heartbeat=heartbeat,
        on_report=reports.append,
        progress_interval=2.5,
    )
    assert [r.id for r in out] == ["W", "S2"] and reports == out
    assert prog == [(0, 2, "W"), (1, 2, "S2"), (2, 2, "")]
    expected_kw = {"profile": "thorough", "seed": 4, "dps": 70, "progress": heartbeat, "progress_interval": 2.5}
    assert calls == [("W", expected_kw), ("S2", expected_kw)]
    calls.clear()
    out = V.verify()
    assert [c[0] for c in calls] == list(REGISTRY)
    assert calls[0][1] == {"profile": "quick", "seed": 0, "dps": 50, "progress": None, "progress_interval": 30.0}


def test_defaults_precision_kept_adjudications_and_seed(monkeypatch):
    asked = []
    monkeypatch.setattr(V, "adjudicate", lambda s, i, o, d: asked.append(d) or _Adj("holds", True, 1))
    rep = V.check_property(_claim(lambda i: Outcome(True, 0.5, True)), INTS, profile="ci", max_examples=25)
    assert set(asked) == {50} and rep.adjudicated == 25 and len(rep.adjudications) == 20

    def drawn(**kw):
        seen = []

        def ev(inst):
            seen.append(_tag(inst))
            return Outcome(True, 1.0, False)

        V.check_property(_claim(ev), INTS, profile="quick", max_examples=10, **kw)
        return seen

    assert drawn() == drawn(seed=0) != drawn(seed=1)


@pytest.mark.parametrize(
    ("targeting", "cid", "phase_on"), [(None, "T4.3c", False), (None, "W", True), (False, "W", False)]
)
def test_the_run_uses_the_target_phase_its_report_states(monkeypatch, targeting, cid, phase_on):
    built = []
    real = V.hypothesis_settings

    def spy(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(V, "hypothesis_settings", spy)
    rep = V.check_property(
        _claim(lambda i: Outcome(True, 1.0, False), cid=cid), INTS, profile="ci", max_examples=3, targeting=targeting
    )
    assert rep.targeting is phase_on and len(built) == 1
    assert (Phase.target in built[0].phases) is phase_on


def test_a_subject_without_strict_is_non_strict(monkeypatch):
    asked = []
    monkeypatch.setattr(V, "adjudicate", lambda *a: asked.append(1) or _Adj("holds", True, 1))
    subject = SimpleNamespace(id="PLAIN", evaluate=lambda inst: Outcome(True, 0.0, False))  # no `strict`
    rep = V.check_property(subject, INTS, profile="ci", max_examples=5)
    assert rep.status == "verified" and rep.examples == 5 and asked == [] and rep.worst_margin == 0.0


@pytest.mark.parametrize("profile", ["default", "ci"])
def test_settings_do_not_depend_on_the_loaded_hypothesis_profile(profile):
    # The test suite loads its own profile (no deadline, no database); `fimtheory verify` runs
    # under Hypothesis' default one (200 ms deadline, a directory database) or, on a CI machine,
    # its "ci" one (print_blob on). The runner's settings must be the same under each.
    from hypothesis import settings

    before = settings._current_profile
    settings.load_profile(profile)
    try:
        s = V.hypothesis_settings("quick")
    finally:
        settings.load_profile(before)
    assert s.deadline is None and s.database is None and s.print_blob is False
    assert s.report_multiple_bugs is False and s.derandomize is False and s.max_examples == 100


def test_contradicted_hypotheses_treats_the_band_edge_as_rounding_and_needs_no_margins():
    # A margin exactly at -HYPOTHESIS_BAND is still "within the band" (as adjudication's
    # _near_hypotheses counts it), so it goes to the adjudicator, not to an error; an outcome
    # object without hypothesis margins has nothing to contradict.
    from fimtheory.adjudication import HYPOTHESIS_BAND

    edge = Outcome(True, 1.0, True, hypothesis_margins={"2η < γ": -HYPOTHESIS_BAND})
    assert V.contradicted_hypotheses(edge) == ""
    beyond = Outcome(True, 1.0, True, hypothesis_margins={"2η < γ": -HYPOTHESIS_BAND * (1 + 2**-40)})
    assert V.contradicted_hypotheses(beyond).startswith("2η < γ = -")
    assert V.contradicted_hypotheses(SimpleNamespace(hypotheses_met=True)) == ""
