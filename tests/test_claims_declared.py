"""The sharp-bound and Eq. 1 families, and the quantizer_guard example's own claim, are declared
with the public Claim API (declare_claim / declare_weakening), not built as Claim/Weakening
objects by hand, and the registry holds exactly the objects their modules declare."""

import importlib
from pathlib import Path

import mpmath
import pytest

from fimtheory.claims import REGISTRY

ROOT = Path(__file__).resolve().parents[1]

DECLARED_IN = {
    "KT": "fimtheory.claims_sharp",
    "LL": "fimtheory.claims_sharp",
    "S3": "fimtheory.claims_sharp",
    "S3L": "fimtheory.claims_sharp",
    "T4.3b-S": "fimtheory.claims_sharp",
    "T4.3c-S": "fimtheory.claims_sharp",
    "EQ1-M-BOUNDS": "fimtheory.claims_eq1",
    "EQ1-RATIO": "fimtheory.claims_eq1",
    "KL-SORTED": "fimtheory.claims_eq1",
}


def _text(relative: str) -> str:
    return (ROOT / relative).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "path",
    ["fimtheory/claims_sharp.py", "fimtheory/claims_eq1.py", "examples/quantizer_guard/tests/test_own_claim.py"],
)
def test_declared_through_the_public_api_only(path):
    text = _text(path)
    assert "declare_claim(" in text
    assert "Claim(" not in text.replace("declare_claim(", "")
    assert "Weakening(" not in text.replace("declare_weakening(", "")
    assert "REGISTRY" not in text and "_CLAIMS" not in text
    assert "from fimtheory.claims import" not in text  # the API lives in fimtheory.claim_api


def test_registry_holds_the_declared_objects_in_family_order():
    ids = list(REGISTRY)
    assert [i for i in ids if i in DECLARED_IN] == list(DECLARED_IN)
    for cid, module in DECLARED_IN.items():
        claim = REGISTRY[cid]
        assert claim.source == module  # declare_claim records the declaring module
        assert claim is {c.id: c for c in importlib.import_module(module).claims()}[cid]
    sharp = importlib.import_module("fimtheory.claims_sharp")
    assert REGISTRY["S"].weakenings[-1] is sharp.S_NO_DISC


def test_declared_enclosures_and_hypothesis_margins_are_wired():
    # T4.3b-S and T4.3c-S (and their weakenings) declare their enclosures with enclosure=, so the
    # registered evaluate_iv wraps the family's interval margin, and the enclosure contains the
    # independent 30-digit mp margin; KT declares its hypothesis margins (γ > 0, γ + a − η > 0),
    # attached to every met outcome.
    import numpy as np

    from fimtheory.instances import MatrixPerturbation, NoiseEnsemble

    E = np.array([[0.01, 0.02], [0.02, -0.01]])
    inst = NoiseEnsemble(np.diag([1.0, 0.5]), (E, -E))
    for cid in ("T4.3b-S", "T4.3c-S"):
        claim = REGISTRY[cid]
        for subject in (claim, *claim.weakenings):
            assert subject.evaluate_iv.__wrapped__.__module__ == "fimtheory.claims_sharp"
            out = subject.evaluate(inst)
            assert out.hypotheses_met, (subject.id, out.reason)
            lo, hi = subject.evaluate_iv(inst, 30)
            ref = subject.evaluate_mp(inst, 30)
            with mpmath.workdps(60):
                slack = mpmath.mpf(10) ** -25 * max(abs(ref), 1)
                assert lo - slack <= ref <= hi + slack, (subject.id, lo, ref, hi)
            assert abs(out.margin - float(ref)) <= 1e-6 * max(abs(float(ref)), 1)
    kt = REGISTRY["KT"].evaluate(MatrixPerturbation(np.diag([1.0, 0.5]), E))
    assert set(kt.hypothesis_margins) == {"γ > 0", "γ + a − η > 0"}
    assert all(m > 0 for m in kt.hypothesis_margins.values())
