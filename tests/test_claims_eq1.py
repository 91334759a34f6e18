"""Eq. 1 and the companion's KL statistic as claims (fimtheory.claims_eq1): the proved bounds
against independent references (dense mpmath eigenvalues of M(q) = diag(q) − qqᵀ, sympy closed
forms, brute force over token matchings), float vs mp vs interval agreement on every claim and
weakening of the family, hand-built counterexamples certified, the stored corpus replayed."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from fimtheory import claims_eq1 as ce
from fimtheory import enclosures, eq1
from fimtheory.claims import REGISTRY, adjudicate, get_claim
from fimtheory.errors import InputError
from fimtheory.instances import KLPairInstance, ProbabilityInstance
from properties import counterexamples as cx
from properties.certify import certify, supported
from properties.claim_strategies import strategy_for
from properties.serialize import instance_from_json, instance_to_json

FAMILY = ("EQ1-M-BOUNDS", "EQ1-RATIO", "KL-SORTED")
SUBJECTS = {s.id: s for cid in FAMILY for s in (get_claim(cid), *get_claim(cid).weakenings)}
WEAKENINGS = [w.id for cid in FAMILY for w in get_claim(cid).weakenings]
CORPUS = Path(__file__).parent / "counterexamples"
DPS = 60
EPS = float(np.finfo(float).eps)


def _settings(n):
    return settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )


def _dense_lambda_max(q):
    """Reference: top eigenvalue of the dense mp matrix diag(q) − qqᵀ (mpmath.eigsy)."""
    n = len(q)
    M = mpmath.matrix(n, n)
    for i in range(n):
        for j in range(n):
            M[i, j] = (q[i] if i == j else 0) - q[i] * q[j]
    return max(mpmath.eigsy(M, eigvals_only=True))


def _mp_q(a):
    x = [mpmath.mpf(float(v)) for v in a]
    s = mpmath.fsum(x)
    return [v / s for v in x]


def _mp_hnorm(q):
    return -mpmath.fsum(v * mpmath.log(v) for v in q) / mpmath.log(len(q))


# --------------------------------------------------------------------------------------
# the proved bounds against independent references
# --------------------------------------------------------------------------------------

CASES = [
    ("dirichlet 0.3", lambda rng: rng.dirichlet(np.full(12, 0.3))),
    ("dirichlet 5", lambda rng: rng.dirichlet(np.full(20, 5.0))),
    ("near point mass", lambda rng: np.r_[1 - 1e-7, 1e-7 * rng.dirichlet(np.ones(6))]),
    ("two tokens", lambda rng: np.array([0.8, 0.2]) * rng.uniform(0.5, 2.0)),
    ("uniform 7", lambda rng: np.full(7, 3.0)),
    ("two levels", lambda rng: np.r_[np.full(3, 0.2), np.full(8, 0.05)]),
]


@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_ratio_sandwich_against_dense_reference(name, make):
    """½(1 + ½H) ≤ λ̂/λ_max(M(q)) ≤ (1 − 1/m)(1 + ½H) with λ_max from a dense 40-digit
    eigen-solve; the float ratio equals the reference to 1e-12; the registered mp ratio to 1e-30."""
    rng = np.random.default_rng(7)
    for _ in range(3):
        a = np.sort(make(rng))[::-1]
        with mpmath.workdps(40):
            q = _mp_q(a)
            lam = _dense_lambda_max(q)
            f = 1 + _mp_hnorm(q) / 2
            r = q[0] * (1 - q[0]) * f / lam
            m = len(q)
            tol = mpmath.mpf(10) ** -25
            assert f / 2 - tol <= r <= (1 - mpmath.mpf(1) / m) * f + tol, (name, r)
            assert r > mpmath.mpf(1) / 2
            mp_r, _ = ce.mp_ratio(ProbabilityInstance(a, k=m))
            assert abs(mp_r - r) <= mpmath.mpf(10) ** -30
        out = get_claim("EQ1-RATIO").evaluate(ProbabilityInstance(a, k=a.size))
        assert abs(out.details["ratio"] - float(r)) <= 1e-12 * float(r)
        assert out.margin >= -1e-12


def test_ratio_extremes_uniform_and_point_mass():
    """Sup 1.5(1 − 1/m) attained by the uniform q (1.425 at k = 20); inf ½ approached at a
    point mass and never reached; m = 2 equals ½(1 + ½H) in closed form."""
    for m in (2, 3, 5, 20):
        out = get_claim("EQ1-RATIO").evaluate(ProbabilityInstance(np.ones(m), k=m))
        assert math.isclose(out.details["ratio"], 1.5 * (1 - 1 / m), rel_tol=1e-14)
    ratios = []
    for e in range(2, 15, 3):
        d = 10.0**-e
        out = get_claim("EQ1-RATIO").evaluate(ProbabilityInstance(np.array([1 - d, d]), k=2))
        h = -((1 - d) * math.log1p(-d) + d * math.log(d)) / math.log(2)
        assert math.isclose(out.details["ratio"], 0.5 * (1 + 0.5 * h), rel_tol=1e-12)
        ratios.append(out.details["ratio"])
    assert all(r > 0.5 for r in ratios) and ratios == sorted(ratios, reverse=True) and ratios[-1] < 0.5 + 1e-12


def test_sympy_proofs_of_the_sandwich():
    """Symbolic: the Rayleigh quotient at u = e₁ − (m − 1)⁻¹Σ e_i is q₁(1 − q₁)m/(m − 1) for
    Σq = 1; Gershgorin's row bound is 2q_i(1 − q_i); for m = 2 λ_max(M) = 2q₁q₂ exactly."""
    sp = pytest.importorskip("sympy")
    for m in (2, 3, 4, 5):
        q = sp.symbols(f"q1:{m + 1}", positive=True)
        qs = list(q[:-1]) + [1 - sum(q[:-1])]  # Σq = 1
        M = sp.diag(*qs) - sp.Matrix(qs) * sp.Matrix(qs).T
        u = sp.Matrix([1] + [-sp.Rational(1, m - 1)] * (m - 1))
        rq = (u.T * M * u)[0, 0] / (u.T * u)[0, 0]
        assert sp.simplify(rq - qs[0] * (1 - qs[0]) * sp.Rational(m, m - 1)) == 0
        for i in range(m):
            row = M[i, i] + sum(-M[i, j] for j in range(m) if j != i)  # off-diagonals are −q_iq_j ≤ 0
            assert sp.simplify(row - 2 * qs[i] * (1 - qs[i])) == 0
    t = sp.symbols("t", positive=True)
    M2 = sp.Matrix([[t * (1 - t), -t * (1 - t)], [-t * (1 - t), t * (1 - t)]])
    ev = sorted(M2.eigenvals(), key=lambda e: e == 0)
    assert ev[1] == 0 and sp.simplify(ev[0] - 2 * t * (1 - t)) == 0


