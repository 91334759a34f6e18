"""Score-function subjects (EF, W[score]): correct score functions verify, wrong ones fail
with certified counterexamples, checked against a reference written here from the closed
form in mpmath (60 digits); wrong signatures, shapes, dtypes and NaN are refused before any
work, from Python and from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mpmath
import pytest

from properties import subjects
from properties.serialize import instance_from_json
from properties.verify import check_property
from tests import subjects_planted as sp

ROOT = Path(__file__).resolve().parents[1]


def _check(claim, fn, n=60, seed=0, **kw):
    b = subjects.bind(claim, fn, **kw)
    return b, check_property(b, b.strategy(), profile="quick", seed=seed, max_examples=n)


def _mp_reference_fim(model, X, y, theta, dps=60):
    """(1/n)Σ g_i g_iᵀ with g_i = (e_y − μ(Wx_i)) ⊗ x_i, from the closed form at ``dps`` digits."""
    with mpmath.workdps(dps):
        n, d = X.shape
        W = theta.reshape(-1, d)
        rows = []
        for i in range(n):
            x = [mpmath.mpf(float(v)) for v in X[i]]
            z = [mpmath.fsum(mpmath.mpf(float(W[c, j])) * x[j] for j in range(d)) for c in range(W.shape[0])]
            if model == "logistic":
                r = [mpmath.mpf(float(y[i])) - 1 / (1 + mpmath.exp(-z[0]))]
            else:
                tot = mpmath.fsum(mpmath.exp(v) for v in z)
                r = [(1 if c == int(y[i]) else 0) - mpmath.exp(z[c]) / tot for c in range(len(z))]
            rows.append([rc * xj for rc in r for xj in x])
        G = mpmath.matrix(rows)
        return (G.T * G) / n


def _mp_user_fim(G, dps=60):
    with mpmath.workdps(dps):
        M = mpmath.matrix(G.tolist())
        return (M.T * M) / G.shape[0]


def _max_abs_diff(A, B, dps=60):
    with mpmath.workdps(dps):
        return max(abs(A[i, j] - B[i, j]) for i in range(A.rows) for j in range(A.cols))


@pytest.mark.parametrize(
    "fn", [sp.logistic_score, sp.logistic_loss_gradient, sp.softmax_score], ids=lambda f: f.__name__
)
@pytest.mark.parametrize("claim", ["EF", "W"])
def test_correct_score_functions_verify(claim, fn):
    b, rep = _check(claim, fn)
    assert rep.status == "verified", rep.stop_reason or rep.error
    assert rep.examples == 60 and rep.rejected == 0
    assert (
        b.kind == "score" and b.id == ("EF" if claim == "EF" else "W[score]") + f"@tests.subjects_planted:{fn.__name__}"
    )


@pytest.mark.parametrize(
    "fn",
    [sp.logistic_score_missing_sigmoid, sp.logistic_score_batch_mean, sp.softmax_score_transposed],
    ids=lambda f: f.__name__,
)
def test_wrong_score_functions_fail_ef_against_a_60_digit_reference(fn, tmp_path):
    from properties.pytest_plugin import FimtheoryConfig, run_check

    result = run_check("EF", FimtheoryConfig("quick", 0, tmp_path), subject=fn)
    assert result.report.status == "falsified" and result.path is not None
    cert = result.certificate
    assert cert.certified and cert.hi < 0 and cert.method == "declared-enclosure"
    inst = instance_from_json(result.report.counterexample["instance"])
    # the reference of this test, not the suite's: the user's FIM is off by far more than the allowance
    gaps = []
    for t in (inst.theta, inst.theta + inst.deltas[0]):
        ref = _mp_reference_fim(inst.model, inst.X, inst.y, t)
        user = _mp_user_fim(fn(t, inst.X, inst.y))
        gaps.append(_max_abs_diff(ref, user) / mpmath.mpf(subjects.score_allowance(inst, t)))
    assert max(gaps) > 1e3
    # the correct score function meets the same instance's reference within the allowance
    good = sp.logistic_score if inst.model == "logistic" else sp.softmax_score
    for t in (inst.theta, inst.theta + inst.deltas[0]):
        ref = _mp_reference_fim(inst.model, inst.X, inst.y, t)
        assert _max_abs_diff(ref, _mp_user_fim(good(t, inst.X, inst.y))) < subjects.score_allowance(inst, t) / 10


def test_w_score_sees_a_wrong_spectrum_but_not_a_permutation():
    _, rep = _check("W", sp.logistic_score_batch_mean)
    assert rep.status == "falsified"
    inst = instance_from_json(rep.counterexample["instance"])
    t1 = inst.theta + inst.deltas[0]
    with mpmath.workdps(60):
        A = _mp_reference_fim(inst.model, inst.X, inst.y, inst.theta)
        E = _mp_reference_fim(inst.model, inst.X, inst.y, t1) - A
        la = mpmath.eigsy(A, eigvals_only=True)
        le = mpmath.eigsy(E, eigvals_only=True)
        lam_u = max(mpmath.eigsy(_mp_user_fim(sp.logistic_score_batch_mean(t1, inst.X, inst.y)), eigvals_only=True))
        lower = max(la) + min(le)
        upper = max(la) + max(le)
        slack = mpmath.mpf(1e-9) * (max(abs(v) for v in la) + max(abs(v) for v in le))
        assert lam_u < lower - slack or lam_u > upper + slack
    # the transposed softmax score permutes θ: every eigenvalue is right, so W[score] holds
    _, rep = _check("W", sp.softmax_score_transposed, n=40)
    assert rep.status == "verified", rep.stop_reason or rep.error


def test_three_evaluators_agree_and_the_enclosure_contains_the_mp_margin():
    b = subjects.bind("EF", sp.logistic_score_missing_sigmoid)
    w = subjects.bind("W[score]", sp.logistic_score)
    from hypothesis import HealthCheck, given, settings

    seen = []

    @settings(max_examples=12, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(subjects.score_model_instances(model="logistic"))
    def prop(inst):
        for claim in (b, w):
            out = claim.evaluate(inst)
            m = claim.evaluate_mp(inst, 60)
            lo, hi = claim.evaluate_iv(inst, 60)
            assert lo <= m <= hi
            assert abs(out.margin - float(m)) <= 1e-6 * (1 + abs(float(m)))
        seen.append(1)

    prop()
    assert len(seen) == 12


@pytest.mark.parametrize(
    "fn,message",
    [
        (sp.logistic_score_float32, "dtype float32"),
        (sp.logistic_score_nan, "NaN"),
        (sp.logistic_score_wrong_shape, "expected (n, P)"),
        (sp.logistic_score_two_arguments, "score(theta, X, y)"),
    ],
    ids=["float32", "nan", "shape", "signature"],
)
def test_bad_score_functions_are_refused_by_the_probe(fn, message):
    with pytest.raises(subjects.SubjectError, match=message.replace("(", r"\(").replace(")", r"\)")):
        subjects.probe_subject("score", fn)


def test_kind_is_explicit_never_guessed():
    # undeclared: W defaults to a λ_max engine, EF to a score function whose model must be named
    assert subjects.bind("W", sp.undeclared_score).kind == "lambda_max"
    with pytest.raises(subjects.SubjectError, match="must name its model"):
        subjects.bind("EF", sp.undeclared_score)
    b = subjects.bind("W", sp.undeclared_score, kind="score", model="logistic")
    assert b.id == "W[score]@tests.subjects_planted:undeclared_score"
    with pytest.raises(subjects.SubjectError, match="declares fimtheory_subject_kind"):
        subjects.bind("W", sp.logistic_score, kind="lambda_max")
    with pytest.raises(subjects.UnknownIdError, match="not 'score'"):
        subjects.bind("R", sp.logistic_score)
    with pytest.raises(subjects.SubjectError, match="declares fimtheory_model"):
        subjects.bind("EF", sp.logistic_score, model="softmax")
    # replay binds the kind the id spells
    r = subjects.resolve("W", "W[score]@tests.subjects_planted:logistic_score")
    assert r.kind == "score" and r.subject is sp.logistic_score


def _cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "fimtheory", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["--subject", "tests.subjects_planted:logistic_score_nan", "--claim", "EF"], "NaN"),
        (["--subject", "tests.subjects_planted:logistic_score_float32", "--claim", "EF"], "float32"),
        (["--subject", "tests.subjects_planted:logistic_score_two_arguments", "--claim", "EF"], "score(theta, X, y)"),
        (["--subject", "tests.subjects_planted:undeclared_score", "--claim", "EF"], "must name its model"),
        (["--subject", "tests.subjects_planted:undeclared_score", "--claim", "W"], "engine(M)"),
        (["--subject", "tests.subjects_planted:logistic_score", "--claim", "R"], "not 'score'"),
        (["--subject-kind", "score", "--claim", "EF"], "only with --subject"),
        (
            [
                "--subject",
                "tests.subjects_planted:logistic_score",
                "--subject-kind",
                "lambda_max",
                "--claim",
                "W[score]",
            ],
            "names kind 'score'",
        ),
    ],
    ids=["nan", "float32", "signature", "no-model", "default-kind", "wrong-claim", "kind-without-subject", "two-kinds"],
)
def test_cli_refuses_bad_subjects_with_one_line_and_exit_2(args, message, tmp_path):
    proc = _cli("verify", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not proc.stdout.strip()


def test_cli_score_subject_end_to_end(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "myscores.py").write_text(
        "import numpy as np\n"
        "def score(theta, X, y):\n"
        "    return (y - X @ theta)[:, None] * X\n"  # the missing sigmoid
        "def good(theta, X, y):\n"
        "    return (y - 1 / (1 + np.exp(-(X @ theta))))[:, None] * X\n"
    )
    ok = _cli(
        "verify", "--subject", "myscores:good", "--subject-kind", "score", "--score-model", "logistic",
        "--claim", "EF", "--claim", "W", cwd=proj,
    )  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.count("verified") == 2, ok.stdout + ok.stderr
    bad = _cli(
        "verify", "--subject", "myscores:score", "--subject-kind", "score", "--score-model", "logistic",
        "--claim", "EF", "--json", str(tmp_path / "r.json"), cwd=proj,
    )  # fmt: skip
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "(declared-enclosure)" in bad.stdout
    (path,) = (proj / ".fimtheory" / "counterexamples").glob("*.json")
    assert path.name == "EF_myscores_score.json"
    assert json.loads((tmp_path / "r.json").read_text())["claims"][0]["status"] == "falsified"
    rep = _cli("replay", str(path), cwd=proj)
    assert rep.returncode == 0 and rep.stdout.startswith("reproduced"), rep.stdout + rep.stderr
    # the fixed function no longer reproduces the stored counterexample
    (proj / "myscores.py").write_text(
        "import numpy as np\ndef score(theta, X, y):\n    return (y - 1 / (1 + np.exp(-(X @ theta))))[:, None] * X\n"
    )
    rep = _cli("replay", str(path), cwd=proj)
    assert rep.returncode == 1 and "does not reproduce" in rep.stdout, rep.stdout + rep.stderr
