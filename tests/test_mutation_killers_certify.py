"""Tests written against surviving mutants of ``properties/certify.py`` and
``properties/serialize.py`` (see docs/mutation_certify.md).

:func:`properties.certify.certify` is driven here by weakenings whose rigorous evaluator is
scripted (a fixed enclosure, or an error, per precision), so every branch of the precision
ladder is checked against the documented rule: precisions tried in increasing order from
``dps``, each inside its own working precision; the first certificate whose sign is decided
(or that certifies) is returned; a failed precision is recorded with its reason and the next
one tried; an own enclosure of exactly [0, 0] is a proved zero (method ``exact``). Registered
weakenings are checked on instances whose exact margin is known by hand (0 by construction)
or against the weakening's own 60-digit mp evaluation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest

from fimtheory import enclosures
from fimtheory.claim_api import Outcome
from fimtheory.claims import REGISTRY
from fimtheory.errors import InputError, UnknownIdError
from fimtheory.instances import (
    KLPairInstance,
    MatrixPerturbation,
    NoiseEnsemble,
    ParameterEnsemble,
    PartitionInstance,
    ProbabilityInstance,
    ScoreInstance,
)
from properties.certify import DECLARED_ENCLOSURE, certify

mpf = mpmath.mpf
WEAKENINGS = {w.id: w for c in REGISTRY.values() for w in c.weakenings}


def _frac(x) -> Fraction:
    """Exact value of a finite mpf (independent of the module's own conversion)."""
    sign, man, exp, _ = (x if isinstance(x, mpf) else mpf(x))._mpf_  # re-wrapping would round to mp.prec
    return (-1) ** sign * Fraction(int(man)) * Fraction(2) ** int(exp)


# ----------------------------------------------------------------- a scripted weakening


@dataclass
class Scripted:
    """A weakening with its own rigorous evaluator ``evaluate_iv``: ``plan[dps]`` is the
    enclosure (lo, hi) it returns at that precision, or an exception it raises. Records
    (requested dps, working dps, instance) of every call."""

    id: str = "X-scripted"
    strict: bool = False
    plan: dict = field(default_factory=dict)
    met: bool = True
    reason: str = ""
    calls: list = field(default_factory=list)
    evaluated: list = field(default_factory=list)

    def evaluate(self, inst):
        self.evaluated.append(inst)
        return Outcome(self.met, -1.0 if self.met else float("nan"), True, self.reason)

    def evaluate_iv(self, inst, dps):
        self.calls.append((dps, mpmath.mp.dps, inst))
        r = self.plan[dps]
        if isinstance(r, BaseException):
            raise r
        return mpf(r[0]), mpf(r[1])


INST = object()


def _rungs(w):
    return [c[0] for c in w.calls]


@pytest.mark.parametrize(
    "dps, ladder, rungs",
    [
        (50, (50, 100, 200), [50, 100, 200]),
        (100, (50, 100, 200), [100, 200]),
        (60, (50, 100), [60, 100]),
        (50, (200, 100), [50, 100, 200]),
        (50, (), [50]),
        (200, (50, 100, 200), [200]),
    ],
)
def test_ladder_tries_dps_then_every_larger_precision_in_order(dps, ladder, rungs):
    """An enclosure straddling 0 at every precision: every rung is tried, in increasing order,
    each at its own working precision, and the last rung's certificate is returned."""
    w = Scripted(plan={d: (-1, 1) for d in (50, 60, 100, 200)})
    cert = certify(w, INST, dps, ladder=ladder)
    assert _rungs(w) == rungs
    assert [c[1] for c in w.calls] == rungs  # evaluated at that working precision
    assert all(c[2] is INST for c in w.calls) and w.evaluated == [INST]
    assert cert.dps == rungs[-1] and cert.lo == -1 and cert.hi == 1
    assert cert.sign is None and not cert.certified and cert.method == DECLARED_ENCLOSURE


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("lo, hi, sign", [(-3, -1, -1), (1, 2, 1)])
def test_ladder_stops_at_the_first_decided_sign(strict, lo, hi, sign):
    w = Scripted(strict=strict, plan={50: (-1, 1), 100: (lo, hi), 200: (-5, -4)})
    cert = certify(w, INST, 50)
    assert _rungs(w) == [50, 100]
    assert (cert.lo, cert.hi, cert.dps, cert.sign, cert.certified) == (lo, hi, 100, sign, sign == -1)
    assert cert.strict is strict and cert.exact_zero is False and cert.method == DECLARED_ENCLOSURE
    assert cert.note == ""


def test_touching_zero_from_below_certifies_a_strict_weakening_at_once():
    """[−1, 0]: sign undecided, but a strict weakening is certainly violated (margin ≤ 0), so
    the ladder stops; a non-strict one is not, so it goes on."""
    strict = Scripted(strict=True, plan={50: (-1, 0), 100: (-1, 0), 200: (-1, 0)})
    cert = certify(strict, INST, 50)
    assert _rungs(strict) == [50] and cert.certified and cert.sign is None and cert.strict is True
    assert (cert.lo, cert.hi, cert.dps, cert.exact_zero, cert.method) == (-1, 0, 50, False, DECLARED_ENCLOSURE)
    loose = Scripted(strict=False, plan={50: (-1, 0), 100: (-1, 0), 200: (-1, 0)})
    cert = certify(loose, INST, 50)
    assert _rungs(loose) == [50, 100, 200] and not cert.certified and cert.dps == 200


@pytest.mark.parametrize("strict", [False, True])
def test_an_own_enclosure_of_exactly_zero_is_a_proved_zero(strict):
    w = Scripted(strict=strict, plan={50: (0, 0), 100: (-1, -1)})
    cert = certify(w, INST, 50)
    assert _rungs(w) == [50]
    assert cert.exact_zero is True and cert.method == "exact" and cert.lo == 0 and cert.hi == 0
    assert cert.sign == 0 and cert.certified is strict and cert.dps == 50 and cert.strict is strict


@pytest.mark.parametrize("lo, hi", [(0, 1), (-1, 0)])
def test_an_own_enclosure_touching_zero_at_one_end_is_not_a_proved_zero(lo, hi):
    w = Scripted(plan={50: (lo, hi), 100: (lo, hi), 200: (lo, hi)})
    cert = certify(w, INST, 50)
    assert cert.exact_zero is False and cert.method == DECLARED_ENCLOSURE and (cert.lo, cert.hi) == (lo, hi)


def test_a_failed_precision_is_recorded_and_the_next_one_tried():
    w = Scripted(
        plan={
            50: enclosures.EnclosureError("eigenvalues not separated"),
            100: ZeroDivisionError("interval division by an interval containing 0"),
            200: (-2, -1),
        }
    )
    cert = certify(w, INST, 50)
    assert _rungs(w) == [50, 100, 200]
    assert cert.certified and (cert.lo, cert.hi, cert.dps, cert.note) == (-2, -1, 200, "")


def test_when_every_precision_fails_the_last_failure_is_returned_with_its_reason():
    w = Scripted(
        strict=True,
        plan={
            50: enclosures.EnclosureError("first failure"),
            100: enclosures.HypothesisFails("γ not bounded away from 0"),
            200: ZeroDivisionError("division by zero at the top"),
        },
    )
    cert = certify(w, INST, 50)
    assert _rungs(w) == [50, 100, 200]
    assert cert.lo is None and cert.hi is None and not cert.usable and not cert.certified
    assert (cert.dps, cert.method, cert.strict, cert.note) == (
        200,
        DECLARED_ENCLOSURE,
        True,
        "division by zero at the top",
    )
    w = Scripted(plan={50: enclosures.HypothesisFails("γ not bounded away from 0")})
    cert = certify(w, INST, 50, ladder=())
    assert cert.note == "X-scripted: γ not bounded away from 0" and cert.dps == 50 and cert.strict is False


def test_hypotheses_not_met_give_an_empty_certificate_without_evaluating():
    w = Scripted(strict=True, met=False, reason="γ = 0", plan={})
    cert = certify(w, INST, 100)
    assert w.calls == [] and cert.lo is None and cert.hi is None and not cert.certified
    assert (cert.dps, cert.method, cert.strict, cert.note) == (
        100,
        DECLARED_ENCLOSURE,
        True,
        "hypotheses not met: γ = 0",
    )


def test_dps_below_fifty_is_refused_and_fifty_accepted():
    w = Scripted(plan={49: (-2, -1), 50: (-2, -1)})
    with pytest.raises(InputError, match="certification needs dps >= 50, got 49"):
        certify(w, INST, 49)
    assert w.calls == []
    assert certify(w, INST, 50).dps == 50


def test_a_weakening_without_any_certifier_is_an_unknown_id():
    @dataclass
    class Bare:
        id: str = "X-no-enclosure"

        def evaluate(self, inst):
            return Outcome(True, -1.0)

    with pytest.raises(UnknownIdError, match="no certifier for weakening 'X-no-enclosure'"):
        certify(Bare(), INST)


# ----------------------------------------------------------------- the exact paths


@dataclass
class ExactC:
    """A C-* weakening (exact float comparisons) without a ``strict`` attribute."""

    id: str = "C-scripted"
    margin: float = -1.0
    met: bool = True
    reason: str = "cell 2 is empty"

    def evaluate(self, inst):
        return Outcome(self.met, self.margin if self.met else float("nan"), False, self.reason)


@pytest.mark.parametrize("margin, zero, certified", [(-1.0, False, True), (0.0, True, False), (1.0, False, False)])
def test_c_weakening_certificate_is_the_exact_float_margin(margin, zero, certified):
    cert = certify(ExactC(margin=margin), INST, 70)
    assert cert.lo == cert.hi == margin and isinstance(cert.lo, mpmath.mpf)
    assert (cert.dps, cert.method, cert.strict, cert.exact_zero, cert.note) == (
        70,
        "exact",
        False,
        zero,
        "cell 2 is empty",
    )
    assert cert.certified is certified


def test_c_weakening_hypotheses_not_met():
    cert = certify(ExactC(met=False, reason="thresholds must be finite"), INST, 80)
    assert cert.lo is None and cert.hi is None and not cert.certified
    assert (cert.dps, cert.method, cert.strict, cert.note) == (
        80,
        "exact",
        False,
        "hypotheses not met: thresholds must be finite",
    )


@pytest.mark.parametrize("wid", ["C-repeated-thresholds", "C-no-nan-cell", "C-open-top", "C-closed-cells"])
def test_registered_c_weakenings_on_instances_with_a_known_outcome(wid):
    """Thresholds [0, 1] and σ ∈ {−1, 0.5, 2}: the naive partition's answer is decided by hand
    (1 holds / −1 violated); non-finite thresholds miss the hypotheses."""
    w = WEAKENINGS[wid]
    inst = PartitionInstance((0.0, 1.0), (-1.0, 0.5, 2.0, 0.0, 1.0, float("nan")), ())
    out = w.evaluate(inst)
    cert = certify(w, inst, 60)
    assert cert.lo == cert.hi == out.margin and out.margin in (-1.0, 1.0)
    assert cert.method == "exact" and cert.dps == 60 and cert.note == out.reason and cert.strict is False
    assert cert.certified is (out.margin < 0)
    bad = PartitionInstance((0.0, float("inf")), (0.5,), ())
    cert = certify(w, bad, 60)
    assert cert.lo is None and cert.note == "hypotheses not met: thresholds must be finite" and cert.dps == 60


def test_t43c_diagonal_case_is_exact_with_the_requested_precision():
    """Diagonal F and noise: in the non-generic branch s·η ≤ γ/4, so the top entry stays on
    top and the mean of ±E is exactly 0: margin exactly 0, a strict violation."""
    w = WEAKENINGS["T4.3c-no-genericity"]
    E = np.diag([0.25, -0.5, 0.125])
    cert = certify(w, NoiseEnsemble(np.diag([2.0, 1.0, 0.5]), (E, -E), t=1.0), 70)
    assert (cert.dps, cert.method, cert.strict, cert.exact_zero) == (70, "exact", True, True)
    assert cert.lo == 0 and cert.hi == 0 and cert.certified and cert.sign == 0


def test_t43c_diagonal_case_with_rounded_noise_encloses_the_mp_margin():
    """Three draws 3, −1, −2 (exact mean 0) scaled by s = 1/12 (rounded) give floats whose sum
    is not 0: the exact margin is the tiny rational 1/(3·2^57), not a float; the certificate is
    its outward rounding at the requested precision (lo < hi, relative width below 1e-55) and
    agrees with the weakening's own 60-digit evaluation (whose absolute error is ~1e-60)."""
    w = WEAKENINGS["T4.3c-no-genericity"]
    Es = tuple(np.diag([v, 0.0, 0.0]) for v in (3.0, -1.0, -2.0))
    inst = NoiseEnsemble(np.diag([2.0, 1.0, 0.5]), Es, t=1.0)
    assert w.evaluate(inst).hypotheses_met
    cert = certify(w, inst, 60)
    assert _frac(cert.lo) < Fraction(1, 3 * 2**57) < _frac(cert.hi)
    ref = w.evaluate_mp(inst, 60)
    assert cert.method == "exact" and cert.dps == 60 and cert.usable
    lo, hi = _frac(cert.lo), _frac(cert.hi)
    assert lo <= hi and hi - lo <= Fraction(1, 10**55) * max(abs(lo), Fraction(1, 10**300))
    with mpmath.workdps(60):
        tol = mpf(10) ** -55  # the mp evaluation's absolute error (terms of order 1)
        assert cert.lo - tol <= ref <= cert.hi + tol and abs(ref) > mpf(10) ** -19
    assert cert.exact_zero is (lo == hi == 0)


def test_kl_zero_iff_equal_on_a_permutation_is_a_proved_zero():
    """q a permutation of p: the sorted profiles are equal, so the statistic is exactly 0 while
    the distributions differ (the hypotheses hold): a certified violation of the strict claim."""
    w = WEAKENINGS["KL-zero-iff-equal"]
    inst = KLPairInstance(np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.5, 0.3]))
    cert = certify(w, inst, 70)
    assert (cert.dps, cert.method, cert.strict, cert.exact_zero) == (70, "exact", True, True)
    assert cert.lo == 0 and cert.hi == 0 and cert.certified


