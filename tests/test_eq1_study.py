"""The Eq. 1 study's per-step records against independent references, on a small byte LM."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the Eq. 1 study needs torch")

from scipy.stats import entropy  # noqa: E402

from torch_checks import eq1_study as E  # noqa: E402
from torch_checks.models import ByteLM, ByteLMConfig  # noqa: E402

NAMES = ("blocks.0.mlp.proj.weight",)


@pytest.fixture(scope="module")
def tiny_lm():
    torch.manual_seed(0)
    return ByteLM(ByteLMConfig.tiny()).eval()


def _trajectory(model, seed=3):
    prompt = torch.tensor(list(b"The capital of"), dtype=torch.int64)
    return prompt, E.trajectory(
        model,
        prompt,
        new_tokens=6,
        temperature=0.7,
        seed=seed,
        context=model.config.context,
        param_names=NAMES,
        top_k=20,
    )


def test_records_match_dense_and_autograd_references(tiny_lm):
    prompt, recs = _trajectory(tiny_lm)
    ids = prompt.clone()
    prev = None
    for r in recs:
        window = ids[-tiny_lm.config.context :]
        with torch.no_grad():
            p = torch.softmax(tiny_lm(window[None])[0, -1].double(), -1).numpy()
        p = p / p.sum()
        y = r["token"]
        M = np.diag(p) - np.outer(p, p)
        assert r["lambda_softmax"] == pytest.approx(np.linalg.eigvalsh(M)[-1], rel=1e-12)
        e = -p.copy()
        e[y] += 1
        assert r["lambda_empirical"] == pytest.approx(float(e @ e), rel=1e-12)
        # the parameter-space score by a plain backward pass on the chosen weight
        w = dict(tiny_lm.named_parameters())[NAMES[0]]
        tiny_lm.zero_grad()
        torch.log_softmax(tiny_lm(window[None])[0, -1].double(), -1)[y].backward()
        assert r["lambda_param"] == pytest.approx(float((w.grad.double() ** 2).sum()), rel=1e-10)
        q = np.sort(p)[::-1][:20]
        q = q / q.sum()
        h = -(q * np.log(q)).sum() / math.log(20)
        assert r["lambda_hat"] == pytest.approx(q[0] * (1 - q[0]) * (1 + h / 2), rel=1e-12)
        if prev is not None:
            assert r["kl_full"] == pytest.approx(entropy(prev, p), rel=1e-9)
        prev = p
        ids = torch.cat([ids, torch.tensor([y])])
    tiny_lm.zero_grad()


def test_trajectories_are_reproducible_and_seed_dependent(tiny_lm):
    a = [r["token"] for r in _trajectory(tiny_lm, seed=5)[1]]
    b = [r["token"] for r in _trajectory(tiny_lm, seed=5)[1]]
    c = [r["token"] for r in _trajectory(tiny_lm, seed=6)[1]]
    assert a == b and a != c


def test_run_study_reports_every_arm(tiny_lm, monkeypatch):
    monkeypatch.setitem(E.PROFILES, "quick", {"prompts": 2, "samples": 2, "new_tokens": 5, "bits": (4,)})

    def encode(text):
        return torch.tensor(list(text.encode()), dtype=torch.int64)

    monkeypatch.setattr(E, "_lm", lambda name: (tiny_lm, encode, tiny_lm.config.context, NAMES))
    before = {k: v.clone() for k, v in tiny_lm.state_dict().items()}
    rep = E.run_study(E.StudyConfig(bootstrap=200))
    assert set(rep["records"]) == {"reference", "int4"}
    assert len(rep["records"]["reference"]) == 2 * 2 * 5
    r = rep["kl_p95_ratio_quantized_vs_reference"]["int4"]
    assert r["ci95"][0] <= r["ratio"] <= r["ci95"][1]
    assert "Eq. 1 study" in E.format_report(rep)
    # the weights are restored after the quantized arms
    after = tiny_lm.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # and the quantized arm really ran on other weights: its distributions differ
    ref = [r["p_max"] for r in rep["records"]["reference"]]
    q4 = [r["p_max"] for r in rep["records"]["int4"]]
    assert ref != q4


@pytest.mark.parametrize(
    "kw,match", [({"profile": "x"}, "profile"), ({"temperature": 0.0}, "temperature"), ({"seed": -1}, "seed")]
)
def test_bad_config_is_refused(kw, match):
    from fimtheory.errors import InputError

    with pytest.raises(InputError, match=match):
        E.StudyConfig(**kw)
