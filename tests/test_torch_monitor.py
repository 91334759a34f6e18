"""The streaming σ_t monitor (torch_checks.monitor): streaming equals from-scratch dense λ_max,
with and without a window; calibration quantile; input validation. Tiny models, fast."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from fimtheory.errors import InputError  # noqa: E402
from torch_checks import models as M  # noqa: E402
from torch_checks import monitor as monitor_module  # noqa: E402
from torch_checks.monitor import SigmaMonitor, StreamStateError, calibrate, sigma_trace, top_eig_warm  # noqa: E402
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
        rows = G[:t] if window is None else G[max(0, t - window) : t]
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


@pytest.mark.parametrize(
    "kw",
    [
        dict(lambda_base=0.0),
        dict(lambda_base=float("nan")),
        dict(lambda_base=1.0, window=0),
        dict(lambda_base=1.0, dtype=torch.int64),
    ],
)
def test_monitor_bad_input(byte_lm, kw):
    kw = dict(kw)  # the parameter dict is shared by every run of the test in one process
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


# ---------------------------------------------------------------------- training mode


def _dropout_lm(seed=0):
    """A tiny causal LM with dropout: embedding → dropout → position-wise head."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Embedding(40, 6), torch.nn.Dropout(0.3), torch.nn.Linear(6, 40)).double()


def test_training_mode_is_refused_with_the_fix_named():
    lm = _dropout_lm().train()
    with pytest.raises(InputError, match=r"1 \(Dropout\) is in training mode.*model\.eval\(\).*training='eval'"):
        SigmaMonitor(lm, None, 1.0)
    with pytest.raises(InputError, match="training mode"):
        calibrate(lm, [_tokens(6) % 40], quantile=0.5)
    with pytest.raises(InputError, match="training must be one of"):
        SigmaMonitor(lm.eval(), None, 1.0, training="ignore")


def test_custom_module_in_training_mode_is_refused(byte_lm):
    byte_lm.train()
    try:
        with pytest.raises(InputError, match=r"the model \(ByteLM\).* are in training mode"):
            SigmaMonitor(byte_lm, NAMES, 1.0)
    finally:
        byte_lm.eval()


def test_model_put_back_in_training_mode_is_refused_at_push():
    lm = _dropout_lm().eval()
    mon = SigmaMonitor(lm, None, 1.0)
    mon.push([1, 2, 3])
    lm.train()
    with pytest.raises(InputError, match="SigmaMonitor.push needs a model in eval mode"):
        mon.push(4)


def test_training_eval_option_switches_and_matches_the_eval_reference():
    """With dropout active the monitor's λ would be that of a random sub-network; with
    training='eval' it equals the dense reference of the eval-mode model, and says so."""
    toks = _tokens(14) % 40
    lm = _dropout_lm().train()
    with pytest.warns(UserWarning, match="switched the model to eval mode"):
        mon = SigmaMonitor(lm, None, 1.0, training="eval")
    assert mon.switched_to_eval and not lm.training
    mon.push(toks)
    names = tuple(n for n, _ in lm.named_parameters())
    G = per_token_scores(lm, names, toks[:-1], toks[1:]).G
    for t in (3, 8, 13):
        ref = _dense_lambda(G[:t])
        assert abs(mon.lambdas[t - 1] - ref) <= REL_TOL * ref
    # the wrong numbers the refusal prevents: dropout on gives different scores
    lm.train()
    torch.manual_seed(1)
    G_drop = per_token_scores(lm, names, toks[:-1], toks[1:]).G
    lm.eval()
    assert abs(_dense_lambda(G_drop) - _dense_lambda(G)) > 1e-3 * _dense_lambda(G)


def test_pure_torch_layers_in_training_mode_are_accepted():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2)).double().train()
    mon = SigmaMonitor(net, None, 1.0)
    assert not mon.switched_to_eval and net.training


# ---------------------------------------------------------------------- truncation


def _truncated_reference(model, names, toks, max_context):
    """Row s = score of token s from its last ``max_context`` predecessors, from scratch."""
    rows = []
    for s in range(1, len(toks)):
        win = toks[max(0, s - max_context) : s + 1]
        rows.append(per_token_scores(model, names, win[:-1], win[1:]).G[-1])
    return torch.stack(rows)


@pytest.mark.parametrize("window", [None, 4])
def test_pushing_beyond_max_context_equals_truncated_recomputation(byte_lm, window):
    max_context = 6
    toks = _tokens(20, seed=7)
    mon = SigmaMonitor(byte_lm, NAMES, 1.0, max_context=max_context, window=window)
    mon.push(toks)
    G = _truncated_reference(byte_lm, NAMES, toks, max_context)
    G_full = per_token_scores(byte_lm, NAMES, toks[:-1], toks[1:]).G
    # the truncation matters: scores beyond max_context differ from the full-prefix ones
    assert float((G[max_context:] - G_full[max_context:]).abs().max()) > 1e-6
    # up to max_context predecessors nothing is cut: the same scores as the full prefix
    assert float((G[:max_context] - G_full[:max_context]).abs().max()) <= 1e-12 * float(G_full.abs().max())
    for t in (max_context + 1, max_context + 5, 12, 19):
        rows = G[:t] if window is None else G[max(0, t - window) : t]
        ref = _dense_lambda(rows)
        assert abs(mon.lambdas[t - 1] - ref) <= REL_TOL * ref, (t, mon.lambdas[t - 1], ref)
    # the scores stored by the monitor are the truncated ones
    stored = mon._G
    expect = G if window is None else G[-window:]
    assert float((stored - expect).abs().max()) <= 1e-12 * float(expect.abs().max())


