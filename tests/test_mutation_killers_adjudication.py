"""Tests written against surviving mutants of fimtheory/adjudication.py (see docs/mutation.md):
the enclosure escalation, the enclosure verdict rule, the near-boundary hypothesis re-check
and the implementation/reference disagreement rule, each checked case by case against the
rule stated in the module's docstrings (the rigorous evaluator is replaced by a scripted one,
so each case is exactly the situation the rule speaks of).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import mpmath
import numpy as np
import pytest

from fimtheory import adjudication as AJ
from fimtheory import enclosures
from fimtheory.claim_api import Outcome

MP = mpmath.mpf


class _Script:
    """A scripted ``enclosures.margin_enclosure``: answers by precision, records the calls."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def __call__(self, subject, instance, dps):
        self.calls.append(dps)
        a = self.answers.get(dps, self.answers.get("else"))
        if isinstance(a, Exception):
            raise a
        return MP(a[0]), MP(a[1])


def _subject(strict=False):
    return SimpleNamespace(id="scripted", strict=strict, evaluate_iv=lambda inst, dps: None)


# ----------------------------------------------------------------- the enclosure verdict rule

# (lo, hi, strict, verdict): non-strict holds iff margin ≥ 0, strict iff margin > 0;
# violated needs hi < 0 (strict: hi ≤ 0), holds needs lo ≥ 0 (strict: lo > 0).
VERDICT_CASES = [
    (-2, -1, False, "violated"),
    (-2, -1, True, "violated"),
    (-1, 0, False, None),
    (-1, 0, True, "violated"),
    (0, 0, False, "holds"),
    (0, 0, True, "violated"),
    (0, 1, False, "holds"),
    (0, 1, True, None),
    (1, 2, False, "holds"),
    (1, 2, True, "holds"),
    (-1, 1, False, None),
    (-1, 1, True, None),
]


@pytest.mark.parametrize("lo,hi,strict,verdict", VERDICT_CASES)
def test_enclosure_verdict_table(lo, hi, strict, verdict):
    assert AJ._enclosure_verdict((MP(lo), MP(hi)), strict) == verdict


# ----------------------------------------------------------------- enclosure escalation


@pytest.mark.parametrize(
    "first,strict,excludes",
    [
        ((-1, 0), False, False),  # touches 0 from below: a non-strict margin may be 0
        ((-1, 0), True, True),  # strict: hi ≤ 0 decides
        ((0, 1), False, True),  # non-strict: lo ≥ 0 decides
        ((0, 1), True, False),
        ((-2, -1), False, True),
        ((1, 2), True, True),
        ((-1, 1), False, False),
        ((-1, 1), True, False),
    ],
)
def test_enclose_stops_exactly_when_the_enclosure_excludes_zero(monkeypatch, first, strict, excludes):
    script = _Script({50: first, 100: (-3, -2)})
    monkeypatch.setattr(enclosures, "margin_enclosure", script)
    enc, d, note, failed = AJ._enclose(_subject(strict), None, 50, strict, attempts=3)
    assert failed is False
    if excludes:
        assert script.calls == [50] and enc == (MP(first[0]), MP(first[1])) and d == 50 and note == ""
    else:
        assert script.calls == [50, 100] and enc == (MP(-3), MP(-2)) and d == 100 and note == ""


def test_enclose_that_never_excludes_zero_reports_the_last_enclosure_and_its_precision(monkeypatch):
    script = _Script({"else": ("-1.234567e-30", "2e-30")})
    monkeypatch.setattr(enclosures, "margin_enclosure", script)
    enc, d, note, failed = AJ._enclose(_subject(), None, 60, False, attempts=3)
    assert script.calls == [60, 120, 240]
    assert enc == (MP("-1.234567e-30"), MP("2e-30")) and d == 240 and type(d) is int and failed is False
    assert note == "the enclosure [-1.2346e-30, 2.0e-30] at 240 digits does not exclude 0"  # 5 digits


def test_enclose_retries_at_doubled_precision_after_an_enclosure_error(monkeypatch):
    script = _Script({50: enclosures.EnclosureError("cluster not separated"), 100: (-2, -1)})
    monkeypatch.setattr(enclosures, "margin_enclosure", script)
    enc, d, note, failed = AJ._enclose(_subject(), None, 50, False, attempts=3)
    assert script.calls == [50, 100] and enc == (MP(-2), MP(-1)) and d == 100 and note == "" and not failed


