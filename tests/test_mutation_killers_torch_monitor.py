"""Mutation killers for torch_checks.monitor (the σ_t monitor and its warm-started Lanczos).

Each test was written from a surviving mutant of a mutmut run and checked to fail on that
mutant and pass on the original (docs/mutation_torch.md lists them). References are
independent of the code under test: dense float64 eigendecompositions (numpy), per-sample
autograd loops written here, closed forms.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from torch import nn  # noqa: E402

from fimtheory.errors import InputError  # noqa: E402
from torch_checks import monitor as MON  # noqa: E402

pytestmark = pytest.mark.torch

F64 = torch.float64


def _top(K):
    return float(np.linalg.eigvalsh(K.detach().double().numpy())[-1])


def _residual(K, val, vec):
    K, v = K.detach().double().numpy(), vec.detach().double().numpy()
    return float(np.linalg.norm(K @ v - val * v))


class _TinyLM(nn.Module):
    """Causal: logits at t depend on token t only (embedding → linear head)."""

    def __init__(self, vocab=7, dim=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, x):
        return self.head(self.emb(x))


def _autograd_token_rows(model, names, tokens):
    """Reference per-token scores: a float64 copy, one torch.autograd.grad per position."""
    ref = copy.deepcopy(model).double()
    params = dict(ref.named_parameters())
    rows = []
    for i in range(len(tokens) - 1):
        out = ref(torch.as_tensor(tokens[: i + 1])[None])[0, -1]
        lp = torch.log_softmax(out, dim=-1)[int(tokens[i + 1])]
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(lp, [params[n] for n in names])]))
    return torch.stack(rows)


# --------------------------------------------------------------------------------------
# top_eig_warm: a start that spans an invariant subspace without the top eigenvector
# --------------------------------------------------------------------------------------

_INVARIANT_STARTS = [
    # (K, start): the start lies in an invariant subspace of K that misses the top eigenvector
    (torch.diag(torch.tensor([1.0, 0.0, 0.0], dtype=F64)), torch.tensor([0.0, 1.0, 0.0], dtype=F64)),
    (torch.diag(torch.tensor([1.0, 2.0, 0.0, 3.0], dtype=F64)), torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=F64)),
    # K = Σ λ_i v_i v_iᵀ (λ = 10, 9.9, 0) with v_1 = 1/√3: λ_2 = 9.9 exceeds max diag(K) = 8.28,
    # so a diagonal floor cannot tell the wrong Ritz value; the start is v_2
    (None, None),
]


def _rotated_case():
    v1 = torch.ones(3, dtype=F64) / 3**0.5
    v2 = torch.tensor([1.0, -1.0, 0.0], dtype=F64) / 2**0.5
    K = 10.0 * torch.outer(v1, v1) + 9.9 * torch.outer(v2, v2)
    return K, v2.clone()


@pytest.mark.parametrize("case", range(len(_INVARIANT_STARTS)))
def test_top_eig_warm_start_in_an_invariant_subspace_missing_the_top(case):
    """A start whose Krylov space is invariant and misses the top eigenvector (e.g. orthogonal to
    the range of K) must not return that subspace's Ritz value as converged: the result is the
    dense float64 λ_max with a small residual, or it is reported as not converged."""
    K, start = _INVARIANT_STARTS[case]
    if K is None:
        K, start = _rotated_case()
    val, vec, it, ok = MON.top_eig_warm(K, start, tol=1e-12)
    assert ok, "the whole space is small: Lanczos must reach the top eigenvalue"
    assert val == pytest.approx(_top(K), rel=1e-12)
    assert _residual(K, val, vec) <= 1e-11 * val
    assert float(torch.linalg.vector_norm(vec)) == pytest.approx(1.0, abs=1e-12)
    assert it >= 1 and it <= K.shape[0]


def _diag(*d):
    return torch.diag(torch.tensor(d, dtype=F64))


#: (diagonal of K, start, Lanczos steps): invariant Krylov blocks, restarts and the Frobenius
#: certificate, shared by the two Lanczos routines with that handling (here and
#: test_mutation_killers_torch_streaming.py).
INVARIANT_BLOCK_CASES = [
    # start = the top eigenvector, but ‖K‖_F² − 3² = 4 + 5.29 > 3²: the rest of the spectrum is
    # not bounded below 3 by the Frobenius certificate, so Lanczos restarts and spans all 3
    ((3.0, 2.0, 2.3), (1.0, 0.0, 0.0), 3),
    # a 2-step invariant block {e1, e2} (β = 0.8): rest² = 2·4.65 = 9.3 > 9 → restart; the next
    # block (c·I on {e3, e4}) is invariant after one step and rest² = 4.65 < 9 → certified at 3
    ((3.0, 1.0, 4.65**0.5, 4.65**0.5), (1.0, 2.0, 0.0, 0.0), 3),
    # the same block with rest² = 8 ≤ 9: certified after 2 steps, no restart
    ((3.0, 1.0, 2.0, 2.0), (1.0, 2.0, 0.0, 0.0), 2),
    # top eigenvector start, rest² = 12 > 9 → restart; the second block (2·I) is invariant
    # after one step and the certificate holds (rest² = 8): the kept first block is the answer
    ((3.0, 2.0, 2.0, 2.0), (1.0, 0.0, 0.0, 0.0), 2),
    ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), 3),
    ((1.0, 2.0, 0.0, 3.0), (1.0, 0.0, 1.0, 0.0), 4),
    # the invariant block {e1, e2} ends one step before the whole space
    ((1.0, 2.0, 5.0), (1.0, 1.0, 0.0), 3),
]


@pytest.mark.parametrize("d, start, steps", INVARIANT_BLOCK_CASES)
def test_top_eig_warm_invariant_blocks_step_counts(d, start, steps):
    """Step counts of the invariant-subspace handling, from the Frobenius certificate
    rest = (‖K‖_F² − Σ‖T_block‖_F²)^½ computed by hand for each case (see the comments): the
    value is the dense λ_max and the vector its eigenvector, whatever the path."""
    K = _diag(*d)
    val, vec, it, ok = MON.top_eig_warm(K, torch.tensor(start, dtype=F64), tol=1e-12)
    assert (val, it, ok) == (pytest.approx(max(d), rel=1e-14), steps, True)
    top = int(np.argmax(d))
    assert abs(float(vec[top])) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_top_eig_warm_breakdown_convergence_flag_is_the_residual_test(scale):
    """At an invariant breakdown (certified) and at the whole space, the pair is converged only
    when ‖K y − θ y‖ ≤ tol·|θ|, the documented test, and never on a relaxed one: a residual at
    rounding level (~1e-16·θ) meets tol = 1e-13 at every scale, and misses a tol ten times below
    it (where the value's error may exceed tol), so the caller falls back to a dense solver."""
    A = torch.tensor([[1.0, 0.2, -0.4], [0.3, 1.5, 0.1], [-0.7, 0.2, 0.9]], dtype=F64)
    cases = [
        (scale * _diag(3.0, 1.0, 2.0, 2.0), torch.tensor([1.0, 2.0, 0.0, 0.0], dtype=F64), 2),  # certified
        (scale * (A @ A.T), None, 3),  # the whole space
    ]
    for K, start, steps in cases:
        val, vec, _, _ = MON.top_eig_warm(K, start, tol=1e-13)
        res = _residual(K, val, vec)
        assert 0 < res <= 1e-14 * val  # rounding level
        for tol, want in ((1e-13, True), (res / val / 10, False), (1e-21, False)):
            val, vec, it, ok = MON.top_eig_warm(K, start, tol=tol)
            assert (it, ok) == (steps, want), (tol, res / val)
            assert val == pytest.approx(_top(K), rel=1e-13)


def test_top_eig_warm_default_max_iter_is_60():
    """t = 61 with a tolerance no Ritz pair can meet: 60 steps by default, then not converged."""
    K = torch.diag(torch.arange(1.0, 62.0, dtype=F64))
    val, vec, it, ok = MON.top_eig_warm(K, None, tol=1e-300)
    assert (it, ok) == (60, False)
    assert MON.top_eig_warm(K, None, tol=1e-300, max_iter=61)[2] == 61


# --------------------------------------------------------------------------------------
# SigmaMonitor / _ScoreStream: buffers, warm start after a zero score, seeded noise, dtypes
# --------------------------------------------------------------------------------------


def _dense_lam(G):
    G = G.detach().double().numpy()
    return float(np.linalg.eigvalsh(G @ G.T / G.shape[0])[-1])


def _stream_caps(window, n=120, P=5, seed=0):
    m = MON._ScoreStream(P, 1.0, window=window)
    g = torch.Generator().manual_seed(seed)
    rows, caps = [], []
    for _ in range(n):
        rows.append(torch.randn(P, generator=g, dtype=F64))
        m.push_score(rows[-1])
        caps.append(m._Gbuf.shape[0])
        assert m._Kbuf.shape == (caps[-1], caps[-1])
    G = torch.stack(rows)
    ref = [_dense_lam(G[(0 if window is None else max(0, t - window)) : t]) for t in range(1, n + 1)]
    np.testing.assert_allclose(m.lambdas, ref, rtol=1e-9)
    return caps


def test_monitor_buffers_double_when_full():
    """No window: capacity 16, doubled whenever full (the smallest 16·2^k ≥ n after n pushes)."""
    caps = _stream_caps(None)
    assert caps == [16 * 2 ** max(0, math.ceil(math.log2(n / 16))) for n in range(1, 121)]


@pytest.mark.parametrize("window", [1, 3, 7, 20])
def test_monitor_window_buffers_start_at_window_plus_one_and_stay_bounded(window):
    """A window W starts with min(16, W + 1) rows; rows dropped at the front are reused
    (compaction), so the capacity stops growing: at most 4(W + 1) rows, constant after 4W pushes."""
    caps = _stream_caps(window)
    assert caps[0] == min(16, window + 1)
    assert max(caps) <= 4 * (window + 1)
    assert len(set(caps[4 * window :])) == 1


def test_monitor_after_a_zero_first_score_needs_no_fallback():
    """A zero first score gives λ = 0 and a zero previous eigenvalue: the next start is the
    all-ones vector (no division by λ = 0), so no push falls back to eigh."""
    g = torch.Generator().manual_seed(4)
    rows = [torch.zeros(6, dtype=F64)] + [torch.randn(6, generator=g, dtype=F64) for _ in range(6)]
    m = MON._ScoreStream(6, 2.0)
    for r in rows:
        m.push_score(r)
    G = torch.stack(rows)
    assert m.lambdas[0] == 0.0
    np.testing.assert_allclose(m.lambdas[1:], [_dense_lam(G[:t]) for t in range(2, 8)], rtol=1e-10)
    assert m.fallbacks == 0


def test_monitor_noise_is_seeded_per_stream_and_by_reset():
    """The warm start's random component comes from the stream's own seeded generator: two
    streams (and one stream after reset) give bit-identical λ's and iteration counts, whatever
    the global torch seed."""
    g = torch.Generator().manual_seed(5)
    G = torch.randn(25, 30, generator=g, dtype=F64)
    out = []
    for seed in (0, 123):
        torch.manual_seed(seed)
        m = MON._ScoreStream(30, 1.0)
        for r in G:
            m.push_score(r)
        out.append((list(m.lambdas), list(m.iterations)))
        torch.manual_seed(seed + 7)
        m.reset()
        for r in G:
            m.push_score(r)
        out.append((list(m.lambdas), list(m.iterations)))
    assert all(o == out[0] for o in out)
    np.testing.assert_allclose(out[0][0], [_dense_lam(G[:t]) for t in range(1, 26)], rtol=1e-9)


def test_float32_monitor_runs_in_float32():
    g = torch.Generator().manual_seed(6)
    G = torch.randn(12, 9, generator=g, dtype=F64)
    m = MON._ScoreStream(9, 1.0, dtype=torch.float32, tol=1e-5)
    for r in G:
        m.push_score(r.float())
    assert m._Gbuf.dtype == torch.float32 and m._u.dtype == torch.float32
    np.testing.assert_allclose(m.lambdas, [_dense_lam(G[:t]) for t in range(1, 13)], rtol=1e-4)
    sig = MON.sigma_trace(G.float(), 2.0, tol=1e-5)
    np.testing.assert_allclose(sig, [_dense_lam(G[:t]) / 2.0 for t in range(1, 13)], rtol=1e-4)


def test_score_stream_without_a_model_refuses_push():
    m = MON._ScoreStream(3, 1.0)
    with pytest.raises(InputError) as exc:
        m.push(1)
    assert str(exc.value) == "this stream has no model; use push_score"


def test_monitor_default_max_iter_is_60_steps_per_push():
    """61 scores of length 70 with a tolerance no Ritz pair meets: push 61 stops after 60
    Lanczos steps (the default) and falls back to eigh — the value is still the dense one."""
    g = torch.Generator().manual_seed(7)
    G = torch.randn(61, 70, generator=g, dtype=F64)
    m = MON._ScoreStream(70, 1.0, tol=1e-300)
    torch.manual_seed(16)
    lm = _TinyLM(vocab=11, dim=6).double().eval()
    mon = MON.SigmaMonitor(lm, None, 1.0, tol=1e-300)
    assert mon.P == 11 * 6 + 6 * 11 + 11
    Gm = torch.randn(61, mon.P, generator=g, dtype=F64)
    for r, rm in zip(G, Gm):
        m.push_score(r)
        mon.push_score(rm)
    for stream, rows in ((m, G), (mon, Gm)):
        assert stream.iterations[-1] == 60 and stream.fallbacks == 60  # t = 1: the whole space
        assert stream.lambdas[-1] == pytest.approx(_dense_lam(rows), rel=1e-12)


def test_classifier_sample_tensors_that_numpy_cannot_hold():
    """x given as a tensor is used as a tensor: one that requires grad, or is bfloat16, works
    (np.asarray would refuse both); the score equals the autograd reference."""
    torch.manual_seed(9)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double().eval()
    names = ["2.weight", "2.bias"]
    x = torch.randn(4, dtype=F64, requires_grad=True)
    xb = torch.randn(4).to(torch.bfloat16)
    mon = MON.SigmaMonitor(net, names, 1.0)
    mon.push((x, 1))
    mon.push((xb, 2))
    ref = copy.deepcopy(net)
    params = dict(ref.named_parameters())
    rows = []
    for xi, yi in ((x.detach(), 1), (xb.double(), 2)):
        lp = torch.log_softmax(ref(xi[None]).reshape(-1), dim=-1)[yi]
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(lp, [params[n] for n in names])]))
    assert mon.lambdas[-1] == pytest.approx(_dense_lam(torch.stack(rows)), rel=1e-12)


