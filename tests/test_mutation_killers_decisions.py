"""Tests written against surviving mutants of the verdict code's decision functions
(``Certificate`` sign logic, ``outward_str``, the canonical digest of a counterexample's
inputs); see docs/mutation.md.

Each test checks the contract against an independent reference: the decision rule of the
``Certificate`` docstring as a table, Python's ``decimal`` module with directed rounding for
``outward_str``, and a canonical form built by hand (sha256 of the expected bytes) for the
digest.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import re
from fractions import Fraction
from pathlib import Path

import mpmath
import pytest

from fimtheory.errors import InputError
from properties.certify import Certificate, outward_str
from properties.serialize import canonical_bytes, inputs_digest

mpf = mpmath.mpf
NAN, PINF, NINF = mpf("nan"), mpf("+inf"), mpf("-inf")

# ----------------------------------------------------------------- Certificate decision rule


def _reference_certified(lo, hi, strict):
    """The docstring's rule: usable (both ends finite) and hi < 0, or hi ≤ 0 when strict."""
    if lo is None or not (mpmath.isfinite(lo) and mpmath.isfinite(hi)):
        return False
    return hi <= 0 if strict else hi < 0


def _reference_sign(lo, hi):
    if lo is None or not (mpmath.isfinite(lo) and mpmath.isfinite(hi)):
        return None
    if lo == 0 and hi == 0:
        return 0
    if hi < 0:
        return -1
    if lo > 0:
        return 1
    return None


ENCLOSURES = [
    (None, None),
    (mpf(-2), mpf(-1)),  # certainly negative
    (mpf(-1), mpf(0)),  # touches 0 from below
    (mpf(0), mpf(0)),  # exactly 0
    (mpf(-1), mpf(1)),  # straddles 0
    (mpf("-1e-60"), mpf("1e-60")),  # straddles 0, tiny
    (mpf(0), mpf(1)),  # touches 0 from above
    (mpf(1), mpf(2)),  # certainly positive
    (mpf("1e-300"), mpf("1e-300")),  # a point just above 0
    (mpf("-1e-300"), mpf("-1e-300")),  # a point just below 0
    (NINF, mpf(-1)),
    (mpf(-2), PINF),
    (NAN, mpf(-1)),
    (mpf(-2), NAN),
    (NINF, NINF),
    (PINF, PINF),
]


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("lo,hi", ENCLOSURES)
def test_certified_and_sign_follow_the_documented_rule(lo, hi, strict):
    """certified / sign / usable on every kind of enclosure, for strict and non-strict
    weakenings: an enclosure straddling 0 never certifies; touching 0 from below certifies
    only a strict weakening; non-finite ends certify nothing."""
    cert = Certificate(lo, hi, 50, "eigenvalues", strict)
    assert cert.usable is (lo is not None and bool(mpmath.isfinite(lo) and mpmath.isfinite(hi)))
    assert cert.certified is _reference_certified(lo, hi, strict)
    assert cert.sign == _reference_sign(lo, hi)
    assert type(cert.certified) is bool


def test_straddling_enclosure_is_never_certified_at_any_width():
    for k in range(0, 80, 7):
        w = mpf(10) ** (-k)
        for strict in (False, True):
            cert = Certificate(-w, w, 50, "eigenvalues", strict)
            assert not cert.certified and cert.sign is None


def test_exact_zero_certificate_is_a_strict_violation_only():
    assert Certificate(mpf(0), mpf(0), 50, "exact", True, exact_zero=True).certified
    assert not Certificate(mpf(0), mpf(0), 50, "exact", False, exact_zero=True).certified
    assert Certificate(mpf(0), mpf(0), 50, "exact", False, exact_zero=True).sign == 0


@pytest.mark.parametrize("lo,hi", [(None, mpf(1)), (mpf(1), None), (None, mpf(0)), (mpf(0), None)])
def test_certificate_with_one_endpoint_is_refused(lo, hi):
    with pytest.raises(InputError, match="both endpoints or neither"):
        Certificate(lo, hi, 50, "eigenvalues")


def test_certificate_endpoints_out_of_order_are_refused_but_equal_ends_are_fine():
    with pytest.raises(InputError, match="out of order"):
        Certificate(mpf(1), mpf(0), 50, "eigenvalues")
    with pytest.raises(InputError, match="out of order"):
        Certificate(mpf("1e-300"), mpf("-1e-300"), 50, "eigenvalues")
    for x in (mpf(-1), mpf(0), mpf(3)):
        cert = Certificate(x, x, 50, "eigenvalues")
        assert cert.lo == cert.hi == x
    # non-finite ends are not ordered (they certify nothing): accepted as stored
    assert not Certificate(PINF, NINF, 50, "eigenvalues").usable
    assert not Certificate(NAN, mpf(-1), 50, "eigenvalues").usable