@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_m_bounds_against_dense_reference_and_exact_cases(name, make):
    rng = np.random.default_rng(11)
    a = make(rng)
    p = a / a.sum()
    lower, upper = eq1.softmax_fisher_sharp_bounds(p)
    with mpmath.workdps(40):
        lam = float(_dense_lambda_max([mpmath.mpf(float(v)) for v in p]))
    assert lower <= lam * (1 + 1e-12) and lam <= upper * (1 + 1e-12)
    lo0, hi0 = eq1.softmax_fisher_bounds(p)
    assert lo0 <= lower * (1 + 1e-15) and upper <= hi0 * (1 + 1e-15)  # never looser than L, U
    ps = np.sort(p)[::-1]
    m = int(np.count_nonzero(ps))
    if m == 2:  # exact: μ₂ = λ_max
        assert math.isclose(lower, lam, rel_tol=1e-12)
    if ps[0] == ps[1]:
        assert math.isclose(lower, ps[0], rel_tol=1e-15) and math.isclose(lam, ps[0], rel_tol=1e-12)
    out = get_claim("EQ1-M-BOUNDS").evaluate(ProbabilityInstance(p))
    assert out.hypotheses_met and out.margin >= -1e-12


# --------------------------------------------------------------------------------------
# the KL statistic
# --------------------------------------------------------------------------------------