def test_classifier_sample_keeps_no_autograd_graph():
    """The stored scores are data: no autograd graph through x is kept from push to push."""
    torch.manual_seed(9)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double().eval()
    mon = MON.SigmaMonitor(net, ["2.weight", "2.bias"], 1.0)
    for k in range(3):
        mon.push((torch.randn(4, dtype=F64, requires_grad=True), k))
    assert not mon._Gbuf.requires_grad and not mon._Kbuf.requires_grad


def test_push_score_keeps_no_autograd_graph():
    w = torch.randn(6, dtype=F64, requires_grad=True)
    m = MON._ScoreStream(6, 1.0)
    for k in range(3):
        m.push_score(w * (k + 1.0) + k)
    assert not m._Gbuf.requires_grad and not m._Kbuf.requires_grad and not m._u.requires_grad
    G = torch.stack([w.detach() * (k + 1.0) + k for k in range(3)])
    assert m.lambdas[-1] == pytest.approx(_dense_lam(G), rel=1e-12)


def test_sigma_trace_passes_its_tolerance_on():
    """A loose tol (0.5) stops Lanczos early: some σ differs from the tight-tol value (which is the
    dense one), yet each is within the documented bound of an eigenvalue of K_t / t."""
    g = torch.Generator().manual_seed(10)
    G = torch.randn(20, 40, generator=g, dtype=F64)
    tight = MON.sigma_trace(G, 1.0)
    loose = MON.sigma_trace(G, 1.0, tol=0.5)
    ref = np.array([_dense_lam(G[:t]) for t in range(1, 21)])
    np.testing.assert_allclose(tight, ref, rtol=1e-9)
    assert np.max(np.abs(loose - ref) / ref) > 1e-9
    assert np.all(loose <= ref * (1 + 1e-12))