def test_enclose_that_keeps_failing_keeps_the_error_message(monkeypatch):
    script = _Script({"else": enclosures.EnclosureError("cluster not separated")})
    monkeypatch.setattr(enclosures, "margin_enclosure", script)
    enc, _, note, failed = AJ._enclose(_subject(), None, 50, False, attempts=3)
    assert script.calls == [50, 100, 200] and enc is None and note == "cluster not separated" and not failed


def test_enclose_stops_at_no_enclosure_and_at_a_failed_hypothesis(monkeypatch):
    script = _Script({50: (-1, 1), 100: enclosures.NoEnclosure("no evaluator")})
    monkeypatch.setattr(enclosures, "margin_enclosure", script)
    enc, d, note, failed = AJ._enclose(_subject(), None, 50, False, attempts=4)
    assert script.calls == [50, 100] and enc == (MP(-1), MP(1)) and note == "no evaluator" and failed is False
    script = _Script({50: enclosures.HypothesisFails("2η < γ fails")})
    monkeypatch.setattr(enclosures, "margin_enclosure", script)
    enc, d, note, failed = AJ._enclose(_subject(), None, 50, False, attempts=4)
    assert enc is None and failed is True and note == "2η < γ fails" and d == 50


def test_enclose_tries_the_highest_precision_but_not_above_it(monkeypatch):
    top = AJ.ADJUDICATION_MAX_DPS
    script = _Script({"else": (-1, 1)})
    monkeypatch.setattr(enclosures, "margin_enclosure", script)
    AJ._enclose(_subject(), None, top, False, attempts=3)
    assert script.calls == [top]
    script.calls.clear()
    AJ._enclose(_subject(), None, top // 2, False, attempts=5)
    assert script.calls == [top // 2, top]


def test_enclose_above_the_highest_precision_tries_nothing_and_says_nothing(monkeypatch):
    """No attempt (start above ADJUDICATION_MAX_DPS): no enclosure and an empty note, so the
    caller's reason reads "no rigorous enclosure"."""
    script = _Script({"else": (-2, -1)})
    monkeypatch.setattr(enclosures, "margin_enclosure", script)
    top = AJ.ADJUDICATION_MAX_DPS
    assert AJ._enclose(_subject(), None, 2 * top, False, attempts=3) == (None, 2 * top, "", False)
    assert script.calls == []


def test_adjudications_compare_by_their_fields():
    a, b = _adj(), _adj()
    assert a == b and not (a != b)
    assert a != _adj("tie") and a == (True, MP("0.5"))


# ----------------------------------------------------------------- hypotheses near their boundary


def test_near_hypotheses_are_those_at_or_below_the_band():
    band = AJ.HYPOTHESIS_BAND
    out = Outcome(True, 1.0, hypothesis_margins={"a": band, "b": 2 * band, "c": 0.0, "d": -1.0, "e": math.nan})
    assert AJ._near_hypotheses(out) == ["a", "c", "d", "e"]
    assert AJ._near_hypotheses(SimpleNamespace()) == []  # an outcome without hypothesis margins


def _adj(verdict="holds"):
    return AJ.Adjudication(verdict, True, MP("0.5"), None, 80, "margin 0.5 ≥ 0", ladder=((40, MP("0.5")),))


def _near_outcome():
    return Outcome(True, 0.5, hypothesis_margins={"2η < γ": 0.0, "γ > 0": 0.0, "far": 1.0})


def test_recheck_without_near_hypotheses_returns_the_adjudication_unchanged(monkeypatch):
    monkeypatch.setattr(enclosures, "margin_enclosure", _Script({}))
    adj = _adj()
    assert AJ._recheck_hypotheses(_subject(), None, Outcome(True, 0.5), adj, False) is adj


def test_recheck_without_a_rigorous_evaluator_is_undecided(monkeypatch):
    monkeypatch.setattr(enclosures, "has_enclosure", lambda s: False)
    adj = _adj()
    got = AJ._recheck_hypotheses(_subject(), None, _near_outcome(), adj, False)
    assert got.verdict == "undecided" and got.holds is None and got.hypotheses_met is True
    assert got.reason == "hypotheses 2η < γ, γ > 0 near their boundary and no rigorous evaluator to re-decide them"
    assert (got.margin, got.dps, got.ladder) == (adj.margin, adj.dps, adj.ladder)


def test_recheck_that_proves_a_hypothesis_false_is_hypotheses_not_met(monkeypatch):
    monkeypatch.setattr(enclosures, "has_enclosure", lambda s: True)
    script = _Script({80: (-1, 1), 160: enclosures.HypothesisFails("γ > 0 fails")})
    monkeypatch.setattr(enclosures, "margin_enclosure", script)
    got = AJ._recheck_hypotheses(_subject(), None, _near_outcome(), _adj(), False)
    assert got.verdict == "undecided" and got.holds is None and got.hypotheses_met is False
    assert got.dps == 160 and got.reason == "hypotheses not met at high precision: γ > 0 fails"


def test_recheck_that_cannot_enclose_is_undecided_at_the_precision_reached(monkeypatch):
    monkeypatch.setattr(enclosures, "has_enclosure", lambda s: True)
    script = _Script({"else": enclosures.EnclosureError("not separated")})
    monkeypatch.setattr(enclosures, "margin_enclosure", script)
    got = AJ._recheck_hypotheses(_subject(), None, _near_outcome(), _adj(), False)
    assert script.calls == [80, 160]  # two attempts from the adjudication's precision
    assert got.verdict == "undecided" and got.holds is None and got.hypotheses_met is True
    assert got.dps >= 160 and "2η < γ, γ > 0 near their boundary could not be re-decided: not separated" in got.reason


def test_recheck_passes_the_claims_strictness_to_the_enclosure(monkeypatch):
    """A strict claim's enclosure [−1, 0] already decides (hi ≤ 0); the re-check keeps it."""
    monkeypatch.setattr(enclosures, "has_enclosure", lambda s: True)
    script = _Script({80: (-1, 0), 160: (-3, -2)})
    monkeypatch.setattr(enclosures, "margin_enclosure", script)
    got = AJ._recheck_hypotheses(_subject(True), None, _near_outcome(), _adj(), True)
    assert script.calls == [80] and got.enclosure == (MP(-1), MP(0)) and got.verdict == "holds"
    assert got.reason.endswith("; hypotheses 2η < γ, γ > 0 re-decided in interval arithmetic")


# ----------------------------------------------------------------- implementation/reference disagreement


@pytest.mark.parametrize(
    "margin,resolved,holds_hp,expected",
    [
        (-0.5, True, True, True),  # float resolves a clear violation the reference rejects
        (-0.5, False, True, False),  # float did not resolve it
        (-0.5, True, False, False),  # the reference agrees it is violated
        (-AJ.ADJUDICATION_RTOL, True, True, False),  # at the tolerance: not "clearly" violated
        (0.0, True, True, False),
        (0.5, True, True, False),
    ],
)
def test_disagrees_table(margin, resolved, holds_hp, expected):
    out = Outcome(True, margin, float_resolved=resolved)
    assert AJ.disagrees(out, holds_hp) is expected


# ----------------------------------------------------------------- the ladder's starting precision


def _reference_start(arrays, dps):
    """max(dps, min(MAX_START, ⌈log10(max/min nonzero finite |entry|)⌉ + GUARD)) over the
    numeric (float/int) arrays, computed entry by entry."""
    vals = [abs(float(v)) for a in arrays if a.dtype.kind in "fiu" for v in a.ravel() if np.isfinite(v) and v != 0]
    if not vals:
        return dps
    digits = math.ceil(math.log10(max(vals)) - math.log10(min(vals)))
    return max(dps, min(AJ.ADJUDICATION_MAX_START_DPS, digits + AJ.ADJUDICATION_GUARD_DIGITS))


def test_start_dps_follows_the_dynamic_range_of_every_numeric_array():
    inst = SimpleNamespace(
        empty=np.zeros((0,)),  # skipped, and does not stop the scan
        flags=np.array([True, False]),  # not numeric: skipped
        A=np.array([[1e-3, 0.0], [np.inf, 2e-3]]),
        tiny=np.array([1e-9]),  # a single entry counts
        counts=np.array([0, 3], dtype=np.int64),
        seq=(np.array([5e-4]),),
    )
    arrays = [inst.empty, inst.flags, inst.A, inst.tiny, inst.counts, inst.seq[0]]
    got = AJ.start_dps(inst, 20)
    assert got == _reference_start(arrays, 20) == 40  # 1e-9 … 3: 10 digits + 30
    small = SimpleNamespace(A=np.array([1e-5, 1e-3]), flags=np.array([True]))  # all entries below 1
    assert AJ.start_dps(small, 20) == _reference_start([small.A, small.flags], 20) == 32
    assert AJ.start_dps(SimpleNamespace(A=np.zeros(3)), 50) == 50
    assert AJ.start_dps(7, 50) == 50  # an instance without attributes has no arrays


# ----------------------------------------------------------------- the precision ladder, scripted


class _Ladder:
    """A subject whose mp margin at each precision is scripted (values as strings)."""

    def __init__(self, values, **attrs):
        self.values, self.calls, self.id = values, [], "scripted"
        self.__dict__.update(attrs)

    def evaluate_mp(self, instance, dps):
        self.calls.append(dps)
        return MP(self.values.get(dps, self.values.get("else")))


_NO_ARRAYS = SimpleNamespace()  # start_dps(…) = dps


def test_adjudicate_accepts_integer_precisions_from_20_only():
    s = _Ladder({"else": "1"}, strict=False)
    assert AJ.adjudicate(s, _NO_ARRAYS, Outcome(True, 1.0), 20).verdict == "holds"
    for bad in (19, 50.0, True, "50"):
        with pytest.raises(AJ.InputError):
            AJ.adjudicate(s, _NO_ARRAYS, Outcome(True, 1.0), bad)


def test_a_subject_without_strict_is_non_strict():
    """A margin that collapses to 0 is a tie (holds) for a non-strict claim, the default."""
    s = _Ladder({"else": "0"})
    adj = AJ.adjudicate(s, _NO_ARRAYS, Outcome(True, 0.0, True), 40)
    assert adj.verdict == "tie" and adj.holds is True and adj.margin == 0


def test_settled_and_unsettled_ladders_report_their_rungs():
    s = _Ladder({"else": "0.25"}, strict=False)
    adj = AJ.adjudicate(s, _NO_ARRAYS, Outcome(True, 0.25), 40)
    assert adj.reason == "margin 0.25 ≥ 0, agreeing at 40 and 80 digits" and adj.dps == 80
    s = _Ladder({"else": "0.25"}, strict=True)
    assert AJ.adjudicate(s, _NO_ARRAYS, Outcome(True, 0.25), 40).reason.startswith("margin 0.25 > 0,")
    alternating = {40: "1", 80: "-1", 160: "1", 320: "-1", 640: "1", 1280: "-1"}
    s = _Ladder(alternating, strict=False)
    adj = AJ.adjudicate(s, _NO_ARRAYS, Outcome(True, -1.0, True), 40)
    assert adj.verdict == "undecided" and adj.holds is None and adj.margin == -1 and adj.dps == 1280
    assert adj.reason == (
        "mp margins did not settle up to 1280 digits (1.0 at 40, -1.0 at 80, 1.0 at 160, -1.0 at 320, "
        "1.0 at 640, -1.0 at 1280)"
    )


def test_a_jump_then_a_slow_approach_settles_normally():
    """A rung far from the previous one (|Δ| > |m|/4) resets the stall detector; the next
    near-agreement starts a fresh comparison and the ladder then settles."""
    s = _Ladder({40: "1", 80: "2", 160: "2.1", "else": "2.1"}, strict=False)
    adj = AJ.adjudicate(s, _NO_ARRAYS, Outcome(True, 2.0, True), 40)
    assert adj.verdict == "holds" and s.calls == [40, 80, 160, 320] and adj.dps == 320


# ----------------------------------------------------------------- adjudicate's enclosure branch, scripted


def _adjudicate(values, answers, strict, monkeypatch, outcome=None):
    script = _Script(answers)
    monkeypatch.setattr(enclosures, "margin_enclosure", script)
    s = _Ladder(values, strict=strict)
    out = outcome or Outcome(True, -0.5, True)
    return AJ.adjudicate(s, _NO_ARRAYS, out, 40), script


def test_settled_violation_is_violated_only_with_a_certifying_enclosure(monkeypatch):
    adj, _ = _adjudicate({"else": "-0.5"}, {80: ("-0.6", "-0.4")}, False, monkeypatch)
    assert (adj.verdict, adj.holds, adj.dps, adj.enclosure) == ("violated", False, 80, (MP("-0.6"), MP("-0.4")))
    assert adj.margin == MP("-0.5") and adj.ladder == ((40, MP("-0.5")), (80, MP("-0.5")))
    assert adj.reason == "violation certified at 80 digits: margin in [-0.6, -0.4]"


def test_strict_tie_proved_exactly_zero_is_violated(monkeypatch):
    adj, _ = _adjudicate({"else": "0"}, {80: ("0", "0")}, True, monkeypatch)
    assert adj.verdict == "violated" and adj.margin == 0 and adj.dps == 80
    assert adj.reason == "exact tie proved at 80 digits (enclosure [0, 0]): fails the strict claim"


def test_strict_tie_whose_enclosure_is_positive_holds(monkeypatch):
    adj, script = _adjudicate({"else": "0"}, {80: ("1e-90", "1e-85")}, True, monkeypatch)
    assert (
        adj.verdict == "holds" and adj.holds is True and adj.margin == 0 and adj.enclosure == (MP("1e-90"), MP("1e-85"))
    )
    assert (
        adj.reason
        == "strict claim with margin 0 to 40 digits, but the rigorous enclosure [1.0e-90, 1.0e-85] at 80 digits is > 0"
    )


def test_strict_tie_gets_two_enclosure_attempts(monkeypatch):
    adj, script = _adjudicate({"else": "0"}, {"else": ("-1", "1")}, True, monkeypatch)
    assert script.calls == [80, 160] and adj.verdict == "undecided" and adj.holds is None and adj.margin == 0
    assert adj.reason.startswith("strict claim with margin 0 to 40 digits, but the enclosure [-1.0, 1.0] at 160")


def test_settled_violation_escalates_the_enclosure_to_the_highest_precision(monkeypatch):
    adj, script = _adjudicate({"else": "-0.5"}, {"else": ("-1", "1")}, False, monkeypatch)
    assert script.calls == [80, 160, 320, 640, 1280] and adj.verdict == "undecided" and adj.dps == 1280
    assert adj.margin == MP("-0.5") and adj.enclosure == (MP(-1), MP(1))
    assert adj.reason == "mp margin -0.5 at 80 digits, but the enclosure [-1.0, 1.0] at 1280 digits does not exclude 0"


def test_no_enclosure_is_undecided_never_violated(monkeypatch):
    adj, _ = _adjudicate({"else": "-0.5"}, {"else": enclosures.NoEnclosure("")}, False, monkeypatch)
    assert adj.verdict == "undecided" and adj.enclosure is None
    assert adj.reason == "mp margin -0.5 at 80 digits, but no rigorous enclosure"


def test_a_hypothesis_failing_at_high_precision_is_hypotheses_not_met(monkeypatch):
    adj, _ = _adjudicate(
        {"else": "-0.5"}, {80: (-1, 1), 160: enclosures.HypothesisFails("γ > 0 fails")}, False, monkeypatch
    )
    assert (adj.verdict, adj.holds, adj.hypotheses_met, adj.enclosure, adj.dps) == ("undecided", None, False, None, 160)
    assert adj.margin == MP("-0.5") and adj.reason == "hypotheses not met at high precision: γ > 0 fails"
    assert len(adj.ladder) == 2


def test_a_settled_violation_the_enclosure_excludes_is_a_reference_disagreement(monkeypatch):
    out = Outcome(True, -0.5, True)
    with pytest.raises(AJ.ReferenceDisagreement, match="disagrees with the reference enclosure"):
        _adjudicate({"else": "-0.5"}, {80: ("0.1", "0.2")}, False, monkeypatch, out)
    assert "the 80-digit mp margin -0.5 settled on a violation" in out.details[AJ.REFERENCE_DISAGREEMENT]
    assert AJ.disagrees(out, True)


def test_a_strict_claim_settled_on_a_positive_margin_holds_without_an_enclosure(monkeypatch):
    adj, script = _adjudicate({"else": "0.5"}, {"else": ("0.4", "0.6")}, True, monkeypatch, Outcome(True, 0.5, True))
    assert adj.verdict == "holds" and adj.enclosure is None and script.calls == []
    adj, script = _adjudicate({"else": "0.5"}, {"else": ("0.4", "0.6")}, False, monkeypatch, Outcome(True, 0.5, True))
    assert adj.verdict == "holds" and adj.enclosure is None and script.calls == []


def test_a_tie_reports_margin_zero_its_rungs_and_is_rechecked(monkeypatch):
    s = _Ladder({"else": "1e-60"})
    adj = AJ.adjudicate(s, _NO_ARRAYS, Outcome(True, 0.0, True), 40)
    assert (adj.verdict, adj.holds, adj.margin, adj.dps) == ("tie", True, 0, 80)
    assert adj.ladder == ((40, MP("1e-60")), (80, MP("1e-60")))
    assert adj.reason == "tie: |margin| ≤ 1e-40 at 80 digits (value 1.0e-60); counted as holding"
    monkeypatch.setattr(enclosures, "has_enclosure", lambda subject: False)
    near = Outcome(True, 0.0, True, hypothesis_margins={"γ > 0": 0.0})
    assert AJ.adjudicate(s, _NO_ARRAYS, near, 40).verdict == "undecided"  # near-boundary re-check ran
    settled = _Ladder({"else": "0.5"})
    assert AJ.adjudicate(settled, _NO_ARRAYS, near, 40).verdict == "undecided"


def test_a_strict_tie_reports_margin_zero(monkeypatch):
    adj, _ = _adjudicate({"else": "1e-60"}, {80: ("0", "0")}, True, monkeypatch)
    assert adj.verdict == "violated" and adj.margin == 0 and adj.ladder[-1] == (80, MP("1e-60"))


# ----------------------------------------------------------------- the ladder's thresholds, at the threshold
#
# _mp_ladder's docstring states its rules with ≤: settled iff |m_2d − m_d| ≤ min(10^−d/2, |m_2d|/4),
# tie iff |m_d| ≤ 10^−d/2 and |m_2d| ≤ 10^−d, stalled when twice in a row the difference is
# ≤ |m|/4 (but above the band) and shrinks by less than 1000×. Each case below sits exactly on
# one threshold (values exact in binary, or built at the ladder's own precision) or between a
# threshold and its neighbour, and the rung at which the ladder stops tells the rule apart.


class _Exact:
    """A subject whose mp margin at each precision is a prepared mpf (returned as is)."""

    def __init__(self, values):
        self.values, self.id = values, "scripted"

    def evaluate_mp(self, instance, dps):
        return self.values.get(dps, self.values.get("else"))


def _ladder(values, d0=20):
    kind, m, D, rungs = AJ._mp_ladder(_Exact(values), _NO_ARRAYS, d0)
    return kind, D


def _at(dps, fn):
    with AJ.working_precision(dps):
        return fn()


_X = MP(2) ** -40  # exact in binary, < 10^-10 (the band at d = 20)


def test_ladder_tie_band_is_ten_to_minus_half_the_digits():
    """|m_20| = 0.9e-10 ≤ 10^-10 and |m_40| = 0.5e-20 ≤ 10^-20: a tie at 40 (not with 11^-k)."""
    vals = {20: _at(40, lambda: MP("0.9e-10")), 40: _at(40, lambda: MP("0.5e-20")), "else": MP(0)}
    assert _ladder(vals) == ("tie", 40)


def test_ladder_band_of_an_odd_precision_rounds_the_half_down():
    """d = 25: the band is 10^-(25 // 2) = 1e-12, so |m_25| = 5e-13 is inside it (10^-12.5 is not)."""
    vals = {25: _at(50, lambda: MP("5e-13")), 50: _at(50, lambda: MP("1e-26")), "else": MP(0)}
    assert _ladder(vals, d0=25) == ("tie", 50)


def test_ladder_tie_at_exactly_the_band():
    vals = {20: _at(40, lambda: MP(10) ** -10), "else": MP(0)}
    assert _ladder(vals) == ("tie", 40)


def test_ladder_tie_at_exactly_ten_to_minus_d():
    vals = {20: MP(0), "else": _at(40, lambda: MP(10) ** -20)}
    assert _ladder(vals) == ("tie", 40)


def test_ladder_settles_at_a_difference_exactly_the_band():
    """|m_40 − m_20| = 10^-10 exactly (at 40 digits) and ≤ |m_40|/4: settled at 40."""

    def build():
        band = MP(10) ** -10
        for k in range(4, 400):
            m = band * k
            prev = m - band
            if m - prev == band and prev > band:
                return prev, m
        raise AssertionError("no exact pair found")

    prev, m = _at(40, build)
    assert _ladder({20: prev, "else": m}) == ("settled", 40)


def test_ladder_settles_at_a_difference_exactly_a_quarter_of_the_margin():
    assert _ladder({20: 3 * _X, "else": 4 * _X}) == ("settled", 40)


def test_ladder_does_not_settle_on_a_difference_above_a_quarter_of_the_margin():
    """|Δ| = 2^-35 ≤ band but 4× the quarter of |m_40| = 2^-36: not settled at 40."""
    assert _ladder({20: 3 * MP(2) ** -36, "else": MP(2) ** -36}) == ("settled", 80)


def test_ladder_stall_counts_a_difference_of_exactly_a_quarter():
    """3, 4, 5: |Δ| = 1 = |4|/4, then 1 ≤ |5|/4 without shrinking: stalled at 80."""
    assert _ladder({20: MP(3), 40: MP(4), "else": MP(5)}) == ("stalled", 80)


@pytest.mark.parametrize(
    ("ratio", "kind", "D"),
    [(1000, "stalled", 80), (MP(2001) / 2, "settled", 160)],
    ids=["shrinks-exactly-1000x", "shrinks-1000.5x"],
)
def test_ladder_stalls_when_the_difference_shrinks_by_at_most_1000x(ratio, kind, D):
    x = MP(2) ** -20
    y = ratio * x  # exact: 1000·2^-20 and 2001·2^-21
    assert _ladder({20: MP(4), 40: 4 + y, "else": 4 + y + x}) == (kind, D)


# ----------------------------------------------------------------- strictness and identity passed on


class _Recorder:
    """A scripted enclosure that also records which subject and instance it was asked about."""

    def __init__(self, answers):
        self.answers, self.calls, self.seen = answers, [], []

    def __call__(self, subject, instance, dps):
        self.calls.append(dps)
        self.seen.append((subject, instance))
        a = self.answers.get(dps, self.answers.get("else"))
        return MP(a[0]), MP(a[1])


_NEAR = {"γ > 0": 0.0}


def test_settled_holding_strict_claim_near_its_hypotheses_rechecks_with_strict_rule(monkeypatch):
    """A strict claim: an enclosure [0, 1] does not decide it (needs lo > 0), so the re-check
    goes on to 160 digits."""
    rec = _Recorder({80: ("0", "1"), 160: ("1e-30", "1")})
    monkeypatch.setattr(enclosures, "margin_enclosure", rec)
    monkeypatch.setattr(enclosures, "has_enclosure", lambda s: True)
    s = _Ladder({"else": "0.5"}, strict=True)
    adj = AJ.adjudicate(s, _NO_ARRAYS, Outcome(True, 0.5, True, hypothesis_margins=_NEAR), 40)
    assert adj.verdict == "holds" and rec.calls == [80, 160] and adj.enclosure == (MP("1e-30"), MP(1))


def test_strict_tie_enclosure_escalates_past_an_enclosure_touching_zero(monkeypatch):
    rec = _Recorder({80: ("0", "1"), 160: ("1e-30", "1")})
    monkeypatch.setattr(enclosures, "margin_enclosure", rec)
    s = _Ladder({"else": "0"}, strict=True)
    adj = AJ.adjudicate(s, _NO_ARRAYS, Outcome(True, 0.0, True), 40)
    assert (adj.verdict, adj.dps, rec.calls) == ("holds", 160, [80, 160])
    assert adj.ladder == ((40, MP(0)), (80, MP(0)))


def test_tie_near_its_hypotheses_rechecks_this_subject_and_instance(monkeypatch):
    rec = _Recorder({"else": ("0", "1")})
    asked = []
    monkeypatch.setattr(enclosures, "margin_enclosure", rec)
    monkeypatch.setattr(enclosures, "has_enclosure", lambda s: asked.append(s) or True)
    s, inst = _Ladder({"else": "0"}), SimpleNamespace()
    adj = AJ.adjudicate(s, inst, Outcome(True, 0.0, True, hypothesis_margins=_NEAR), 40)
    assert adj.verdict == "tie" and asked == [s] and rec.seen == [(s, inst)]


# ----------------------------------------------------------------- what an adjudication reports


def test_unsettled_and_stalled_ladders_report_eight_digits_and_their_rungs():
    vals = {40: "0.123456789", 80: "-0.123456789", 160: "0.123456789", 320: "-0.123456789"}
    vals.update({640: "0.123456789", 1280: "-0.123456789"})
    adj = AJ.adjudicate(_Ladder(vals), _NO_ARRAYS, Outcome(True, -0.1, True), 40)
    assert adj.reason.endswith("(0.12345679 at 40, -0.12345679 at 80, 0.12345679 at 160, -0.12345679 at 320, "
                               "0.12345679 at 640, -0.12345679 at 1280)")  # fmt: skip
    assert [d for d, _ in adj.ladder] == [40, 80, 160, 320, 640, 1280]
    stalled = AJ.adjudicate(_Exact({40: MP(3), 80: MP(4), "else": MP(5)}), _NO_ARRAYS, Outcome(True, 3.0, True), 40)
    assert stalled.verdict == "undecided" and stalled.reason.startswith(
        "the mp margin does not converge as the precision doubles (the mp evaluator loses precision) (3.0 at 40"
    )
    assert [d for d, _ in stalled.ladder] == [40, 80, 160]


def test_tie_reason_gives_the_value_to_three_digits():
    adj = AJ.adjudicate(_Ladder({"else": "1.23456e-60"}), _NO_ARRAYS, Outcome(True, 0.0, True), 40)
    assert adj.reason == "tie: |margin| ≤ 1e-40 at 80 digits (value 1.23e-60); counted as holding"


def test_undecided_enclosure_result_keeps_the_ladder(monkeypatch):
    adj, _ = _adjudicate({"else": "-0.5"}, {"else": enclosures.NoEnclosure("")}, False, monkeypatch)
    assert adj.ladder == ((40, MP("-0.5")), (80, MP("-0.5")))


def test_strict_tie_held_by_an_enclosure_reports_its_precision_and_ladder(monkeypatch):
    adj, _ = _adjudicate({"else": "0"}, {80: ("1e-90", "1e-85")}, True, monkeypatch)
    assert adj.dps == 80 and adj.ladder == ((40, MP(0)), (80, MP(0)))


def test_reference_disagreement_names_both_ends_of_the_enclosure(monkeypatch):
    with pytest.raises(AJ.ReferenceDisagreement, match=r"enclosure \[0\.1, 0\.2\] at 80 digits is ≥ 0"):
        _adjudicate({"else": "-0.5"}, {80: ("0.1", "0.2")}, False, monkeypatch)


def test_reference_disagreement_with_an_outcome_that_has_no_details(monkeypatch):
    """Only ``hypothesis_margins`` and ``details`` are read, each optional."""
    bare = SimpleNamespace(hypothesis_margins=None)
    with pytest.raises(AJ.ReferenceDisagreement):
        _adjudicate({"else": "-0.5"}, {80: ("0.1", "0.2")}, False, monkeypatch, bare)


def test_nstr_spells_mp_values_to_the_digits_asked_and_others_by_repr():
    assert AJ._nstr(MP("0.123456789"), 8) == "0.12345679" and AJ._nstr(MP("0.123456789")) == "0.12346"
    assert AJ._nstr(0.5) == "0.5" and AJ._nstr(None) == "None"