def test_kl_zero_iff_equal_on_equal_distributions_misses_the_hypotheses():
    w = WEAKENINGS["KL-zero-iff-equal"]
    p = np.array([0.5, 0.3, 0.2])
    cert = certify(w, KLPairInstance(p, p.copy()), 70)
    assert cert.lo is None and cert.hi is None and not cert.certified
    assert (cert.dps, cert.method, cert.strict, cert.note) == (70, "exact", True, "hypotheses not met")


def test_kl_nonnegative_on_equal_profiles_is_an_interval_zero_not_a_proof():
    """The same statistic (0 on equal sorted profiles) for the non-strict weakening goes through
    the interval certifier: [0, 0], method 'interval', not recorded as a proved zero, not a
    violation (margin 0 holds)."""
    w = WEAKENINGS["KL-nonnegative"]
    inst = KLPairInstance(np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.5, 0.3]))
    cert = certify(w, inst, 70)
    assert (cert.dps, cert.method, cert.strict, cert.exact_zero) == (70, "interval", False, False)
    assert cert.lo == 0 and cert.hi == 0 and not cert.certified and cert.sign == 0


@pytest.mark.parametrize("wid, method", [("W-no-lambda-min", "eigenvalues"), ("SIGN-lambda1-denominator", "top-pair")])
def test_registered_certifiers_name_their_method(wid, method):
    from fimtheory.instances import MatrixPerturbation

    w = WEAKENINGS[wid]
    A = np.diag([3.0, 1.0, 0.5])
    E = np.array([[0.0, 0.1, 0.0], [0.1, 0.0, 0.05], [0.0, 0.05, -0.2]])
    cert = certify(w, MatrixPerturbation(A, E), 60)
    assert cert.method == method and cert.dps == 60 and cert.exact_zero is False and cert.usable
    ref = w.evaluate_mp(MatrixPerturbation(A, E), 80)
    with mpmath.workdps(80):
        assert cert.lo <= ref <= cert.hi


# ----------------------------------------------------------------- canonical form and digest


def test_canonical_bytes_escape_non_ascii_text():
    """Text is written with ASCII escapes (json's \\uXXXX), so the bytes are ASCII whatever
    the note says."""
    from properties.serialize import canonical_bytes, inputs_digest

    assert canonical_bytes({"note": "σ ≥ 0"}) == b'{"note":"\\u03c3 \\u2265 0"}'
    assert inputs_digest({"note": "σ"}) == hashlib.sha256(b'{"note":"\\u03c3"}').hexdigest()


def test_a_float_or_seq_key_beside_other_keys_is_an_ordinary_mapping():
    """Only a mapping whose single key is 'float' ('seq') is an encoded float (sequence); with
    other keys beside it, every key is kept and the values are canonicalised as they are."""
    from properties.serialize import canonical_bytes

    assert canonical_bytes({"float": "0x1p-1", "k": 1}) == b'{"float":"0x1p-1","k":1}'
    assert canonical_bytes({"seq": [0.5], "k": 1}) == b'{"k":1,"seq":[{"float":"0x1.0000000000000p-1"}]}'
    assert canonical_bytes({"float": "0x1p-1"}) == b'{"float":"0x1.0000000000000p-1"}'
    assert canonical_bytes({"seq": ("a", 2)}) == b'{"seq":["a",2]}'


def test_digest_errors_name_the_problem():
    from properties.serialize import inputs_digest

    with pytest.raises(InputError, match=r"array of shape \[3\] has 2 entries$"):
        inputs_digest({"ndarray": ["0x1p+0", "0x1p+1"], "dtype": "float64", "shape": [3]})
    with pytest.raises(InputError, match=r"InputError: cannot canonicalise object$"):
        inputs_digest({"x": object()})
    with pytest.raises(InputError, match=r"InputError: cannot canonicalise set$"):
        inputs_digest([{1, 2}])
    with pytest.raises(InputError, match=r"^inputs cannot be canonicalised: KeyError: 'dtype'$"):
        inputs_digest({"ndarray": ["0x1p+0"], "shape": [1]})
    with pytest.raises(InputError, match=r"^inputs cannot be canonicalised: ValueError: "):
        inputs_digest({"float": "one half"})


def test_counterexample_inputs_cover_claim_weakening_and_instance():
    from properties.serialize import counterexample_inputs

    inst = {"type": "MatrixPerturbation", "fields": {}}
    assert counterexample_inputs("W", "W-no-lambda-min", inst) == {
        "claim": "W",
        "weakening": "W-no-lambda-min",
        "instance": inst,
    }


# ----------------------------------------------------------------- Certificate refusals


def test_certificate_refusals_say_exactly_what_is_wrong():
    from properties.certify import Certificate

    with pytest.raises(InputError, match=r"^a certificate needs both endpoints or neither$"):
        Certificate(mpf(-1), None, 50, "exact")
    with pytest.raises(InputError, match=r"^certificate endpoints out of order: lo 1\.0 > hi -1\.0$"):
        Certificate(mpf(1), mpf(-1), 50, "exact")
    with pytest.raises(InputError, match=r"^exact_zero certificate must have lo = hi = 0, got \[-1\.0, 0\.0\]$"):
        Certificate(mpf(-1), mpf(0), 50, "exact", True, exact_zero=True)


def test_defaults_start_at_fifty_digits_and_print_six():
    """certify starts at 50 digits (the first rung of DPS_LADDER) unless told otherwise; the short
    form has 6 significant digits by default."""
    from properties.certify import DPS_LADDER, Certificate

    w = Scripted(plan={50: (-2, -1)})
    assert certify(w, INST).dps == 50 == DPS_LADDER[0] and _rungs(w) == [50]
    with mpmath.workdps(30):
        cert = Certificate(-mpf(2) / 3, mpf(1) / 7, 50, "eigenvalues")
    assert cert.short() == "[-6.66667e-1, 1.42858e-1]"  # −2/3 rounded down, 1/7 up, 6 digits


# ----------------------------------------------------------------- exact JSON form of instances

CORPUS = Path(__file__).parent / "counterexamples"
RECORDS = [p for p in sorted(CORPUS.glob("*.json")) if not p.stem.startswith("param-")]


def _decode_by_hand(obj):
    """The stored encoding read independently of properties.serialize: float arrays as hex
    strings (flat, with shape), integer arrays with their dtype, floats as hex, sequences."""
    if isinstance(obj, dict) and "ndarray" in obj:
        if obj["dtype"] == "float64":
            flat = [float.fromhex(h) for h in obj["ndarray"]]
            return ("f8", tuple(obj["shape"]), [v.hex() for v in flat])
        return (obj["dtype"], tuple(obj["shape"]), np.asarray(obj["ndarray"]).reshape(-1).tolist())
    if isinstance(obj, dict) and set(obj) == {"float"}:
        return ("float", float.fromhex(obj["float"]).hex())
    if isinstance(obj, dict) and set(obj) == {"seq"}:
        return ("seq", [_decode_by_hand(v) for v in obj["seq"]])
    return ("plain", obj)