@pytest.mark.parametrize("window", [3, 7, 20])
def test_monitor_window_compaction_is_amortised(window):
    """Rows dropped at the front are reclaimed by moving the active block to the front, which
    copies up to W rows; the buffer grows instead when the block fills more than half of it, so
    the copying stays amortised: at most 2 rows copied per push on average."""
    m = MON._ScoreStream(4, 1.0, window=window)
    g = torch.Generator().manual_seed(11)
    heads, n = [], 200
    for _ in range(n):
        m.push_score(torch.randn(4, generator=g, dtype=F64))
        heads.append(m._head)
    compactions = sum(1 for a, b in zip(heads, heads[1:]) if b < a)
    assert compactions >= 1
    assert compactions * window <= 2 * n


@pytest.mark.parametrize("scale", [1e8, 1e-8])
def test_top_eig_warm_breakdown_threshold_is_relative_to_the_norm_of_K(scale):
    """At ‖K‖ ~ 1e9 the rounding-level β after one step from an eigenvector is ~1e-7: still an
    invariant subspace (β ≤ 1e-14·‖K‖_F), so the restart must happen and find λ_max = 10·scale."""
    K, start = _rotated_case()
    val, vec, it, ok = MON.top_eig_warm(scale * K, start, tol=1e-12)
    assert ok and val == pytest.approx(10.0 * scale, rel=1e-12) and it == 3


