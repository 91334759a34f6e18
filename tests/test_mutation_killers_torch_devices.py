"""Device killers for the torch code, on the CPU: every tensor follows its inputs' device.

The torch verdict code promises that its results live on the device of its inputs (the model's
device for scores, the weight's device for the quantizers, K's device for the Lanczos routines)
and that the small CPU-side work (the tridiagonal eigenproblems, the seeded restart and noise
draws) stays on the CPU. Two CPU-only ways to check that, each a real property:

* a model (or tensor) on the ``meta`` device with CPU inputs: the result must be on ``meta``
  (shapes and dtypes as on the CPU); a CPU input not moved to the model's device, or a buffer
  created without a device, mixes meta with CPU tensors and raises;
* CPU inputs under ``with torch.device("meta"):`` (a default device, as
  ``torch.set_default_device("cuda")`` in a user's script): the results must be bit for bit
  those without it, on the CPU; a tensor created without an explicit device lands on meta.

Mutants that move a tensor with ``.to(None)`` (a no-op whatever the default device) differ only
when the input is on a second real device with data: those stay open as "needs a GPU"
(docs/mutation_torch.md). References: the same call without a default device (CPU float64,
itself checked against dense eigvalsh / numpy / autograd references in the other test files).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from test_mutation_killers_torch import _TinyLM, _TokenClassifier  # noqa: E402
from test_mutation_killers_torch_streaming import _PlainLM  # noqa: E402
from torch import nn  # noqa: E402

from fimtheory import quantize as NQ  # noqa: E402
from fimtheory.errors import InputError  # noqa: E402
from torch_checks import monitor as MON  # noqa: E402
from torch_checks import quantizers as TQ  # noqa: E402
from torch_checks import scores as S  # noqa: E402
from torch_checks import streaming as STR  # noqa: E402

pytestmark = pytest.mark.torch

F64 = torch.float64
META = torch.device("meta")


def _same(a, b):
    """Equal bit for bit (tensors: device, dtype, shape and values; tuples element-wise)."""
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.device == b.device
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(torch.equal(a, b))
        )
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b)
    return a == b


class _ScaledMLP(nn.Module):
    """Float inputs (n, 5) scaled elementwise by a parameter (an input left on another device
    than the parameters raises: meta kernels check devices in elementwise ops, not in matmuls
    or index lookups)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 5))
        self.lin1 = nn.Linear(5, 4)
        self.lin2 = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin2(torch.tanh(self.lin1(x * self.scale)))


class _GainLM(nn.Module):
    """Causal LM whose logits at t add gain · x_t to the head (the token id itself enters an
    elementwise op with a parameter)."""

    def __init__(self, vocab=7, dim=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)
        self.gain = nn.Parameter(torch.linspace(-0.1, 0.1, vocab))

    def forward(self, x):
        return self.head(self.emb(x)) + x.unsqueeze(-1).to(self.gain.dtype) * self.gain


# --------------------------------------------------------------------------------------
# torch_checks.scores: G on the model's device, CPU inputs and targets moved there
# --------------------------------------------------------------------------------------


def test_scores_of_a_meta_model_from_cpu_inputs_are_on_the_model_device():
    """Scores.G is "on the model's device": a model on meta with CPU inputs and targets gives a
    meta G of shape (n, P) in float64 (every estimator); an input left on the CPU, or G
    allocated without the device, raises or gives a CPU G."""
    torch.manual_seed(3)
    m = copy.deepcopy(_TokenClassifier().eval()).to(META)
    X = torch.randint(0, 11, (4, 5))
    y = torch.randint(0, 3, (4,))
    names = ["emb.weight", "out.bias"]
    for fn in (S.per_sample_scores, S.per_sample_scores_loop):
        G = fn(m, names, X, y).G
        assert (G.device, G.dtype, tuple(G.shape)) == (META, F64, (4, 11 * 4 + 3)), fn.__name__
    lm = copy.deepcopy(_TinyLM().eval()).to(META)
    tok = torch.randint(0, 7, (9,))
    for out in (
        S.per_token_scores(lm, ["head.weight"], tok[:-1], tok[1:]),
        S.per_sample_scores_loop(lm, ["head.weight"], tok[:-1], tok[1:], per_token=True),
    ):
        assert (out.G.device, out.G.dtype, tuple(out.G.shape)) == (META, F64, (8, 21))