def test_sorted_kl_is_the_minimum_over_all_token_matchings():
    """Brute force over every permutation σ: sorted-padded KL = min_σ Σ p̂_i log((p̂_i + ε)/(q̂_σ(i) + ε))."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(2, 6))
        p, q = rng.dirichlet(np.ones(n)), rng.dirichlet(np.full(n, 0.3))
        best = min(eq1.aligned_kl(p, q[list(s)], eps=1e-12) for s in itertools.permutations(range(n)))
        assert math.isclose(eq1.sorted_padded_kl(p, q), best, rel_tol=1e-12, abs_tol=1e-15)
        assert eq1.sorted_padded_kl(p, q) <= eq1.aligned_kl(p, q) + 1e-15


def test_kl_counterexamples_by_construction():
    """Disjoint tokens: exactly 0 (certified exact zero); a shorter vector: ε = 1e-12 → 1e-6
    halves the statistic (12.78 → 5.87 nats, certified); KL < 0 certified."""
    disjoint = KLPairInstance(np.array([0.7, 0.3, 0.0, 0.0]), np.array([0.0, 0.0, 0.3, 0.7]))
    w = SUBJECTS["KL-zero-iff-equal"]
    assert w.evaluate(disjoint).margin == 0.0 and eq1.kl_divergence(disjoint.p, disjoint.q) == math.inf
    cert = certify(w, disjoint)
    assert cert.certified and cert.exact_zero
    assert adjudicate(w, disjoint, w.evaluate(disjoint)).verdict == "violated"
    # equal distributions do not meet the weakening's hypothesis
    assert not w.evaluate(KLPairInstance(np.array([0.5, 0.5]), np.array([1.0, 1.0]))).hypotheses_met

    short = KLPairInstance(np.array([0.5, 0.5]), np.array([1.0]), eps=1e-12, eps_alt=1e-6)
    w = SUBJECTS["KL-eps-insensitive"]
    d = w.evaluate(short).details

    def closed_form(e):  # q padded to (1, ε), renormalised; ε inside the logarithm
        return 0.5 * math.log((0.5 + e) / (1 / (1 + e) + e)) + 0.5 * math.log((0.5 + e) / (e / (1 + e) + e))

    assert d["kl_eps"] == pytest.approx(closed_form(1e-12), rel=1e-12) and d["kl_eps"] > 12.7
    assert d["kl_eps_alt"] == pytest.approx(closed_form(1e-6), rel=1e-12) and d["kl_eps_alt"] < 6.5
    cert = certify(w, short)
    assert cert.certified and cert.hi < -5

    neg = KLPairInstance(np.array([1.0, 1.2e-12]), np.array([1.0, 0.0]))
    w = SUBJECTS["KL-nonnegative"]
    cert = certify(w, neg)
    assert cert.certified and -1e-12 < cert.lo <= cert.hi < 0


# --------------------------------------------------------------------------------------
# hand-built Eq. 1 counterexamples (test cases as data)
# --------------------------------------------------------------------------------------

EQ1_COUNTEREXAMPLES = [
    # (weakening, p, k, y, expected ratio of the weakening's target)
    ("EQ1-RATIO-within-25pct", np.full(20, 0.05), 20, 0, 1.425),
    ("EQ1-RATIO-within-10pct", np.array([1 - 1e-9, 1e-9]), 2, 0, None),
    ("EQ1-FULL-within-50pct", np.r_[np.full(20, 0.01), np.full(100, 0.008)], 20, 0, 7.125),
    ("EQ1-EMPIRICAL-within-10x", np.array([1 - 1e-6, 5e-7, 5e-7]), 20, 0, None),
]


@pytest.mark.parametrize("wid,p,k,y,ratio", EQ1_COUNTEREXAMPLES, ids=[c[0] for c in EQ1_COUNTEREXAMPLES])
def test_eq1_counterexamples_by_construction(wid, p, k, y, ratio):
    w = SUBJECTS[wid]
    inst = ProbabilityInstance(p / p.sum() if wid != "EQ1-RATIO-within-25pct" else p, k=k, y=y)
    out = w.evaluate(inst)
    assert out.hypotheses_met and out.margin < 0
    if ratio is not None:
        assert out.details["ratio"] == pytest.approx(ratio, rel=1e-9)
    cert = certify(w, inst)
    assert cert.certified and cert.hi < 0
    adj = adjudicate(w, inst, out)
    assert adj.verdict == "violated" and adj.enclosure[1] < 0


# --------------------------------------------------------------------------------------
# float vs mp vs interval on every claim and weakening of the family
# --------------------------------------------------------------------------------------

#: Absolute agreement of the float margin with the 60-digit one (margins are dimensionless and
#: O(1); measured worst 4e-16 for the ratios, 1.5e-16 for the KL margins).
FLOAT_ATOL = 1e-13


@pytest.mark.parametrize("sid", list(SUBJECTS))
def test_float_mp_and_interval_agree(sid):
    s = SUBJECTS[sid]
    seen = []

    @_settings(30)
    @given(strategy_for(s.strategy))
    def prop(inst):
        out = s.evaluate(inst)
        if not out.hypotheses_met:
            return
        m = s.evaluate_mp(inst, DPS)
        with mpmath.workdps(DPS):
            scale = 1 + abs(m)
            assert abs(out.margin - float(m)) <= FLOAT_ATOL * float(scale), (sid, out.margin, m, inst)
            lo, hi = enclosures.margin_enclosure(s, inst, 50)
            tol = mpmath.mpf(10) ** -35 * scale
            assert lo - tol <= m <= hi + tol, (sid, lo, m, hi)
            assert hi - lo <= mpmath.mpf(10) ** -30 * scale
        seen.append(inst)

    prop()
    assert seen, f"no instance of {sid} met the hypotheses"


@pytest.mark.parametrize("wid", WEAKENINGS)
def test_certifier_is_independent_and_agrees(wid):
    """properties.certify encloses M(q) densely, fimtheory.enclosures by the secular equation:
    both enclose the mp margin on the weakening's own instances."""
    w = SUBJECTS[wid]
    assert supported(wid)
    seen = []

    @_settings(10)
    @given(strategy_for(w.strategy))
    def prop(inst):
        if not w.evaluate(inst).hypotheses_met:
            return
        cert = certify(w, inst, 50, ladder=(50,))
        if cert.hi is None:
            return
        m = w.evaluate_mp(inst, DPS)
        with mpmath.workdps(DPS):
            tol = mpmath.mpf(10) ** -35 * (1 + abs(m))
            assert cert.lo - tol <= m <= cert.hi + tol
        seen.append(cert)

    prop()
    assert seen


