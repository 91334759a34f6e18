"""The claims as Hypothesis properties (fast coverage), and the runner's teeth."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

from fimtheory.claims import REGISTRY, Claim, Outcome, get_claim
from fimtheory.instances import MatrixPerturbation
from properties.claim_strategies import strategy_for
from properties.serialize import instance_from_json, instance_to_json
from properties.verify import check_property, verify_claim

HAVE_FIM_EXPANSION = importlib.util.find_spec("fimtheory._generated.fim_expansion") is not None
NEEDS_MODELS = {"P3.2"}


@pytest.mark.parametrize("claim_id", list(REGISTRY))
def test_claim_verified_under_ci_profile(claim_id):
    if claim_id in NEEDS_MODELS and not HAVE_FIM_EXPANSION:
        pytest.skip("fimtheory._generated.fim_expansion not generated yet (python -m symbolic.generate)")
    report = verify_claim(get_claim(claim_id), profile="ci", seed=0, max_examples=40)
    assert report.status == "verified", report.to_json()
    assert report.examples >= 40
    # Adjudications are recorded with both margins, and agree in sign with the verdict.
    for adj in report.adjudications:
        assert adj["holds"] == (adj["mp_margin"] >= 0 or (get_claim(claim_id).strict and adj["mp_margin"] > 0))


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
    assert float(cx["mp_margin"] if cx["mp_margin"] is not None else cx["float_margin"]) < 0
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