def test_scores_move_cpu_inputs_to_a_meta_model():
    """CPU inputs reach a meta model on its device: a float input scaled elementwise by a
    parameter (per-sample scores), a token id multiplied by a parameter (per-token scores); each
    estimator gives a meta G of shape (n, P), where an input left on the CPU raises."""
    torch.manual_seed(4)
    mlp = copy.deepcopy(_ScaledMLP().eval()).to(META)
    X = torch.randn(4, 5)
    y = torch.randint(0, 3, (4,))
    names = ["scale", "lin1.weight"]
    for fn in (S.per_sample_scores, S.per_sample_scores_loop):
        G = fn(mlp, names, X, y).G
        assert (G.device, G.dtype, tuple(G.shape)) == (META, F64, (4, 5 + 20)), fn.__name__
    lm = copy.deepcopy(_GainLM().eval()).to(META)
    tok = torch.randint(0, 7, (9,))
    for out in (
        S.per_token_scores(lm, ["gain", "head.bias"], tok[:-1], tok[1:]),
        S.per_sample_scores_loop(lm, ["gain", "head.bias"], tok[:-1], tok[1:], per_token=True),
    ):
        assert (out.G.device, out.G.dtype, tuple(out.G.shape)) == (META, F64, (8, 14))


# --------------------------------------------------------------------------------------
# torch_checks.quantizers: "every computation runs in float64 on the input's device"
# --------------------------------------------------------------------------------------


def _weights():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 64, generator=g, dtype=F64)
    w[1] *= 2.0**-1000  # a group below 2^-960: computed on w·2^600 (_tiny_safe)
    w[2] = 0.0
    w[3] *= 2.0**500
    return w


@pytest.mark.parametrize("spec", ["rtn-int4-sym-g8", "sr-int3-asym-g16", "nf4-b8", "fp4-b16", "gguf-q4_0", "gguf-q4_k"])
def test_quantizers_do_not_depend_on_the_default_device(spec):
    """CPU weights (normal, 2^-1000, zero and 2^500 groups; normal ones for gguf) under a meta default device: Q(w),
    the step sizes and SR with given uniforms are the CPU results bit for bit (themselves equal
    to fimtheory.quantize's), so no tensor is created on the default device."""
    if spec.startswith("gguf"):  # float16 scales: normal weights only
        w = torch.randn(2, 256, generator=torch.Generator().manual_seed(1), dtype=F64)
    else:
        w = _weights()
    scheme = NQ.parse_scheme(spec)
    ref_q = TQ.quantize_tensor(w, scheme, generator=torch.Generator().manual_seed(5))
    ref_s = TQ.step_sizes_tensor(w, scheme)
    if spec.startswith("rtn") or spec.startswith("nf4"):
        assert _same(ref_q, torch.from_numpy(NQ.quantize(w.numpy(), scheme)))
    with torch.device(META):
        q = TQ.quantize_tensor(w, scheme, generator=torch.Generator().manual_seed(5))
        s = TQ.step_sizes_tensor(w, scheme)
    assert _same(q, ref_q) and _same(s, ref_s)
    if scheme.kind == "sr":
        u = torch.rand(w.shape, generator=torch.Generator().manual_seed(6), dtype=F64)
        ref = TQ.sr_quantize_tensor_with_uniforms(w, scheme, u)
        assert _same(ref, torch.from_numpy(NQ.sr_quantize_with_uniforms(w.numpy(), scheme, u.numpy())))
        with torch.device(META):
            got = TQ.sr_quantize_tensor_with_uniforms(w, scheme, u)
        assert _same(got, ref)


# --------------------------------------------------------------------------------------
# The Lanczos routines: results on K's device, the tridiagonal work and the restart draw on the CPU
# --------------------------------------------------------------------------------------