def test_top_eig_warm_restart_is_seeded_and_keeps_the_dtype():
    """The restart vector comes from top_eig_warm's own seeded generator: bit-identical results
    whatever the global torch seed; a float32 K restarts in float32."""
    K, start = _rotated_case()
    K = K + 0.3 * torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, -0.2], [0.5, -0.2, 0.0]], dtype=F64)
    w, V = np.linalg.eigh(K.numpy())
    start = torch.from_numpy(V[:, 0].copy())  # an eigenvector of the smallest eigenvalue
    outs = []
    for seed in (0, 1, 99):
        torch.manual_seed(seed)
        val, vec, it, ok = MON.top_eig_warm(K, start, tol=1e-12)
        outs.append((val, vec.tolist(), it, ok))
    assert outs[0] == outs[1] == outs[2]
    assert outs[0][0] == pytest.approx(w[-1], rel=1e-12) and outs[0][2] > 1
    val, vec, it, ok = MON.top_eig_warm(K.float(), start.float(), tol=1e-5)
    assert vec.dtype == torch.float32 and val == pytest.approx(w[-1], rel=1e-5) and it > 1


def test_top_eig_warm_step_budget_ends_during_a_restart():
    """diag(3, 2, 2.3) from e1 with max_iter = 2: step 1 is an uncertified invariant block
    (θ = 3), step 2 the first step of the restart (a Ritz value in [2, 2.3]); the budget ends
    there: the best pair so far (3, ±e1) is returned, not converged."""
    val, vec, it, ok = MON.top_eig_warm(_diag(3.0, 2.0, 2.3), torch.tensor([1.0, 0.0, 0.0], dtype=F64), max_iter=2)
    assert (val, it, ok) == (3.0, 2, False)
    assert torch.equal(vec.abs(), torch.tensor([1.0, 0.0, 0.0], dtype=F64))