def _value_by_hand(v):
    if isinstance(v, np.ndarray):
        if v.dtype.kind == "f":
            return ("f8", v.shape, [float(x).hex() for x in v.ravel()])
        return (str(v.dtype), v.shape, v.reshape(-1).tolist())
    if isinstance(v, float | np.floating):
        return ("float", float(v).hex())
    if isinstance(v, tuple | list):
        return ("seq", [_value_by_hand(x) for x in v])
    return ("plain", v)


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.stem)
def test_stored_instances_read_back_bit_exactly_and_write_back_identically(path):
    """Every stored counterexample's instance: the object read back has exactly the stored
    type, field values (bit for bit, dtype and shape kept), and writing it again gives the
    stored JSON and the stored SHA-256 of the inputs."""
    import json

    from properties.serialize import counterexample_inputs, inputs_digest, instance_from_json, instance_to_json

    rec = json.loads(path.read_text(encoding="utf-8"))
    stored = rec["instance"]
    inst = instance_from_json(stored)
    name = stored["type"]
    assert (f"{type(inst).__module__}:{type(inst).__qualname__}" if ":" in name else type(inst).__name__) == name
    if hasattr(inst, "__dataclass_fields__"):
        for key, enc in stored["fields"].items():
            assert _value_by_hand(getattr(inst, key)) == _decode_by_hand(enc), key
    assert instance_to_json(inst) == stored
    digest = inputs_digest(counterexample_inputs(rec["claim"], rec["weakening"], stored))
    assert digest == rec["inputs_sha256"]


def test_serialisation_refusals_name_the_type():
    from properties.serialize import _enc, instance_from_json, instance_to_json

    with pytest.raises(InputError, match=r"^cannot serialise object$"):
        _enc(object())

    class NotAnInstance:
        pass

    with pytest.raises(
        InputError,
        match=r"^cannot serialise instance of type NotAnInstance: declare its dataclass as the claim's "
        r"instance_type \(fimtheory\.claim_api\.declare_claim\)$",
    ):
        instance_to_json(NotAnInstance())
    with pytest.raises(InputError, match=r"^unknown instance type 'NoSuchInstance'$"):
        instance_from_json({"type": "NoSuchInstance", "fields": {}})
    with pytest.raises(InputError, match=r"^unknown instance type 'no.such:Type'$"):
        instance_from_json({"type": "no.such:Type", "fields": {}})


def test_scalars_and_sequences_encode_to_their_documented_form():
    from properties.serialize import _dec, _enc

    assert _enc(0.1) == {"float": (0.1).hex()} and _enc(np.float32(0.5)) == {"float": "0x1.0000000000000p-1"}
    assert _enc((1, None, True, "a", 2.0)) == {"seq": [1, None, True, "a", {"float": "0x1.0000000000000p+1"}]}
    assert _enc(np.array([[1, 2]], dtype=np.int16)) == {"ndarray": [[1, 2]], "dtype": "int16", "shape": [1, 2]}
    assert _enc(np.array([True, False])) == {"ndarray": [1, 0], "dtype": "bool", "shape": [2]}
    f32 = _enc(np.array([0.1], dtype=np.float32))
    assert f32 == {"ndarray": [float(np.float32(0.1)).hex()], "dtype": "float64", "shape": [1]}
    back = _dec({"ndarray": [[1, 2]], "dtype": "int16", "shape": [1, 2]})
    assert back.dtype == np.int16 and back.shape == (1, 2) and back.tolist() == [[1, 2]]
    back = _dec({"ndarray": ["0x1p-1", "-0x0p+0"], "dtype": "float64", "shape": [2, 1]})
    assert back.dtype == np.float64 and back.shape == (2, 1) and np.signbit(back[1, 0]) and back[0, 0] == 0.5
    assert _dec({"seq": [{"float": "0x1p+1"}, 3]}) == (2.0, 3) and _dec({"float": "-0x1p-2"}) == -0.25
    assert _dec({"other": 1}) == {"other": 1} and _dec("s") == "s"


def test_a_declared_instance_type_is_stored_under_module_and_qualname():
    """An instance type that a registered claim declares (here the torch-model subject's
    inputs) is written as ``module:qualname`` with every field, and read back bit-exactly; an
    undeclared dataclass without A/E is refused."""
    from properties.serialize import instance_from_json, instance_to_json
    from properties.subjects import TorchModelInstance

    X = np.array([[0.1, -2.5], [3.0, 1e-300]])
    inst = TorchModelInstance(X, np.array([1, 0]), "int4-symmetric", "ab" * 32, origin="drawn")
    obj = instance_to_json(inst)
    assert obj == {
        "type": "properties.subjects:TorchModelInstance",
        "fields": {
            "X": {"ndarray": [float(v).hex() for v in X.ravel()], "dtype": "float64", "shape": [2, 2]},
            "y": {"ndarray": [1, 0], "dtype": "int64", "shape": [2]},
            "scheme": "int4-symmetric",
            "weights_sha256": "ab" * 32,
            "origin": "drawn",
        },
    }
    back = instance_from_json(obj)
    assert type(back) is TorchModelInstance and back.X.tobytes() == X.tobytes() and back.y.tolist() == [1, 0]
    assert (back.scheme, back.weights_sha256, back.origin) == ("int4-symmetric", "ab" * 32, "drawn")

    @dataclass(frozen=True)
    class Undeclared:
        X: np.ndarray

    with pytest.raises(InputError, match="cannot serialise instance of type Undeclared"):
        instance_to_json(Undeclared(X))


@pytest.mark.parametrize("met", [True, False])
def test_c_weakening_certificate_records_a_strict_weakening(met):
    """The certificate carries the weakening's strictness on the exact path too (a strict C-*
    weakening violated by an exact 0 is certified)."""

    @dataclass
    class StrictC(ExactC):
        strict: bool = True

    cert = certify(StrictC(margin=0.0, met=met), INST, 50)
    assert cert.strict is True and cert.method == "exact"
    assert cert.certified is met and cert.exact_zero is met


def test_hypotheses_not_met_keep_the_registered_method():
    """A registered certifier's method is recorded even when no enclosure is computed: lengths
    that differ miss KL-nonnegative's hypotheses; its certificate still says 'interval'."""
    w = WEAKENINGS["KL-nonnegative"]
    cert = certify(w, KLPairInstance(np.array([0.5, 0.5]), np.array([0.2, 0.3, 0.5])), 60)
    assert cert.lo is None and not cert.certified and cert.dps == 60
    assert cert.method == "interval"
    assert cert.note == "hypotheses not met: p and q are not over the same tokens (lengths differ)"


@pytest.mark.parametrize(
    "x",
    [
        Fraction(1, 10**443),
        Fraction(-1, 10**446),
        Fraction(3, 10**452),
        Fraction(10**445 + 1, 10**443),
        Fraction(-(10**447) - 1, 10**443),
        9.999999999999999e22,
        Fraction(10**40 - 1),
    ],
    ids=["1e-443", "-1e-446", "3e-452", "100+", "-1e4-", "1e23-ulp", "1e40-1"],
)
@pytest.mark.parametrize("direction", ["down", "up"])
def test_outward_str_when_the_float_log_estimate_of_the_exponent_is_off_by_one(x, direction):
    """float log10 puts 10^-443 at −443.00000000000006 and (10^445 + 1)/10^443 at 1.99999999999994
    (one decade too low), 10^23 − 2^23 at 23.0 (one too high): the exponent is corrected both
    ways, and the string is the directed rounding (reference: the decimal module, 3 digits)."""
    import decimal

    from properties.certify import outward_str

    f = Fraction(x)
    ctx = decimal.Context(
        prec=3, rounding=decimal.ROUND_FLOOR if direction == "down" else decimal.ROUND_CEILING, Emin=-9999, Emax=9999
    )
    want = ctx.divide(decimal.Decimal(f.numerator), decimal.Decimal(f.denominator))
    got = outward_str(x, direction, 3)
    assert decimal.Decimal(got) == want
    assert Fraction(decimal.Decimal(got)) <= f if direction == "down" else Fraction(decimal.Decimal(got)) >= f


@pytest.mark.parametrize("entry", [1.5, 2, None])
def test_digest_refuses_a_float_array_entry_that_is_not_a_hex_string(entry):
    """Float arrays hold ``float.hex`` strings; any other entry (a number, None) is an
    unparsable float and refused, not read through a string conversion (1.5 would read as
    0x1.5 = 1.3125)."""
    from properties.serialize import inputs_digest

    with pytest.raises(InputError, match="inputs cannot be canonicalised"):
        inputs_digest({"ndarray": ["0x1p+0", entry], "dtype": "float64", "shape": [2]})


def test_a_certificate_that_is_not_an_object_is_refused_with_that_message():
    from properties.certify import Certificate

    for obj in ([1, 2], "lo=-1", None):
        with pytest.raises(InputError, match=r"^certificate is not an object$"):
            Certificate.from_json(obj)


def test_decimal_encloses_reads_string_endpoints_and_refuses_non_finite_ends():
    """Endpoints given as decimal strings (binary-exact ones here) are read as mpf and compared
    exactly; a non-finite endpoint has no exact value, so nothing encloses it."""
    from properties.certify import _as_fraction, decimal_encloses

    assert decimal_encloses("1", "2", "1.5", "1.75")
    assert not decimal_encloses("1.6", "2", "1.5", "1.75")
    assert _as_fraction("-0.375") == Fraction(-3, 8)
    assert not decimal_encloses("-1", "1", mpf("-inf"), mpf(0))
    with pytest.raises(InputError, match=r"^non-finite endpoint \+inf$"):
        _as_fraction(mpf("inf"))


def test_integer_arrays_with_one_digest_decode_to_one_array():
    """A flat and a nested integer list of the same shape have one canonical form (one digest),
    so they must decode to the same array: the stored shape is applied to either."""
    from properties.serialize import _dec, inputs_digest

    flat = {"ndarray": [1, 2, 3, 4, 5, 6], "dtype": "int64", "shape": [2, 3]}
    nested = {"ndarray": [[1, 2, 3], [4, 5, 6]], "dtype": "int64", "shape": [2, 3]}
    assert inputs_digest(flat) == inputs_digest(nested)
    a, b = _dec(flat), _dec(nested)
    assert a.shape == b.shape == (2, 3) and a.dtype == b.dtype == np.int64 and np.array_equal(a, b)