@pytest.mark.parametrize(
    "lo,hi",
    [(mpf(0), mpf(1)), (mpf(-1), mpf(0)), (mpf(-1), mpf(1)), (None, None), (NAN, NAN), (mpf(1), mpf(1))],
)
def test_exact_zero_needs_the_point_zero(lo, hi):
    with pytest.raises(InputError, match="exact_zero"):
        Certificate(lo, hi, 50, "exact", True, exact_zero=True)


def test_exact_zero_point_is_accepted():
    cert = Certificate(mpf(0), mpf(0), 50, "exact", True, exact_zero=True)
    assert cert.exact_zero and cert.sign == 0


# ----------------------------------------------------------------- outward_str

DEC_RE = re.compile(r"^-?[1-9](\.\d*[1-9])?e[+-]\d+$")


def _as_fraction(x):
    if isinstance(x, Fraction):
        return x
    if isinstance(x, int):
        return Fraction(x)
    if isinstance(x, float):
        return Fraction(x)
    sign, man, exp, _ = mpmath.mpf(x)._mpf_
    return (-1) ** sign * Fraction(int(man)) * (Fraction(2) ** int(exp))


def _reference(x, direction, digits):
    """Python's decimal module, correctly rounded toward −∞ / +∞ at ``digits`` digits."""
    f = _as_fraction(x)
    ctx = decimal.Context(
        prec=digits,
        rounding=decimal.ROUND_FLOOR if direction == "down" else decimal.ROUND_CEILING,
        Emax=10**6,
        Emin=-(10**6),
    )
    return ctx.divide(decimal.Decimal(f.numerator), decimal.Decimal(f.denominator))


VALUES = [
    1.0,
    -1.0,
    0.1,
    -0.1,
    1 / 3,
    -2 / 3,
    10.0,
    100.0,
    1e-300,
    -1e300,
    5e-324,
    9.999999999999999e22,
    123456789.0,
    0.5,
    Fraction(1000),
    Fraction(1, 1000),
    Fraction(999, 1000),
    Fraction(-1, 7),
    Fraction(10**40 - 1),
    7,
    -12345,
    mpf("1e-1000"),
    mpf("-3.14159265358979323846264338327950288"),
]


@pytest.mark.parametrize("digits", [1, 2, 3, 6, 17, 30])
@pytest.mark.parametrize("direction", ["down", "up"])
@pytest.mark.parametrize("x", VALUES, ids=repr)
def test_outward_str_is_the_directed_rounding_of_the_exact_value(x, direction, digits):
    """The decimal string equals the exact value rounded toward −∞ ('down') or +∞ ('up') at
    ``digits`` significant digits (decimal module reference), so it encloses ``x`` from the
    stated side, and is spelled in the canonical ``d.ddd e±N`` form."""
    with mpmath.workdps(60):
        s = outward_str(x, direction, digits)
    assert DEC_RE.match(s), s
    assert decimal.Decimal(s) == _reference(x, direction, digits)
    mant = s.split("e")[0].lstrip("-").replace(".", "")
    assert len(mant) <= digits
    got = Fraction(decimal.Decimal(s))
    assert got <= _as_fraction(x) if direction == "down" else got >= _as_fraction(x)


def test_outward_str_default_precision_is_thirty_digits():
    x = 1 / 3
    assert decimal.Decimal(outward_str(x, "down")) == _reference(x, "down", 30)
    assert decimal.Decimal(outward_str(x, "up")) == _reference(x, "up", 30)


@pytest.mark.parametrize("direction", ["down", "up"])
def test_outward_str_of_zero_and_of_strings(direction):
    assert outward_str(0.0, direction) == "0"
    assert outward_str(Fraction(0), direction) == "0"
    assert outward_str(mpf(0), direction) == "0"
    # a string is read as an mpf at the working precision
    with mpmath.workdps(50):
        assert decimal.Decimal(outward_str("0.25", direction, 5)) == decimal.Decimal("0.25")