# --------------------------------------------------------------------------------------
# the stored corpus
# --------------------------------------------------------------------------------------


def test_every_weakening_has_a_stored_counterexample():
    stored = {p.stem for p in CORPUS.glob("*.json")}
    assert set(WEAKENINGS) <= stored, set(WEAKENINGS) - stored
    from tests.test_replay_tamper import WEAKENING_FILES  # the tamper tests iterate these

    assert {p.stem for p in WEAKENING_FILES} >= set(WEAKENINGS)


@pytest.mark.parametrize("wid", WEAKENINGS)
def test_stored_counterexample_replays(wid):
    path = CORPUS / f"{wid}.json"
    r = cx.replay_file(path)
    assert r.status == "reproduced", r.message
    rec = json.loads(path.read_text())
    inst = instance_from_json(rec["instance"])
    assert instance_to_json(inst) == rec["instance"]  # bit-exact round trip
    assert SUBJECTS[wid].evaluate(inst).margin < 0 or SUBJECTS[wid].strict


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"p": np.array([0.5, np.nan])},
        {"p": np.array([0.5, -0.1])},
        {"p": np.zeros(3)},
        {"p": np.ones((2, 2))},
        {"p": np.array([0.5, 0.5]), "y": 2},
        {"p": np.array([0.5, 0.5]), "k": 0},
        {"p": np.array([0.5, 0.5]), "k": True},
    ],
)
def test_probability_instance_rejects_bad_input(kwargs):
    with pytest.raises(InputError):
        ProbabilityInstance(**kwargs)


@pytest.mark.parametrize("eps", [0.0, -1e-12, math.inf, math.nan])
def test_kl_instance_rejects_bad_eps(eps):
    with pytest.raises(InputError):
        KLPairInstance(np.array([0.5, 0.5]), np.array([1.0]), eps=eps)


def test_hypotheses_not_met_are_said():
    assert not get_claim("EQ1-RATIO").evaluate(ProbabilityInstance(np.array([1.0, 0.0]), k=2)).hypotheses_met
    assert not get_claim("EQ1-M-BOUNDS").evaluate(ProbabilityInstance(np.array([0.5, 0.6]))).hypotheses_met
    assert not get_claim("KL-SORTED").evaluate(KLPairInstance(np.ones(3), np.ones(2))).hypotheses_met
    assert all(c in REGISTRY for c in FAMILY)


@pytest.mark.parametrize("p1", [1 + 2**-52, 1 - 2**-53, 1.0])
def test_a_single_entry_is_its_own_bound(p1):
    """n = 1: M(p) is the 1×1 matrix p₁(1 − p₁), so L* = U* = λ_max. The accepted sum 1 ± 64·eps
    lets p₁ exceed 1, where p₁(1 − p₁) < 0: padding p₂ = 0 gave L* = 0 > λ_max there, and the
    adjudicator certified a violation of the (proved) claim at [−2.2e−16, −2.2e−16]."""
    from fractions import Fraction

    exact = Fraction(p1) * (1 - Fraction(p1))
    lower, upper = eq1.softmax_fisher_bounds(np.array([p1]))
    assert lower == upper and abs(Fraction(lower) - exact) <= abs(exact) * 2**-52
    assert eq1.softmax_fisher_sharp_bounds(np.array([p1])) == (lower, upper)
    with mpmath.workdps(50):
        lo_mp, hi_mp = ce.mp_sharp_bounds(np.array([p1]))
        assert lo_mp == hi_mp == mpmath.mpf(exact.numerator) / exact.denominator
    claim = get_claim("EQ1-M-BOUNDS")
    inst = ProbabilityInstance(np.array([p1]), k=1)
    out = claim.evaluate(inst)
    assert out.hypotheses_met and out.margin == 0.0 and claim.evaluate_mp(inst, 60) == 0
    assert enclosures.margin_enclosure(claim, inst, 60) == (0, 0)
    assert adjudicate(claim, inst, out).verdict != "violated"
