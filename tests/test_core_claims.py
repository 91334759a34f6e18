"""fimtheory.claims: the registry, known signs on hand-built instances, adjudication."""

from __future__ import annotations

import math
import re

import mpmath
import numpy as np
import pytest

from fimtheory import claims, enclosures
from fimtheory.errors import UnknownIdError
from fimtheory.instances import MatrixPerturbation, NoiseEnsemble, PartitionInstance, ScoreInstance

IDS = {"W", "R", "S", "S2", "SIGN", "T4.3a", "T4.3b", "T4.3c", "T4.3d", "P3.2", "AH", "AB", "C"}
IDS |= {"KT", "LL", "S3", "S3L", "T4.3b-S", "T4.3c-S"}  # fimtheory.claims_sharp
IDS |= {"EQ1-M-BOUNDS", "EQ1-RATIO", "KL-SORTED"}  # fimtheory.claims_eq1


def test_registry_ids_exactly():
    assert set(claims.REGISTRY) == IDS and len(claims.REGISTRY) == len(IDS)
    for cid, c in claims.REGISTRY.items():
        assert c.id == cid and claims.get_claim(cid) is c
        d = c.describe()
        assert d["id"] == cid and d["statement"] and d["hypotheses"]
        assert c.evaluate_mp is not None and c.strategy.startswith("properties.claim_strategies:")


def test_get_claim_unknown_lists_known_ids():
    with pytest.raises(UnknownIdError) as info:
        claims.get_claim("W2")
    msg = str(info.value)
    assert "'W2'" in msg and all(cid in msg for cid in IDS)
    with pytest.raises(UnknownIdError, match=r"no weakening 'nope'; known: W-no-lambda-min"):
        claims.get_claim("W").weakening("nope")


_D21 = np.diag([2.0, 1.0])
_OFF = np.array([[0.0, 0.1], [0.1, 0.0]])
_G = np.array([[1.0, 2.0, 0.5], [0.5, 1.0, -0.25], [2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])

# (claim, instance, expected sign of the mp-decided margin: "+" strictly positive, "0" exact
# tie, "-" violated), all hand-computed.
KNOWN = [
    ("W", MatrixPerturbation(_D21, np.diag([-1.0, 1.0])), "0"),  # Weyl i=1, j=2: λ1(A)+λ2(E) = 2 − 1 = λ2(A+E)
    ("W", MatrixPerturbation(_D21, _OFF), "+"),
    ("R", MatrixPerturbation(_D21, np.diag([0.5, 0.0])), "0"),  # attained: E commutes
    ("R", MatrixPerturbation(_D21, _OFF), "+"),  # λ_max > 2 + E11 = 2
    ("S", MatrixPerturbation(_D21, _OFF), "+"),
    ("S2", MatrixPerturbation(_D21, _OFF), "+"),
    ("SIGN", MatrixPerturbation(np.diag([3.0, 2.0, 1.0]), np.ones((3, 3)) * 0.1), "+"),
    # λ_max = 1.7 = 2 − 0.3 exactly in mp; in float 1.7 − 2 + 0.3 = −2.4e-17: adjudication
    ("T4.3a", MatrixPerturbation(_D21, np.diag([-0.3, 0.1])), "0"),
    ("T4.3b", NoiseEnsemble(_D21, (_OFF, -_OFF)), "+"),
    ("T4.3c", NoiseEnsemble(_D21, (_OFF, -_OFF)), "+"),
    ("AH", ScoreInstance(_G), "+"),
    ("AB", ScoreInstance(_G), ">="),  # 3 Lanczos steps on a 4x4 Gram: Ritz = λ_max (tie)
    ("C", PartitionInstance((0.0, 1.0), (math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.0)), "+"),
]


@pytest.mark.parametrize(("cid", "inst", "sign"), KNOWN, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(KNOWN)])
def test_claim_known_sign(cid, inst, sign):
    c = claims.get_claim(cid)
    out = c.evaluate(inst)
    assert out.hypotheses_met, out.reason
    holds, m = claims.adjudicate(c, inst, out, dps=50)
    if sign == "+":
        assert out.margin > 0 and m > 0 and holds
    elif sign == "0":  # a float tie (up to rounding) that mp decides as exactly 0
        assert abs(out.margin) <= 8 * np.finfo(float).eps and out.needs_adjudication
        assert m == 0 and holds is (not c.strict)
    elif sign == ">=":
        assert abs(out.margin) <= 1e-12 and out.needs_adjudication and m >= 0 and holds
    else:
        assert out.margin < 0 and m < 0 and not holds


