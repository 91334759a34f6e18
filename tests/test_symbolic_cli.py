"""``fimtheory derive``: text, LaTeX and JSON output; JSON parses back and evaluates."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

sp = pytest.importorskip("sympy", reason="the symbolic derivations need sympy (the [symbolic] extra)")

from fimtheory._generated import fim_expansion, series  # noqa: E402
from fimtheory.cli import main  # noqa: E402


def _derive(capsys, *args):
    status = main(["derive", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _parse(doc, text):
    return sp.sympify(text, locals={name: sp.IndexedBase(name) for name in doc["indexed_bases"]})


def test_series_json_parses_back_and_matches_generated_coefficients(capsys):
    status, out, _ = _derive(capsys, "--what", "series", "--format", "json")
    assert status == 0
    doc = json.loads(out)
    rng = np.random.default_rng(0)
    n = 5
    lam = np.array([3.0, 1.5, 0.5, -0.2, -1.0])
    M = rng.normal(size=(n, n))
    M = (M + M.T) / 2
    expected = series.series_coefficients(lam, M, 4)
    lam_b, M_b = sp.IndexedBase("lam"), sp.IndexedBase("M")
    assert [e["name"] for e in doc["entries"]] == ["a1", "a2", "a3", "a4"]
    for entry, value in zip(doc["entries"], expected):
        expr = _parse(doc, entry["expression"]).subs(sp.Symbol("n"), n)
        evaluate = sp.lambdify([lam_b, M_b], expr, modules="math")  # sums become loops
        assert evaluate(lam, M) == pytest.approx(value, rel=1e-10, abs=1e-12)
        assert entry["latex"]


def test_remainder_json_evaluates_to_generated_bounds(capsys):
    status, out, _ = _derive(capsys, "--what", "remainder", "--format", "json")
    doc = json.loads(out)
    entries = {e["name"]: _parse(doc, e["expression"]) for e in doc["entries"]}
    at = {sp.Symbol("eta"): sp.Rational(1, 10), sp.Symbol("gap"): 1, sp.Symbol("k"): 3}
    assert float(entries["remainder_bound_first"].subs(at)) == pytest.approx(series.remainder_bound_first(0.1, 1.0))
    assert float(entries["remainder_bound_second"].subs(at)) == pytest.approx(series.remainder_bound_second(0.1, 1.0))
    assert float(entries["coefficient_bound"].subs(at)) == pytest.approx(series.coefficient_bound(3, 0.1, 1.0))


def test_logistic_fim_json_evaluates_to_generated_expectation(capsys):
    status, out, _ = _derive(capsys, "--what", "fim-expansion", "--model", "logistic", "--format", "json")
    doc = json.loads(out)
    entries = {e["name"]: _parse(doc, e["expression"]) for e in doc["entries"]}
    X = np.array([[0.3, -1.2]])
    theta = np.array([0.7, 0.4])
    variances = np.array([0.01, 0.02])
    z = float((X @ theta)[0])
    p = 1 / (1 + np.exp(-z))
    s = float(((X**2) @ variances)[0])
    factor = float(entries["expected_second_factor"].subs({sp.Symbol("p"): p, sp.Symbol("s"): s}))
    generated = fim_expansion.expected_score_second_logistic(X, np.array([1.0]), theta, variances)
    np.testing.assert_allclose(factor * X[0], generated[0], rtol=1e-12)


def test_softmax_fim_json_evaluates_to_generated_expectation(capsys):
    status, out, _ = _derive(capsys, "--what", "fim-expansion", "--model", "softmax", "--format", "json")
    doc = json.loads(out)
    entries = {e["name"]: _parse(doc, e["expression"]) for e in doc["entries"]}
    K, d = 3, 2
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1, d))
    theta = rng.normal(size=K * d)
    variances = rng.uniform(0.01, 0.05, size=K * d)
    logits = theta.reshape(K, d) @ X[0]
    p = np.exp(logits) / np.exp(logits).sum()
    s = variances.reshape(K, d) @ X[0] ** 2
    p_b, s_b = sp.IndexedBase("p"), sp.IndexedBase("s")
    values = {p_b[i]: p[i] for i in range(K)} | {s_b[i]: s[i] for i in range(K)}
    generated = fim_expansion.expected_score_second_softmax(X, np.array([0]), theta, variances)
    for k in range(K):
        expr = entries["expected_second_factor_k"].subs({sp.Symbol("K"): K, sp.Symbol("k"): k})
        expr = expr.subs(sp.Symbol("K", integer=True, positive=True), K).doit().xreplace(values)
        np.testing.assert_allclose(float(expr) * X[0], generated[0, k * d : (k + 1) * d], rtol=1e-10)


@pytest.mark.parametrize("fmt", ["text", "latex"])
@pytest.mark.parametrize("what", ["series", "remainder", "fim-expansion"])
def test_text_and_latex_formats(capsys, what, fmt):
    status, out, _ = _derive(capsys, "--what", what, "--format", fmt)
    assert status == 0 and out.strip()


def test_linear_model_reports_zero_second_derivative(capsys):
    _, out, _ = _derive(capsys, "--what", "fim-expansion", "--model", "linear")
    assert "second_factor = 0" in out


@pytest.mark.parametrize("args", [["--what", "nope"], ["--model", "probit"], ["--format", "yaml"]])
def test_bad_values_exit_2_with_one_line(capsys, args):
    status, out, err = _derive(capsys, *args)
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("fimtheory: error:")


def test_add_arguments_does_not_import_sympy():
    code = (
        "import argparse, sys\n"
        "from symbolic.commands import DERIVE\n"
        "DERIVE.add_arguments(argparse.ArgumentParser())\n"
        "sys.exit(1 if 'sympy' in sys.modules else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