def test_sigma_trace_streams_in_the_dtype_of_G():
    """sigma_trace is a model-free monitor in G's dtype: for a float32 G it equals, bit for bit, a
    float32 stream of the same rows."""
    g = torch.Generator().manual_seed(12)
    G = torch.randn(10, 7, generator=g, dtype=F64).float()
    m = MON._ScoreStream(7, 2.0, dtype=torch.float32, tol=1e-5)
    for r in G:
        m.push_score(r)
    np.testing.assert_array_equal(MON.sigma_trace(G, 2.0, tol=1e-5), np.asarray(m.sigmas))


# --------------------------------------------------------------------------------------
# require_eval_mode: the refusal accounts for every module in training mode
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 5, 6])
def test_require_eval_mode_names_four_modules_and_counts_the_rest(k):
    """k dropout layers in training mode (inside an eval-mode container): the message names the
    first min(k, 4) and counts the other k − 4 ("and 1 more" for exactly five)."""
    model = nn.Sequential(*[nn.Dropout(0.1) for _ in range(k)])
    model.training = False  # the container itself is mode-independent
    with pytest.raises(InputError) as exc:
        MON.require_eval_mode(model, what="X")
    msg = str(exc.value)
    named = [i for i in range(k) if f"{i} (Dropout)" in msg]
    assert named == list(range(min(k, 4)))
    rest = f" and {k - 4} more" if k > 4 else ""
    shown = ", ".join(f"{i} (Dropout)" for i in range(min(k, 4))) + rest
    assert f"X needs a model in eval mode, but {shown} {'is' if k == 1 else 'are'} in training mode" in msg


def test_top_eig_warm_float32_breakdown_is_detected():
    """In float32 an invariant Krylov space leaves β at rounding level (~1e-7‖K‖), far above
    1e-14‖K‖_F: the breakdown must still be seen, or the Ritz value 9.9 of the start v2 is
    returned as converged for 10·v1v1ᵀ + 9.9·v2v2ᵀ (true λ_max 10)."""
    K, start = _rotated_case()
    val, vec, it, ok = MON.top_eig_warm(K.float(), start.float(), tol=1e-6)
    assert ok and vec.dtype == torch.float32
    assert val == pytest.approx(_top(K), rel=1e-5)


# --------------------------------------------------------------------------------------
# The seeded orthogonal restart shared by top_eig_warm and streaming._lanczos_top
# --------------------------------------------------------------------------------------


def restart_reference(bases):
    """Independent reference of the restart vectors of one Lanczos run: the j-th is the j-th
    float64 randn(n) draw of one CPU generator seeded 0, projected off the rows of the j-th basis
    with the dense projector I − BᵀB (numpy) and normalised."""
    g = torch.Generator().manual_seed(0)
    out = []
    for B in bases:
        B = B.detach().double().cpu().numpy()
        d = torch.randn(B.shape[1], generator=g, dtype=F64).numpy()
        r = d - B.T @ (B @ d)
        out.append(r / np.linalg.norm(r))
    return out


def restart_spy(monkeypatch, module):
    """Record every call of ``module._orthogonal_restart`` (basis, generator in, vector, generator out)."""
    calls = []
    real = module._orthogonal_restart

    def spy(basis, rng):
        rng_in = rng
        vec, rng_out = real(basis, rng)
        calls.append((basis.clone(), rng_in, vec.clone(), rng_out))
        return vec, rng_out

    monkeypatch.setattr(module, "_orthogonal_restart", spy)
    return calls


def check_restarts(calls):
    """The restarts of one run: the first makes the seeded generator, each later one continues
    the generator the previous one returned; each vector is the reference (seeded draws projected
    off the spanned space), orthogonal to it, and becomes the next Lanczos vector (a row of the
    next restart's basis)."""
    assert calls and calls[0][1] is None
    for j, (basis, rng_in, _vec, rng_out) in enumerate(calls):
        assert isinstance(rng_out, torch.Generator) and rng_out.device.type == "cpu"
        if j:
            assert rng_in is calls[j - 1][3] and rng_out is rng_in
            prev = calls[j - 1][2]
            assert any(torch.equal(row, prev) for row in basis), "the restart vector starts the next block"
    ref = restart_reference([c[0] for c in calls])
    for (basis, _, vec, _), r in zip(calls, ref):
        v = vec.detach().double().numpy()
        assert np.max(np.abs(v - r)) <= 1e-12, (v, r)
        assert float(np.max(np.abs(basis.double().numpy() @ v))) <= 1e-14


