"""The decision rule of :class:`properties.certify.Certificate`, case by case.

A non-strict weakening (holds iff margin ≥ 0) is violated only when hi < 0; a strict one
(holds iff margin > 0) when hi ≤ 0. A straddling enclosure (lo < 0 < hi), a NaN or infinite
end, or a missing enclosure never certifies anything.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from fimtheory.claims import REGISTRY
from fimtheory.errors import InputError
from fimtheory.instances import MatrixPerturbation, NoiseEnsemble
from properties.certify import Certificate, certify, exact_str, parse_exact

INF, NAN = mpmath.inf, mpmath.nan
WEAKENINGS = {w.id: w for c in REGISTRY.values() for w in c.weakenings}

# (case, lo, hi, exact_zero, certified if non-strict, certified if strict, sign)
SIGN_CASES = [
    ("lo<hi<0", -2, -1, False, True, True, -1),
    ("lo<hi<0 tiny", "-1e-60", "-1e-61", False, True, True, -1),
    ("lo=hi<0", -0.5, -0.5, False, True, True, -1),
    ("lo<0<hi", -1, 1, False, False, False, None),
    ("lo<0<hi tiny", "-1e-80", "1e-80", False, False, False, None),
    ("lo<0=hi", -1, 0, False, False, True, None),
    ("0=lo=hi exact", 0, 0, True, False, True, 0),
    ("0=lo=hi enclosure", 0, 0, False, False, True, 0),
    ("0=lo<hi", 0, 1, False, False, False, None),
    ("0<lo<hi", 1, 2, False, False, False, 1),
    ("nan lo", NAN, -1, False, False, False, None),
    ("nan hi", -1, NAN, False, False, False, None),
    ("nan both", NAN, NAN, False, False, False, None),
    ("-inf lo", -INF, -1, False, False, False, None),
    ("-inf hi", -2, -INF, False, False, False, None),
    ("+inf hi", 1, INF, False, False, False, None),
    ("-inf..+inf", -INF, INF, False, False, False, None),
    ("none", None, None, False, False, False, None),
]


def _mpf(x):
    return None if x is None else mpmath.mpf(x)


@pytest.mark.parametrize(
    "case, lo, hi, exact, want_nonstrict, want_strict, want_sign", SIGN_CASES, ids=[c[0] for c in SIGN_CASES]
)
def test_certificate_decision_table(case, lo, hi, exact, want_nonstrict, want_strict, want_sign):
    with mpmath.workdps(100):
        lo, hi = _mpf(lo), _mpf(hi)
    for strict, want in ((False, want_nonstrict), (True, want_strict)):
        c = Certificate(lo, hi, 50, "eigenvalues", strict=strict, exact_zero=exact)
        assert c.certified is want, (case, strict)
        assert c.sign == want_sign, (case, strict)
        d = c.to_json()  # serialisable in every case, the stored verdict is the property's
        assert d["certified"] is want
        if c.usable:
            back = Certificate.from_json(d)
            assert (back.lo, back.hi, back.certified, back.sign) == (c.lo, c.hi, c.certified, c.sign)


@pytest.mark.parametrize(
    "lo, hi, exact",
    [(1, -1, False), (-1, 1, True), (-1, 0, True), (0, 1, True), (None, -1, False), (-1, None, False)],
)
def test_inconsistent_certificates_are_refused(lo, hi, exact):
    with pytest.raises(InputError):
        Certificate(_mpf(lo), _mpf(hi), 50, "exact", strict=True, exact_zero=exact)


def test_exact_endpoints_round_trip_at_any_precision():
    with mpmath.workdps(200):
        x = -mpmath.mpf(1) / 3
    for dps in (15, 50, 200):
        with mpmath.workdps(dps):
            assert parse_exact(exact_str(x)) == x
    assert parse_exact("0") == 0 and parse_exact(None) is None
    assert mpmath.isnan(parse_exact("nan")) and parse_exact("-inf") == -INF
    with pytest.raises(InputError):
        parse_exact("1.5e3")


def test_decimal_endpoints_must_enclose_exact_ones():
    with mpmath.workdps(60):
        c = Certificate(-mpmath.mpf(2) / 3, -mpmath.mpf(1) / 3, 50, "eigenvalues")
    d = c.to_json()
    d["hi"] = "-0.4"  # below the exact hi
    with pytest.raises(InputError, match="do not enclose"):
        Certificate.from_json(d)


# ---------------------------------------------------------------- end to end through certify


def test_exact_tie_of_non_strict_weakening_is_not_certified():
    """W-no-lambda-min with E = 0: margin exactly 0. The eigenvalue enclosure of A + E and of A
    straddle 0 after subtraction; a non-strict weakening is not violated by a tie."""
    w = WEAKENINGS["W-no-lambda-min"]
    inst = MatrixPerturbation(np.diag([2.0, 1.0, 0.5]) + 0.1, np.zeros((3, 3)))
    c = certify(w, inst, 50, ladder=(50, 100))
    assert c.usable and c.lo < 0 < c.hi  # straddles 0 at every rung of the ladder
    assert c.dps == 100 and not c.certified and c.sign is None


def test_proved_exact_zero_of_strict_weakening_is_certified():
    w = WEAKENINGS["T4.3c-no-genericity"]
    assert w.strict
    E = np.diag([0.25, -0.5, 0.125])
    c = certify(w, NoiseEnsemble(np.diag([2.0, 1.0, 0.5]), (E, -E), t=1.0))
    assert c.exact_zero and c.lo == c.hi == 0 and c.certified and c.sign == 0


def test_negative_margin_is_certified_positive_is_not():
    w = WEAKENINGS["W-no-lambda-min"]
    neg = certify(w, MatrixPerturbation(np.diag([2.0, 1.0]), np.diag([-0.5, 0.1])))
    pos = certify(w, MatrixPerturbation(np.diag([2.0, 1.0]), np.diag([0.5, 0.1])))
    assert neg.certified and neg.sign == -1 and neg.hi < 0
    assert not pos.certified and pos.sign == 1 and pos.lo > 0
