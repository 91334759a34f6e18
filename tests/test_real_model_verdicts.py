"""Real-model verdicts to verify's standard: a no-op quantization is a no-op, float noise never
falsifies, a violation needs a certified high-precision decision, and the report carries
verify's fields, progress and exit statuses."""

from __future__ import annotations

import dataclasses
import io
import json
from fractions import Fraction

import mpmath
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")
pytest.importorskip("sklearn", reason="the digits models need scikit-learn")

from fimtheory.claims import REGISTRY, Outcome  # noqa: E402
from torch_checks import checks as C  # noqa: E402
from torch_checks import decisions as D  # noqa: E402
from torch_checks import report as R  # noqa: E402
from torch_checks.engines import fisher_matrix  # noqa: E402

pytestmark = pytest.mark.torch
EPS = float(np.finfo(np.float64).eps)
CPU = torch.device("cpu")
QUICK = C.get_profile("quick")
SCHEME = "rtn-int4-asym-g32"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with C.limited_threads(1):
        yield


def snapped(name: str) -> C.LoadedModel:
    """Registry model ``name`` with every quantized weight first snapped to SCHEME's grid."""
    model = C.load_for_checks(name, QUICK, CPU)
    q, deltas = C.quantize_model(model.module, SCHEME)
    assert any(float(d.abs().max()) > 0 for d in deltas.values())  # it did move them once
    return dataclasses.replace(model, module=q)


@pytest.fixture(scope="module")
def mlp_on_grid(one_thread):
    return snapped("mlp-digits")  # P = 2410 > dense_max: the Gram (reduced) path


@pytest.fixture(scope="module")
def logistic_on_grid(one_thread):
    return snapped("logistic")  # P = 65: the dense path


def _by_claim(rows):
    return {r.claim: r for r in rows}


# ------------------------------------------------------------------ no-op quantization


@pytest.mark.parametrize("which", ["mlp_on_grid", "logistic_on_grid"])
def test_no_op_quantization_is_reported_as_a_no_op(which, request):
    model = request.getfixturevalue(which)
    _, summary = C.quantized_copy(model.module, SCHEME)
    assert summary.no_op and summary.max_abs_delta == 0.0 and summary.total > 0
    adj = C.Adjudicator(max_dim=0, dps=30)  # no mpmath at all: the tie is proved, not computed
    by = _by_claim(C.check_quantization(model, SCHEME, 4, QUICK, adj))
    for claim in ("T4.3a", "S2"):
        row = by[claim]
        assert row.status == "verified", (claim, row.status, row.reason)
        assert row.details["perturbation"] == "no-op"
        assert row.details["verdict"] == "tie" and row.details["eta"] == 0.0
        assert row.margin == 0.0 and row.worst_margin == 0.0 and row.adjudicated == 1
    low = by["lowers-lambda-max"]
    assert low.details["effect"] == "no-op" and not low.details["lowers"]
    assert not low.details["raises"] and low.margin == 0.0
    summary_row = C.lowering_summary([low])
    assert summary_row.details["moved"] == 0 and summary_row.details["neither"] == {"no-op": 1}
    assert adj.used == 0


def test_scores_recomputed_at_the_same_theta_give_the_exact_zero_E():
    """A planted quantizer that copies the weights (so δ = 0 is not seen by the summary):
    the scores are recomputed, bit-identical, and E is exactly 0."""
    model = C.load_for_checks("logistic", QUICK, CPU)
    rows = C.check_quantization(
        model,
        SCHEME,
        4,
        C.with_overrides(QUICK, dense_max=0),
        C.Adjudicator(0, 30),
        quantizer=lambda w, s, generator=None: w.clone(),
    )
    assert _by_claim(rows)["S2"].details["perturbation"] == "no-op"


# ------------------------------------------------------------------ below rounding / float noise


def one_ulp_quantizer(w, scheme, generator=None):
    """A planted 'quantizer' that moves every weight by about one ulp."""
    return w * (1 + 2 * EPS)