def test_orthogonal_restart_is_the_next_seeded_draws_projected_off_the_basis():
    """Direct: an orthonormal basis (numpy QR), two restarts of one run (the second basis holds
    the first vector), the global torch seed changed between them; float64 to 1e-12 of the
    reference, a float32 basis gives a float32 vector within float32 rounding of it."""
    Q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((7, 3)))
    B1 = torch.from_numpy(Q.T.copy())
    torch.manual_seed(11)
    v1, g1 = MON._orthogonal_restart(B1, None)
    B2 = torch.cat([B1, v1[None]])
    torch.manual_seed(12)
    v2, g2 = MON._orthogonal_restart(B2, g1)
    assert g2 is g1 and v1.dtype == F64 and v1.shape == (7,)
    r1, r2 = restart_reference([B1, B2])
    assert np.max(np.abs(v1.numpy() - r1)) <= 1e-12 and np.max(np.abs(v2.numpy() - r2)) <= 1e-12
    assert float(torch.linalg.vector_norm(v2)) == pytest.approx(1.0, abs=1e-14)
    v32, _ = MON._orthogonal_restart(B1.float(), None)
    assert v32.dtype == torch.float32 and np.max(np.abs(v32.double().numpy() - r1)) <= 1e-6


def test_top_eig_warm_restarts_continue_one_seeded_generator(monkeypatch):
    """diag(1, 3, 3, 3, 3) from e1: a breakdown after every step (the 3-eigenspace holds every
    restart's Krylov space), so the run restarts three times or more; every restart is the
    reference vector of one seeded generator, and λ_max = 3 converged."""
    calls = restart_spy(monkeypatch, MON)
    val, vec, it, ok = MON.top_eig_warm(_diag(1.0, 3.0, 3.0, 3.0, 3.0), torch.eye(5, dtype=F64)[0], tol=1e-12)
    assert ok and val == pytest.approx(3.0, rel=1e-14) and abs(float(vec[0])) <= 1e-14
    assert len(calls) >= 3
    check_restarts(calls)


# --------------------------------------------------------------------------------------
# SigmaMonitor buffers: the compaction / doubling rule of _make_room
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [2, 3, 4, 5, 6, 16, 17])
def test_monitor_buffer_compacts_exactly_when_the_copy_leaves_as_many_rows_free(window):
    """Every push's buffer event against the documented rule: when the buffer is full after the
    window's drop, the c active rows are moved to the front iff rows were dropped (head > 0) and
    c ≤ capacity − c, else the capacity doubles; with room, nothing moves. λ_t against dense
    eigvalsh of the window."""
    P, n = 3, 3 * window + 20
    m = MON._ScoreStream(P, 1.0, window=window)
    g = torch.Generator().manual_seed(window)
    rows, events = [], []
    for _ in range(n):
        h, c, cap = m._head, m._count, m._Gbuf.shape[0]
        if c == window:  # the oldest score leaves the window first
            h, c = h + 1, c - 1
        if h + c < cap:
            want = (h, cap)
        elif h > 0 and c <= cap - c:
            want = (0, cap)
        else:
            want = (0, 2 * cap)
        rows.append(torch.randn(P, generator=g, dtype=F64))
        m.push_score(rows[-1])
        events.append("compact" if want == (0, cap) and h > 0 and h + c >= cap else "")
        assert (m._head, m._Gbuf.shape[0], m._count) == (*want, c + 1)
        assert m._Kbuf.shape == (want[1], want[1])
    assert "compact" in events, "the stream must reach a compaction"
    G = torch.stack(rows)
    np.testing.assert_allclose(m.lambdas, [_dense_lam(G[max(0, t - window) : t]) for t in range(1, n + 1)], rtol=1e-9)


