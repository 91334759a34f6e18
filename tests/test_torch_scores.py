"""Per-sample / per-token scores against per-sample autograd loops and closed forms."""

from __future__ import annotations

import importlib

import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from fimtheory.errors import InputError, UnknownIdError  # noqa: E402
from torch_checks import models as M  # noqa: E402
from torch_checks.scores import (  # noqa: E402
    model_targets,
    per_sample_scores,
    per_sample_scores_loop,
    per_token_scores,
)

pytestmark = pytest.mark.torch

# float64 scores from two autograd routes differ only by rounding: a few ulps of the
# largest score entry, times the depth of the computation.
REL = 1e-12


def _close(A, B, rel=REL):
    scale = max(float(A.detach().abs().max()), float(B.detach().abs().max()), 1e-300)
    return float((A - B).detach().abs().max()) <= rel * scale


def _mlp(seed=0):
    torch.manual_seed(seed)
    return M.DigitsMLP(hidden=8).double().eval()


def _lm(seed=0):
    torch.manual_seed(seed)
    return M.ByteLM(M.ByteLMConfig.tiny(context=16)).eval()


def test_mlp_vmap_matches_loop():
    m = _mlp()
    g = torch.Generator().manual_seed(1)
    X = torch.rand(12, 64, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (12,), generator=g)
    names = [n for n, _ in m.named_parameters()]
    S = per_sample_scores(m, names, X, y)
    R = per_sample_scores_loop(m, names, X, y)
    assert S.G.shape == (12, 64 * 8 + 8 + 8 * 10 + 10) and S.G.dtype == torch.float64
    assert _close(S.G, R.G)
    # a subset in a chosen order, and chunking, give the same columns
    S2 = per_sample_scores(m, ["fc2.weight", "fc1.bias"], X, y, chunk_size=5)
    ref = torch.cat([S.unflatten(r)["fc2.weight"].reshape(-1)[None] for r in S.G])
    assert _close(S2.G[:, :80], ref)
    assert _close(S2.G[:, 80:], torch.stack([S.unflatten(r)["fc1.bias"] for r in S.G]))


def test_unflatten_roundtrip():
    m = _mlp()
    X = torch.rand(3, 64, dtype=torch.float64)
    S = per_sample_scores(m, ["fc1.weight", "fc2.bias"], X, torch.tensor([0, 1, 2]))
    parts = S.unflatten(S.G[0])
    assert parts["fc1.weight"].shape == (8, 64) and parts["fc2.bias"].shape == (10,)
    assert torch.equal(torch.cat([p.reshape(-1) for p in parts.values()]), S.G[0])


def test_logistic_closed_form():
    """Binary logistic: g_i = (y_i − σ(w·x_i)) x_i (natural log)."""
    torch.manual_seed(0)
    m = M.LogisticRegression(7).double()
    with torch.no_grad():
        m.weight.normal_()
    g = torch.Generator().manual_seed(2)
    X = torch.randn(20, 7, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (20,), generator=g)
    S = per_sample_scores(m, ["weight"], X, y)
    p = torch.sigmoid(X @ m.weight[0])
    assert _close(S.G, (y - p)[:, None] * X)


def _fimtheory_generated(name):
    try:
        mod = importlib.import_module("fimtheory._generated.fim_expansion")
    except ImportError:
        return None
    return getattr(mod, name, None)


@pytest.mark.skipif(
    _fimtheory_generated("scores_logistic") is None,
    reason="fimtheory._generated.fim_expansion.scores_logistic not generated yet",
)
def test_logistic_scores_match_fimtheory_numpy():
    """Binary logistic, θ = w (d,): torch vmap scores = fimtheory's scores_logistic(X, y, θ)."""
    import numpy as np

    torch.manual_seed(8)
    m = M.LogisticRegression(6).double()
    with torch.no_grad():
        m.weight.normal_()
    X = torch.randn(15, 6, dtype=torch.float64)
    y = torch.randint(0, 2, (15,))
    S = per_sample_scores(m, ["weight"], X, y)
    ref = _fimtheory_generated("scores_logistic")(X.numpy(), y.numpy(), m.weight.detach().numpy().reshape(-1))
    assert np.allclose(S.G.numpy(), ref, rtol=0, atol=1e-13 * np.abs(ref).max())


