"""``fimtheory monitor calibrate|run`` on a model the user brings (a Hugging Face GPT-2
directory built here): the calibration JSON holds λ_base, τ_q with its CI and the σ samples
equal to an independent dense computation; ``run`` reads it back, refuses another model or
group, and streams σ_t per token as JSON lines equal to the dense full-prefix values; every bad
input is one line and exit 2 before the work."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")
pytest.importorskip("transformers", reason="the user-model loaders need transformers")

from fimtheory.cli import main  # noqa: E402
from tests import byo_models as B  # noqa: E402
from torch_checks.monitor_commands import quantile_ci  # noqa: E402
from torch_checks.scores import per_token_scores  # noqa: E402
from torch_checks.streaming import full_prefix_lambdas  # noqa: E402
from torch_checks.user_model import calibration_tokens, load_user_model  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitor-cli")
    gpt2 = B.save_hf(B.gpt2_model(n_positions=128), str(root / "gpt2"))
    other = B.save_hf(B.gpt2_model(seed=9, n_positions=128), str(root / "other"))
    text = root / "calib.txt"
    text.write_text(B.TEXT)
    cal = root / "cal.json"
    rc = main(
        ["monitor", "calibrate", "--model", gpt2, "--json", str(cal), "--input", str(text)]
        + ["--contexts", "6", "--length", "12", "--seed", "1"]
    )
    assert rc == 0
    return {"root": root, "gpt2": gpt2, "other": other, "text": str(text), "cal": str(cal)}


def test_calibration_json_matches_dense_reference(setup):
    cal = json.loads(open(setup["cal"]).read())
    assert cal["format"] == "fimtheory-monitor-calibration" and cal["window"] is None
    um = load_user_model(setup["gpt2"])
    assert cal["model"]["weights_sha256"] == um.digest
    names = um.select(None)
    assert cal["params"]["names"] == list(names)
    assert cal["params"]["P"] == sum(dict(um.module.named_parameters())[n].numel() for n in names)
    assert cal["tokenizer"]["name"] == setup["gpt2"]
    assert cal["streaming"]["mode"] == "kv-cache"
    # independent: the same windows, the dense float64 Gram GGᵀ/T (same nonzero spectrum as
    # F = GᵀG/T, which at P = 8,352 would be a 0.5 GB matrix) and its eigvalsh
    ctx = calibration_tokens(um, 6, 13, seed=1, text=B.TEXT)
    lams = []
    for c in ctx:
        G = per_token_scores(um.module, names, c[:-1], c[1:]).G
        K = G @ G.T / G.shape[0]
        lams.append(float(torch.linalg.eigvalsh(0.5 * (K + K.T))[-1]))
    lams = np.asarray(lams)
    assert np.allclose(cal["lambdas"], lams, rtol=1e-10, atol=0)
    assert cal["lambda_base"] == pytest.approx(lams.mean(), rel=1e-10)
    assert np.allclose(cal["sigmas"], lams / lams.mean(), rtol=1e-10, atol=0)
    assert cal["tau_q"] == pytest.approx(np.quantile(lams / lams.mean(), 0.95), rel=1e-10)
    ci = cal["tau_q_ci"]
    # 6 contexts: no two-sided 95 % upper bound, which needs 1 − 0.95^m >= 0.975, i.e. m >= 72
    assert ci["upper"] is None and "needs m >= 72" in ci["note"]
    # lower end X_(4): P(X_(4) <= ξ) = P(Bin(6, 0.95) >= 4) = 0.9978 >= 0.975 > 0.9672 for X_(5)
    assert ci["lower"] == pytest.approx(np.sort(lams / lams.mean())[3], rel=1e-12)


def test_run_streams_json_lines_equal_to_dense(setup, capsys):
    rc = main(
        ["monitor", "run", "--calibration", setup["cal"], "--model", setup["gpt2"]]
        + ["--prompt", "The quick brown fox", "--max-new-tokens", "6", "--json-lines", "--quiet"]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    rows = [json.loads(line) for line in out]
    cal = json.loads(open(setup["cal"]).read())
    um = load_user_model(setup["gpt2"])
    prompt = um.encode("The quick brown fox").tolist()
    assert [r["token"] for r in rows[: len(prompt)]] == prompt
    assert [r["phase"] for r in rows] == ["prompt"] * len(prompt) + ["generated"] * 6
    assert [r["t"] for r in rows] == list(range(len(rows)))
    assert rows[0]["sigma"] is None
    ref = full_prefix_lambdas(um.module, cal["params"]["names"], torch.tensor([r["token"] for r in rows]))
    got = np.array([r["lambda"] for r in rows[1:]])
    assert np.all(np.abs(got - ref) <= 1e-9 * ref)
    for r in rows[1:]:
        assert r["sigma"] == pytest.approx(r["lambda"] / cal["lambda_base"], rel=1e-14)
        assert r["armed"] == (r["n_scores"] >= 12)
        assert r["alert"] == (r["armed"] and r["sigma"] > cal["tau_q"])


def test_run_plain_output_and_fail_on_alert(setup, capsys, tmp_path):
    cal = json.loads(open(setup["cal"]).read())
    cal["tau_q"] = -1.0  # every armed σ alerts
    low = tmp_path / "low.json"
    low.write_text(json.dumps(cal))
    rc = main(
        ["monitor", "run", "--calibration", str(low), "--model", setup["gpt2"], "--prompt", "The quick brown fox"]
        + ["--max-new-tokens", "3", "--fail-on-alert", "--min-scores", "2"]
    )
    cap = capsys.readouterr()
    assert rc == 1
    assert "generated:" in cap.out and "alerts" in cap.out
    assert "ALERT" in cap.err  # plain progress lines off a terminal


def _one_line_exit_2(capsys, argv, match):
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors (our _Parser exits 2 after one line)
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and match in err, err
    return err


def test_run_refuses_another_model_or_group(setup, capsys):
    base = ["monitor", "run", "--calibration", setup["cal"], "--prompt", "fox", "--max-new-tokens", "1"]
    _one_line_exit_2(capsys, base + ["--model", setup["other"]], "different model")
    _one_line_exit_2(capsys, base + ["--model", setup["gpt2"], "--params", "transformer.ln_f.*"], "calibration's group")


def test_bad_inputs_exit_2_before_work(setup, capsys, tmp_path):
    g, cal = setup["gpt2"], setup["cal"]
    out = str(tmp_path / "c.json")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    other_format = tmp_path / "other.json"
    other_format.write_text(json.dumps({"format": "something else"}))
    cases = [
        (["monitor", "calibrate", "--model", "/no/such/model/", "--json", out], "not a Hugging Face model directory"),
        (["monitor", "calibrate", "--model", "nomod_xyz:f", "--json", out], "cannot be found"),
        (["monitor", "calibrate", "--model", g, "--json", "/no/dir/c.json"], "does not exist"),
        (["monitor", "calibrate", "--model", g, "--json", out, "--quantile", "1.5"], "[0, 1]"),
        (["monitor", "calibrate", "--model", g, "--json", out, "--contexts", "0"], "positive integer"),
        (["monitor", "calibrate", "--model", g, "--json", out, "--params", "nothing.*"], "matches no parameter"),
        (["monitor", "calibrate", "--model", g, "--json", out, "--input", "/no/file"], "is not a file"),
        (["monitor", "run", "--calibration", str(bad_json), "--model", g], "not a readable JSON"),
        (["monitor", "run", "--calibration", str(other_format), "--model", g], "not a 'fimtheory monitor calibrate'"),
        (["monitor", "run", "--calibration", cal, "--model", g, "--temperature", "-1"], "finite number >= 0"),
        (["monitor", "run", "--calibration", cal, "--model", g, "--prompt", "x", "--max-new-tokens", "500"], "context"),
        (["monitor"], "calibrate or run"),
    ]
    for argv, match in cases:
        _one_line_exit_2(capsys, argv, match)
    assert not (tmp_path / "c.json").exists()  # nothing written by a refused calibration


def test_quantile_ci_coverage_is_exact_binomial():
    """The order-statistic interval's coverage, recomputed by summing binomial terms directly,
    is >= the level, and moving either end inwards drops one side below α/2."""
    from math import comb

    sig = np.arange(1.0, 101.0)
    q, m = 0.9, 100
    ci = quantile_ci(sig, q)
    lo, hi = int(ci["lower"]), int(ci["upper"])  # ranks (the values are 1..m)

    def below(k):  # P(Binomial(m, q) <= k)
        return sum(comb(m, j) * q**j * (1 - q) ** (m - j) for j in range(k + 1))

    from scipy.stats import binom

    assert math.isclose(below(lo - 1), binom.cdf(lo - 1, m, q), rel_tol=1e-9, abs_tol=1e-15)
    lower_side, upper_side = 1 - below(lo - 1), below(hi - 1)  # P(X >= lo), P(X <= hi - 1)
    assert lower_side >= 0.975, (lo, lower_side)
    assert upper_side >= 0.975, (hi, upper_side)
    lower_inward, upper_inward = 1 - below(lo), below(hi - 2)  # each end moved one rank inwards
    assert lower_inward < 0.975, (lo, lower_inward)
    assert upper_inward < 0.975, (hi, upper_inward)
    assert quantile_ci(np.ones(3), 0.95)["upper"] is None