def test_outward_str_rounding_carries_into_a_new_digit():
    assert outward_str(9.99, "up", 2) == "1e+1"
    assert outward_str(-9.99, "down", 2) == "-1e+1"
    assert outward_str(9.99, "down", 2) == "9.9e+0"
    assert outward_str(Fraction(99999, 10), "up", 3) == "1e+4"


# ----------------------------------------------------------------- canonical digest


def _sha(obj_bytes: bytes) -> str:
    return hashlib.sha256(obj_bytes).hexdigest()


def test_digest_is_sha256_of_the_hand_built_canonical_form():
    payload = {
        "b": [1.5, None, True, "s", 3],
        "a": {"ndarray": ["0x1.8000000000000p+0", "-0x0.0p+0"], "dtype": "float64", "shape": [2]},
        "c": {"ndarray": [[1, 2], [3, 4]], "dtype": "int32", "shape": [2, 2]},
        "d": {"float": "0x1.0p-1"},
        "e": {"seq": [0.25, {"float": "0x1p+1"}]},
        "f": (2.0,),
    }
    want = (
        '{"a":{"dtype":"float64","ndarray":["0x1.8000000000000p+0","-0x0.0p+0"],"shape":[2]},'
        '"b":[{"float":"0x1.8000000000000p+0"},null,true,"s",3],'
        '"c":{"dtype":"int32","ndarray":[1,2,3,4],"shape":[2,2]},'
        '"d":{"float":"0x1.0000000000000p-1"},'
        '"e":{"seq":[{"float":"0x1.0000000000000p-2"},{"float":"0x1.0000000000000p+1"}]},'
        '"f":[{"float":"0x1.0000000000000p+1"}]}'
    ).encode("ascii")
    assert canonical_bytes(payload) == want
    assert inputs_digest(payload) == _sha(want)


def _arr(vals, dtype="float64", shape=None):
    return {"ndarray": vals, "dtype": dtype, "shape": shape if shape is not None else [len(vals)]}


ONE, TWO = (1.0).hex(), (2.0).hex()
ONE_BIT = float.fromhex(ONE).__class__.fromhex("0x1.0000000000001p+0").hex()


@pytest.mark.parametrize(
    "a,b",
    [
        (_arr([ONE, TWO]), _arr([ONE_BIT, TWO])),  # one bit of one entry
        (_arr([ONE, TWO]), _arr([TWO, ONE])),  # order
        (_arr([ONE, TWO]), _arr([ONE, TWO], shape=[2, 1])),  # shape
        (_arr([1, 2], "int64"), _arr([1, 2], "uint8")),  # dtype (same values)
        (_arr([1, 2], "int64"), _arr([1, 2], "int32")),  # integer dtype
        (_arr([1, 2], "int64"), _arr([1, 3], "int64")),  # a label
        (_arr([(0.0).hex()]), _arr([(-0.0).hex()])),  # signed zero
        ({"float": ONE}, {"float": ONE_BIT}),
        ({"x": 1}, {"y": 1}),  # key name
        ({"x": 1}, {"x": 1.0}),  # int vs float
        ({"x": True}, {"x": 1}),  # bool vs int
        ({"x": None}, {"x": 0}),
        ({"seq": [1.0]}, {"seq": [1.0, 1.0]}),
        ([1.0, 2.0], [2.0, 1.0]),
    ],
)
def test_digest_changes_with_any_change_of_inputs(a, b):
    assert inputs_digest({"p": a}) != inputs_digest({"p": b})


@pytest.mark.parametrize(
    "a,b",
    [
        (_arr(["0x1p+0"]), _arr(["0x1.0000000000000p+0"])),  # two spellings of one double
        ({"float": "0x1p-1"}, {"float": "0x0.8p+0"}),
        ({"x": 1, "y": 2}, {"y": 2, "x": 1}),  # key order
        ([1.0, 2.0], (1.0, 2.0)),  # list and tuple
        ({"seq": ["a"]}, {"seq": ("a",)}),
        (_arr([[1, 2], [3, 4]], "int64", [2, 2]), _arr([1, 2, 3, 4], "int64", [2, 2])),  # nesting of ints
    ],
)
def test_digest_is_the_same_for_equal_inputs(a, b):
    assert inputs_digest({"p": a}) == inputs_digest({"p": b})


@pytest.mark.parametrize(
    "bad",
    [
        _arr([ONE, TWO], shape=[3]),
        _arr([ONE], shape=[1, 2]),
        _arr([1, 2, 3], "int64", [2]),
        _arr(["not a float"]),
        {"float": "zz"},
        {"x": object()},
        {"x": {1, 2}},
    ],
)
def test_digest_refuses_inputs_it_cannot_canonicalise(bad):
    with pytest.raises(InputError):
        inputs_digest({"p": bad})