def test_an_object_with_only_one_of_a_and_e_is_refused():
    from properties.serialize import instance_to_json

    class OnlyA:
        A = np.eye(2)

    class OnlyE:
        E = np.eye(2)

    for obj in (OnlyA(), OnlyE()):
        with pytest.raises(InputError, match=f"^cannot serialise instance of type {type(obj).__name__}: declare"):
            instance_to_json(obj)


def test_an_instance_record_without_fields_is_read_by_its_type_alone():
    """``fields`` may be absent (a type without fields): the type still decides, so an unknown
    one is refused by name rather than failing on the missing key."""
    from properties.serialize import instance_from_json

    with pytest.raises(InputError, match=r"^unknown instance type 'NoSuchInstance'$"):
        instance_from_json({"type": "NoSuchInstance"})
    with pytest.raises(InputError, match=r"^unknown instance type None$"):
        instance_from_json({})


def test_a_non_string_instance_type_is_refused_as_unknown():
    """A type that is not a string (a list is not even hashable) is an unknown type, refused
    with InputError; it was a TypeError from the type lookup before."""
    from properties.serialize import instance_from_json

    for name in (["MatrixPerturbation"], 7, {"type": "MatrixPerturbation"}):
        with pytest.raises(InputError, match=r"^unknown instance type "):
            instance_from_json({"type": name, "fields": {}})


def test_a_plain_unknown_instance_type_is_refused_without_reading_the_claim_registry(monkeypatch):
    """Only a ``module:qualname`` name can be a declared type, so a name without ``:`` is
    refused as unknown without loading the claim plugins: with a plugin that cannot be loaded,
    the error is still "unknown instance type", not the plugin's failure; a declared-looking
    name does read the registry (and then reports the plugin)."""
    from fimtheory import claim_api
    from properties.serialize import instance_from_json

    def broken():
        raise claim_api.ClaimPluginError("claim plugin broken-plugin cannot be loaded: ImportError: gone")

    monkeypatch.setitem(claim_api._STATE, "plugins", "absent")
    monkeypatch.setattr(claim_api, "load_plugins", broken)
    for name in ("NoSuchInstance", "MatrixPerturbations", ""):
        with pytest.raises(InputError, match=rf"^unknown instance type {name!r}$"):
            instance_from_json({"type": name, "fields": {}})
    with pytest.raises(claim_api.ClaimPluginError, match="broken-plugin"):
        instance_from_json({"type": "some.module:Instance", "fields": {}})


def test_t43c_instance_missing_the_hypotheses_gets_an_empty_certificate():
    """Like every other weakening, T4.3c-no-genericity on an instance whose noise mean is not
    exactly zero gets a certificate without enclosure that says why (it raised InputError from
    the exact diagonal path before)."""
    w = WEAKENINGS["T4.3c-no-genericity"]
    E = np.diag([0.25, -0.5, 0.125])
    inst = NoiseEnsemble(np.diag([2.0, 1.0, 0.5]), (E, -0.5 * E), t=1.0)
    assert not w.evaluate(inst).hypotheses_met
    cert = certify(w, inst, 60)
    assert cert.lo is None and cert.hi is None and not cert.certified and cert.dps == 60 and cert.strict is True
    assert cert.note == "hypotheses not met: the noise ensemble's mean is not exactly zero"


def test_t43c_off_diagonal_case_is_enclosed_not_taken_as_exact():
    """F with an off-diagonal entry is not the exact diagonal case: the certificate comes from
    the eigenvalue enclosures and contains the weakening's own 60-digit evaluation."""
    w = WEAKENINGS["T4.3c-no-genericity"]
    F = np.array([[2.0, 0.1, 0.0], [0.1, 1.0, 0.0], [0.0, 0.0, 0.5]])
    E = np.diag([0.25, -0.5, 0.125])
    inst = NoiseEnsemble(F, (E, -E), t=1.0)
    assert w.evaluate(inst).hypotheses_met
    cert = certify(w, inst, 50)
    ref = w.evaluate_mp(inst, 60)
    assert cert.method == "eigenvalues" and cert.exact_zero is False and cert.usable
    with mpmath.workdps(60):
        tol = mpf(10) ** -45
        assert cert.lo - tol <= ref <= cert.hi + tol and cert.hi - cert.lo < mpf(10) ** -30


def test_t43c_matrices_refuse_an_instance_missing_the_hypotheses():
    from properties.certify import _t43c_matrices

    E = np.diag([0.25, -0.5, 0.125])
    with pytest.raises(InputError, match=r"^hypotheses not met: the noise ensemble's mean is not exactly zero$"):
        _t43c_matrices(NoiseEnsemble(np.diag([2.0, 1.0, 0.5]), (E, -0.5 * E), t=1.0))


def test_t43c_diagonal_case_with_top_eigenvalue_one_is_exact():
    """λ₁ = 1 is an ordinary scale (only λ₁ = 0 has no relative margin): still the exact path."""
    w = WEAKENINGS["T4.3c-no-genericity"]
    E = np.diag([0.25, -0.5, 0.125])
    cert = certify(w, NoiseEnsemble(np.diag([1.0, 0.5, 0.25]), (E, -E), t=1.0), 50)
    assert cert.method == "exact" and cert.exact_zero and cert.lo == cert.hi == 0 and cert.certified


def test_supported_knows_every_registered_weakening_and_nothing_else():
    """Every registered weakening can be certified (a certifier here, the C-* exact path, or its
    own rigorous evaluator); an unknown id cannot."""
    from properties.certify import supported

    assert all(supported(wid) for wid in WEAKENINGS)
    assert supported("C-any-new-partition-weakening")
    assert not supported("X-unknown") and not supported("c-lowercase")


def test_kl_zero_iff_equal_on_lengths_that_differ_is_not_taken_as_equal_profiles():
    """p and a q one entry longer whose padding makes the sorted vectors equal: the lengths
    differ, so the hypotheses fail on the general path (method 'interval', the reason named),
    not on the exact shortcut for equal profiles."""
    w = WEAKENINGS["KL-zero-iff-equal"]
    cert = certify(w, KLPairInstance(np.array([0.5, 0.5]), np.array([0.5, 0.5, 1e-12])), 50)
    assert cert.lo is None and cert.method == "interval"
    assert cert.note == "hypotheses not met: p and q are not over the same tokens (lengths differ)"


def test_a_series_formula_that_falls_back_to_floats_is_refused_by_name():
    from properties.certify import _series_iv

    def remainder_bound_first(eta, gap):
        return 0.5  # a float: rigour lost

    with pytest.raises(
        InputError, match=r"^remainder_bound_first did not evaluate in interval arithmetic \(got float\)$"
    ):
        _series_iv(remainder_bound_first, mpmath.iv.mpf(1), mpmath.iv.mpf(2))


# ----------------------------------------------------------------- top_pair_enclosure
# A diagonal A = diag(λ) has v1 = e1, so every quantity is a closed form in the float entries
# (exact as a Fraction): E_11, ‖P⊥Ev1‖² = Σ_{j≥2} E_1j², a2 = Σ_{j≥2} E_1j²/(λ1 − λj). The
# enclosure's argument holds for *any* unit vector u near v1 (Parlett's gap theorem), so the
# mp eigenvector is replaced by u = cos θ e1 + sin θ e2 (scaled by 3: the function normalises
# it): the errors of uᵀEu and of the resolvent form are then of the size the enclosure must
# cover, and for this u, ρ/δ = ‖Au − μu‖ / (μ − λ2) = tan θ exactly.


class _GivenTopVector:
    """What mp_eigh returns, with a chosen top eigenvector."""

    def __init__(self, x):
        self._x = mpmath.matrix([[mpf(float(t))] for t in x])

    def vector(self, i):
        assert i == 0
        return self._x


def _top_pair_given(monkeypatch, lam, E, theta, dps=30, z_shift=0.0, x=None, widen_top=None):
    """top_pair_enclosure(diag(lam), E) with u = 3(cos θ e1 + sin θ e2) (or the vector ``x``) as
    the top eigenvector; z_shift moves the solve's z by that multiple of the bottom eigenvector
    of Ñ (the bound [Φ, Φ + ‖Ñz − w̃‖²/(m0 − τ)] holds for every z, and is attained for r along
    it); widen_top = (below, above) replaces λ1's enclosure by the valid [λ1 − below, λ1 + above]
    (its midpoint μ̂ is then off λ1, and Ñ = μ̂I − A + uuᵀ is off N by a multiple of I)."""
    import properties.certify as C

    n = len(lam)
    if x is None:
        x = np.zeros(n)
        x[0], x[1] = 3 * np.cos(theta), 3 * np.sin(theta)
    monkeypatch.setattr(C, "mp_eigh", lambda A, d=None: _GivenTopVector(x))
    if widen_top is not None:
        enclose = C.float_eigenvalue_enclosures

        def widened(M):
            enc = enclose(M)
            if np.array_equal(M, np.diag(np.asarray(lam, dtype=float))):
                enc[0] = mpmath.iv.mpf([mpf(lam[0]) - mpf(widen_top[0]), mpf(lam[0]) + mpf(widen_top[1])])
            return enc

        monkeypatch.setattr(C, "float_eigenvalue_enclosures", widened)
    if z_shift:
        solve = mpmath.lu_solve

        def shifted(M, b):
            vals, vecs = mpmath.eigsy(M)
            k = min(range(M.rows), key=lambda i: vals[i])
            return solve(M, b) + mpf(z_shift) * vecs[:, k]

        monkeypatch.setattr(mpmath, "lu_solve", shifted)
    from fimtheory.highprec import working_precision

    with working_precision(dps):
        return C.top_pair_enclosure(np.diag(np.asarray(lam, dtype=float)), E)


def _ends(x):
    return _frac(mpf(x.a)), _frac(mpf(x.b))


def _swap(eta, n=4):
    """η(e1e2ᵀ + e2e1ᵀ): ‖E‖ = η, E_12 = η, the worst case for uᵀEu."""
    E = np.zeros((n, n))
    E[0, 1] = E[1, 0] = eta
    return E


def _through_third(a, n=4):
    """E_13 = E_23 = a (E_11 = E_12 = 0): ‖E‖ = √2 a, and ‖Eu‖² moves at first order in θ."""
    E = np.zeros((n, n))
    E[0, 2] = E[2, 0] = E[1, 2] = E[2, 1] = a
    return E


