"""Tests written against surviving mutants of the verdict code (properties/certify.py,
serialize.py, counterexamples.py, verify.py); see docs/mutation.md.

Each test states a property of the code's contract and checks it against an independent
reference (exact rationals, a bit-exact round trip, a stated routing rule, a hand-built
report), not against the text of a mutant.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import mpmath
import numpy as np
import pytest

from fimtheory.claim_api import Outcome
from fimtheory.errors import InputError
from fimtheory.instances import MatrixPerturbation, ParameterEnsemble
from properties import counterexamples as cx
from properties import verify as V
from properties.certify import Certificate, exact_str, outward_str, parse_exact
from properties.claim_strategies import _IndefinitePair
from properties.serialize import counterexample_inputs, inputs_digest, instance_from_json, instance_to_json

# ----------------------------------------------------------------- non-finite endpoints


@pytest.mark.parametrize(
    "value,text",
    [(mpmath.mpf("nan"), "nan"), (mpmath.mpf("+inf"), "+inf"), (mpmath.mpf("-inf"), "-inf")],
)
def test_non_finite_endpoints_are_spelled_as_parse_exact_reads_them(value, text):
    """The stored spelling of a non-finite endpoint is one of the three strings parse_exact
    accepts, with the right sign, in both the exact and the decimal (outward) form."""
    assert exact_str(value) == text
    assert outward_str(value, "down") == text and outward_str(value, "up") == text
    back = parse_exact(exact_str(value))
    if text == "nan":
        assert mpmath.isnan(back)
    else:
        assert back == value and (back > 0) == (text == "+inf")


@pytest.mark.parametrize("lo,hi", [("-inf", "-1"), ("-2", "+inf"), ("nan", "-1")])
def test_a_stored_non_finite_enclosure_reads_back_and_certifies_nothing(lo, hi):
    """A certificate with an infinite or NaN end survives the JSON round trip as such and is
    never a certified violation (non-finite ends certify nothing)."""
    cert = Certificate(mpmath.mpf(lo), mpmath.mpf(hi), 50, "eigenvalues")
    back = Certificate.from_json(cert.to_json())
    assert not back.usable and not back.certified and back.sign is None
    for name, want in (("lo", lo), ("hi", hi)):
        got = getattr(back, name)
        assert (mpmath.isnan(got) and want == "nan") or got == mpmath.mpf(want)


# ----------------------------------------------------------------- serialisation


def _parameter_ensemble():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((5, 3))
    y = np.array([0, 1, 1, 0, 1], dtype=np.int64)
    theta = rng.standard_normal(3)
    return ParameterEnsemble("logistic", X, y, theta, (0.1 * rng.standard_normal(3),))


def test_integer_arrays_round_trip_with_dtype_shape_and_values():
    """Integer label arrays are stored as integers with their dtype and shape and read back
    equal, so the digest covers them exactly (a changed label changes the digest)."""
    inst = _parameter_ensemble()
    obj = instance_to_json(inst)
    y = obj["fields"]["y"]
    assert y == {"ndarray": [0, 1, 1, 0, 1], "dtype": "int64", "shape": [5]}
    assert all(type(v) is int for v in y["ndarray"])  # stored as JSON integers, not 0.0/1.0
    back = instance_from_json(obj)
    assert back.y.dtype == np.int64 and back.y.shape == (5,) and np.array_equal(back.y, inst.y)
    assert np.array_equal(back.X, inst.X) and np.array_equal(back.theta, inst.theta)
    d0 = inputs_digest(counterexample_inputs("P", "w", obj))
    flipped = dataclasses.replace(inst, y=np.array([0, 1, 1, 0, 0], dtype=np.int64))
    assert inputs_digest(counterexample_inputs("P", "w", instance_to_json(flipped))) != d0


def test_an_a_e_pair_that_is_not_a_registered_type_falls_back_to_a_bit_exact_pair():
    """Any object with A and E (here the SIGN strategy's indefinite pair) is stored as its
    type name and the two arrays, bit-exactly."""
    rng = np.random.default_rng(1)
    A = rng.standard_normal((3, 3))
    E = 1e-3 * rng.standard_normal((3, 3))
    pair = _IndefinitePair(A, E)
    obj = instance_to_json(pair)
    assert obj["type"] == "_IndefinitePair" and set(obj["fields"]) == {"A", "E"}
    back = instance_from_json(obj)
    assert type(back) is _IndefinitePair
    for name in ("A", "E"):
        a, b = getattr(pair, name), getattr(back, name)
        assert a.tobytes() == b.tobytes()


@dataclasses.dataclass
class _UndeclaredPair:
    A: np.ndarray
    E: np.ndarray
    label: str = "not stored"


def test_an_undeclared_dataclass_with_a_and_e_is_stored_as_the_pair_only():
    """A dataclass that no claim declares is not serialised field by field under a name the
    reader cannot resolve; it falls back to the A/E pair."""
    inst = _UndeclaredPair(np.eye(2), np.zeros((2, 2)))
    obj = instance_to_json(inst)
    assert obj["type"] == "_UndeclaredPair" and set(obj["fields"]) == {"A", "E"}


def test_unserialisable_instances_and_fields_are_refused_naming_the_type():
    with pytest.raises(InputError, match="cannot serialise instance of type object"):
        instance_to_json(object())
    with pytest.raises(InputError, match="cannot serialise instance of type SimpleNamespace"):
        instance_to_json(SimpleNamespace(A=np.eye(2)))  # an A without an E is no pair
    bad = MatrixPerturbation(np.eye(2), np.zeros((2, 2)))
    object.__setattr__(bad, "v", {1, 2})  # a set is not a stored value type
    with pytest.raises(InputError, match="cannot serialise set"):
        instance_to_json(bad)


# ----------------------------------------------------------------- the hunt's confirmation step


class _Adjudicator:
    """Stands in for fimtheory.claims.adjudicate: records its arguments, answers from a table."""

    def __init__(self, holds):
        self.holds, self.calls = holds, []

    def __call__(self, w, inst, out, dps):
        self.calls.append((w, inst, out, dps))
        return self.holds, mpmath.mpf(out.margin)


def _weakening(outcome, strict=False):
    return SimpleNamespace(id="fake", strict=strict, evaluate=lambda inst: outcome)


# (float margin, needs_adjudication, strict, adjudicator's holds, violated?, adjudicated?)
# The rule (docstring of _confirm): a float margin that reads as a violation — < 0, or ≤ 0 for
# a strict weakening — or that needs adjudication goes to the adjudicator, whose holds is
# final; only holds is False is a violation; a margin that reads as holding is not adjudicated.
CONFIRM_CASES = [
    (-0.5, False, False, False, True, True),
    (-0.5, False, False, True, False, True),  # the adjudicator overrules a float violation
    (-0.5, False, False, None, False, True),  # undecided is not a counterexample
    (0.0, False, True, False, True, True),  # strict: margin 0 reads as a violation
    (0.0, False, False, False, False, False),  # non-strict: margin 0 holds, no adjudication
    (0.5, False, False, False, False, False),
    (0.5, False, True, False, False, False),
    (1e-12, True, False, False, True, True),  # near zero: adjudicated even though float holds
    (0.5, True, True, True, False, True),
]


@pytest.mark.parametrize("margin,needs,strict,adj_holds,violated,adjudicated", CONFIRM_CASES)
def test_confirm_routes_float_violations_to_the_adjudicator(
    monkeypatch, margin, needs, strict, adj_holds, violated, adjudicated
):
    out = Outcome(True, margin, needs)
    w = _weakening(out, strict)
    adj = _Adjudicator(adj_holds)
    monkeypatch.setattr(cx, "adjudicate", adj)
    inst = object()
    got, m = cx._confirm(w, inst, 73)
    assert got is violated and m == margin
    assert bool(adj.calls) is adjudicated
    if adjudicated:
        assert adj.calls == [(w, inst, out, 73)]


def test_confirm_instance_missing_the_hypotheses_is_never_a_violation(monkeypatch):
    adj = _Adjudicator(False)
    monkeypatch.setattr(cx, "adjudicate", adj)
    got, _ = cx._confirm(_weakening(Outcome.not_met("no gap")), object(), 50)
    assert got is False and not adj.calls


def test_confirm_on_a_stored_counterexample_and_on_a_holding_instance():
    """With the real adjudicator: the stored W-no-lambda-min counterexample is confirmed, the
    same A with E = 0 (margin exactly 0, the weakening holds) is not."""
    from pathlib import Path

    w, inst, _ = cx.load_counterexample(Path(__file__).parent / "counterexamples" / "W-no-lambda-min.json")
    assert cx._confirm(w, inst, 50)[0] is True
    holding = dataclasses.replace(inst, E=np.zeros_like(inst.E))
    assert cx._confirm(w, holding, 50)[0] is False


# ----------------------------------------------------------------- status assignment and exit codes


def _report(status, **kw):
    return V.ClaimReport("X", status=status, **kw)


@pytest.mark.parametrize(
    "statuses,profile,code",
    [
        (["verified"], "ci", 0),
        (["verified", "falsified"], "quick", 1),
        (["inconclusive", "falsified"], "ci", 1),  # falsified outranks inconclusive
        (["inconclusive"], "ci", 3),
        (["error"], "thorough", 3),
        (["inconclusive"], "quick", 0),  # quick is not strict
        (["error"], "quick", 0),
        (["hypotheses not met"], "ci", 0),
    ],
)
def test_exit_status_table(statuses, profile, code):
    assert V.exit_status([_report(s) for s in statuses], profile) == code


# ----------------------------------------------------------------- every certifier is sound

_ALL_CERTIFIED = sorted(
    w.id for c in __import__("fimtheory.claims", fromlist=["REGISTRY"]).REGISTRY.values() for w in c.weakenings
)


#: Weakenings whose mp evaluator is accurate to fewer digits than 35: P3.2-no-LCM integrates the
#: departure path partly in float64 (its 60-digit margin is a float64 value), so the certified
#: enclosure is compared with it to 13 digits only.
_MP_DIGITS = {"P3.2-no-LCM": 13}


@pytest.mark.parametrize("wid", _ALL_CERTIFIED)
def test_every_certificate_encloses_the_high_precision_margin(wid):
    """For every weakening with a certifier, on instances of its own strategy (mostly not
    counterexamples): the certified [lo, hi] at 50 digits contains the weakening's mp margin
    at 60 digits, and a certified violation is one the mp margin confirms. (The soundness
    test in test_counterexamples covers seven weakenings; this covers all of them.)"""
    from hypothesis import HealthCheck, Phase, given, settings

    from fimtheory.claims import REGISTRY
    from properties.certify import certify, supported
    from properties.claim_strategies import strategy_for

    w = next(x for c in REGISTRY.values() for x in c.weakenings if x.id == wid)
    if not supported(wid):
        pytest.skip(f"{wid} has no certifier")
    seen = []

    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    @given(strategy_for(w.strategy))
    def prop(inst):
        out = w.evaluate(inst)
        if not out.hypotheses_met:
            return
        cert = certify(w, inst, 50, ladder=(50,))
        if not cert.usable:
            return
        m = w.evaluate_mp(inst, 60)
        with mpmath.workdps(60):
            m = mpmath.mpf(m)
            tol = mpmath.mpf(10) ** -_MP_DIGITS.get(wid, 35) * (1 + abs(m))
            assert cert.lo - tol <= m <= cert.hi + tol, (wid, cert.short(), mpmath.nstr(m, 20))
            if cert.certified:
                assert m <= tol if cert.strict else m < tol, (wid, cert.short(), m)
        seen.append(cert)

    with V._without_local_constants():  # the draws must not depend on which modules are imported
        prop()
    assert seen, f"no instance of {wid} was certified to a usable enclosure"


# ----------------------------------------------------------------- the replay agreement rule


def _cert(lo, hi, method="eigenvalues", strict=False, exact_zero=False):
    return Certificate(mpmath.mpf(lo), mpmath.mpf(hi), 50, method, strict, exact_zero)


# (stored, new, agree): both must certify, with the same method and exact-zero proof, and the
# two intervals must intersect (two rigorous enclosures of one exact margin always do).
AGREE_CASES = [
    (_cert(-2, -1), _cert(-2, -1), True),
    (_cert(-2, -1), _cert("-1.5", "-0.5"), True),  # overlapping
    (_cert(-2, -1), _cert(-1, "-0.5"), True),  # touching at one point
    (_cert(-2, -1), _cert("-0.9", "-0.5"), False),  # disjoint, new above
    (_cert("-0.9", "-0.5"), _cert(-2, -1), False),  # disjoint, new below
    (_cert(-2, -1), _cert(-2, -1, method="top-pair"), False),
    (_cert(0, 0, strict=True, exact_zero=True), _cert(0, 0, strict=True, exact_zero=False), False),
    (_cert(0, 0, strict=True, exact_zero=True), _cert(0, 0, strict=True, exact_zero=True), True),
    (_cert(-2, -1), _cert(-2, 1), False),  # the new enclosure does not certify
    (_cert(-2, 1), _cert(-2, -1), False),  # the stored one does not
]


@pytest.mark.parametrize("stored,new,agree", AGREE_CASES)
def test_enclosures_agree_table(stored, new, agree):
    assert cx.enclosures_agree(stored, new) is agree
    assert cx.enclosures_agree(new, stored) is agree  # the rule is symmetric


# ----------------------------------------------------------------- certificate JSON details


def test_certificate_note_and_non_mpf_endpoints_round_trip():
    cert = Certificate(mpmath.mpf(-2), mpmath.mpf(-1), 50, "eigenvalues", note="escalated once")
    back = Certificate.from_json(cert.to_json())
    assert back.note == "escalated once" and back.certified
    obj = cert.to_json()
    del obj["note"]
    assert Certificate.from_json(obj).note == ""  # an older file without a note
    with pytest.raises(InputError, match="certificate is not an object"):
        Certificate.from_json([1, 2])
    assert exact_str(0.5) == "1*2^-1" and exact_str(3) == "3*2^0" and exact_str(-0.75) == "-3*2^-2"


# ----------------------------------------------------------------- status of an unfalsified run


def _unfalsified(examples, requested, *, rejected=0, undecided=0, stopped="max_examples", overrun=None, **kw):
    rep = V.ClaimReport("X", examples_requested=requested, examples=examples, rejected=rejected, **kw)
    rep.undecided = undecided
    if undecided:
        rep.undecided_instances = [{"reason": "margins did not settle"}]
    hs = {"stopped_because": stopped}
    if overrun is not None:
        hs["generate"] = {"overrun": overrun}
    rep.hypothesis_statistics = hs
    return rep


def test_settle_unfalsified_status_table():
    rep = _unfalsified(100, 100)
    V._settle_unfalsified(rep, False)
    assert rep.status == "verified" and rep.stop_reason == ""

    rep = _unfalsified(0, 100, rejected=40)
    V._settle_unfalsified(rep, True)
    assert rep.status == "hypotheses not met" and rep.stop_reason.startswith("no drawn instance met the hypotheses")

    rep = _unfalsified(100, 100, undecided=2)
    V._settle_unfalsified(rep, False)
    assert rep.status == "inconclusive"
    assert rep.stop_reason == "2 of 100 instances undecided at the highest precision (first: margins did not settle)"

    rep = _unfalsified(3, 50, stopped="nothing left to do")
    V._settle_unfalsified(rep, False)
    assert (
        rep.status == "inconclusive" and "search space was exhausted after 3 distinct examples of 50" in rep.stop_reason
    )

    rep = _unfalsified(40, 100, rejected=9, overrun=7, stopped="max_iterations", targeting=False)
    V._settle_unfalsified(rep, False)
    assert rep.status == "inconclusive"
    assert rep.stop_reason == (
        "40 of 100 requested examples ran; Hypothesis stopped: max_iterations; 9 drawn instances missed "
        "the hypotheses, 7 draws overran Hypothesis' choice budget; target phase off"
    )

    rep = _unfalsified(0, 100)
    V._settle_unfalsified(rep, True)
    assert rep.status == "inconclusive" and rep.stop_reason.startswith("no valid example: 0 of 100 requested")


def test_certificate_short_form_rounds_outward_with_the_requested_digits():
    from fractions import Fraction

    lo, hi = mpmath.mpf("-1.234567891"), mpmath.mpf("-1.234560001")
    cert = Certificate(lo, hi, 50, "eigenvalues")
    for digits in (3, 6, 9):
        text = cert.short(digits)
        assert text.startswith("[") and text.endswith("]")
        dlo, dhi = text[1:-1].split(", ")
        assert Fraction(dlo) <= Fraction(str(lo)) and Fraction(dhi) >= Fraction(str(hi))  # outward
        for d in (dlo, dhi):
            assert len(d.split("e")[0].lstrip("-").replace(".", "")) <= digits
    assert cert.short(6) == "[-1.23457e+0, -1.23456e+0]"
    assert Certificate(None, None, 50, "eigenvalues").short() == "—"
    zero = Certificate(mpmath.mpf(0), mpmath.mpf(0), 50, "exact", strict=True, exact_zero=True)
    assert zero.short() == "= 0 (exact)"


def test_parse_exact_and_decimal_encloses_refuse_what_they_cannot_read():
    """A zero mantissa is 0 whatever the exponent; non-strings and malformed strings are refused
    with a message naming them; unparsable decimal endpoints never 'enclose' (so a stored
    certificate with a garbled decimal endpoint is malformed, not accepted)."""
    assert parse_exact("0*2^7") == 0 and parse_exact("-0*2^-3") == 0
    with pytest.raises(InputError, match="exact endpoint must be a string, got float"):
        parse_exact(0.5)
    with pytest.raises(InputError, match=r"exact endpoint '12\*3' is not 'man\*2\^exp'"):
        parse_exact("12*3")
    from properties.certify import decimal_encloses

    lo, hi = mpmath.mpf(-2), mpmath.mpf(-1)
    assert decimal_encloses("-2", "-1", lo, hi) and not decimal_encloses("garbage", "-1", lo, hi)
    obj = Certificate(lo, hi, 50, "eigenvalues").to_json()
    obj["lo"] = "garbage"
    with pytest.raises(InputError, match="do not enclose"):
        Certificate.from_json(obj)
    obj = Certificate(lo, hi, 50, "eigenvalues").to_json()
    obj["dps"] = "fifty"
    with pytest.raises(InputError, match="certificate field unreadable: ValueError"):
        Certificate.from_json(obj)
