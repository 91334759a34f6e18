"""Torch-model subjects (T4.3a[torch_model], ENGINE): the FIMs the suite builds from the model
match an independent float64 autograd loop with numpy-quantized weights; both claims verify on
small models; a planted wrong engine fails ENGINE with a certified counterexample; bad models
are refused before any work; fimtheory and properties.subjects do not import torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[torch]')")

from fimtheory.quantize import quantize  # noqa: E402
from properties import subject_torch, subjects  # noqa: E402
from properties.verify import check_property  # noqa: E402
from tests import subjects_planted as sp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EPS = float(np.finfo(float).eps)


def _instance(pm, n=5, scheme="rtn-int4-sym-channel", seed=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, pm.input_dim))
    y = rng.integers(0, pm.classes, n).astype(np.int64)
    return subjects.TorchModelInstance(X, y, scheme, pm.digest)


def _loop_fim(module, names, X, y):
    """F = (1/n)Σ g gᵀ, one torch.autograd.grad per sample (independent of vmap)."""
    params = dict(module.named_parameters())
    rows = []
    for i in range(X.shape[0]):
        lp = torch.log_softmax(module(torch.from_numpy(X[i : i + 1])), -1)[0, int(y[i])]
        gs = torch.autograd.grad(lp, [params[n] for n in names])
        rows.append(torch.cat([g.reshape(-1) for g in gs]).detach().numpy())
    G = np.array(rows)
    return G.T @ G / G.shape[0]


def test_perturbation_matches_an_autograd_loop_with_numpy_quantized_weights():
    import copy

    pm = subject_torch.prepared(sp.small_mlp)
    assert pm.names == ("2.weight", "2.bias") and pm.input_dim == 3 and pm.classes == 3 and pm.P == 18
    for scheme in subject_torch.SCHEMES:
        inst = _instance(pm, scheme=scheme)
        pert = subject_torch.perturbation(pm, inst)
        A_ref = _loop_fim(pm.module, pm.names, inst.X, inst.y)
        q = copy.deepcopy(pm.module)
        with torch.no_grad():
            w = q.get_parameter("2.weight")
            w.copy_(torch.from_numpy(quantize(w.detach().numpy(), scheme)))  # numpy quantizer, not torch's
        B_ref = _loop_fim(q, pm.names, inst.X, inst.y)
        tol = 64 * inst.X.shape[0] * EPS * float(np.abs(A_ref).max() + np.abs(B_ref).max())
        assert np.max(np.abs(pert.A - A_ref)) <= tol
        assert np.max(np.abs(pert.E - (B_ref - A_ref))) <= tol
        assert np.max(np.abs(pert.E)) > 1e3 * tol  # the quantizer moved the FIM


def test_t43a_on_the_model_verifies_and_its_margin_matches_mpmath():
    b = subjects.bind("T4.3a", sp.small_mlp)
    assert b.kind == "torch_model" and b.id == "T4.3a[torch_model]@tests.subjects_planted:small_mlp"
    rep = check_property(b, b.strategy(), profile="quick", seed=0, max_examples=12)
    assert rep.status == "verified", rep.stop_reason or rep.error
    pm = subject_torch.prepared(sp.small_mlp)
    inst = _instance(pm, n=4)
    pert = subject_torch.perturbation(pm, inst)
    with mpmath.workdps(60):
        A, E = mpmath.matrix(pert.A.tolist()), mpmath.matrix(pert.E.tolist())
        w, Q = mpmath.eigsy(A)
        k = max(range(A.rows), key=lambda i: w[i])
        v = Q[:, k]
        lam_sum = max(mpmath.eigsy(A + E, eigvals_only=True))
        raw = lam_sum - w[k] - (v.T * E * v)[0, 0]
        assert raw >= -(mpmath.mpf(10) ** -40) * (1 + abs(w[k]))
    out = b.evaluate(inst)
    assert out.hypotheses_met and out.margin >= 0


@pytest.mark.parametrize("fn", [sp.small_mlp, sp.declared_model], ids=lambda f: f.__name__)
def test_engines_agree_with_the_dense_reference(fn):
    b = subjects.bind("ENGINE", fn)
    rep = check_property(b, b.strategy(), profile="quick", seed=0, max_examples=10)
    assert rep.status == "verified", rep.stop_reason or rep.error
    pm = subject_torch.prepared(fn)
    inst = _instance(pm)
    lam = float(np.linalg.eigvalsh(_loop_fim(pm.module, pm.names, inst.X, inst.y))[-1])
    values = subject_torch.engine_values(pm, inst)
    assert set(values) >= {"gram", "lanczos"}
    for v in values.values():
        assert abs(v - lam) <= 1e-9 * lam


def test_a_wrong_engine_fails_engine_with_a_certificate(monkeypatch, tmp_path):
    from properties.pytest_plugin import FimtheoryConfig, run_check

    real = subject_torch.engine_values

    def off_by_a_millionth(pm, inst):
        vals = dict(real(pm, inst))
        vals["lanczos"] *= 1 + 1e-6  # an engine stopped early
        return vals

    monkeypatch.setattr(subject_torch, "engine_values", off_by_a_millionth)
    result = run_check("ENGINE", FimtheoryConfig("quick", 0, tmp_path), subject=sp.small_mlp, max_examples=5)
    assert result.report.status == "falsified" and result.certificate.certified
    assert result.certificate.method == "declared-enclosure"
    assert result.certificate.hi < 0
    # the stored file holds a TorchModelInstance bit-exactly, and replays (the planted engine still in place)
    from properties.counterexamples import load_counterexample, replay_file

    _, inst, rec = load_counterexample(result.path)
    assert rec["instance"]["type"] == "properties.subjects:TorchModelInstance"
    assert (
        isinstance(inst, subjects.TorchModelInstance)
        and inst.weights_sha256 == subject_torch.prepared(sp.small_mlp).digest
    )
    assert replay_file(result.path).status == "reproduced"
    monkeypatch.setattr(subject_torch, "engine_values", real)  # the engine fixed: no longer reproduces
    subject_torch._CACHE.clear()
    assert replay_file(result.path).status == "not reproduced"


@pytest.mark.parametrize(
    "fn,message",
    [(sp.not_a_model, "expected an nn.Module"), (sp.one_logit_model, "expected logits of shape")],
    ids=["not-a-module", "one-logit"],
)
def test_bad_models_are_refused(fn, message):
    with pytest.raises(subjects.SubjectError, match=message):
        subjects.bind("ENGINE", fn)


def test_theta_too_large_for_t43a_and_other_weights_not_met():
    @subjects.torch_model(params=("0.weight", "0.bias", "2.weight", "2.bias"))
    def wide():
        return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))

    with pytest.raises(subjects.SubjectError, match="at most 64"):
        subjects.bind("T4.3a", wide)
    b = subjects.bind("ENGINE", sp.small_mlp)
    pm = subject_torch.prepared(sp.small_mlp)
    other = subjects.TorchModelInstance(np.ones((2, 3)), np.zeros(2, dtype=np.int64), "nf4-tensor", "0" * 64)
    out = b.evaluate(other)
    assert not out.hypotheses_met and "weights digest" in out.reason
    assert b.evaluate(_instance(pm)).hypotheses_met


def test_torch_is_not_imported_by_fimtheory_or_the_subjects_module():
    code = (
        "import sys, fimtheory, fimtheory.cli, fimtheory.claims, properties.subjects, properties.serialize\n"
        "from properties import subjects\n"
        "subjects.bind('EF', 'tests.subjects_planted:logistic_score')\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_cli_torch_model_subject(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    (tmp_path / "mymodel.py").write_text(
        "import torch\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))\n"
        "def not_a_factory(x):\n"
        "    return x\n"
    )

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "fimtheory", "verify", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    proc = run("--subject", "mymodel:make", "--subject-kind", "torch_model", "--claim", "ENGINE")
    assert proc.returncode == 0 and "ENGINE@mymodel:make" in proc.stdout and "verified" in proc.stdout, (
        proc.stdout + proc.stderr
    )
    bad = run("--subject", "mymodel:not_a_factory", "--subject-kind", "torch_model", "--claim", "ENGINE")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "no arguments" in bad.stderr, (
        bad.stdout + bad.stderr
    )
    # without the kind, T4.3a takes a rounding rule: the model is refused by the rule's signature check
    proc = run("--subject", "mymodel:make", "--claim", "T4.3a")
    assert proc.returncode == 2 and "rule(x, u)" in proc.stderr, proc.stdout + proc.stderr