def _rotated_pair():
    """K = 10·v1v1ᵀ + 9.9·v2v2ᵀ (v1 = 1/√3): from v2 the Krylov space is invariant after one step
    and Lanczos must restart (a seeded CPU draw) to find 10."""
    v1 = torch.full((3,), 3.0**-0.5, dtype=F64)
    v2 = torch.tensor([1.0, -1.0, 0.0], dtype=F64) / 2.0**0.5
    return 10.0 * torch.outer(v1, v1) + 9.9 * torch.outer(v2, v2), v2


def _lanczos_cases():
    g = torch.Generator().manual_seed(4)
    A = torch.randn(12, 5, generator=g, dtype=F64)
    K, v2 = _rotated_pair()
    return [
        (A @ A.T, None),  # rank 5 of 12: the all-ones start
        (A @ A.T, torch.randn(12, generator=g, dtype=F64)),
        (K, v2),  # invariant after one step: a restart
        (torch.diag(torch.tensor([3.0, 2.0, 1.9, 1.8], dtype=F64)), torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=F64)),
        (torch.zeros(3, 3, dtype=F64), None),
    ]


@pytest.mark.parametrize("case", range(5))
def test_top_eig_warm_does_not_depend_on_the_default_device(case):
    """top_eig_warm on a CPU K (also through an invariant breakdown and its seeded restart) gives
    the same value, vector, steps and flag under a meta default device as without one: λ_max
    against dense float64 eigvalsh, the vector on K's device."""
    K, start = _lanczos_cases()[case]
    ref = MON.top_eig_warm(K, start, tol=1e-12, max_iter=60)
    top = float(np.linalg.eigvalsh(K.numpy())[-1])
    assert ref[3] and ref[0] == pytest.approx(top, rel=1e-12, abs=1e-300)
    with torch.device(META):
        got = MON.top_eig_warm(K, start, tol=1e-12, max_iter=60)
    assert _same(got, ref) and got[1].device == K.device


@pytest.mark.parametrize("case", range(5))
def test_lanczos_top_does_not_depend_on_the_default_device(case):
    """streaming._lanczos_top, the same property as top_eig_warm's (a restart included)."""
    K, start = _lanczos_cases()[case]
    ref = STR._lanczos_top(K, start, 1e-12, 60)
    top = float(np.linalg.eigvalsh(K.numpy())[-1])
    assert ref[3] and ref[0] == pytest.approx(top, rel=1e-12, abs=1e-300)
    with torch.device(META):
        got = STR._lanczos_top(K, start, 1e-12, 60)
    assert _same(got, ref) and got[1].device == K.device


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_orthogonal_restart_is_on_the_basis_device(dtype):
    """The restart vector of a meta basis is on meta, in the basis's dtype, of length n (the CPU
    draw moved to the basis's device: a CPU vector would meet the meta basis in its matmul and
    raise); a CPU basis under a meta default device gives the same CPU vector, bit for bit, as
    without one (the draw is made on the CPU)."""
    v, g = MON._orthogonal_restart(torch.eye(2, 5, dtype=dtype, device=META), None)
    assert (v.device, v.dtype, tuple(v.shape)) == (META, dtype, (5,)) and g.device.type == "cpu"
    B = torch.eye(2, 5, dtype=dtype)
    ref, _ = MON._orthogonal_restart(B, None)
    with torch.device(META):
        got, _ = MON._orthogonal_restart(B, None)
    assert _same(got, ref) and float(torch.linalg.vector_norm(ref)) == pytest.approx(1.0, rel=1e-6)


# --------------------------------------------------------------------------------------
# The σ monitor: buffers, starts and noise on the monitor's device / the CPU
# --------------------------------------------------------------------------------------


def _dense_sigmas(G, lam_base, window):
    out = []
    for t in range(1, G.shape[0] + 1):
        rows = G[max(0, t - window) if window else 0 : t].numpy()
        out.append(float(np.linalg.eigvalsh(rows @ rows.T)[-1]) / rows.shape[0] / lam_base)
    return np.array(out)