def test_weyl_value_on_diag_example():
    out = claims.get_claim("W").evaluate(MatrixPerturbation(_D21, np.diag([-1.0, 1.0])))
    assert out.details == {"lower_margin": 1.0, "upper_margin": 1.0}


NOT_MET = [
    ("S", MatrixPerturbation(np.eye(2), _OFF), r"γ = 0"),
    ("S2", MatrixPerturbation(_D21, np.diag([0.5, -0.5])), r"2η < γ"),
    ("S2", MatrixPerturbation(np.array([[1.0]]), np.array([[0.1]])), r"n = 1"),
    ("SIGN", MatrixPerturbation(np.eye(3), _OFF[:1, :1] * np.eye(3)), r"γ = 0"),
    ("T4.3a", MatrixPerturbation(np.eye(2), _OFF), r"γ = 0"),
    ("R", MatrixPerturbation(_D21, _OFF, v=np.array([0.0, 1.0])), r"not a top eigenvector"),
    ("T4.3b", NoiseEnsemble(_D21, (_OFF, -0.5 * _OFF)), r"not exactly zero"),
    ("T4.3c", NoiseEnsemble(_D21, (np.diag([0.1, -0.1]), np.diag([-0.1, 0.1]))), r"genericity"),
    ("AH", ScoreInstance(np.array([[1.0, 2.0], [-1.0, -2.0]])), r"ḡ = 0"),
    ("AB", ScoreInstance(np.zeros((2, 3))), r"F = 0"),
    ("C", PartitionInstance((1.0, 1.0), (0.0,)), r"strictly increasing"),
    ("C", PartitionInstance((0.0, math.inf), (0.0,)), r"finite"),
]


@pytest.mark.parametrize(("cid", "inst", "match"), NOT_MET, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(NOT_MET)])
def test_hypotheses_not_met(cid, inst, match):
    out = claims.get_claim(cid).evaluate(inst)
    assert out.hypotheses_met is False and math.isnan(out.margin)
    assert re.search(match, out.reason), out.reason


def test_weakening_falsified_known():
    w = claims.get_claim("W").weakening("W-no-lambda-min")
    inst = MatrixPerturbation(_D21, np.diag([-1.0, 0.0]))  # λ_max(A+E) = 1 < 2
    out = w.evaluate(inst)
    assert out.margin == pytest.approx(-1.0 / 3.0, rel=1e-15, abs=0)
    holds, m = claims.adjudicate(w, inst, out)
    assert not holds and m < 0
    # C-open-top: +inf lies in no cell
    w = claims.get_claim("C").weakening("C-open-top")
    out = w.evaluate(PartitionInstance((0.0,), (math.inf,)))
    assert out.margin == -1.0 and "0 cells" in out.reason


def test_t43c_no_genericity_gives_exact_zero_and_is_falsified():
    """Diagonal F with diagonal antithetic E: λ_max(F + sE) averages to λ1 exactly."""
    F = np.diag([2.0, 1.0, 0.5])
    E = np.diag([0.1, -0.2, 0.05])
    inst = NoiseEnsemble(F, (E, -E))
    w = claims.get_claim("T4.3c").weakening("T4.3c-no-genericity")
    assert w.strict
    out = w.evaluate(inst)
    assert out.hypotheses_met and out.margin == 0.0 and out.needs_adjudication
    holds, m = claims.adjudicate(w, inst, out)
    assert holds is False and m == 0
    # the claim itself refuses the instance (genericity fails)
    assert not claims.get_claim("T4.3c").evaluate(inst).hypotheses_met