def _corner(b, c, n=4):
    """E_12 = b, E_22 = c, E_11 = 0: the E_11 interval straddles 0 (its square adds only
    O(ε²)), and at γ ≥ 1 (m0 = 1, τ = ε) the a2 resolvent form moves by ≈ 2bc·θ at first order,
    which a2's radius (η²/m0)(τ/(m0 − τ) + ε) ≈ 2εη² must cover by itself (a radius with the
    ε term subtracted, ≈ ε²η², misses it)."""
    E = np.zeros((n, n))
    E[0, 1] = E[1, 0] = b
    E[1, 1] = c
    return E


def _reflection(eta, phi, n=4):
    E = np.zeros((n, n))
    E[0, 0], E[1, 1] = -eta * np.cos(phi), eta * np.cos(phi)
    E[0, 1] = E[1, 0] = eta * np.sin(phi)
    E[2, 3] = E[3, 2] = eta / 2
    return E


_TOP_CASES = [
    ((3.0, 2.0, 1.0, -1.0), _swap(8.0)),
    ((3.0, 2.0, 1.0, -1.0), _swap(0.125)),
    ((3.0, 2.5, 1.0, -1.0), _swap(8.0)),  # gap 1/2: m0 = 1/2, ρ/δ ≠ ρ·δ
    ((10.0, 2.0, 1.0, 0.0), _swap(0.125)),  # gap 8 > 1: m0 = 1 (λ_min(N) is N's eigenvalue 1 on v1)
    ((3.0, 2.0, 1.0, -1.0), _through_third(6.0)),
    ((3.0, 2.0, 1.0, -1.0), _through_third(0.0625)),
    ((2.0, 1.75, -0.5, -3.0), _reflection(2.0, 0.7)),
    ((2.0, 1.75, -0.5, -3.0), _reflection(0.25, 0.7)),
    ((1.5, 1.0, 0.5, 0.0), _reflection(4.0, 1.2)),
    ((3.0, 1.0), _swap(0.5, 2)),  # n = 2, the smallest size taken
    ((3.0, 2.0, 1.0, -1.0), _corner(0.5, 0.5)),  # m0 = 1: the a2 error is the ε term's
    ((9.0, 1.0, 0.0, -1.0), _corner(-2.0, 4.0)),  # γ = 8: m0 = 1 again, the other signs
]


def _closed_forms(lam, E):
    f = [Fraction(float(v)) for v in lam]
    e = [[Fraction(float(v)) for v in row] for row in E]
    n = len(f)
    e11 = e[0][0]
    r2 = sum(e[0][j] ** 2 for j in range(1, n))
    a2 = sum(e[0][j] ** 2 / (f[0] - f[j]) for j in range(1, n))
    return f, e11, r2, a2


def _eta_mp(E, dps=60):
    with mpmath.workdps(dps):
        vals = mpmath.eigsy(mpmath.matrix(E.tolist()), eigvals_only=True)
        return max(abs(v) for v in vals)


@pytest.mark.parametrize("case", range(len(_TOP_CASES)))
@pytest.mark.parametrize("theta", [1e-6, -1e-6, 3e-4])
def test_top_pair_enclosure_contains_the_closed_forms_for_a_perturbed_eigenvector(monkeypatch, case, theta):
    """Every field encloses its exact value (λ1, λ2, λ_min, γ, η, E_11, ‖P⊥Ev1‖², a2), and
    sin_bound bounds the true sin∠(u, v1), for u off v1 by ±1e-6 and 3e-4 rad."""
    lam, E = _TOP_CASES[case]
    tp = _top_pair_given(monkeypatch, lam, E, theta)
    f, e11, r2, a2 = _closed_forms(lam, E)
    for name, value in [("lam1", f[0]), ("lam2", f[1]), ("lam_min", f[-1]), ("gap", f[0] - f[1])]:
        lo, hi = _ends(getattr(tp, name))
        assert lo <= value <= hi, (name, lo, hi, value)
    for name, value in [("e11", e11), ("r2", r2), ("a2", a2)]:
        lo, hi = _ends(getattr(tp, name))
        assert lo <= value <= hi, (name, float(lo), float(hi), float(value))
    eta = _eta_mp(E)
    assert tp.eta.a <= eta <= tp.eta.b
    with mpmath.workdps(60):
        assert tp.sin_bound.a >= abs(mpmath.sin(mpmath.mpf(theta))) * (1 - mpf(10) ** -20)


@pytest.mark.parametrize("case", range(len(_TOP_CASES)))
def test_top_pair_enclosure_is_no_wider_than_its_documented_bounds(monkeypatch, case):
    """The half-widths are those of the docstring, computed here in closed form with
    ε = tan θ (= ρ/δ for this u), η = ‖E‖, τ = ε (λ1 is exact), m0 = min(1, γ):
    E_11 ± 2εη; ‖Ev1‖² ± εη² (minus the square of the E_11 interval);
    a2 ± (η²/m0)(τ/(m0 − τ) + ε) (plus the solve's residual, here ~10^-30)."""
    lam, E = _TOP_CASES[case]
    theta = 1e-6
    tp = _top_pair_given(monkeypatch, lam, E, theta)
    _, e11, _, _ = _closed_forms(lam, E)
    with mpmath.workdps(60):
        eps = abs(mpmath.tan(mpmath.mpf(theta)))
        eta = _eta_mp(E)
        slack = 1 + mpf(10) ** -12
        tiny = mpf(10) ** -24
        m0 = min(mpf(1), mpf(lam[0]) - mpf(lam[1]))
        w_e11 = 2 * (2 * eps * eta) * slack + tiny
        assert tp.e11.b - tp.e11.a <= w_e11
        e11_abs = abs(mpf(float(e11))) + w_e11
        w_sq = 2 * e11_abs * w_e11 + w_e11**2
        assert tp.r2.b - tp.r2.a <= 2 * (eps * eta**2) * slack + w_sq + tiny
        err = eta**2 / m0 * (eps / (m0 - eps) + eps)
        assert tp.a2.b - tp.a2.a <= 2 * err * slack + w_sq + tiny
        assert tp.sin_bound.b <= eps * slack


def _at_45_through_third(eta, theta, n=4):
    """η(f e3ᵀ + e3 fᵀ), f = (cos φ, sin φ, 0, …) with φ = π/4 + θ/2: E² = η²(ffᵀ + e3e3ᵀ) has
    its eigenvectors in the (e1, e2) plane at 45° to the middle of v1 = e1 and
    u = cos θ e1 + sin θ e2, and uᵀEu = E_11 = 0."""
    phi = np.pi / 4 + theta / 2
    f = np.zeros(n)
    f[0], f[1] = np.cos(phi), np.sin(phi)
    h = np.zeros(n)
    h[2] = 1.0
    return eta * (np.outer(f, h) + np.outer(h, f))


@pytest.mark.parametrize("theta", [1e-6, 3e-4])
def test_top_pair_eigenvector_error_bounds_are_attained_to_first_order(monkeypatch, theta):
    """The docstring's lemma bounds are sharp: |v1ᵀEv1 − uᵀEu| ≤ 2εη is attained by E swapping
    e1 and e2 (uᵀEu = η sin 2θ, E_11 = 0), and |‖Ev1‖² − ‖Eu‖²| ≤ εη² by E² with eigenvectors
    at 45° (the difference is η² sin θ): each exact value lies at the edge of its enclosure,
    within a factor cos θ of the radius (ε = tan θ)."""
    lam = (3.0, 2.0, 1.0, -1.0)
    eta = 0.75
    tp = _top_pair_given(monkeypatch, lam, _swap(eta), theta)
    _, e11, _, _ = _closed_forms(lam, _swap(eta))
    lo, hi = _ends(tp.e11)
    assert lo <= e11 <= hi
    # the enclosure is η sin 2θ ± 2η tan θ: E_11 = 0 is sin²θ/2 of its width above the lower end
    assert float((e11 - lo) / (hi - lo)) < theta**2
    E = _at_45_through_third(eta, theta)
    tp = _top_pair_given(monkeypatch, lam, E, theta)
    _, e11, r2, _ = _closed_forms(lam, E)
    lo, hi = _ends(tp.r2)
    assert lo <= r2 <= hi, (float(lo), float(hi), float(r2))
    # r2's enclosure is ‖Eu‖² ± εη² less [0, (2εη)²]; ‖P⊥Ev1‖² = ‖Eu‖² − η² sin θ lies
    # (tan θ − sin θ + 4 tan²θ)/(2 tan θ + 4 tan²θ) ≈ 2θ of its width above the lower end
    assert float((r2 - lo) / (hi - lo)) < 3 * theta


@pytest.mark.parametrize("z_shift", [0.5, 10.0])
@pytest.mark.parametrize("theta", [0.0, 1e-9])
@pytest.mark.parametrize("lam", [(3.0, 2.5, 1.0, -1.0), (10.0, 2.0, 1.0, 0.0)])
def test_top_pair_a2_bound_holds_for_any_z_and_is_attained(monkeypatch, z_shift, theta, lam):
    """The resolvent form's enclosure [Φ, Φ + ‖Ñz − w̃‖²/(m0 − τ)] holds for every z: with z
    moved along Ñ's bottom eigenvector (eigenvalue m0 = min(1, γ): 1/2, or 1 on u when γ = 8)
    the exact w̃ᵀÑ⁻¹w̃ is its upper end, and a2 (E small, so its own error term is negligible)
    still encloses the exact value."""
    E = _swap(2.0**-10)
    tp = _top_pair_given(monkeypatch, lam, E, theta, z_shift=z_shift)
    _, _, _, a2 = _closed_forms(lam, E)
    lo, hi = _ends(tp.a2)
    assert lo <= a2 <= hi, (float(lo), float(hi), float(a2))


def test_top_pair_enclosure_tightens_with_the_working_precision():
    """At 100 digits (no substitution: the module's own mp eigenvector) the enclosures of a
    non-diagonal case are ~10^-90 wide and contain the 150-digit values."""
    from fimtheory.claims import _mp_coefficients
    from fimtheory.highprec import mp_eigh, mp_matrix, working_precision
    from properties.certify import top_pair_enclosure

    rng = np.random.default_rng(7)
    Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    A = Q @ np.diag([2.0, 1.0, 0.5, -1.0]) @ Q.T
    A = 0.5 * (A + A.T)
    E = rng.standard_normal((4, 4))
    E = 0.5 * (E + E.T)
    with working_precision(100):
        tp = top_pair_enclosure(A, E)
    with working_precision(150):
        eig = mp_eigh(A, 150)
        a2 = _mp_coefficients(eig, mp_matrix(E), 2)[1]
        v = eig.vector(0)
        e11 = (v.T * mp_matrix(E) * v)[0, 0]
        for name, value in [("a2", a2), ("e11", e11), ("lam1", eig.eigenvalues[0]), ("lam_min", eig.eigenvalues[-1])]:
            x = getattr(tp, name)
            assert x.a <= value <= x.b, name
            assert x.b - x.a < mpf(10) ** -85, (name, x.b - x.a)