@pytest.mark.parametrize("window", [None, 3, 7])
def test_sigma_trace_does_not_depend_on_the_default_device(window):
    """sigma_trace of CPU scores (40 rows: the unwindowed buffers grow, the windowed ones are
    compacted) is the same array under a meta default device, and equals σ_t from dense
    eigvalsh of the (windowed) Gram matrices."""
    g = torch.Generator().manual_seed(7)
    G = torch.randn(40, 6, generator=g, dtype=F64) * torch.linspace(0.5, 2.0, 40, dtype=F64)[:, None]
    ref = MON.sigma_trace(G, 2.0, window=window)
    np.testing.assert_allclose(ref, _dense_sigmas(G, 2.0, window), rtol=1e-9)
    with torch.device(META):
        got = MON.sigma_trace(G, 2.0, window=window)
    assert _same(got, ref)


@pytest.mark.parametrize("window", [None, 4])
def test_sigma_monitor_does_not_depend_on_the_default_device(window):
    """A SigmaMonitor on a CPU LM pushed 30 tokens (token scores, buffers grown or compacted) under
    a meta default device: the same σ_t and λ_t as without one, its device the model's."""
    torch.manual_seed(9)
    lm = _TinyLM().eval()
    toks = torch.randint(0, 7, (30,), generator=torch.Generator().manual_seed(3)).tolist()

    def run():
        mon = MON.SigmaMonitor(lm, ["head.weight", "emb.weight"], 1.5, window=window)
        for tok in toks:
            mon.push(tok)
        return mon

    ref = run()
    with torch.device(META):
        got = run()
    assert got.device == torch.device("cpu")
    assert _same(np.asarray(got.sigmas), np.asarray(ref.sigmas)) and _same(got.lambdas, ref.lambdas)


def test_sigma_monitor_of_a_meta_model_lives_on_meta():
    """device=None → the model's device: a monitor of a model on meta holds its weight snapshot,
    buffers and Gram matrix on meta (no CPU copy of a meta tensor is attempted)."""
    lm = _TinyLM().eval().to(META)
    mon = MON.SigmaMonitor(lm, ["head.weight", "emb.weight"], 1.0)
    assert mon.device == META and mon.P == 7 * 3 + 7 * 3
    assert all(v.device == META for v in [*mon._sub.values(), *mon._rest.values(), mon._Gbuf, mon._Kbuf])


def test_sigma_monitor_device_is_explicit_or_the_models_never_auto(monkeypatch):
    """On a machine where CUDA is available (simulated: torch.cuda.is_available → True, so that
    resolve_device(None) / "auto" would pick CUDA), a CPU model's monitor stays on the CPU both
    with device=None (the model's device) and with device="cpu" (the device asked for), and
    computes the same σ_t as on a machine without CUDA."""
    torch.manual_seed(4)
    lm = _TinyLM().eval()
    toks = [1, 4, 2, 2, 6, 0]

    def run(**kw):
        mon = MON.SigmaMonitor(lm, ["head.bias"], 1.0, **kw)
        for tok in toks:
            mon.push(tok)
        return mon

    ref = run()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert MON.resolve_device(None).type == "cuda"
    for kw in ({}, {"device": "cpu"}):
        got = run(**kw)
        assert got.device == torch.device("cpu") and got._Gbuf.device == torch.device("cpu")
        assert _same(np.asarray(got.sigmas), np.asarray(ref.sigmas))


# --------------------------------------------------------------------------------------
# streaming._GramStore: the grown buffers on the store's device
# --------------------------------------------------------------------------------------


def test_gram_store_growth_does_not_depend_on_the_default_device():
    """A CPU store grown from 16 to 64 slots under a meta default device keeps the Gram matrix
    (G Gᵀ, float64 reference) and the stored factors on the CPU, bit for bit those without it."""
    g = torch.Generator().manual_seed(2)
    rows = torch.randn(37, 5, generator=g, dtype=F64)

    def run():
        store = STR._GramStore([STR.Component("dense", ("x",))], None, torch.device("cpu"))
        for r in rows:
            store.add([{"g": r}])
        return store

    ref = run()
    np.testing.assert_allclose(ref.active().numpy(), (rows @ rows.T).numpy(), rtol=1e-13, atol=1e-13)
    with torch.device(META):
        got = run()
    assert got.cap == 64
    assert _same(got.active(), ref.active()) and _same(got.bufs[0]["g"], ref.bufs[0]["g"])


