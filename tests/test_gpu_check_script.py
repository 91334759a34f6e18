"""scripts/gpu_check.sh: refuses cleanly without CUDA, and every command it runs parses here."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch", reason="the CUDA check script drives torch code")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")


def test_script_is_valid_bash():
    subprocess.run(["bash", "-n", SCRIPT], check=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_refuses_without_cuda_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu"
    env = dict(os.environ, PYTHON=sys.executable)
    r = subprocess.run(["bash", SCRIPT, str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no CUDA device" in r.stderr
    assert not out.exists()


def _step_commands() -> list[list[str]]:
    text = open(SCRIPT).read().replace("\\\n", " ")
    cmds = []
    for line in text.splitlines():
        m = re.match(r'^step (\S+) (\d+) "\$PY" (.*)$', line.strip())
        if m:
            cmds.append(m.group(3).split())
    return cmds


def test_script_runs_three_steps():
    names = [c[1] for c in _step_commands()]
    assert names == ["pytest", "fimtheory", "benchmarks.run"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CUDA refusal of check-models")
def test_check_models_step_parses_and_refuses_cuda_before_work(tmp_path):
    (cmd,) = [c for c in _step_commands() if c[1] == "fimtheory"]
    args = [a.replace('"$OUT_DIR', str(tmp_path)).strip('"') for a in cmd]
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert "CUDA" in r.stderr or "cuda" in r.stderr


def test_benchmark_step_options_exist():
    (cmd,) = [c for c in _step_commands() if c[1] == "benchmarks.run"]
    r = subprocess.run([sys.executable, "-m", "benchmarks.run", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    for opt in (a for a in cmd if a.startswith("--")):
        assert opt in r.stdout, f"benchmarks.run has no {opt}"
