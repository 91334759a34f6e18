"""The ``fimtheory`` command line, in a subprocess and through ``fimtheory.cli.main``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fimtheory import cli
from fimtheory.claims import REGISTRY

IDS = ["W", "R", "S", "S2", "SIGN", "T4.3a", "T4.3b", "T4.3c", "T4.3d", "P3.2", "AH", "AB", "C"]
IDS += ["KT", "LL", "S3", "S3L", "T4.3b-S", "T4.3c-S"]
IDS += ["EQ1-M-BOUNDS", "EQ1-RATIO", "KL-SORTED"]  # fimtheory.claims_eq1


def _run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "fimtheory", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_claims_lists_every_id_subprocess():
    r = _run("claims")
    assert r.returncode == 0, r.stderr
    first_words = {line.split()[0] for line in r.stdout.splitlines() if line and not line.startswith(" ")}
    assert first_words == set(IDS)


def test_claims_json_in_process(capsys):
    assert cli.main(["claims", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in data] == list(REGISTRY) and set(REGISTRY) == set(IDS)


def test_verify_w_quick_json(tmp_path):
    pytest.importorskip("hypothesis", reason="verify needs hypothesis (the [properties] extra)")
    out = tmp_path / "out.json"
    r = _run("verify", "--claim", "W", "--profile", "quick", "--json", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    assert {"claims", "all_verified"} <= set(data)
    assert data["all_verified"] is True
    (c,) = data["claims"]
    assert {"id", "status", "examples", "rejected", "worst_margin", "adjudicated", "counterexample", "seconds"} <= set(
        c
    )
    assert c["id"] == "W" and c["status"] == "verified" and c["counterexample"] is None
    assert c["examples"] > 0 and c["worst_margin"] >= 0 and c["seconds"] >= 0
    # verified means every requested example ran, none undecided
    assert c["examples"] == c["examples_requested"] == data["examples_requested"] == 100
    assert c["undecided"] == 0 and c["stop_reason"] == "" and c["max_dps"] >= 50 * (c["adjudicated"] > 0)
    assert data["exit_status"] == 0 and data["complete"] is True


def test_verify_in_process(tmp_path, capsys):
    pytest.importorskip("hypothesis", reason="verify needs hypothesis (the [properties] extra)")
    out = tmp_path / "r.json"
    assert cli.main(["verify", "--claim", "C", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["claims"][0]["id"] == "C"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["verify", "--claim", "NOPE"], "unknown claim id 'NOPE'"),
        (["verify", "--profile", "bad"], "invalid choice: 'bad'"),
        (["verify", "--dps", "10"], "--dps must be >= 40"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
    ids=["unknown claim", "bad profile", "low dps", "unknown command"],
)
def test_usage_errors_exit_2_with_one_line(args, needle):
    r = _run(*args)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("fimtheory: error: ") and needle in lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["verify", "--claim", "NOPE"], "unknown claim id 'NOPE'; known: W, R"), (["verify", "--profile", "x"], "x")],
)
def test_usage_errors_in_process(args, needle, capsys):
    try:
        rc = cli.main(args)
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and needle in err[0]


def test_no_command_exits_2():
    r = _run()
    assert r.returncode == 2
    assert "COMMAND" in r.stdout or "usage" in (r.stdout + r.stderr).lower()


def test_no_command_in_process(capsys):
    assert cli.main([]) == 2