# --------------------------------------------------------------------------------------
# SigmaMonitor.push_score: the warm start and the diagonal floor
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale, window", [(0.05, None), (0.05, 4), (3.0, None)])
def test_monitor_warm_start_is_the_documented_vector(monkeypatch, scale, window):
    """The start handed to top_eig_warm at every push, against the module docstring's formula
    computed here: s = [u, k_newᵀu/λ] from the previous push's unit top eigenvector u (checked
    against dense eigh) and unnormalised λ (or all ones for the first score), then
    s/‖s‖ + 10⁻²·ξ/√t with ξ the next t draws of a float64 generator seeded 0. Small scores
    (scale 0.05) keep λ < 1, where the warm start must still be used."""
    calls = []
    real = MON.top_eig_warm

    def spy(K, start, **kw):
        out = real(K, start, **kw)
        calls.append((K.clone(), start.clone(), out))
        return out

    monkeypatch.setattr(MON, "top_eig_warm", spy)
    P = 7
    m = MON._ScoreStream(P, 1.0, window=window)
    g = torch.Generator().manual_seed(8)
    noise = torch.Generator().manual_seed(0)
    rows = [scale * torch.randn(P, generator=g, dtype=F64) for _ in range(12)]
    for i, r in enumerate(rows):
        m.push_score(r)
        K, start, (val, vec, _, _) = calls[-1]
        t = K.shape[0]
        lo = 0 if window is None else max(0, i + 1 - window)
        Gw = torch.stack(rows[lo : i + 1]).numpy()
        np.testing.assert_allclose(K.numpy(), Gw @ Gw.T, rtol=1e-13, atol=1e-300)
        if i == 0:
            s = np.ones(1)
        else:
            pK, _, (pval, pvec, _, _) = calls[-2]
            w, V = np.linalg.eigh(pK.numpy())
            assert pval == pytest.approx(w[-1], rel=1e-9) and abs(float(pvec.numpy() @ V[:, -1])) == pytest.approx(1.0)
            u = pvec.numpy()[1:] if (window is not None and i >= window) else pvec.numpy()
            s = np.append(u, K.numpy()[-1, :-1] @ u / pval)
        xi = torch.randn(t, generator=noise, dtype=F64).numpy()
        ref = s / np.linalg.norm(s) + 1e-2 * xi / math.sqrt(t)
        np.testing.assert_allclose(start.numpy(), ref, rtol=0, atol=1e-13)
    assert m.fallbacks == 0 and (scale > 1 or max(m.lambdas) * 12 < 1.0)


def test_monitor_falls_back_when_lanczos_converges_below_the_largest_diagonal_entry(monkeypatch):
    """A planted Lanczos failure: top_eig_warm returns the smallest eigenpair of K_t, converged
    (an exact eigenpair, as Lanczos from an unlucky start can return). Its value is below
    max diag(K_t) ≤ λ_max for every t ≥ 2 here, so every such push must fall back to dense eigh:
    λ_t is the dense float64 λ_max, and fallbacks counts those pushes."""

    def bottom(K, start, **kw):
        w, V = torch.linalg.eigh(K)
        return float(w[0]), V[:, 0], 1, True

    monkeypatch.setattr(MON, "top_eig_warm", bottom)
    g = torch.Generator().manual_seed(9)
    G = torch.randn(8, 5, generator=g, dtype=F64)
    m = MON._ScoreStream(5, 1.0)
    low = 0
    for t in range(1, 9):
        m.push_score(G[t - 1])
        K = (G[:t] @ G[:t].T).numpy()
        low += bool(np.linalg.eigvalsh(K)[0] < K.diagonal().max() * (1 - 1e-12))
    assert low == 7 and m.fallbacks == low
    np.testing.assert_allclose(m.lambdas, [_dense_lam(G[:t]) for t in range(1, 9)], rtol=1e-12)


def test_context_lambda_max_is_the_gram_eigh(monkeypatch):
    """context_lambda_max takes Λ from the dense Gram eigh (its docstring), also where lambda_max's
    "auto" would take the dense-F path (P ≤ n: here the P = 5 head biases, n = 11 scores): the method
    used is "gram" and Λ is the float64 eigvalsh of the autograd rows' Gram matrix."""
    used = []
    real = MON._lambda_max

    def spy(G, **kw):
        r = real(G, **kw)
        used.append(r.method)
        return r

    monkeypatch.setattr(MON, "_lambda_max", spy)
    torch.manual_seed(2)
    lm = _TinyLM(vocab=5, dim=3).double().eval()
    tokens = torch.tensor([0, 3, 1, 4, 4, 2, 0, 1, 3, 2, 2, 1])
    lam = MON.context_lambda_max(lm, tokens, ["head.bias"])
    rows = _autograd_token_rows(lm, ["head.bias"], tokens.tolist())
    assert rows.shape == (11, 5)
    assert used == ["gram"]
    assert lam == pytest.approx(_dense_lam(rows), rel=1e-12)