def test_top_pair_enclosure_refusals_name_the_problem(monkeypatch):
    from properties.certify import top_pair_enclosure

    with mpmath.workdps(30):
        with pytest.raises(InputError, match=r"^top_pair_enclosure needs n ≥ 2$"):
            top_pair_enclosure(np.eye(1), np.eye(1))
        with pytest.raises(InputError, match=r"^top eigenvalue not certified simple$"):
            top_pair_enclosure(np.diag([2.0, 2.0, 1.0]), _swap(0.5, 3))
    # u at 60° from v1 is nearer v2: the Rayleigh quotient is not separated from λ2
    with pytest.raises(InputError, match=r"^Rayleigh quotient not separated from λ2$"):
        _top_pair_given(monkeypatch, (3.0, 2.0, 1.0, -1.0), _swap(1.0), np.pi / 3)
    # u at 30° with γ = 1/2: ε = tan 30° > m0, the a2 enclosure cannot be formed
    with pytest.raises(InputError, match=r"^eigenvector error too large for the a2 enclosure$"):
        _top_pair_given(monkeypatch, (3.0, 2.5, 1.0, -1.0), _swap(1.0), np.pi / 6)


def test_top_pair_enclosure_refuses_a_complex_matrix():
    """A Hermitian A = [[3, i], [−i, 1]] (λ1 = 2 + √2) is refused by name, not enclosed as the
    real part diag(3, 1) with λ1 = 3 (casting to float discards the imaginary part)."""
    from properties.certify import top_pair_enclosure

    A = np.array([[3.0, 1j], [-1j, 1.0]])
    with mpmath.workdps(30), pytest.raises(InputError, match=r"^top_pair_enclosure needs real entries"):
        top_pair_enclosure(A, np.eye(2))


# ----------------------------------------------------------------- each certifier against its mp margin
# The certified enclosure at 50 digits must contain the weakening's own margin evaluated at 100
# digits (an independent mp code path: eigenvalues by mpmath's Jacobi iteration, logs and
# softmax in mp) and be tight (width ≤ 10^-40 · (1 + |m|)).


def _g(seed, shape, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def _sym(seed, n, scale=1.0):
    e = _g(seed, (n, n), scale)
    return 0.5 * (e + e.T)


def _deltas(seed, p):
    d1, d2 = np.round(_g(seed, p, 2.0)) / 16, np.round(_g(seed + 1, p, 2.0)) / 16
    return (d1, d2, -d1 - d2)  # dyadic: the mean is exactly zero, and the set is not symmetric


def _two_levels():
    # 16 entries 2^-5 and 64 entries 2^-7: Σ = 1 exactly, 80 > DENSE_MAX entries
    return np.array([2.0**-5] * 16 + [2.0**-7] * 64)


_MARGIN_CASES = {
    "EQ1-RATIO-within-10pct/4": (
        "EQ1-RATIO-within-10pct",
        lambda: ProbabilityInstance(np.array([0.5, 0.3, 0.15, 0.05])),
    ),
    "EQ1-RATIO-within-25pct/2": ("EQ1-RATIO-within-25pct", lambda: ProbabilityInstance(np.array([0.7, 0.3]))),
    "EQ1-RATIO-within-25pct/6": (
        "EQ1-RATIO-within-25pct",
        lambda: ProbabilityInstance(np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.25]), k=5),
    ),
    "EQ1-FULL-within-50pct/80": ("EQ1-FULL-within-50pct", lambda: ProbabilityInstance(_two_levels(), k=20)),
    "EQ1-FULL-within-50pct/5": (
        "EQ1-FULL-within-50pct",
        lambda: ProbabilityInstance(np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])),
    ),
    "EQ1-EMPIRICAL-within-10x/y1": (
        "EQ1-EMPIRICAL-within-10x",
        lambda: ProbabilityInstance(np.array([0.5, 0.3, 0.15, 0.05]), y=1),
    ),
    "EQ1-EMPIRICAL-within-10x/y0": (
        "EQ1-EMPIRICAL-within-10x",
        lambda: ProbabilityInstance(np.array([0.6, 0.2, 0.1, 0.1]), y=0),
    ),
    "AB-numerical-rank/q4": ("AB-numerical-rank", lambda: ScoreInstance(_g(1, (5, 3)), q=4)),
    "AB-numerical-rank/q2": ("AB-numerical-rank", lambda: ScoreInstance(_g(2, (4, 6)), q=2)),
    "AB-numerical-rank/q3": ("AB-numerical-rank", lambda: ScoreInstance(_g(3, (3, 3)), q=3)),
    "AH-accurate/wide": ("AH-accurate", lambda: ScoreInstance(_g(4, (4, 6)), power_steps=2)),
    "AH-accurate/tall": ("AH-accurate", lambda: ScoreInstance(_g(5, (7, 3)), power_steps=1)),
    "AH-accurate/square": ("AH-accurate", lambda: ScoreInstance(_g(6, (4, 4)), power_steps=0)),
    "T4.3d-empirical-labels/logistic": (
        "T4.3d-empirical-labels",
        lambda: ParameterEnsemble("logistic", _g(7, (5, 3)), np.array([0, 1, 1, 0, 1]), _g(8, 3), _deltas(9, 3)),
    ),
    "T4.3d-empirical-labels/softmax": (
        "T4.3d-empirical-labels",
        lambda: ParameterEnsemble("softmax", _g(10, (4, 2)), np.array([0, 2, 1, 2]), _g(11, 6), _deltas(12, 6)),
    ),
    "KL-eps-insensitive": (
        "KL-eps-insensitive",
        lambda: KLPairInstance(np.array([0.5, 0.3, 0.2]), np.array([0.6, 0.25, 0.15]), eps=1e-3, eps_alt=1e-2),
    ),
    "KL-nonnegative": ("KL-nonnegative", lambda: KLPairInstance(np.array([0.5, 0.3, 0.2]), np.array([0.7, 0.2, 0.1]))),
    "S2-repeated-top": (
        "S2-repeated-top",
        lambda: MatrixPerturbation(np.diag([2.0, 2.0, 1.0, 0.0]), _sym(13, 4, 0.01), v=np.array([1.0, 0, 0, 0])),
    ),
    "S2-repeated-top/simple": (
        "S2-repeated-top",
        lambda: MatrixPerturbation(np.diag([3.0, 1.0, 0.5, -1.0]), _sym(14, 4, 0.05), v=np.array([1.0, 0, 0, 0])),
    ),
    "T4.3a-per-draw": ("T4.3a-per-draw", lambda: MatrixPerturbation(np.diag([2.0, 1.0, 0.5, 0.0]), _sym(15, 4, 0.05))),
    "T4.3a-per-draw/negative": (
        "T4.3a-per-draw",
        lambda: MatrixPerturbation(np.diag([-1.0, -2.0, -3.0]), _sym(16, 3, 0.2)),
    ),
    "T4.3b-nonzero-mean": (
        "T4.3b-nonzero-mean",
        lambda: NoiseEnsemble(np.diag([2.0, 1.0, 0.5]), (_sym(17, 3, 0.1), _sym(18, 3, 0.1)), t=0.5),
    ),
    "T4.3b-nonzero-mean/negative": (
        "T4.3b-nonzero-mean",
        lambda: NoiseEnsemble(
            np.diag([-0.5, -1.0, -2.0]), (_sym(19, 3, 0.3), _sym(20, 3, 0.1), _sym(21, 3, 0.2)), t=2.0
        ),
    ),
    "T4.3c-no-genericity": (
        "T4.3c-no-genericity",
        lambda: NoiseEnsemble(_sym(22, 3) + 3 * np.eye(3), (_sym(23, 3, 0.1), -_sym(23, 3, 0.1)), t=1.0),
    ),
    "T4.3c-no-genericity/three": (
        "T4.3c-no-genericity",
        lambda: NoiseEnsemble(
            np.diag([-2.0, -1.0, -3.0]),
            (np.diag([0.5, 0, 0]), np.diag([-0.25, 0.0, 0.0]), np.diag([-0.25, 0, 0])),
            t=1.0,
        ),
    ),
}


def _mp_margin(w, inst, dps=100):
    with mpmath.workdps(dps):
        return mpf(w.evaluate_mp(inst, dps))


@pytest.mark.parametrize("name", sorted(_MARGIN_CASES))
def test_certified_margin_encloses_the_100_digit_margin_tightly(name):
    wid, build = _MARGIN_CASES[name]
    w, inst = WEAKENINGS[wid], build()
    out = w.evaluate(inst)
    assert out.hypotheses_met, out.reason
    cert = certify(w, inst, 50, ladder=(50,))
    assert cert.usable, cert.note
    m = _mp_margin(w, inst)
    with mpmath.workdps(100):
        tol = mpf(10) ** -40 * (1 + abs(m))
        assert cert.lo - tol <= m <= cert.hi + tol, (name, cert.short(12), mpmath.nstr(m, 20))
        assert cert.hi - cert.lo <= tol, (name, cert.short(12))
        assert cert.sign == (1 if m > tol else -1 if m < -tol else cert.sign)


# ----------------------------------------------------------------- P3.2-no-LCM against an mp reference
# Linear-Gaussian model, g_i = (y_i − θᵀx_i) x_i; Λ(X) = λ_max((1/n) Σ g_i g_iᵀ) at 60 digits
# (mpmath's Jacobi eigenvalues) on the float grid inputs X + t_k U, t = linspace(0, T, steps + 1);
# margin = min over k ≥ 1 of min(pointwise, mean, q-quantile difference), divided by max Λ.


def _mp_lambda_linear(X, y, theta):
    n, d = X.shape
    rows = []
    for i in range(n):
        x = [mpf(float(v)) for v in X[i]]
        r = mpf(float(y[i])) - mpmath.fsum(mpf(float(theta[j])) * x[j] for j in range(d))
        rows.append([r * xj for xj in x])
    G = mpmath.matrix(rows)
    F = (G.T * G) / n
    return max(mpmath.eigsy(F, eigvals_only=True))