def test_adjudicate_uses_the_mp_verdict_not_the_float_margin():
    c = claims.get_claim("R")
    inst = MatrixPerturbation(_D21, np.diag([0.5, 0.0]))
    fake = claims.Outcome(True, -1e-17, True)  # a float margin that rounding made negative
    holds, m = claims.adjudicate(c, inst, fake)
    assert holds is True and m == 0
    # a strict claim with the same exact tie fails
    # (a strict tie is a violation only when proved exact: here R's interval evaluator
    # gives the enclosure [0, 0]; without a rigorous evaluator it is undecided)
    strict = claims.Claim(
        "X",
        "",
        "",
        (),
        c.evaluate,
        c.evaluate_mp,
        "",
        strict=True,
        evaluate_iv=lambda i, d: enclosures.margin_enclosure(c, i, d),
    )
    assert claims.adjudicate(strict, inst, fake) == (False, 0)
    bare = claims.Claim("X", "", "", (), c.evaluate, c.evaluate_mp, "", strict=True)
    assert claims.adjudicate(bare, inst, fake).verdict == "undecided"
    # a tiny but real positive margin below the float threshold is kept positive in mp
    inst2 = MatrixPerturbation(_D21, np.array([[0.0, 1e-9], [1e-9, 0.0]]))
    out = c.evaluate(inst2)
    assert out.needs_adjudication
    holds, m = claims.adjudicate(c, inst2, out)
    assert holds and m > 0 and abs(m - mpmath.mpf(1e-18) / (2 + 1e-9)) < 1e-25


def _closed_form_lambda_path(model, theta, X, y, U, T, steps):
    """Λ(X + t U) on the grid, from closed-form scores written here (not the generated module):
    linear-Gaussian g = (y − θᵀx)x, logistic g = (y − σ(θᵀx))x; Λ = λ_max(GᵀG/m)."""
    out = []
    for t in np.linspace(0.0, T, steps + 1):
        Xt = X + t * U
        z = Xt @ theta
        r = y - z if model == "linear" else y - 1.0 / (1.0 + np.exp(-z))
        G = r[:, None] * Xt
        out.append(float(np.linalg.eigvalsh(G.T @ G / X.shape[0])[-1]))
    return np.array(out)


def test_p32_linear_gaussian_path_holds_with_the_closed_form_margin():
    """Linear-Gaussian scores along x + t·x/‖X‖: Λ rises on every grid step (0.2256 → 0.5701),
    so LCM holds and, with one input, the margin is min_k (Λ_k − Λ_0)/max Λ = (Λ_1 − Λ_0)/Λ_8."""
    from fimtheory.instances import DepartureInstance

    X = np.array([[0.5, -0.25], [1.0, 0.5]])
    theta, y, U = np.array([0.3, -0.2]), np.array([0.1, -0.4]), X / np.linalg.norm(X)
    lam = _closed_form_lambda_path("linear", theta, X, y, U, 0.5, 8)
    assert np.all(np.diff(lam) > 0)
    inst = DepartureInstance("linear", theta, (X,), (y,), (U,), T=0.5, steps=8)
    out = claims.get_claim("P3.2").evaluate(inst)
    assert out.hypotheses_met and out.details == {"lcm_share": 1.0, "resolution": 0.0625}
    assert out.margin == pytest.approx((lam[1] - lam[0]) / lam[-1], rel=1e-12, abs=0)
    assert out.margin == pytest.approx(0.0554150052785, rel=1e-10)


