"""The streaming σ_t monitor (torch_checks.monitor): streaming equals from-scratch dense λ_max,
with and without a window; calibration quantile; input validation. Tiny models, fast."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from fimtheory.errors import InputError  # noqa: E402
from torch_checks import models as M  # noqa: E402
from torch_checks.monitor import SigmaMonitor, calibrate, sigma_trace, top_eig_warm  # noqa: E402
from torch_checks.scores import per_sample_scores, per_token_scores  # noqa: E402

pytestmark = pytest.mark.torch

#: Stated tolerance: streaming λ_max vs dense eigh of F_t = G_tᵀG_t/t, relative.
REL_TOL = 1e-8
#: A small θ (P = 64) so that the dense reference eigh of F (P × P) is cheap.
NAMES = ("ln_f.weight", "blocks.0.ln2.bias")


@pytest.fixture(scope="module")
def byte_lm(tmp_path_factory):
    d = tmp_path_factory.mktemp("fimcache")
    mp = pytest.MonkeyPatch()
    mp.setenv("FIMTHEORY_CACHE", str(d))
    model, _ = M.load_byte_lm(M.ByteLMConfig.tiny(steps=40, eval_bytes=1024))
    mp.undo()
    return model.double()


def _dense_lambda(G: torch.Tensor) -> float:
    F = G.T @ G / G.shape[0]
    return float(torch.linalg.eigvalsh(0.5 * (F + F.T))[-1])


def _tokens(n, seed=0):
    return torch.randint(32, 127, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("window", [None, 5])
def test_streaming_equals_scratch_dense(byte_lm, window):
    names = NAMES
    toks = _tokens(20)
    mon = SigmaMonitor(byte_lm, names, 2.0, window=window)
    sig = [mon.push(int(t)) for t in toks]
    assert np.isnan(sig[0])  # first token: nothing predicts it
    G = per_token_scores(byte_lm, names, toks[:-1], toks[1:]).G
    for t in range(1, len(toks)):
        rows = G[:t] if window is None else G[max(0, t - window):t]
        ref = _dense_lambda(rows)
        assert abs(mon.lambdas[t - 1] - ref) <= REL_TOL * ref, (t, mon.lambdas[t - 1], ref)
        assert sig[t] == pytest.approx(mon.lambdas[t - 1] / 2.0, rel=1e-15)
    assert mon.n_scores == (19 if window is None else window)
    # warm start: after the first few tokens Lanczos needs few steps
    assert max(mon.iterations[-5:]) < 19


def test_push_many_tokens_and_sigma_trace_match(byte_lm):
    names = NAMES
    toks = _tokens(12, seed=1)
    mon = SigmaMonitor(byte_lm, names, 1.0)
    last = mon.push(toks)
    G = per_token_scores(byte_lm, names, toks[:-1], toks[1:]).G
    tr = sigma_trace(G, 1.0)
    np.testing.assert_allclose(mon.sigmas, tr, rtol=1e-9)
    assert last == mon.sigmas[-1]


def test_classifier_samples_stream():
    gen = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    X = torch.randn(9, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (9,), generator=gen)
    names = tuple(n for n, _ in net.named_parameters())
    mon = SigmaMonitor(net, None, 1.0, window=4)
    for i in range(9):
        mon.push((X[i], y[i]))
    G = per_sample_scores(net, names, X, y).G
    assert mon.lambdas[-1] == pytest.approx(_dense_lambda(G[-4:]), rel=REL_TOL)


def test_top_eig_warm_matches_eigh():
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(30, 7, generator=gen, dtype=torch.float64)
    K = A @ A.T
    val, vec, _, ok = top_eig_warm(K, None, tol=1e-12)
    assert ok and val == pytest.approx(float(torch.linalg.eigvalsh(K)[-1]), rel=1e-10)


def test_calibration_quantile(byte_lm):
    names = NAMES
    ctx = torch.stack([_tokens(10, seed=s) for s in range(7)])
    base, tau, sig = calibrate(byte_lm, ctx, quantile=0.8, param_names=names)
    lams = []
    for c in ctx:
        G = per_token_scores(byte_lm, names, c[:-1], c[1:]).G
        lams.append(_dense_lambda(G))
    lams = np.array(lams)
    assert base == pytest.approx(lams.mean(), rel=1e-9)
    np.testing.assert_allclose(sig, lams / lams.mean(), rtol=1e-9)
    assert tau == pytest.approx(np.quantile(lams / lams.mean(), 0.8), rel=1e-12)
    # linear interpolation: τ lies between the order statistics around position q·(m−1)
    srt = np.sort(sig)
    assert srt[4] <= tau <= srt[5]
    base_m, _, _ = calibrate(byte_lm, ctx, quantile=0.5, param_names=names, statistic="median")
    assert base_m == pytest.approx(np.median(lams), rel=1e-9)


@pytest.mark.parametrize("kw", [dict(lambda_base=0.0), dict(lambda_base=float("nan")),
                                dict(lambda_base=1.0, window=0), dict(lambda_base=1.0, dtype=torch.int64)])
def test_monitor_bad_input(byte_lm, kw):
    lb = kw.pop("lambda_base")
    with pytest.raises(InputError):
        SigmaMonitor(byte_lm, None, lb, **kw)


def test_push_bad_input_and_calibrate_bad(byte_lm):
    mon = SigmaMonitor(byte_lm, None, 1.0)
    with pytest.raises(InputError):
        mon.push(torch.tensor([0.5]))
    with pytest.raises(InputError):
        mon.push_score(torch.ones(3))
    with pytest.raises(InputError):
        calibrate(byte_lm, [], quantile=0.5)
    with pytest.raises(InputError):
        calibrate(byte_lm, [_tokens(5)], quantile=1.5)