def test_below_rounding_perturbation_neither_raises_nor_lowers(mlp_on_grid):
    adj = C.Adjudicator(max_dim=0, dps=30)
    by = _by_claim(C.check_quantization(mlp_on_grid, SCHEME, 4, QUICK, adj, quantizer=one_ulp_quantizer))
    n = by["T4.3a"].details["n"]
    eta, lam1 = by["S2"].details["eta"], by["S2"].details["lambda1"]
    assert 0 < eta <= C.BELOW_ROUNDING_FACTOR * EPS * n * lam1
    assert by["S2"].details["perturbation"] == "below rounding"
    assert by["lowers-lambda-max"].details["effect"] == "below rounding"
    for claim in ("T4.3a", "S2"):  # noise margins: never falsified without a certificate
        assert by[claim].status in ("verified", "inconclusive"), by[claim]
        if by[claim].status == "inconclusive":
            assert "high-precision" in by[claim].reason


def _noisy(claim_id: str, margin: float, resolved: bool):
    claim = REGISTRY[claim_id]

    def evaluate(inst):
        oc = claim.evaluate(inst)
        if not oc.hypotheses_met:
            return oc
        return Outcome(True, margin, True, "", oc.details, float_resolved=resolved)

    return dataclasses.replace(claim, evaluate=evaluate)


def tiny_logistic(seed: int = 0, n: int = 40, d: int = 5) -> C.LoadedModel:
    from torch_checks.models import LogisticRegression

    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    X[:, -1] = 1.0
    y = (torch.rand(n, generator=gen, dtype=torch.float64) < 0.5).long()
    m = LogisticRegression(d).double()
    with torch.no_grad():
        m.weight.copy_(torch.randn(1, d, generator=gen, dtype=torch.float64))
    return C.LoadedModel("tiny-logistic", "classifier", m.eval(), ("weight",), (X, y), None, {})


@pytest.mark.parametrize("dense_max", [2000, 0])
def test_planted_float_noise_violation_is_not_reported_falsified(monkeypatch, dense_max):
    """The S2 float margin is replaced by −3.1e23 (rounding noise over a near-zero bound, as
    seen on SmolLM2): the decision goes to the high-precision reference, which finds that S2
    holds on the exact instance (small: adjudicated) — never "falsified"."""
    monkeypatch.setitem(C.REGISTRY, "S2", _noisy("S2", -3.1e23, resolved=False))
    model = tiny_logistic()
    adj = C.Adjudicator(max_dim=16, dps=30)
    prof = C.with_overrides(QUICK, dense_max=dense_max)
    s2 = _by_claim(C.check_quantization(model, "rtn-int8-sym-channel", 8, prof, adj))["S2"]
    assert s2.status != "falsified"
    if s2.status != "hypotheses not met":
        assert s2.status == "verified" and s2.adjudicated == 1, s2
        assert s2.details["verdict"] in ("holds", "tie") and s2.worst_margin >= 0
        assert s2.details["float_margin"] == -3.1e23


def test_planted_violation_without_an_affordable_reference_is_inconclusive(monkeypatch):
    monkeypatch.setitem(C.REGISTRY, "T4.3a", _noisy("T4.3a", -0.5, resolved=False))
    model = tiny_logistic()
    row = _by_claim(C.check_quantization(model, "rtn-int4-sym-channel", 4, QUICK, C.Adjudicator(max_dim=0, dps=30)))[
        "T4.3a"
    ]
    assert row.status == "inconclusive" and "dimension" in row.reason


def test_resolved_float_violation_that_the_reference_denies_is_an_error(monkeypatch):
    """Float64 'resolves' −0.5 but the claim holds at high precision: a disagreement between
    implementation and reference (an error), as in verify — neither verified nor falsified."""
    monkeypatch.setitem(C.REGISTRY, "T4.3a", _noisy("T4.3a", -0.5, resolved=True))
    model = tiny_logistic()
    row = _by_claim(C.check_quantization(model, "rtn-int4-sym-channel", 4, QUICK, C.Adjudicator(max_dim=16, dps=30)))[
        "T4.3a"
    ]
    assert row.status == "error" and "disagrees" in row.reason