def _mp_quantile(vals, q):
    v = sorted(vals)
    h = (len(v) - 1) * mpf(q)
    f = int(mpmath.floor(h))
    if f + 1 >= len(v):
        return v[-1]
    return v[f] + (h - f) * (v[f + 1] - v[f])


def _mp_p32_margin(inst):
    with mpmath.workdps(60):
        t = np.linspace(0.0, inst.T, inst.steps + 1)
        vals = [
            [_mp_lambda_linear(X + tk * U, y, inst.theta) for tk in t]
            for X, y, U in zip(inst.inputs, inst.labels, inst.directions)
        ]
        worst = None
        for k in range(1, len(t)):
            base, disp = [v[0] for v in vals], [v[k] for v in vals]
            cand = min(
                min(d - b for d, b in zip(disp, base)),
                mpmath.fsum(disp) / len(disp) - mpmath.fsum(base) / len(base),
                _mp_quantile(disp, inst.quantile) - _mp_quantile(base, inst.quantile),
            )
            worst = cand if worst is None else min(worst, cand)
        return worst / max(abs(v) for row in vals for v in row)


def _departure(kind):
    from fimtheory.instances import DepartureInstance

    theta = np.array([0.5, -0.25])
    Xs = [_g(30 + i, (3, 2)) * (1 + i) for i in range(3)]
    if kind == "growing":  # y = 0, U ∝ X: g scales by (1 + t)², every Λ grows, least at k = 1
        ys = [np.zeros(3)] * 3
        Us = [X / np.linalg.norm(X) for X in Xs]
        T = 1.0
    elif kind == "shrinking":  # U ∝ −X: every Λ shrinks
        ys = [np.zeros(3)] * 3
        Us = [-X / np.linalg.norm(X) for X in Xs]
        T = 0.5
    else:  # random labels and directions: a path that goes up and down
        ys = [_g(40 + i, 3) for i in range(3)]
        Us = [_g(50 + i, (3, 2)) for i in range(3)]
        Us = [U / np.linalg.norm(U) for U in Us]
        T = 2.0
    return DepartureInstance("linear", theta, tuple(Xs), tuple(ys), tuple(Us), T=T, steps=4, quantile=0.5)


@pytest.mark.parametrize("kind", ["growing", "shrinking", "mixed"])
def test_p32_certificate_encloses_the_mp_reference_margin(kind):
    w, inst = WEAKENINGS["P3.2-no-LCM"], _departure(kind)
    assert w.evaluate(inst).hypotheses_met
    cert = certify(w, inst, 50, ladder=(50,))
    m = _mp_p32_margin(inst)
    with mpmath.workdps(60):
        tol = mpf(10) ** -40 * (1 + abs(m))
        assert cert.usable and cert.lo - tol <= m <= cert.hi + tol, (kind, cert.short(12), mpmath.nstr(m, 20))
        assert cert.hi - cert.lo <= tol
    if kind == "growing":
        assert m > 0
    if kind == "shrinking":
        assert m < 0


# ----------------------------------------------------------------- refusals inside the certifiers


def test_eq1_certifier_refuses_a_distribution_with_one_positive_entry():
    from fimtheory.highprec import working_precision
    from properties.certify import _CERTIFIERS

    with (
        working_precision(50),
        pytest.raises(InputError, match=r"^the top-k distribution has fewer than 2 positive entries$"),
    ):
        _CERTIFIERS["EQ1-RATIO-within-10pct"](ProbabilityInstance(np.array([1.0, 0.0, 0.0])))


def test_eq1_ratio_on_more_entries_than_the_dense_enclosure_takes_is_refused_not_guessed():
    """k = 60 keeps 60 entries: M(q) is too large for the dense enclosure and the renormalised q
    has no exact float form for the secular one, so no certificate — with the reason."""
    p = np.linspace(1.0, 2.0, 60)
    w = WEAKENINGS["EQ1-RATIO-within-10pct"]
    inst = ProbabilityInstance(p / p.sum(), k=60)
    assert w.evaluate(inst).hypotheses_met
    cert = certify(w, inst, 50, ladder=(50,))
    assert cert.lo is None and cert.note == "60 entries: too many for the dense enclosure of M(q)"


def test_iv_scores_refuses_an_unknown_model_by_name():
    from fimtheory.highprec import working_precision
    from properties.certify import iv_scores

    with working_precision(50), pytest.raises(UnknownIdError, match=r"^unknown model 'probit'$"):
        iv_scores("probit", np.ones((2, 2)), np.zeros(2), np.ones(2))


def test_a_failed_registry_enclosure_is_an_input_error_naming_the_weakening(monkeypatch):
    from properties.certify import _from_enclosure

    def fails(inst):
        raise enclosures.EnclosureError("the gap is not certified")

    monkeypatch.setitem(enclosures.ENCLOSURES, "X-registry", fails)
    with pytest.raises(InputError, match=r"^X-registry: the gap is not certified$"):
        _from_enclosure("X-registry")(INST)
    seen = []
    monkeypatch.setitem(enclosures.ENCLOSURES, "X-registry", lambda inst: seen.append(inst) or mpmath.iv.mpf(1))
    assert _from_enclosure("X-registry")(INST) == mpmath.iv.mpf(1) and seen == [INST]


def test_a_failed_interval_eigenvalue_enclosure_keeps_its_reason(monkeypatch):
    from properties.certify import iv_eigenvalue_enclosures

    def fails(M):
        raise enclosures.EnclosureError("Weyl radius not finite")

    monkeypatch.setattr(enclosures, "iv_eigenvalue_enclosures", fails)
    with pytest.raises(InputError, match=r"^Weyl radius not finite$"):
        iv_eigenvalue_enclosures(mpmath.iv.matrix(2, 2))


def test_float_eigenvalue_enclosures_tighten_with_the_working_precision():
    from fimtheory.highprec import mp_eigh, working_precision
    from properties.certify import float_eigenvalue_enclosures

    A = _sym(60, 4)
    with working_precision(100):
        enc = float_eigenvalue_enclosures(A)
    ref = mp_eigh(A, 150).eigenvalues
    with mpmath.workdps(150):
        for x, lam in zip(enc, ref):
            assert x.a <= lam <= x.b and x.b - x.a < mpf(10) ** -90


def test_outward_str_exponent_corrections_end_within_a_second():
    """The decade-off inputs again, each under a 2 s alarm (the correction loops must terminate:
    a loop that never reaches 10^e ≤ |f| < 10^(e+1) is a hang, reported here as a failure)."""
    import signal

    from properties.certify import outward_str

    def hang(signum, frame):
        raise TimeoutError("outward_str did not return")

    old = signal.signal(signal.SIGALRM, hang)
    try:
        for x, want in [(Fraction(10**445 + 1, 10**443), "1e+2"), (Fraction(10**40 - 1), "9.99e+39")]:
            signal.setitimer(signal.ITIMER_REAL, 2.0)
            try:
                assert outward_str(x, "down", 3) == want
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old)


def test_top_pair_a2_error_term_covers_a_midpoint_off_lambda1(monkeypatch):
    """λ1's enclosure [λ1 − 10^-9, λ1 + 10^-7] (valid, lopsided): μ̂ = its midpoint is ≈ 5·10^-8
    above λ1, so Ñ = N + (μ̂ − λ1)I and, with w = Ev1 = η e2 on N's bottom eigenvector (γ = 1/4),
    w̃ᵀÑ⁻¹w̃ = η²/(γ + μ̂ − λ1) falls short of a2 = η²/γ by nearly the documented η²τ/(m0(m0 − τ))
    (τ = 5.05·10^-8 here): a2 sits at the upper end of its enclosure."""
    lam, E = (3.0, 2.75, 1.0, -1.0), _swap(0.5)
    tp = _top_pair_given(monkeypatch, lam, E, 0.0, widen_top=(1e-9, 1e-7))
    _, _, _, a2 = _closed_forms(lam, E)
    lo, hi = _ends(tp.a2)
    assert lo <= a2 <= hi, (float(lo), float(hi), float(a2))
    assert float((a2 - lo) / (hi - lo)) > 0.95  # the exact value sits at the upper end


def test_top_pair_refuses_an_eigenvector_error_equal_to_m0(monkeypatch):
    """A tie τ = m0: u = (3, 1, …, 1)/4 exactly (dyadic), A = diag(2, ¼ ×6, −½): μ = 19/16,
    δ = μ − λ2 = 15/16 = ρ, so ε = 1 = m0 = min(1, γ = 7/4) exactly; m0 − τ = 0 leaves no
    bound on Ñ⁻¹ and the enclosure must be refused, not divided by zero."""
    lam = (2.0,) + (0.25,) * 6 + (-0.5,)
    x = np.array([3.0] + [1.0] * 7)
    with pytest.raises(InputError, match=r"^eigenvector error too large for the a2 enclosure$"):
        _top_pair_given(monkeypatch, lam, _swap(0.5, 8), 0.0, x=x)


def test_top_pair_takes_a_rayleigh_quotient_midway_between_lambda2_and_lambda1_as_separated(monkeypatch):
    """u = (3, 1, …, 1)/4, A = diag(3, 2 ×6, 1): μ = 5/2 is exactly midway (λ1 − μ = μ − λ2 = ½).
    The gap theorem sin θ ≤ ρ/δ needs only δ = μ − λ2 > 0, and the check is λ1 − μ ≤ δ, so u is
    accepted there; it is then its error ε = ρ/δ = √6/2 > m0 = 1 that refuses the a2 enclosure."""
    lam = (3.0,) + (2.0,) * 6 + (1.0,)
    x = np.array([3.0] + [1.0] * 7)
    with pytest.raises(InputError, match=r"^eigenvector error too large for the a2 enclosure$"):
        _top_pair_given(monkeypatch, lam, _swap(0.5, 8), 0.0, x=x)


def test_top_pair_refuses_a_non_square_matrix_as_such():
    from properties.certify import top_pair_enclosure

    with mpmath.workdps(30), pytest.raises(InputError, match="square"):
        top_pair_enclosure(np.ones((3, 1)), np.ones((3, 1)))


# ----------------------------------------------------------------- scores and the batch Λ in interval arithmetic