def test_p32_saturating_logistic_fails_lcm_and_falsifies_the_weakening():
    """Logistic regression pushed along its own weight vector saturates: Λ = (1 − σ(θᵀx))²‖x‖²
    falls from the start (THEORY's necessity example). P3.2 reports LCM not met; P3.2-no-LCM
    is violated with margin min_k (Λ_k − Λ_0)/max Λ = (Λ_8 − Λ_0)/Λ_0."""
    from fimtheory.instances import DepartureInstance

    theta, X, y, U = np.array([2.0, 0.0]), np.array([[1.0, 0.0]]), np.array([1.0]), np.array([[1.0, 0.0]])
    lam = _closed_form_lambda_path("logistic", theta, X, y, U, 8.0, 8)
    assert np.all(np.diff(lam) < 0)
    inst = DepartureInstance("logistic", theta, (X,), (y,), (U,), T=8.0, steps=8)
    out = claims.get_claim("P3.2").evaluate(inst)
    assert not out.hypotheses_met and out.reason.startswith("LCM fails on 1/1 paths")
    w = claims.get_claim("P3.2").weakening("P3.2-no-LCM").evaluate(inst)
    assert w.hypotheses_met and w.margin == pytest.approx((lam[-1] - lam[0]) / lam[0], rel=1e-9)
    assert w.margin < -0.99


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantile": 1.5}, "quantile must lie in"),
        ({"quantile": -0.1}, "quantile must lie in"),
        ({"quantile": float("nan")}, "quantile must be finite"),
        ({"quantile": "0.9"}, "quantile must be a real number"),
        ({"T": 0.0}, "T must be > 0"),
        ({"T": -1.0}, "T must be > 0"),
        ({"T": float("inf")}, "T must be finite"),
        ({"steps": 0}, "steps must be an integer"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"steps": True}, "steps must be an integer"),
    ],
)
def test_departure_instance_rejects_a_bad_path_or_quantile_level(kwargs, message):
    """The path's length, its grid and the quantile level are checked when the instance is made,
    so a bad one is an InputError naming it, not a numpy error deep in the evaluator."""
    from fimtheory.errors import InputError
    from fimtheory.instances import DepartureInstance

    X = np.array([[0.5, -0.25], [1.0, 0.5]])
    args = {"T": 0.5, "steps": 8, "quantile": 0.9, **kwargs}
    with pytest.raises(InputError, match=message):
        DepartureInstance("linear", np.array([0.3, -0.2]), (X,), (np.array([0.1, -0.4]),), (X / 2,), **args)


def test_departure_instance_quantile_levels_at_the_ends_are_accepted():
    from fimtheory.instances import DepartureInstance

    X = np.array([[0.5, -0.25], [1.0, 0.5]])
    for q in (0, 1, 0.0, 1.0):
        inst = DepartureInstance("linear", np.array([0.3, -0.2]), (X,), (np.array([0.1, -0.4]),), (X / 2,), 0.5, 8, q)
        assert inst.quantile == float(q) and isinstance(inst.quantile, float)
        out = claims.get_claim("P3.2").evaluate(inst)
        assert out.hypotheses_met and np.isfinite(out.margin)


def test_t43d_model_label_identity_and_its_empirical_weakening():
    """T4.3d holds per draw with model labels (F_π(θ+δ) − F_π(θ) ⪰ 0); on the same data with
    observed labels, E λ_max can drop below λ1: the stored certified counterexample."""
    import pathlib

    from fimtheory import models
    from fimtheory.instances import ParameterEnsemble
    from properties.counterexamples import replay_file

    rng = np.random.default_rng(5)
    X = rng.standard_normal((6, 2))
    theta = 3.0 * rng.standard_normal(6)
    deltas = tuple(0.2 * rng.uniform(-0.5, 0.5, 6) for _ in range(3))
    inst = ParameterEnsemble("softmax", X, rng.integers(0, 3, 6), theta, deltas + tuple(-d for d in deltas), "model")
    out = claims.get_claim("T4.3d").evaluate(inst)
    assert out.hypotheses_met and out.margin >= -1e-12
    base = models.model_label_fim("softmax", X, theta, theta)
    for d in deltas:
        inc = models.model_label_fim("softmax", X, theta, theta + d) - base
        assert np.linalg.eigvalsh(inc)[0] >= -64 * 36 * np.finfo(float).eps * np.abs(base).max()
    path = pathlib.Path(__file__).parent / "counterexamples" / "T4.3d-empirical-labels.json"
    assert replay_file(path).status == "reproduced"


def test_sign_exact_zero_second_order_term_is_a_tie_not_a_violation():
    """E = I commutes with A: P⊥Ev = 0 and a2 = lower = upper = 0 exactly. Found by the
    thorough profile: a margin normalised by the (noise-sized) upper bound read −1; relative to
    η²/γ it is a tie, confirmed at high precision."""
    A = np.array([[9.9903711260939232e-01, 1.8903773066922502e-04], [1.8903773066922502e-04, 9.9996288739060724e-01]])
    inst = MatrixPerturbation(A, np.eye(2))
    claim = claims.get_claim("SIGN")
    out = claim.evaluate(inst)
    holds, _ = claims.adjudicate(claim, inst, out, 50) if out.needs_adjudication else (out.margin >= 0, None)
    assert holds
    assert abs(out.margin) < 1e-6