def test_a_certified_violation_is_falsified(monkeypatch):
    """A genuinely violated conclusion (T4.3a's relative margin minus 2, a stand-in for a wrong
    claim, with its own interval evaluator) is falsified by the rigorous decision, with the
    enclosure in the row."""
    from fimtheory import enclosures

    base = REGISTRY["T4.3a"]

    def evaluate(inst):
        oc = base.evaluate(inst)
        return Outcome(True, oc.margin - 2.0, True, "", oc.details)

    def evaluate_mp(inst, dps):
        return base.evaluate_mp(inst, dps) - 2

    def evaluate_iv(inst, dps):
        lo, hi = enclosures.margin_enclosure(base, inst, dps)
        return lo - 2, hi - 2

    strong = dataclasses.replace(base, evaluate=evaluate, evaluate_mp=evaluate_mp, evaluate_iv=evaluate_iv)
    monkeypatch.setitem(C.REGISTRY, "T4.3a", strong)
    model = tiny_logistic()
    row = _by_claim(C.check_quantization(model, "rtn-int4-sym-channel", 4, QUICK, C.Adjudicator(max_dim=16, dps=30)))[
        "T4.3a"
    ]
    assert row.status == "falsified" and row.details["verdict"] == "violated", row
    lo, hi = row.details["enclosure"]
    assert lo <= row.worst_margin <= hi < 0
    assert R.summary([row.to_json()], "quick")["exit_status"] == 1


def test_mp_violation_that_the_enclosure_excludes_is_an_error_not_a_crash(monkeypatch):
    """The mp evaluator says 'violated' but the rigorous enclosure (T4.3a's own) says the
    claim holds: the adjudicator raises ReferenceDisagreement; the row is an error, the run
    goes on."""
    base = REGISTRY["T4.3a"]

    def evaluate(inst):
        oc = base.evaluate(inst)
        return Outcome(True, oc.margin - 2.0, True, "", oc.details, float_resolved=False)

    wrong = dataclasses.replace(base, evaluate=evaluate, evaluate_mp=lambda inst, dps: base.evaluate_mp(inst, dps) - 2)
    monkeypatch.setitem(C.REGISTRY, "T4.3a", wrong)
    row = _by_claim(
        C.check_quantization(tiny_logistic(), "rtn-int4-sym-channel", 4, QUICK, C.Adjudicator(max_dim=16, dps=30))
    )["T4.3a"]
    assert row.status == "error" and "disagrees" in row.reason, row


def test_old_tuple_adjudication_never_certifies_a_violation():
    info = D.read_adjudication((False, mpmath.mpf("-0.25")))
    assert info["verdict"] == "undecided" and "not certified" in info["adjudication_reason"]
    assert D.read_adjudication((True, mpmath.mpf(0)))["verdict"] == "tie"


# ------------------------------------------------------------------ reduced pair accuracy


def test_perturbation_norm_of_equal_scores_is_at_rounding_level():
    """G̃ = G: η must be at the rounding of F (≈ eps·n·‖F‖), not at √eps (a square root of the
    rank-deficient Gram matrix of [G; G] gave η/‖F‖ ≈ 1e-8)."""
    gen = torch.Generator().manual_seed(1)
    G = torch.randn(16, 300, generator=gen, dtype=torch.float64) * 3.0
    lam1 = float(torch.linalg.eigvalsh(fisher_matrix(G))[-1])
    eta = C.perturbation_norm(G, G.clone())
    assert eta <= 64 * 32 * EPS * lam1, (eta, lam1)


def test_reduced_pair_when_the_span_is_the_whole_space():
    """2n > P: the reduced pair is P × P and still has the spectra of F and F + E."""
    gen = torch.Generator().manual_seed(2)
    G = torch.randn(12, 7, generator=gen, dtype=torch.float64)
    Gq = G + 0.05 * torch.randn(12, 7, generator=gen, dtype=torch.float64)
    A, E = C.reduced_pair(G, Gq)
    assert A.shape == (7, 7)
    F, Fq = fisher_matrix(G).numpy(), fisher_matrix(Gq).numpy()
    np.testing.assert_allclose(np.linalg.eigvalsh(A), np.linalg.eigvalsh(F), atol=1e-12)
    np.testing.assert_allclose(np.linalg.eigvalsh(A + E), np.linalg.eigvalsh(Fq), atol=1e-12)