# --------------------------------------------------------------------------------------
# top_eig_warm: the convergence flag and the tests at their boundaries (exact arithmetic)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", [1.0, 0.1])
@pytest.mark.parametrize("b", [1e-14, 4e-14])
@pytest.mark.parametrize("tol", [1e-15, 3e-15, 1e-14, 1e-13])
def test_top_eig_warm_converged_flag_is_the_residual_test_of_the_returned_pair(c, b, tol):
    """c·[[3, b, 0], [b, 1, 0], [0, 0, 2.9]] from e1: β = c·b is a breakdown (b ≤ 1e-14‖K‖_F/c),
    so the returned pair is the finished block's (3c, e1), whose residual is c·b, while the
    restarted block's pair converges. converged must be the docstring's relative test on the
    returned pair, ‖K y − θ y‖ ≤ tol·|θ| (False for 3·tol < b, at either scale), not the current
    block's."""
    K = c * torch.tensor([[3.0, b, 0.0], [b, 1.0, 0.0], [0.0, 0.0, 2.9]], dtype=F64)
    assert c * b <= 1e-14 * float(torch.linalg.matrix_norm(K))
    val, vec, it, ok = MON.top_eig_warm(K, torch.tensor([1.0, 0.0, 0.0], dtype=F64), tol=tol)
    assert val == pytest.approx(_top(K), rel=1e-15) and abs(float(vec[0])) == 1.0
    assert ok == (_residual(K, val, vec) <= tol * val) == (tol * 3.0 >= b * (1 + 1e-12))


def test_top_eig_warm_stops_when_the_residual_equals_tol_theta():
    """The stop test is ‖K y − θ y‖ ≤ tol·|θ| (non-strict): K = [[1, 1/4], [1/4, 1/2]] from e1,
    exact in binary: the first Ritz pair is (1, e1) with residual exactly 1/4, so tol = 1/4 stops
    after one step, converged; a tol one ulp below does not (the 2 × 2 answer after step 2)."""
    K = torch.tensor([[1.0, 0.25], [0.25, 0.5]], dtype=F64)
    e1 = torch.tensor([1.0, 0.0], dtype=F64)
    val, vec, it, ok = MON.top_eig_warm(K, e1, tol=0.25)
    assert (val, vec.tolist(), it, ok) == (1.0, [1.0, 0.0], 1, True)
    val, vec, it, ok = MON.top_eig_warm(K, e1, tol=float(np.nextafter(0.25, 0.0)))
    assert it == 2 and ok and val == pytest.approx(_top(K), rel=1e-14)


@pytest.mark.parametrize(
    "d, steps",
    [
        ((3.0, 1.0, 1.0), 1),  # certified by the Frobenius bound √2 ≤ 3 after one step
        ((3.0, 2.0, 2.3), 3),  # a restart, then the whole space: the kept exact pair is returned
    ],
)
def test_top_eig_warm_tol_zero_accepts_an_exact_eigenpair(d, steps):
    """tol = 0 is met only by a residual of exactly 0 (the test is ≤): from e1 the first block of
    a diagonal K is the exact eigenpair (d_1, e1), returned converged whether the Frobenius bound
    certifies it at once or the whole space is spanned first (where the current block's pair has
    a rounding-level residual, not 0)."""
    K = _diag(*d)
    val, vec, it, ok = MON.top_eig_warm(K, torch.eye(len(d), dtype=F64)[0], tol=0.0)
    assert (val, it, ok) == (d[0], steps, True) and vec.tolist() == [1.0] + [0.0] * (len(d) - 1)


def test_top_eig_warm_breakdown_at_exactly_the_threshold_restarts(monkeypatch):
    """β ≤ 1e-14‖K‖_F is a breakdown, the boundary included: K = [[3, b], [b, 4]] with
    b = 1e-14·‖K‖_F exactly (‖K‖_F = 5 in floating point) from e1 gives β = b after one step: a
    restart (seen by a spy on the restart helper), then λ_max = 4 converged."""
    b = 1e-14 * 5.0
    K = torch.tensor([[3.0, b], [b, 4.0]], dtype=F64)
    assert float(torch.linalg.matrix_norm(K)) == 5.0
    calls = restart_spy(monkeypatch, MON)
    val, vec, it, ok = MON.top_eig_warm(K, torch.tensor([1.0, 0.0], dtype=F64), tol=1e-12)
    assert len(calls) == 1 and it == 2 and ok and val == pytest.approx(4.0, rel=1e-15)


def test_top_eig_warm_no_restart_when_the_frobenius_bound_equals_the_ritz_value(monkeypatch):
    """The restart happens only when (‖K‖_F² − ‖T‖_F²)^½ > the best Ritz value: K = 1.125·I₂ from
    e1, where that bound is exactly 1.125 in floating point, stops after one step, no restart."""
    K = 1.125 * torch.eye(2, dtype=F64)
    assert max(float(torch.linalg.matrix_norm(K)) ** 2 - 1.125**2, 0.0) ** 0.5 == 1.125
    calls = restart_spy(monkeypatch, MON)
    val, vec, it, ok = MON.top_eig_warm(K, torch.tensor([1.0, 0.0], dtype=F64), tol=1e-12)
    assert (val, it, ok, len(calls)) == (1.125, 1, True, 0)
