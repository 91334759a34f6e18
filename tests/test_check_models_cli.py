"""``fimtheory check-models``: the quick path on the logistic model, JSON keys, exit statuses."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch", reason="check-models needs the [torch] extra")
pytest.importorskip("sklearn", reason="the digits models need scikit-learn")

from fimtheory.cli import main  # noqa: E402

pytestmark = pytest.mark.torch

ROW_KEYS = {
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


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("fimtheory: error:")
    return err[0]


def test_quick_logistic_writes_documented_json(tmp_path, capsys):
    out = tmp_path / "res.json"
    rc = main(
        [
            "check-models",
            "--model",
            "logistic",
            "--scheme",
            "rtn-int4-sym-channel",
            "--scheme",
            "sr-int4-sym-channel",
            "--profile",
            "quick",
            "--device",
            "cpu",
            "--json",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "logistic" in text and "T4.3a" in text and "P3.2" in text
    doc = json.loads(out.read_text())
    assert set(doc) == {"header", "rows", "summary"}
    assert doc["header"]["profile"] == "quick" and doc["header"]["device"] == "cpu"
    assert "load_average" in doc["header"] and "wall_seconds" in doc["header"]
    assert doc["summary"]["exit_status"] == 0 and "falsified" not in doc["summary"]["statuses"]
    claims = set()
    for row in doc["rows"]:
        assert set(row) == ROW_KEYS
        assert set(row["counts"]) == {"examples", "not_met"}
        assert row["status"] in ("verified", "hypotheses not met", "measured", "inconclusive", "skipped")
        claims.add(row["claim"])
    assert {"T4.3a", "S2", "lowers-lambda-max", "T4.3-SR", "T4.3b", "T4.3c", "P3.2", "C"} <= claims


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--model", "no-such-model"], "no-such-model"),
        (["--model", "logistic", "--scheme", "rtn-int9-sym-channel"], "rtn-int9-sym-channel"),
        (["--model", "logistic", "--profile", "medium"], "medium"),
        (["--model", "logistic", "--bits", "1"], "bits"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, needle, capsys):
    rc = main(["check-models", *argv])
    assert rc == 2
    assert needle in _one_error_line(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when CUDA is missing")
def test_device_cuda_without_cuda_exits_2(capsys):
    rc = main(["check-models", "--model", "logistic", "--device", "cuda"])
    assert rc == 2
    assert "CUDA" in _one_error_line(capsys)


def test_inflation_parser_does_not_need_torch_imports():
    from fimtheory.cli import build_parser

    parser, handlers = build_parser()
    args = parser.parse_args(["inflation", "--profile", "quick", "--out", "x", "--seed", "3"])
    assert args.profile == "quick" and args.out == "x" and args.seed == 3
    assert not isinstance(handlers["check-models"], Exception)


def test_building_the_parser_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from fimtheory.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