def test_in_place_lapack_and_torch_qr_give_the_same_reduced_pair():
    gen = torch.Generator().manual_seed(4)
    G = torch.randn(5, 60, generator=gen, dtype=torch.float64)
    Gq = G + 0.01 * torch.randn(5, 60, generator=gen, dtype=torch.float64)
    pairs = []
    for in_place in (True, False):
        stack = torch.cat([G, Gq]).contiguous()
        pairs.append(C.reduced_pair_of_stack(stack, 5, in_place=in_place))
    (A1, E1), (A2, E2) = pairs
    ev = np.linalg.eigvalsh
    np.testing.assert_allclose(ev(A1), ev(A2), atol=1e-13)  # bases differ by signs only
    np.testing.assert_allclose(ev(E1), ev(E2), atol=1e-13)
    np.testing.assert_allclose(ev(A1 + E1), ev(fisher_matrix(Gq).numpy())[-10:], atol=1e-12)


def test_quantized_copy_shares_what_it_does_not_quantize():
    lin = torch.nn.Sequential(torch.nn.Embedding(10, 32), torch.nn.Linear(32, 8)).double()
    q, summary = C.quantized_copy(lin, "rtn-int4-sym-channel")
    assert q[0].weight is lin[0].weight and q[1].bias is lin[1].bias  # shared, not copied
    assert q[1].weight is not lin[1].weight and summary.changed > 0
    ref, deltas = C.quantize_model(lin, "rtn-int4-sym-channel")
    assert torch.equal(ref[1].weight, q[1].weight)
    assert summary.max_abs_delta == float(deltas["1.weight"].abs().max())


# ------------------------------------------------------------------ P3.2 / C decided exactly


def test_lcm_and_elevation_are_decided_exactly():
    # Λ decreases by exactly the tolerance: LCM holds (≥, exactly); one ulp more fails it.
    step = 2.0**-33  # = rtol · max Λ exactly, and 1 − step is a float
    v = np.array([[1.0, 1.0 - step, 2.0], [1.0, np.nextafter(1.0 - step, 0.0), 2.0]])
    lcm = C.lcm_check([0.0, 1.0, 2.0], v, rtol=2.0**-34)
    assert list(lcm.monotone) == [True, False]
    ex = C.exact_elevation(v[:1], 0.9)
    assert ex["worst"] == -Fraction(step) and ex["pointwise"] == -Fraction(step)


# ------------------------------------------------------------------ report: fields, progress, exits


def test_progress_lines_when_stderr_is_not_a_terminal():
    buf = io.StringIO()
    bar = R.Progress(total=2, stream=buf)
    bar("logistic: loaded")
    bar.note("SR draw 1/4")
    bar("logistic rtn")
    bar.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("check-models [1/2]")
    assert "SR draw 1/4" in lines[1] and lines[2].startswith("check-models [2/2]")


@pytest.mark.parametrize(
    "statuses, profile, code",
    [
        (["verified", "measured"], "quick", 0),
        (["verified", "inconclusive", "error"], "quick", 0),
        (["verified", "inconclusive"], "full", 3),
        (["error"], "ci", 3),
        (["falsified", "inconclusive"], "full", 1),
        (["falsified"], "quick", 1),
    ],
)
def test_exit_statuses(statuses, profile, code):
    rows = [{"status": s, "model": "m", "scheme": "s", "claim": "c", "reason": "r"} for s in statuses]
    assert R.summary(rows, profile)["exit_status"] == code


def test_cli_rows_carry_verify_fields_and_progress(tmp_path, capsys):
    from fimtheory.cli import main

    out = tmp_path / "cm.json"
    rc = main(["check-models", "--model", "logistic", "--scheme", SCHEME, "--profile", "quick", "--json", str(out)])
    err = capsys.readouterr().err
    assert rc == 0
    assert "check-models [1/" in err  # progress although stderr is not a terminal
    doc = json.loads(out.read_text())
    for row in doc["rows"]:
        assert set(row) == set(C.ROW_KEYS)
        if row["status"] in ("inconclusive", "error", "hypotheses not met", "skipped"):
            assert row["reason"], row
    t43a = next(r for r in doc["rows"] if r["claim"] == "T4.3a")
    assert t43a["examples"] == 1 and t43a["details"]["perturbation"] in ("resolved", "below rounding", "no-op")
    assert doc["summary"]["exit_status"] == 0