def test_digest_of_an_array_with_an_empty_dimension():
    assert inputs_digest({"p": _arr([], shape=[0, 3])}) != inputs_digest({"p": _arr([], shape=[3, 0])})
    with pytest.raises(InputError):
        inputs_digest({"p": _arr([ONE], shape=[0])})


# ----------------------------------------------------------------- verify.decide


class _Recorder:
    def __init__(self, result):
        self.result, self.calls = result, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.result


def test_decide_passes_subject_instance_outcome_and_dps_to_the_adjudicator(monkeypatch):
    from properties import verify as V

    rec = _Recorder((True, 1))
    monkeypatch.setattr(V, "adjudicate", rec)
    subject, instance, outcome = object(), object(), object()
    V.decide(subject, instance, outcome, 77)
    assert len(rec.calls) == 1
    args, kwargs = rec.calls[0]
    assert args == (subject, instance, outcome, 77) and kwargs == {}


class _Minimal:
    """An adjudication carrying only verdict, holds and margin (the optional fields absent)."""

    def __init__(self, verdict, holds, margin):
        self.verdict, self.holds, self.margin = verdict, holds, margin


def test_decide_fills_absent_optional_fields_with_their_documented_defaults(monkeypatch):
    from properties import verify as V

    monkeypatch.setattr(V, "adjudicate", _Recorder(_Minimal("holds", True, 0.5)))
    d = V.decide(object(), object(), object(), 64)
    assert d.verdict == "holds" and d.holds is True and d.margin == 0.5
    assert d.enclosure is None and d.dps == 64 and d.reason == "" and d.hypotheses_met is True


@pytest.mark.parametrize(
    "pair,verdict,holds",
    [
        ((None, 0.3), "undecided", None),
        ((True, 0), "tie", True),
        ((True, 2), "holds", True),
        ((False, -1), "violated", False),
    ],
)
def test_decide_reads_a_legacy_pair(monkeypatch, pair, verdict, holds):
    from properties import verify as V

    monkeypatch.setattr(V, "adjudicate", _Recorder(pair))
    d = V.decide(object(), object(), object(), 50)
    assert d.verdict == verdict and d.holds is holds and d.margin == pair[1]
    assert d.enclosure is None and d.dps == 50
    assert isinstance(d.reason, str) and (verdict != "undecided" or d.reason)  # an undecided pair says why


# ----------------------------------------------------------------- counterexamples.replay_file

CORPUS_FILE = Path(__file__).parent / "counterexamples" / "AH-accurate.json"


def _replay_edited(tmp_path, edit):
    from properties import counterexamples as cx

    rec = json.loads(CORPUS_FILE.read_text(encoding="utf-8"))
    edit(rec)
    f = tmp_path / "edited.json"
    f.write_text(json.dumps(rec), encoding="utf-8")
    return f, cx.replay_file(f)


def _flip_strict(rec):
    rec["certificate"]["strict"] = not rec["certificate"].get("strict", False)


def _uncertify(rec):
    rec["certificate"]["certified"] = False


def _bad_digest(rec):
    rec["inputs_sha256"] = "0" * 64


@pytest.mark.parametrize(
    "edit,words", [(_flip_strict, "strict="), (_uncertify, "does not certify"), (_bad_digest, "digest")]
)
def test_replay_rejects_an_edited_record_naming_the_file_and_the_reason(tmp_path, edit, words):
    """A stored counterexample whose certificate's strictness, certified flag or digest was
    edited does not reproduce; the result names the file and says what changed."""
    f, r = _replay_edited(tmp_path, edit)
    assert r.status == "not reproduced" and r.path == str(f)
    assert isinstance(r.message, str) and r.message.startswith("does not reproduce:") and words in r.message


def test_replay_of_a_file_that_is_not_json_is_malformed_naming_the_file(tmp_path):
    from properties import counterexamples as cx

    f = tmp_path / "broken.json"
    f.write_text("{not json", encoding="utf-8")
    r = cx.replay_file(f)
    assert r.status == "malformed" and r.path == str(f) and isinstance(r.message, str) and r.message


def test_replay_of_the_untouched_corpus_file_reproduces():
    from properties import counterexamples as cx

    r = cx.replay_file(CORPUS_FILE)
    assert r.status == "reproduced" and r.path == str(CORPUS_FILE)