def test_stream_update_does_not_depend_on_the_default_device():
    """StreamingSigma._update (the Gram column, the warm start with its seeded CPU noise, the
    Lanczos and its fallback) on CPU factors: the same λ_t under a meta default device as
    without one, and λ_t is the dense float64 λ_max of the Gram matrix over t."""
    g = torch.Generator().manual_seed(5)
    rows = torch.randn(20, 6, generator=g, dtype=F64)

    def run():
        s = STR.StreamingSigma.__new__(STR.StreamingSigma)  # the update's state only, no model
        s.store = STR._GramStore([STR.Component("dense", ("x",))], None, torch.device("cpu"))
        s._u, s._theta, s._rng = None, 0.0, torch.Generator().manual_seed(0)
        s.tol, s.max_iter, s.fallbacks, s.iterations = 1e-10, 60, 0, []
        return [s._update([{"g": r}]) for r in rows]

    ref = run()
    for t, lam in enumerate(ref, start=1):
        R = rows[:t].numpy()
        assert lam == pytest.approx(float(np.linalg.eigvalsh(R @ R.T)[-1]) / t, rel=1e-9)
    with torch.device(META):
        got = run()
    assert got == ref


def test_probe_sequence_is_a_seeded_cpu_draw_whatever_the_default_device():
    """The 8 probe ids of classify_group: int64 CPU ids below the vocabulary size (any size ≥ 2;
    below 2 refused), drawn from a CPU generator seeded 0, the same under a meta default device."""

    class _Cfg:
        vocab_size = 50

    m = nn.Module()
    m.config = _Cfg()
    for vocab in (50, 2):
        m.config.vocab_size = vocab
        ref = STR._probe_sequence(m)
        want = torch.randint(0, vocab, (8,), generator=torch.Generator().manual_seed(0))
        assert _same(ref, want)
        with torch.device(META):
            got = STR._probe_sequence(m)
        assert _same(got, ref)
    m.config.vocab_size = 1
    with pytest.raises(InputError, match="vocab_size"):
        STR._probe_sequence(m)
    with pytest.raises(InputError, match="pass probe_tokens"):  # a model without a config
        STR._probe_sequence(nn.Module())


def test_recompute_factors_do_not_depend_on_the_default_device():
    """The recompute path's dense score rows (an embedding's rows scattered into a zero matrix on
    the score's device) built under a meta default device: the same λ_t as a stream built
    without one, and λ_t the dense float64 λ_max of the per-token autograd scores."""
    torch.manual_seed(8)
    lm = _PlainLM().double().eval()
    toks = [1, 4, 4, 7, 0, 2, 8, 4]
    names = ["emb.weight", "head.bias"]
    ref = STR.StreamingSigma(lm, names, 1.0, mode="recompute")
    got = STR.StreamingSigma(lm, names, 1.0, mode="recompute")
    dense_factors = got._dense_factors

    def under_meta(*args):
        with torch.device(META):
            return dense_factors(*args)

    got._dense_factors = under_meta
    for t in toks:
        ref.push(t)
        got.push(t)
    assert got.lambdas[1:] == ref.lambdas[1:]
    params = dict(lm.named_parameters())
    rows = []
    for i in range(len(toks) - 1):
        lp = torch.log_softmax(lm(torch.tensor([toks[: i + 1]]))[0, -1], dim=-1)[toks[i + 1]]
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(lp, [params[n] for n in names])]))
    for t in range(1, len(toks)):
        R = torch.stack(rows[:t]).numpy()
        assert ref.lambdas[t] == pytest.approx(float(np.linalg.eigvalsh(R @ R.T)[-1]) / t, rel=1e-9)
