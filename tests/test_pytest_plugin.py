"""The pytest plugin and user subjects: the example project under examples/quantizer_guard is
run in a subprocess (its buggy quantizer and λ_max engine must fail with certified, replayable
counterexamples, the correct ones pass), and the subject-bound claims are checked against
independent references (60-digit mpmath eigenvalues, exact rational means)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import given, seed, settings

from properties import subjects
from properties.certify import Certificate
from properties.verify import check_property

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quantizer_guard"
sys.path.insert(0, str(EXAMPLE))  # the example's own package qguard

from qguard import engines, quantizers  # noqa: E402


def _run(args, cwd, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cx")
    proc = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(EXAMPLE),
            "-p",
            "properties.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rf",
            "--fimtheory-profile",
            "quick",
            "--fimtheory-seed",
            "0",
            "--fimtheory-counterexamples",
            str(out),
        ],
        cwd=EXAMPLE,
    )
    return proc, out


def test_example_buggy_subjects_fail_correct_pass(example_run):
    proc, _ = example_run
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "2 failed, 7 passed" in text, text
    failed = {line.split("::")[-1].split(" ")[0] for line in text.splitlines() if line.startswith("FAILED")}
    assert failed == {
        "test_fixed_vector_engine_directional_bound",
        "test_trunc_rounding_raises_lambda_max_in_expectation",
    }
    for sid in ("R@qguard.engines:fixed_vector_rayleigh", "T4.3b@qguard.quantizers:stochastic_rounding_trunc"):
        assert f"fimtheory check {sid}: FALSIFIED" in text
    # once per failure report (the short summary repeats the message in full when CI is set)
    reports = text.split("short test summary info")[0]
    assert reports.count("certified margin enclosure: [") == 2
    assert reports.count("shrunk instance:") == 2


def test_example_counterexample_files_replay(example_run):
    proc, out = example_run
    files = sorted(out.glob("*.json"))
    assert [f.name for f in files] == [
        "R_qguard.engines_fixed_vector_rayleigh.json",
        "T4.3b_qguard.quantizers_stochastic_rounding_trunc.json",
    ]
    for f in files:
        assert f"counterexample file: {f}" in proc.stdout
        rec = json.loads(f.read_text())
        assert rec["certificate"]["certified"] is True
        assert Certificate.from_json(rec["certificate"]).hi < 0
    rep = _run([sys.executable, "-m", "fimtheory", "replay", *map(str, files)], cwd=EXAMPLE)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert rep.stdout.count("reproduced ") == 2 and "not reproduced" not in rep.stdout


def test_replay_rejects_a_counterexample_moved_to_another_subject(example_run, tmp_path):
    _, out = example_run
    rec = json.loads((out / "R_qguard.engines_fixed_vector_rayleigh.json").read_text())
    rec["weakening"] = "R@qguard.engines:dense_lambda_max"  # the correct engine: the digest covers the name
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(rec))
    rep = _run([sys.executable, "-m", "fimtheory", "replay", str(moved)], cwd=EXAMPLE)
    assert rep.returncode == 1 and "digest mismatch" in rep.stdout, rep.stdout + rep.stderr


def _mp_top(M, dps=60):
    with mpmath.workdps(dps):
        w = mpmath.eigsy(mpmath.matrix(M.tolist()), eigvals_only=True)
        return max(w)


def test_fixed_vector_counterexample_against_dense_60_digit_reference():
    b = subjects.bind("R", engines.fixed_vector_rayleigh)
    rep = check_property(b, b.strategy(), profile="quick", seed=0)
    assert rep.status == "falsified"
    from properties.serialize import instance_from_json

    inst = instance_from_json(rep.counterexample["instance"])
    with mpmath.workdps(60):
        A, E = mpmath.matrix(inst.A.tolist()), mpmath.matrix(inst.E.tolist())
        w, Q = mpmath.eigsy(A)
        k = max(range(inst.n), key=lambda i: w[i])
        v = Q[:, k]
        bound = w[k] + (v.T * E * v)[0, 0]
        engine = mpmath.mpf(engines.fixed_vector_rayleigh(inst.A + inst.E))
        assert engine < bound - mpmath.mpf("1e-3") * abs(bound)
    # the correct engine passes the same claim, and is within τ of the 60-digit λ_max there
    ok = subjects.bind("R", engines.dense_lambda_max)
    assert ok.evaluate(inst).margin > 0
    lam = _mp_top(inst.A + inst.E)
    assert abs(engines.dense_lambda_max(inst.A + inst.E) - float(lam)) <= 64 * inst.n * 2.0**-52 * float(abs(lam))


@pytest.mark.parametrize("claim", ["W", "R", "AB"])
def test_dense_engine_verified(claim):
    b = subjects.bind(claim, engines.dense_lambda_max)
    rep = check_property(b, b.strategy(), profile="quick", seed=1)
    assert rep.status == "verified", rep.stop_reason or rep.error


def test_lattice_ensemble_mean_is_exactly_zero_for_unbiased_rounding_only():
    means_zero, biased = [], []

    @seed(3)
    @settings(max_examples=40, database=None, derandomize=True)
    @given(subjects.lattice_matrices())
    def prop(args):
        F, N, step = args
        for rule, sink in (
            (quantizers.stochastic_rounding, means_zero),
            (quantizers.stochastic_rounding_trunc, biased),
        ):
            Es = subjects.lattice_noise(rule, F, N, step)
            total = [
                sum((Fraction(float(E[i, j])) for E in Es), Fraction(0))
                for i in range(F.shape[0])
                for j in range(F.shape[0])
            ]
            sink.append(all(t == 0 for t in total))
            for E in Es:
                assert np.array_equal(E, E.T)
                assert np.array_equal(F + E, np.round((F + E) / step) * step)  # on the grid

    prop()
    assert all(means_zero)
    assert not all(biased)


def test_bad_subjects_are_errors_not_verdicts():
    nan_engine = subjects.bind("W", lambda M: float("nan"))
    rep = check_property(nan_engine, nan_engine.strategy(), profile="quick", max_examples=5)
    assert rep.status == "error" and "nan" in rep.error.lower()
    off_grid = subjects.bind("T4.3b", lambda x, u: x + 0.25 * u)
    rep = check_property(off_grid, off_grid.strategy(), profile="quick", max_examples=5)
    assert rep.status == "error" and "off the integer grid" in rep.error
    with pytest.raises(subjects.UnknownIdError):
        subjects.bind("S", engines.dense_lambda_max)
    with pytest.raises(subjects.SubjectError):
        subjects.bind("W", "qguard.engines:no_such_engine")
    assert "@<unimportable" in nan_engine.id and not nan_engine.replayable


def test_cli_verify_subject(tmp_path):
    proc = _run(
        [
            sys.executable,
            "-m",
            "fimtheory",
            "verify",
            "--subject",
            "qguard.engines:fixed_vector_rayleigh",
            "--claim",
            "W",
        ],
        cwd=tmp_path,
    )
    # the subject's module is found through the current directory: from tmp_path it is not
    assert proc.returncode == 2 and "cannot import" in proc.stderr
    env_cwd = tmp_path / "proj"
    env_cwd.mkdir()
    (env_cwd / "qguard").symlink_to(EXAMPLE / "qguard")
    proc = _run(
        [
            sys.executable,
            "-m",
            "fimtheory",
            "verify",
            "--subject",
            "qguard.engines:fixed_vector_rayleigh",
            "--claim",
            "W",
        ],
        cwd=env_cwd,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    files = list((env_cwd / ".fimtheory" / "counterexamples").glob("*.json"))
    assert [f.name for f in files] == ["W_qguard.engines_fixed_vector_rayleigh.json"]
    rep = _run([sys.executable, "-m", "fimtheory", "replay", str(files[0])], cwd=env_cwd)
    assert rep.returncode == 0, rep.stdout
    proc = _run(
        [
            sys.executable,
            "-m",
            "fimtheory",
            "verify",
            "--subject",
            "qguard.quantizers:stochastic_rounding",
            "--claim",
            "T4.3b",
        ],
        cwd=env_cwd,
    )
    assert proc.returncode == 0 and "verified" in proc.stdout, proc.stdout + proc.stderr


def test_plugin_leaves_unmarked_tests_alone(tmp_path):
    (tmp_path / "test_plain.py").write_text(
        "from hypothesis import given, strategies as st, settings\n"
        "@given(st.integers())\n"
        "def test_h(x):\n    assert settings().max_examples == 100\n"
        "def test_plain():\n    assert sum([1, 2]) == 3\n"
    )
    on = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)], cwd=tmp_path)
    off = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:properties.pytest_plugin",
            str(tmp_path),
        ],
        cwd=tmp_path,
    )
    assert "2 passed" in on.stdout and "2 passed" in off.stdout, on.stdout + off.stdout
    bad = _run([sys.executable, "-m", "pytest", "--fimtheory-seed", "-1", str(tmp_path)], cwd=tmp_path)
    assert bad.returncode == 4 and "non-negative" in bad.stderr


def _cfg(tmp_path, profile="quick"):
    from properties.pytest_plugin import FimtheoryConfig

    return FimtheoryConfig(profile, 0, tmp_path / "cx")


def test_weakening_is_expected_falsified_and_its_file_replays(tmp_path):
    from properties.counterexamples import replay_file
    from properties.pytest_plugin import run_check

    result = run_check("W-no-lambda-min", _cfg(tmp_path))
    assert result.expect == "falsified" and result.report.status == "falsified" and result.passed
    assert result.path is not None and result.certificate.certified
    assert replay_file(result.path).status == "reproduced"


def test_uncertifiable_violation_is_inconclusive_and_fails(tmp_path):
    """A user's claim without a rigorous evaluator: its violation is never certified, so the
    check is inconclusive (with the adjudicator's reason) and the test fails — not a pass."""
    import mpmath

    from fimtheory.claims import Claim, Outcome
    from properties.pytest_plugin import format_result, run_check
    from properties.strategies import psd_matrices

    def ev(A):  # false: λ_max ≤ the largest diagonal entry
        m = float(np.max(np.diag(A)) - np.linalg.eigvalsh(A)[-1]) / float(np.trace(A))
        return Outcome(True, m, not m > 1e-6)

    def ev_mp(A, dps):
        with mpmath.workdps(dps):
            w = mpmath.eigsy(mpmath.matrix(A.tolist()), eigvals_only=True)
            return (max(mpmath.mpf(float(x)) for x in np.diag(A)) - max(w)) / mpmath.fsum(np.diag(A).tolist())

    false_claim = Claim("U-diag", "λ_max ≤ max diag", "", (), ev, ev_mp, "none")
    result = run_check(false_claim, _cfg(tmp_path), strategy=psd_matrices(n=(2, 4)), max_examples=10)
    assert result.report.status == "inconclusive" and not result.passed
    text = format_result(result, _cfg(tmp_path))
    assert "INCONCLUSIVE" in text and "reason:" in text and "no rigorous" in text
    assert result.path is None


def test_replay_runs_the_subject_as_it_is_now(tmp_path):
    """A stored counterexample re-runs the subject: once the engine is fixed, it no longer
    reproduces (the engine's value, hence the float margin, changed)."""
    mod = tmp_path / "myengine.py"
    mod.write_text(
        "import numpy as np\n"
        "def engine(M):\n"
        "    x = np.ones(M.shape[0]) / np.sqrt(M.shape[0])\n"
        "    return float(x @ M @ x)\n"
    )
    proc = _run([sys.executable, "-m", "fimtheory", "verify", "--subject", "myengine:engine", "--claim", "R"], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (stored,) = (tmp_path / ".fimtheory" / "counterexamples").glob("*.json")
    assert _run([sys.executable, "-m", "fimtheory", "replay", str(stored)], tmp_path).returncode == 0
    mod.write_text("import numpy as np\ndef engine(M):\n    return float(np.linalg.eigvalsh(M)[-1])\n")
    rep = _run([sys.executable, "-m", "fimtheory", "replay", str(stored)], tmp_path)
    assert rep.returncode == 1 and "does not reproduce" in rep.stdout, rep.stdout + rep.stderr
