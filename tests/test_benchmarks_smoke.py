"""Smoke test of the benchmark harness: a tiny end-to-end run, < 20 s."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="benchmarks need the [torch] extra")
pytest.importorskip("sklearn", reason="the MLP workload uses scikit-learn's digits")

from benchmarks import run as R  # noqa: E402
from benchmarks.methods import import_curvlinops, run_curvlinops, run_power  # noqa: E402
from benchmarks.workloads import mlp_workload  # noqa: E402

pytestmark = pytest.mark.torch


def test_tiny_run_writes_results(tmp_path):
    out = tmp_path / "results.json"
    res = R.main(
        [
            "--device",
            "cpu",
            "--workloads",
            "mlp",
            "--sizes",
            "24",
            "--mlp-hidden",
            "4",
            "--mlp-steps",
            "5",
            "--repeats",
            "1",
            "--min-repeats",
            "1",
            "--skip-curvlinops",
            "--no-streaming",
            "--no-suite",
            "--no-profiles",
            "--out",
            str(out),
        ]
    )
    on_disk = json.loads(out.read_text())
    assert on_disk["cases"][0]["n"] == 24 and on_disk["machine"]["torch_threads"] >= 1
    case = res["cases"][0]
    assert case["repeats"] == 1
    assert "skipped" in case["methods"]["curvlinops"]  # covered by the next test
    for name, d in case["methods"].items():
        if "skipped" in d:
            continue
        assert d["seconds"]["n"] == 1 and d["seconds"]["median"] > 0
        if name not in ("scores", "floor"):
            assert d["rel_error"] <= 1e-6, (name, d)
    assert "gram_total/scores" in case["ratios"]
    assert "| mlp | 24 |" in res["table_markdown"]


def _dense_reference():
    # F = GᵀG/n formed densely (P = 784 + 1 + 10 + 10 = 805).
    wl = mlp_workload(20, torch.device("cpu"), hidden=1, steps=5)
    G = wl.scores().numpy()
    return wl, float(np.linalg.eigvalsh(G.T @ G / wl.n)[-1])


def test_power_iteration_computes_the_same_fisher_as_dense():
    # The jvp/vjp power iteration must find the dense λ_max.
    wl, lam = _dense_reference()
    assert abs(run_power(wl, 1e-8)["value"] - lam) <= 1e-6 * lam


def test_curvlinops_computes_the_same_fisher_as_dense():
    # curvlinops' EF with reduction "mean" must find the dense λ_max.
    mod, note = import_curvlinops()
    if mod is None:
        pytest.skip(f"curvlinops is not importable here ({note}); the [bench] extra (curvlinops-for-pytorch) runs it")
    wl, lam = _dense_reference()
    assert abs(run_curvlinops(wl, 1e-10)["value"] - lam) <= 1e-8 * lam
