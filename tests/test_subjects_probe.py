"""Before any work, ``fimtheory verify --subject`` calls the subject once on a small valid input
of its kind: a wrong signature, a wrong answer (shape, dtype, NaN, off the grid) or a model
factory that returns no module gives one line on stderr and exit status 2, for every kind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

USER_CODE = """
import numpy as np

def engine_nan(M):
    return float("nan")

def engine_vector(M):
    return np.linalg.eigvalsh(M)

def engine_two_args(M, k):
    return 0.0

def rule_off_grid(x, u):
    return x + 0.25 * u

def rule_shape(x, u):
    return np.floor(x + u).ravel()

def rule_one_arg(x):
    return np.round(x)

def score_int(theta, X, y):
    return np.zeros((X.shape[0], theta.size), dtype=int)

def factory_returns_array():
    return np.zeros(3)
"""

CASES = [
    ("engine_nan", ["--claim", "W"], "returned nan"),
    ("engine_vector", ["--claim", "R"], "did not return one number"),
    ("engine_two_args", ["--claim", "AB"], "engine(M) -> float"),
    ("rule_off_grid", ["--claim", "T4.3b"], "off the integer grid"),
    ("rule_shape", ["--claim", "T4.3a"], "returned shape"),
    ("rule_one_arg", ["--claim", "T4.3a"], "rule(x, u)"),
    ("score_int", ["--claim", "EF", "--subject-kind", "score", "--score-model", "softmax"], "dtype int64"),
    ("factory_returns_array", ["--claim", "ENGINE", "--subject-kind", "torch_model"], "expected an nn.Module"),
]


@pytest.mark.parametrize("name,args,message", CASES, ids=[c[0] for c in CASES])
def test_wrong_subjects_stop_before_any_work(tmp_path, name, args, message):
    if "torch_model" in args:
        pytest.importorskip("torch")
    (tmp_path / "usercode.py").write_text(USER_CODE)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "fimtheory", "verify", "--subject", f"usercode:{name}", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stdout + proc.stderr
    assert lines[0].startswith("fimtheory: error:") and not proc.stdout.strip()
    assert not (tmp_path / ".fimtheory").exists()  # nothing was run, nothing stored