def test_max_context_validation(byte_lm):
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="max_context"):
            SigmaMonitor(byte_lm, NAMES, 1.0, max_context=bad)


def _fresh_sigmas(model, toks, **kw):
    mon = SigmaMonitor(model, NAMES, 2.0, **kw)
    for t in toks:
        mon.push(int(t))
    return mon.sigmas


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("exc", [RuntimeError("simulated model error"), KeyboardInterrupt()])
def test_model_error_while_scoring_a_token_leaves_the_stream_as_before(byte_lm, window, exc):
    """The score of a token is computed before the score store changes: an exception from the
    model drops the failed token, and pushing it again continues exactly as a fresh stream."""
    toks = [int(t) for t in _tokens(8, seed=3)]
    mon = SigmaMonitor(byte_lm, NAMES, 2.0, window=window)
    mon.push(torch.tensor(toks[:4]))
    calls = []

    def hook(m, args, out):
        calls.append(1)
        raise exc

    h = byte_lm.ln_f.register_forward_hook(hook)
    try:
        with pytest.raises(type(exc)):
            mon.push(toks[4])
    finally:
        h.remove()
    assert calls == [1]
    for t in toks[4:]:
        mon.push(t)
    np.testing.assert_array_equal(mon.sigmas, _fresh_sigmas(byte_lm, toks, window=window))


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("exc", [RuntimeError("simulated out of memory"), KeyboardInterrupt()])
def test_exception_inside_the_update_marks_the_stream_until_reset(byte_lm, monkeypatch, window, exc):
    """An exception escaping push_score after the store started to change (here from the
    Lanczos step) marks the stream: push and push_score raise StreamStateError naming the
    original exception; after reset() the stream equals a fresh one on the same tokens."""
    toks = [int(t) for t in _tokens(8, seed=5)]
    mon = SigmaMonitor(byte_lm, NAMES, 2.0, window=window)
    mon.push(torch.tensor(toks[:5]))
    g = per_token_scores(byte_lm, NAMES, torch.tensor(toks[:5]), torch.tensor(toks[1:6])).G[-1]

    def failing(*a, **k):
        raise exc

    with monkeypatch.context() as mp:
        mp.setattr(monitor_module, "top_eig_warm", failing)
        with pytest.raises(type(exc)):
            mon.push(toks[5])
    name = type(exc).__name__
    for call in (lambda: mon.push(toks[6]), lambda: mon.push_score(g), lambda: mon.push((torch.zeros(3), 0))):
        with pytest.raises(StreamStateError, match=rf"raised {name}\b.*call reset\(\)"):
            call()
    assert issubclass(StreamStateError, RuntimeError)
    mon.reset()
    for t in toks:
        mon.push(t)
    np.testing.assert_array_equal(mon.sigmas, _fresh_sigmas(byte_lm, toks, window=window))
    # the model-free stream (sigma_trace's) is guarded the same way
    G = per_token_scores(byte_lm, NAMES, torch.tensor(toks[:-1]), torch.tensor(toks[1:])).G
    st = monitor_module._ScoreStream(G.shape[1], 2.0, window=window)
    with monkeypatch.context() as mp:
        mp.setattr(monitor_module, "top_eig_warm", failing)
        with pytest.raises(type(exc)):
            st.push_score(G[0])
    with pytest.raises(StreamStateError):
        st.push_score(G[0])
    st.reset()
    for row in G:
        st.push_score(row)
    np.testing.assert_array_equal(st.sigmas, sigma_trace(G, 2.0, window=window))


def test_bad_scores_and_tokens_do_not_mark_the_monitor(byte_lm):
    """Malformed scores/tokens raise InputError before anything changes."""
    toks = [int(t) for t in _tokens(6, seed=7)]
    mon = SigmaMonitor(byte_lm, NAMES, 2.0)
    mon.push(torch.tensor(toks[:3]))
    for bad in (torch.zeros(mon.P + 1), torch.full((mon.P,), float("nan"))):
        with pytest.raises(InputError):
            mon.push_score(bad)
    for bad in (1.5, torch.zeros(2, 2, dtype=torch.int64), (1, 2, 3)):
        with pytest.raises(InputError):
            mon.push(bad)
    for t in toks[3:]:
        mon.push(t)
    np.testing.assert_array_equal(mon.sigmas, _fresh_sigmas(byte_lm, toks))