@pytest.mark.skipif(
    _fimtheory_generated("scores_softmax") is None,
    reason="fimtheory._generated.fim_expansion.scores_softmax not generated yet",
)
def test_softmax_scores_match_fimtheory_numpy():
    """Softmax regression, θ = W.reshape(-1) with W of shape (K, d)."""
    import numpy as np

    K, d, n = 3, 5, 9
    torch.manual_seed(3)
    lin = torch.nn.Linear(d, K, bias=False).double()
    X = torch.randn(n, d, dtype=torch.float64)
    y = torch.randint(0, K, (n,))
    S = per_sample_scores(lin, ["weight"], X, y)
    ref = _fimtheory_generated("scores_softmax")(X.numpy(), y.numpy(), lin.weight.detach().numpy().reshape(-1))
    ref = np.asarray(ref, dtype=float).reshape(n, K * d)
    assert np.allclose(S.G.numpy(), ref, rtol=0, atol=1e-13 * np.abs(ref).max())


def test_softmax_closed_form():
    K, d, n = 4, 6, 10
    torch.manual_seed(4)
    lin = torch.nn.Linear(d, K, bias=False).double()
    X = torch.randn(n, d, dtype=torch.float64)
    y = torch.randint(0, K, (n,))
    S = per_sample_scores(lin, ["weight"], X, y)
    P = torch.softmax(X @ lin.weight.T, dim=1)
    E = torch.nn.functional.one_hot(y, K).double() - P  # (n, K)
    ref = (E[:, :, None] * X[:, None, :]).reshape(n, K * d)  # row-major W.reshape(-1)
    assert _close(S.G, ref)


def test_per_token_matches_loop_and_is_causal():
    m = _lm()
    g = torch.Generator().manual_seed(5)
    tok = torch.randint(0, 256, (17,), generator=g)
    names = ["blocks.0.mlp.proj.weight", "blocks.0.attn.qkv.bias"]
    S = per_token_scores(m, names, tok[:-1], tok[1:])
    R = per_sample_scores_loop(m, names, tok[:-1], tok[1:], per_token=True)
    assert S.G.shape == (16, 64 * 32 + 96)
    assert _close(S.G, R.G, rel=1e-11)
    S2 = per_token_scores(m, names, tok[:-1], tok[1:], chunk_size=3)
    assert _close(S.G, S2.G)
    # changing token 15 (input of position 15, target of position 14) leaves the scores of
    # positions 0..13 unchanged: the model is causal
    tok2 = tok.clone()
    tok2[15] = (tok2[15] + 7) % 256
    S3 = per_token_scores(m, names, tok2[:-1], tok2[1:])
    assert _close(S3.G[:14], S.G[:14])
    assert not _close(S3.G[14:], S.G[14:])


def test_float32_path_close_to_float64():
    m = _lm()
    tok = torch.randint(0, 256, (9,), generator=torch.Generator().manual_seed(6))
    names = ["head.weight"]
    S64 = per_token_scores(m, names, tok[:-1], tok[1:])
    S32 = per_token_scores(m, names, tok[:-1], tok[1:], dtype=torch.float32)
    assert S32.G.dtype == torch.float32
    assert _close(S32.G.double(), S64.G, rel=1e-5)


def test_score_errors():
    m = _mlp()
    X = torch.rand(3, 64, dtype=torch.float64)
    with pytest.raises(UnknownIdError):
        per_sample_scores(m, ["nope"], X, torch.tensor([0, 1, 2]))
    with pytest.raises(InputError):
        per_sample_scores(m, ["fc1.bias"], X, torch.tensor([0, 1]))
    with pytest.raises(InputError):
        per_sample_scores(m, [], X, torch.tensor([0, 1, 2]))
    with pytest.raises(InputError):
        per_sample_scores(m, ["fc1.bias"], X, torch.tensor([0, 1, 2]), dtype=torch.int32)
    with pytest.raises(InputError):
        per_token_scores(_lm(), ["head.weight"], torch.zeros(4, dtype=torch.long), torch.zeros(3, dtype=torch.long))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_scores_on_cuda_match_cpu():
    m = _lm()
    tok = torch.randint(0, 256, (9,), generator=torch.Generator().manual_seed(7))
    S = per_token_scores(m, ["head.weight"], tok[:-1], tok[1:])
    Sc = per_token_scores(m.cuda(), ["head.weight"], tok[:-1].cuda(), tok[1:].cuda())
    assert Sc.G.is_cuda
    assert _close(Sc.G.cpu(), S.G, rel=1e-10)


def test_model_targets():
    m = _lm()
    tok = torch.randint(0, 256, (12,), generator=torch.Generator().manual_seed(9))
    a = model_targets(m, tok, per_token=True)
    assert a.shape == (12,) and torch.equal(a, m(tok[None])[0].argmax(-1))
    s1 = model_targets(m, tok, mode="sample", seed=1, per_token=True)
    assert torch.equal(s1, model_targets(m, tok, mode="sample", seed=1, per_token=True))
    c = _mlp()
    X = torch.rand(5, 64, dtype=torch.float64)
    assert model_targets(c, X).shape == (5,)
    with pytest.raises(InputError):
        model_targets(c, X, mode="nope")