def _mp_batch_lambda(model, X, y, theta, dps=60):
    """λ_max of the empirical FIM (1/n) Σ g_i g_iᵀ at ``dps`` digits, scores written out in mp."""
    with mpmath.workdps(dps):
        n, d = X.shape
        rows = []
        for i in range(n):
            x = [mpf(float(v)) for v in X[i]]
            if model == "softmax":
                k = theta.size // d
                W = np.asarray(theta, dtype=float).reshape(k, d)
                z = [mpmath.fsum(mpf(float(W[c, j])) * x[j] for j in range(d)) for c in range(k)]
                e = [mpmath.exp(t) for t in z]
                s = mpmath.fsum(e)
                rows.append([((1 if c == int(y[i]) else 0) - e[c] / s) * xj for c in range(k) for xj in x])
            else:
                t = mpmath.fsum(mpf(float(theta[j])) * x[j] for j in range(d))
                r = mpf(float(y[i])) - (t if model == "linear" else 1 / (1 + mpmath.exp(-t)))
                rows.append([r * xj for xj in x])
        G = mpmath.matrix(rows)
        return max(mpmath.eigsy((G.T * G) / n, eigvals_only=True))


@pytest.mark.parametrize(
    "model, shape, theta_shape",
    [("logistic", (5, 3), (3,)), ("logistic", (2, 4), (1, 4)), ("linear", (3, 2), (2,)), ("softmax", (4, 2), (3, 2))],
)
def test_iv_batch_lambda_max_encloses_the_mp_lambda_max(model, shape, theta_shape):
    """Λ = λ_max((1/n) GᵀG) of the batch (n > p and n ≤ p; θ given flat or as a matrix, which
    the scores read flattened, θ = W.reshape(-1))."""
    from fimtheory.highprec import working_precision
    from properties.certify import iv_batch_lambda_max

    X = _g(70, shape)
    theta = _g(71, theta_shape)
    y = np.array([i % 3 for i in range(shape[0])]) if model == "softmax" else (np.arange(shape[0]) % 2).astype(float)
    with working_precision(50):
        lam = iv_batch_lambda_max(model, X, y, theta)
    ref = _mp_batch_lambda(model, X, y, theta.reshape(-1))
    with mpmath.workdps(60):
        assert lam.a <= ref <= lam.b and lam.b - lam.a < mpf(10) ** -40 * ref


# Linear-model batches whose smaller Gram matrix is diagonal with exact entries (dyadic
# inputs, n a power of two where it divides): Λ is then that matrix's largest diagonal entry,
# a closed form in Fraction; the other Gram matrix (same nonzero eigenvalues) is not diagonal.
_DIAGONAL_GRAM_CASES = {
    # n = 1 < p: GGᵀ/n is the 1 × 1 matrix ‖g‖² (GᵀG = ggᵀ is 4 × 4 of rank one)
    "one-sample": (np.array([[0.5, 0.25, -1.5, 3.0]]), np.array([1.0]), np.array([0.5, 0.5, 0.0, 0.25])),
    # n = p = 2, score rows (1, 1) and (2, −2) orthogonal: GGᵀ/2 = diag(1, 4), GᵀG/2 is not diagonal
    "square-orthogonal-rows": (np.array([[1.0, 1.0], [1.0, -1.0]]), np.array([1.0, 2.0]), np.zeros(2)),
    # n = 4 > p = 2, score columns orthogonal: GᵀG/4 = diag(1/4, 21/16), GGᵀ/4 is not diagonal
    "tall-orthogonal-columns": (
        np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, -0.5]]),
        np.ones(4),
        np.zeros(2),
    ),
}


def _exact_linear_lambda(X, y, theta):
    """Λ for a batch whose smaller Gram matrix is diagonal: its largest diagonal entry (exact)."""
    n, p = X.shape
    G = [
        [(_frac(y[i]) - sum(_frac(theta[j]) * _frac(X[i, j]) for j in range(p))) * _frac(X[i, j]) for j in range(p)]
        for i in range(n)
    ]
    if n <= p:
        gram = [[sum(G[i][j] * G[k][j] for j in range(p)) / n for k in range(n)] for i in range(n)]
    else:
        gram = [[sum(G[i][j] * G[i][k] for i in range(n)) / n for k in range(p)] for j in range(p)]
    m = len(gram)
    assert all(gram[i][k] == 0 for i in range(m) for k in range(m) if i != k)  # the case is diagonal
    return max(gram[i][i] for i in range(m))


@pytest.mark.parametrize("case", sorted(_DIAGONAL_GRAM_CASES))
def test_lambda_max_is_exact_when_the_smaller_gram_matrix_is_diagonal(case):
    """Λ is enclosed from the smaller Gram matrix (GGᵀ/n for n ≤ p, n = p included, else
    GᵀG/n); where that one is diagonal with exact entries the enclosure is the exact Λ, a
    point (the larger one, not diagonal, goes through mp eigenvectors and rounds)."""
    from fimtheory.highprec import working_precision
    from properties.certify import iv_batch_lambda_max

    X, y, theta = _DIAGONAL_GRAM_CASES[case]
    with working_precision(50):
        lam = iv_batch_lambda_max("linear", X, y, theta)
        lo, hi = _frac(mpf(lam.a)), _frac(mpf(lam.b))
    assert lo == _exact_linear_lambda(X, y, theta) == hi, (case, lam)


# Scores G whose smaller Gram matrix is diagonal and whose mean score ḡ is a top eigenvector
# of F = GᵀG/n: rq = Λ exactly, so AH's margin rq/Λ − 0.99 is exactly 1/100.
_AH_EXACT_CASES = {
    "one-sample": (np.array([[0.5, 0.25, -1.5, 3.0]]), 0),  # n = 1 < p: GGᵀ = ‖g‖², ḡ = g
    "square": (np.array([[1.5, 1.5], [0.0, 0.0]]), 1),  # n = p: GGᵀ/2 = diag(9/4, 0), ḡ ∝ (1, 1)
    "tall": (np.array([[0.5], [1.5], [-2.0], [0.75]]), 2),  # n > p = 1: F is 1 × 1
}


@pytest.mark.parametrize("case", sorted(_AH_EXACT_CASES))
def test_ah_margin_takes_lambda_max_exactly_from_a_diagonal_smaller_gram_matrix(case):
    """AH-accurate's Λ comes from the smaller Gram matrix, exact when it is diagonal with
    exact entries: with ḡ an eigenvector for Λ, rq/Λ = 1 exactly, and the enclosure of the
    margin 1/100 is no wider than the rounding of the constant 0.99 (twice its width)."""
    from fimtheory.highprec import working_precision
    from properties.certify import _m_ah_accurate

    G, steps = _AH_EXACT_CASES[case]
    with working_precision(50):
        m = _m_ah_accurate(ScoreInstance(G, power_steps=steps))
        c = mpmath.iv.mpf("0.99")
        const_width = _frac(mpf(c.b)) - _frac(mpf(c.a))
        lo, hi = _frac(mpf(m.a)), _frac(mpf(m.b))  # (read inside: mpf() rounds to the working precision)
    assert lo <= Fraction(1, 100) <= hi
    assert hi - lo <= 2 * const_width, (case, float(hi - lo), float(const_width))


@pytest.mark.parametrize(
    "W, X",
    [
        (np.array([[1e-300], [1e-300]]), np.array([[1.0], [0.5]])),  # tiny equal logits (1 + z rounds)
        (np.full((4, 2), 0.75), np.array([[1.0, -2.0]])),  # four classes, equal logits −3/4
    ],
    ids=["two-classes-tiny-logits", "four-classes"],
)
def test_softmax_scores_with_equal_logits_are_the_exact_uniform_ones(W, X):
    """The softmax subtracts the largest logit, so equal logits give exp(0) = 1 for every class
    and the probabilities are exactly 1/k: each score (e_y − 1/k) x_j is a point, equal to its
    closed form (k = 2, 4 and dyadic x make every product exact)."""
    from fimtheory.highprec import working_precision
    from properties.certify import iv_scores

    k, d = W.shape
    y = np.arange(X.shape[0]) % k
    with working_precision(50):
        G = iv_scores("softmax", X, y, W)
        ends = [[(_frac(mpf(G[i, j].a)), _frac(mpf(G[i, j].b))) for j in range(G.cols)] for i in range(G.rows)]
    for i in range(X.shape[0]):
        exact = [
            (Fraction(int(c == y[i])) - Fraction(1, k)) * Fraction(float(X[i, j])) for c in range(k) for j in range(d)
        ]
        assert ends[i] == [(e, e) for e in exact], (i, ends[i], exact)


def test_ab_margin_on_an_identity_gram_matrix_is_proved_zero():
    """AB-numerical-rank's equality case: orthogonal score rows of squared norm n make
    K = GGᵀ/n exactly I (all eigenvalues 1, r = n), so tr K^q / r = 1, its log is 0 and the
    margin (λ_max − (tr K^q / r)^{1/q}) / λ_max is exactly 0: the certificate is [0, 0] at the
    first precision, sign 0 (for q = 2, 3, 4; n = 2 and n = 4)."""
    from scipy.linalg import hadamard

    w = WEAKENINGS["AB-numerical-rank"]
    for G in (np.array([[1.0, 1.0], [1.0, -1.0]]), hadamard(4).astype(float)):
        for q in (2, 3, 4):
            cert = certify(w, ScoreInstance(G, q=q))
            assert cert.lo == 0 and cert.hi == 0 and cert.dps == 50 and cert.sign == 0, (G.shape, q, cert)


def test_iv_scores_refuses_complex_inputs():
    """Complex X or θ are refused by name, not cast to float with the imaginary part dropped."""
    from fimtheory.highprec import working_precision
    from properties.certify import iv_scores

    with working_precision(50):
        with pytest.raises(InputError, match=r"^iv_scores needs real entries"):
            iv_scores("linear", np.array([[1.0, 1j]]), np.zeros(1), np.ones(2))
        with pytest.raises(InputError, match=r"^iv_scores needs real entries"):
            iv_scores("linear", np.ones((1, 2)), np.zeros(1), np.array([1.0, 1j]))


def test_eq1_ratio_on_exactly_dense_max_entries_is_enclosed_densely(monkeypatch):
    """The dense limit is inclusive: a q of exactly DENSE_MAX entries is enclosed densely
    (here with the limit lowered to 4, so that the dense enclosure is cheap)."""
    import properties.certify as C

    monkeypatch.setattr(C, "DENSE_MAX", 4)
    w = WEAKENINGS["EQ1-RATIO-within-25pct"]
    inst = ProbabilityInstance(np.array([0.4, 0.3, 0.2, 0.1]), k=4)
    cert = certify(w, inst, 50, ladder=(50,))
    m = _mp_margin(w, inst)
    with mpmath.workdps(100):
        assert cert.usable and cert.lo - mpf(10) ** -40 <= m <= cert.hi + mpf(10) ** -40, cert.note
