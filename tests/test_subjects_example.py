"""The example project examples/model_guard, run in a subprocess through the pytest plugin:
the two buggy score functions fail EF with certified counterexamples that replay, the correct
score function and the torch classifier pass, and a fixed function no longer reproduces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from properties.certify import Certificate

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "model_guard"


def _run(args, cwd, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    pytest.importorskip("torch", reason="the example's model tests need torch")
    out = tmp_path_factory.mktemp("cx")
    proc = _run(
        [
            sys.executable, "-m", "pytest", str(EXAMPLE), "-p", "properties.pytest_plugin", "-p", "no:cacheprovider",
            "-q", "-rf", "--fimtheory-seed", "0", "--fimtheory-counterexamples", str(out),
        ],
        cwd=EXAMPLE,
    )  # fmt: skip
    return proc, out


def test_buggy_score_functions_fail_and_the_rest_pass(example_run):
    proc, _ = example_run
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "2 failed, 5 passed" in text, text
    failed = {line.split("::")[-1].split(" ")[0] for line in text.splitlines() if line.startswith("FAILED")}
    assert failed == {"test_sign_slip_gives_the_empirical_fim", "test_flattening_gives_the_empirical_fim"}
    reports = text.split("short test summary info")[0]
    for sid in ("EF@mguard.scores:logistic_score_sign_slip", "EF@mguard.scores:softmax_score_flattened_wrong"):
        assert f"fimtheory check {sid}: FALSIFIED" in reports
    assert reports.count("(declared-enclosure)") == 2 and reports.count("shrunk instance:") == 2


def test_counterexample_files_replay_until_the_function_is_fixed(example_run, tmp_path):
    proc, out = example_run
    files = sorted(out.glob("*.json"))
    assert [f.name for f in files] == [
        "EF_mguard.scores_logistic_score_sign_slip.json",
        "EF_mguard.scores_softmax_score_flattened_wrong.json",
    ]
    for f in files:
        cert = Certificate.from_json(json.loads(f.read_text())["certificate"])
        assert cert.certified and cert.hi < 0 and cert.method == "declared-enclosure"
    rep = _run([sys.executable, "-m", "fimtheory", "replay", *map(str, files)], cwd=EXAMPLE)
    assert rep.returncode == 0 and rep.stdout.count("reproduced ") == 2, rep.stdout + rep.stderr
    # a copy of the project with the sign slip fixed: its stored counterexample no longer reproduces
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLE / "mguard", proj / "mguard")
    scores = proj / "mguard" / "scores.py"
    scores.write_text(scores.read_text().replace("np.exp(X @ theta)", "np.exp(-(X @ theta))"))
    rep = _run([sys.executable, "-m", "fimtheory", "replay", str(files[0])], cwd=proj)
    assert rep.returncode == 1 and "does not reproduce" in rep.stdout, rep.stdout + rep.stderr
