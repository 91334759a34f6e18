"""Mutation killers for the torch verdict code (torch_checks scores, quantizers, monitor,
streaming, engines): each test was written from a surviving mutant of a mutmut run and checked
to fail on that mutant and pass on the original (docs/mutation_torch.md lists them).

References are independent of the code under test: per-sample autograd loops written here,
closed forms, dense float64 eigendecompositions, the numpy quantizers of fimtheory.quantize.
"""

from __future__ import annotations

import copy
import math
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from torch import nn  # noqa: E402

from fimtheory.errors import InputError, UnknownIdError  # noqa: E402
from torch_checks import scores as S  # noqa: E402

pytestmark = pytest.mark.torch

F64 = torch.float64


def _close(A, B, rel=1e-12):
    scale = max(float(A.detach().abs().max()), float(B.detach().abs().max()), 1e-300)
    return float((A.detach().double() - B.detach().double()).abs().max()) <= rel * scale


def _autograd_rows(model, names, inputs, targets, *, per_token=False):
    """Reference scores: a float64 copy of the model, one torch.autograd.grad per sample."""
    ref = copy.deepcopy(model).double()
    params = dict(ref.named_parameters())
    sub = [params[n] for n in names]
    rows = []
    for i in range(targets.shape[0]):
        if per_token:
            out = ref(inputs.long()[None])[0, i]
        else:
            x = inputs[i : i + 1]
            out = ref(x.double() if x.is_floating_point() else x).reshape(-1)
        lp = torch.log_softmax(out, dim=-1)[int(targets[i])]
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(lp, sub)]))
    return torch.stack(rows)


class _TokenClassifier(nn.Module):
    """Integer token inputs (n, L) → mean of permuted embeddings → logits; the permutation is
    an int64 buffer (casting it to a float dtype breaks the indexing)."""

    def __init__(self, vocab=11, dim=4, classes=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, classes)
        self.register_buffer("perm", torch.tensor([2, 0, 3, 1], dtype=torch.long))

    def forward(self, x):
        return self.out(self.emb(x)[..., self.perm].mean(dim=1))


class _TinyLM(nn.Module):
    """Causal: logits at t depend on token t only (embedding → linear head)."""

    def __init__(self, vocab=7, dim=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, x):
        return self.head(self.emb(x))


def _mlp32(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).eval()  # float32


# --------------------------------------------------------------------------------------
# torch_checks.scores
# --------------------------------------------------------------------------------------


def test_scores_errors_name_the_problem():
    m = _mlp32()
    X = torch.randn(3, 5)
    y = torch.tensor([0, 1, 2])
    with pytest.raises(InputError, match=r"^the parameter subset is empty$"):
        S.per_sample_scores(m, [], X, y)
    with pytest.raises(InputError, match=r"^duplicate parameter names in \('0.bias', '0.bias'\)$"):
        S.per_sample_scores(m, ["0.bias", "0.bias"], X, y)
    deep = nn.Sequential(*[nn.Linear(2, 2) for _ in range(5)])  # 10 parameters
    allnames = [n for n, _ in deep.named_parameters()]
    with pytest.raises(UnknownIdError) as exc:
        S.per_sample_scores(deep, ["nope"], torch.randn(2, 2), torch.tensor([0, 1]))
    assert str(exc.value) == f"unknown parameter(s) ['nope']; the model has {allnames[:8]}..."
    for fn in (S.per_sample_scores, S.per_sample_scores_loop):
        with pytest.raises(InputError, match=r"^scores dtype must be float64 or float32, got torch.int32$"):
            fn(m, ["0.bias"], X, y, dtype=torch.int32)
    tok = torch.tensor([1, 2, 3, 4])
    with pytest.raises(InputError, match=r"^scores dtype must be float64 or float32, got torch.int32$"):
        S.per_token_scores(_TinyLM(), ["head.weight"], tok[:-1], tok[1:], dtype=torch.int32)
    with pytest.raises(InputError) as exc:
        S.per_sample_scores(m, ["0.bias"], X, y[:2])
    assert str(exc.value) == "inputs (3, 5) and targets (2,) must have the same length n and targets must be 1-D"
    with pytest.raises(InputError) as exc:
        S.per_token_scores(_TinyLM(), ["head.weight"], tok, tok[:3])
    assert str(exc.value) == "inputs (4,) and targets (3,) must be 1-D of the same length T"


def test_integer_inputs_and_buffers_are_never_cast():
    torch.manual_seed(1)
    m = _TokenClassifier().eval()  # float32 parameters, int64 buffer
    X = torch.randint(0, 11, (6, 5))
    y = torch.randint(0, 3, (6,))
    names = ["emb.weight", "out.weight", "out.bias"]
    ref = _autograd_rows(m, names, X, y)
    for fn in (S.per_sample_scores, S.per_sample_scores_loop):
        G = fn(m, names, X, y).G
        assert G.dtype == F64 and _close(G, ref)


def test_float32_model_and_inputs_are_scored_in_float64():
    m = _mlp32()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    X = torch.randn(7, 5)  # float32 inputs
    y = torch.randint(0, 3, (7,))
    names = ["2.weight", "0.bias"]
    ref = _autograd_rows(m, names, X, y)
    for fn in (S.per_sample_scores, S.per_sample_scores_loop):
        out = fn(m, names, X, y)
        assert out.G.dtype == F64 and _close(out.G, ref)
        assert out.names == tuple(names) and out.shapes == (torch.Size([3, 4]), torch.Size([4]))
    # the reference loop works on a copy: the caller's float32 model is left as it was
    assert all(v.dtype == before[k].dtype and torch.equal(v, before[k]) for k, v in m.state_dict().items())
    # one parameter only, and dtype=None on a float64 model (scored as is)
    one = S.per_sample_scores_loop(m, ["2.bias"], X, y)
    assert _close(one.G, _autograd_rows(m, ["2.bias"], X, y))
    m64 = _mlp32().double()
    X64 = X.double()
    none = S.per_sample_scores_loop(m64, names, X64, y, dtype=None)
    assert none.G.dtype == F64 and _close(none.G, ref, rel=1e-6)
    assert _close(none.G, _autograd_rows(m64, names, X64, y))


def test_per_token_scores_record_names_and_shapes():
    torch.manual_seed(2)
    lm = _TinyLM().eval()
    tok = torch.randint(0, 7, (9,))
    names = ["head.bias", "emb.weight"]
    ref = _autograd_rows(lm, names, tok[:-1], tok[1:], per_token=True)
    for out in (
        S.per_token_scores(lm, names, tok[:-1], tok[1:]),
        S.per_sample_scores_loop(lm, names, tok[:-1], tok[1:], per_token=True),
    ):
        assert out.G.dtype == F64 and _close(out.G, ref)
        assert out.names == tuple(names) and out.shapes == (torch.Size([7]), torch.Size([7, 3]))
        parts = out.unflatten(out.G[0])
        assert parts["emb.weight"].shape == (7, 3)


def _documented_chunk(n, P, dtype):
    """About 128 MiB of gradients per chunk, at least 1, at most n."""
    item = torch.empty((), dtype=dtype or F64).element_size()
    return max(1, min(n, (128 * 1024 * 1024) // (P * item)))


@pytest.mark.parametrize(
    ("n", "P", "dtype"),
    [
        (10**6, 1000, F64),
        (10**6, 1000, torch.float32),
        (10**6, 1000, None),
        (5, 1000, F64),
        (1, 2**30, F64),
        (100, 2**25, torch.float32),
        (10**9, 3, F64),
    ],
)
def test_default_chunk_is_about_128_MiB_of_gradients(n, P, dtype):
    assert S._default_chunk(n, P, dtype) == _documented_chunk(n, P, dtype)


def test_chunk_sizes_reach_the_vectorised_calls(monkeypatch):
    m = _mlp32()
    X = torch.randn(12, 5)
    y = torch.randint(0, 3, (12,))
    ref = _autograd_rows(m, ["0.weight"], X, y)
    batches = []
    real_vmap = S.vmap

    def spy_vmap(fn, **kw):
        inner = real_vmap(fn, **kw)

        def call(p, x, t):
            batches.append(x.shape[0])
            return inner(p, x, t)

        return call

    monkeypatch.setattr(S, "vmap", spy_vmap)
    assert _close(S.per_sample_scores(m, ["0.weight"], X, y, chunk_size=5).G, ref)
    assert batches == [5, 5, 2]
    asked = []
    real_chunk = S._default_chunk

    def spy_chunk(n, P, dtype):
        asked.append((n, P, dtype))
        return real_chunk(n, P, dtype)

    monkeypatch.setattr(S, "_default_chunk", spy_chunk)
    S.per_sample_scores(m, ["0.weight"], X, y, dtype=torch.float32)
    assert asked == [(12, 20, torch.float32)]

    lm = _TinyLM()
    tok = torch.randint(0, 7, (9,))
    seen = []
    real_jacrev = S.jacrev

    def spy_jacrev(fn, **kw):
        seen.append(kw.get("chunk_size"))
        return real_jacrev(fn, **kw)

    monkeypatch.setattr(S, "jacrev", spy_jacrev)
    S.per_token_scores(lm, ["head.weight"], tok[:-1], tok[1:], chunk_size=3)
    S.per_token_scores(lm, ["head.weight"], tok[:-1], tok[1:], dtype=torch.float32)
    assert seen == [3, _documented_chunk(8, 21, torch.float32)]
    assert asked[-1] == (8, 21, torch.float32)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_scores_move_cpu_inputs_to_the_model_device():
    torch.manual_seed(3)
    m = _TokenClassifier().eval()
    X = torch.randint(0, 11, (4, 5))
    y = torch.randint(0, 3, (4,))
    names = ["emb.weight", "out.bias"]
    ref = _autograd_rows(m, names, X, y)
    mc = copy.deepcopy(m).cuda()
    for fn in (S.per_sample_scores, S.per_sample_scores_loop):
        G = fn(mc, names, X, y).G  # inputs and targets on the CPU
        assert G.is_cuda and _close(G.cpu(), ref, rel=1e-10)
    lm = _TinyLM().eval()
    tok = torch.randint(0, 7, (9,))
    ref = _autograd_rows(lm, ["head.weight"], tok[:-1], tok[1:], per_token=True)
    lmc = copy.deepcopy(lm).cuda()
    for out in (
        S.per_token_scores(lmc, ["head.weight"], tok[:-1], tok[1:]),
        S.per_sample_scores_loop(lmc, ["head.weight"], tok[:-1], tok[1:], per_token=True),
    ):
        assert out.G.is_cuda and _close(out.G.cpu(), ref, rel=1e-10)


# --------------------------------------------------------------------------------------
# torch_checks.quantizers (reference: the numpy quantizers of fimtheory.quantize/kquants)
# --------------------------------------------------------------------------------------

from fimtheory import kquants  # noqa: E402
from fimtheory import quantize as NQ  # noqa: E402
from torch_checks import quantizers as TQ  # noqa: E402

TINY = 5e-324  # the smallest subnormal float64


def _bits_equal(t, a):
    """torch result equals the numpy float64 result bit for bit (NaN never equal)."""
    a = np.asarray(a, dtype=np.float64)
    return t.dtype == F64 and t.shape == a.shape and np.array_equal(t.numpy().view(np.int64), a.view(np.int64))


def _values_equal(t, a):
    return t.shape == a.shape and bool(np.all(t.double().numpy() == a))


@pytest.mark.parametrize(
    "spec",
    [
        "rtn-int4-sym-channel",
        "rtn-int4-asym-channel",
        "sr-int4-sym-channel",
        "sr-int4-asym-channel",
        "gguf-q4_0",
        "gguf-q4_1",
        "nf4-b32",
        "fp4-b32",
    ],
)
def test_subnormal_weights_match_numpy_and_are_never_nan(spec):
    """Subnormal weights: the scale (or 1/scale) under- or overflows; the clamps and the
    zero-inverse rule are what keep the levels in range. torch = numpy bit for bit."""
    w = np.array([[10, -3, 7, 0, 1, 2, -9, 4] * 4, [0.5, -11, 3, 6, -1, 0, 2, 5] * 4]) * TINY
    if spec.startswith("sr"):
        u = np.full(w.shape, 0.5)
        ref = NQ.sr_quantize_with_uniforms(w, spec, u)
        out = TQ.sr_quantize_tensor_with_uniforms(torch.tensor(w), spec, torch.tensor(u))
    else:
        ref = NQ.quantize(w, spec)
        out = TQ.quantize_tensor(torch.tensor(w), spec)
    assert not bool(torch.isnan(out).any())
    assert _values_equal(out, ref)
    steps = TQ.step_sizes_tensor(torch.tensor(w), spec)
    assert steps.dtype == F64 and _values_equal(steps, NQ.step_sizes(w, spec))


@pytest.mark.parametrize("spec", ["rtn-int4-sym-channel", "rtn-int4-asym-channel", "sr-int4-sym-channel"])
def test_a_unit_scale_is_a_scale_like_any_other(spec):
    """s = 1 exactly (max |w| = qmax = 7, or range = 15): the weights are still quantized."""
    w = np.array([[7.0, 0.3, -2.6, 1.49, -7.0, 5.51, 0.0, 3.2]])
    if "asym" in spec:
        w = np.array([[15.0, 0.3, 2.6, 1.49, 0.0, 5.51, 7.5, 3.2]])
    if spec.startswith("sr"):
        u = np.linspace(0.05, 0.95, w.size).reshape(w.shape)
        ref = NQ.sr_quantize_with_uniforms(w, spec, u)
        out = TQ.sr_quantize_tensor_with_uniforms(torch.tensor(w), spec, torch.tensor(u))
    else:
        ref = NQ.quantize(w, spec)
        out = TQ.quantize_tensor(torch.tensor(w), spec)
    assert _bits_equal(out, ref)
    assert not np.array_equal(ref, w)  # really quantized


def test_q4_0_unit_scale_and_fp16_max_scale_match_numpy():
    for m in (-8.0, -8.0 * 65504.0):  # d = 1, and d = 65504 = the largest float16 (not an overflow)
        w = np.array([[m, 0.3 * m, -0.26 * m, 0.149 * m] * 8])
        assert _bits_equal(TQ.quantize_tensor(torch.tensor(w), "gguf-q4_0"), NQ.quantize(w, "gguf-q4_0"))
        steps = TQ.step_sizes_tensor(torch.tensor(w), "gguf-q4_0")
        assert _bits_equal(steps, NQ.step_sizes(w, "gguf-q4_0"))


def test_q4_scale_rounds_to_float16_through_float32():
    """d = 1 + 2^-11 + 2^-30: float64 → float16 directly rounds up, via float32 (as gguf
    stores it) it is a tie that rounds to even, d16 = 1."""
    d = 1.0 + 2.0**-11 + 2.0**-30
    w = np.array([[-8.0 * d, 3.0, -2.0, 1.0] * 8])
    ref = NQ.quantize(w, "gguf-q4_0")
    assert _bits_equal(TQ.quantize_tensor(torch.tensor(w), "gguf-q4_0"), ref)
    assert float(np.abs(NQ.step_sizes(w, "gguf-q4_0")).max()) == 1.0
    assert float(TQ.step_sizes_tensor(torch.tensor(w), "gguf-q4_0").max()) == 1.0


def test_q4_overflowing_scales_are_errors_naming_the_field():
    cases = [
        ("gguf-q4_0", -8.0 * 70000.0, "gguf Q4_0 scale d 70000 overflows the float16 it is stored in (max 65504.0)"),
        ("gguf-q4_1", None, "gguf Q4_1 scale d 100000 overflows the float16 it is stored in (max 65504.0)"),
        ("gguf-q4_1", -70000.0, "gguf Q4_1 minimum m 70000 overflows the float16 it is stored in (max 65504.0)"),
    ]
    for spec, m, msg in cases:
        if m is None:
            w = np.array([[0.0, 1.5e6] * 16])  # (mx - mn) / 15 = 1e5
        else:
            w = np.full((1, 32), m)
            w[0, 1] = m / 2 if spec == "gguf-q4_0" else m  # q4_1: constant block, d = 0, m overflows
        for fn in (TQ.quantize_tensor, TQ.step_sizes_tensor):
            with pytest.raises(InputError) as exc:
                fn(torch.tensor(w), spec)
            assert str(exc.value) == msg
        with pytest.raises(InputError, match="overflows the float16"):
            NQ.quantize(w, spec)


def test_q4_1_range_at_the_top_level_matches_numpy():
    """(g − mn)/d at 15 (and rounding to just above it) stays at level 15."""
    w = np.array([[0.0, 1.0, 14.9999999, 15.0, 7.4999999, 7.5] * 5 + [3.0, 2.0]])
    assert _bits_equal(TQ.quantize_tensor(torch.tensor(w), "gguf-q4_1"), NQ.quantize(w, "gguf-q4_1"))


@pytest.mark.parametrize("kind", ["q4_k", "q6_k", "q8_0", "q4_k-or-q5_0"])
def test_kquants_route_through_fimtheory_kquants(kind):
    g = torch.Generator().manual_seed(4)
    w = torch.randn(2, 256, generator=g, dtype=F64) * 0.05
    out = TQ.quantize_tensor(w.float(), f"gguf-{kind}")
    ref = kquants.fake_quantize(w.float().double().numpy(), kind)
    assert out.dtype == torch.float32 and _values_equal(out, ref.astype(np.float32).astype(np.float64))
    steps = TQ.step_sizes_tensor(w, f"gguf-{kind}")
    assert _bits_equal(steps, kquants.sub_block_steps(w.numpy(), kind))


def test_sr_rounds_up_only_when_u_is_below_the_fraction():
    """u < frac rounds up: a grid value (frac = 0) never moves, even with u = 0; u = frac
    exactly rounds down."""
    w = np.array([[7.0, 2.5, -3.0, 1.25, -0.5, 0.0, 4.0, -7.0]])  # s = 1 for int4 sym
    spec = "sr-int4-sym-channel"
    at_frac = np.array([[0.0, 0.5, 0.0, 0.25, 0.5, 0.0, 0.0, 0.0]])  # u = frac exactly (0 on the grid)
    for u, expected in ((np.zeros_like(w), np.ceil(w)), (at_frac, np.floor(w))):
        ref = NQ.sr_quantize_with_uniforms(w, spec, u)
        out = TQ.sr_quantize_tensor_with_uniforms(torch.tensor(w), spec, torch.tensor(u))
        assert _bits_equal(out, ref)
        assert np.array_equal(ref, expected)


def test_sr_draws_torch_rand_float64_from_the_generator():
    w = torch.randn(4, 32, generator=torch.Generator().manual_seed(5), dtype=F64)
    spec = "sr-int4-asym-g32"
    u = torch.rand((4, 32), generator=torch.Generator().manual_seed(6), dtype=F64)
    got = TQ.quantize_tensor(w, spec, generator=torch.Generator().manual_seed(6))
    assert _bits_equal(got, NQ.sr_quantize_with_uniforms(w.numpy(), spec, u.numpy()))


def test_quantizer_errors_name_the_problem():
    w = torch.randn(2, 8, dtype=F64)
    cases = [
        (lambda: TQ.quantize_tensor(w, 3), "scheme must be a QuantScheme or a spec string, got int"),
        (lambda: TQ.quantize_tensor([1.0], "rtn-int4-sym-channel"), "w must be a torch.Tensor, got list"),
        (lambda: TQ.quantize_tensor(torch.zeros(0), "rtn-int4-sym-channel"), "w is empty (shape (0,))"),
        (
            lambda: TQ.quantize_tensor(torch.tensor([1.0, float("nan"), 2.0]), "rtn-int4-sym-channel"),
            "w has a non-finite entry nan at index (1,)",
        ),
        (
            lambda: TQ.quantize_tensor(w, "sr-int4-sym-channel"),
            "stochastic rounding needs generator=torch.Generator (seeded, on the device of w), got NoneType",
        ),
        (
            lambda: TQ.quantize_tensor(w, "sr-int4-sym-channel", generator=7),
            "stochastic rounding needs generator=torch.Generator (seeded, on the device of w), got int",
        ),
        (
            lambda: TQ._gguf(torch.zeros(1, 32, dtype=F64), types.SimpleNamespace(kind="q8_0")),
            "no torch quantizer for scheme kind 'q8_0'",
        ),
        (
            lambda: TQ.sr_quantize_tensor_with_uniforms(w, "rtn-int4-sym-channel", torch.zeros(2, 8)),
            "sr_quantize_tensor_with_uniforms needs an 'sr' scheme, got 'rtn-int4-sym-channel'",
        ),
        (
            lambda: TQ.sr_quantize_tensor_with_uniforms(w, "sr-int4-sym-channel", [[0.0] * 8] * 2),
            "u must be a tensor of the shape of w (2, 8)",
        ),
        (
            lambda: TQ.sr_quantize_tensor_with_uniforms(w, "sr-int4-sym-channel", torch.zeros(8, 2)),
            "u must be a tensor of the shape of w (2, 8)",
        ),
        (lambda: TQ.quantize_module_(3, "rtn-int4-sym-channel"), "module must be a torch.nn.Module, got int"),
        (
            lambda: TQ.quantize_module_(nn.Linear(2, 2), "rtn-int4-sym-channel", include=[5]),
            "include entries must be kind names or nn.Module types, got 5",
        ),
        (
            lambda: TQ.quantize_module_(nn.Linear(2, 2), "rtn-int4-sym-channel", include=[int]),
            "include entries must be kind names or nn.Module types, got <class 'int'>",
        ),
    ]
    for u_bad in (1.0, 1.5, -0.25):
        u = torch.zeros(2, 8, dtype=F64)
        u[1, 3] = u_bad
        bad_u = lambda u=u: TQ.sr_quantize_tensor_with_uniforms(w, "sr-int4-sym-channel", u)  # noqa: E731
        cases.append((bad_u, "u must lie in [0, 1)"))
    for fn, msg in cases:
        with pytest.raises(InputError) as exc:
            fn()
        assert str(exc.value) == msg


class _FakeConv1D(nn.Module):
    """Shape of Hugging Face's Conv1D: weight (in, out), y = x W + b."""

    def __init__(self, nx, nf):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf, dtype=F64))
        self.bias = nn.Parameter(torch.zeros(nf, dtype=F64))

    def forward(self, x):
        return x @ self.weight + self.bias


def _fake_transformers(monkeypatch):
    mod = types.ModuleType("transformers.pytorch_utils")
    mod.Conv1D = _FakeConv1D
    monkeypatch.setitem(__import__("sys").modules, "transformers.pytorch_utils", mod)


def test_conv1d_weights_are_quantized_as_their_transpose(monkeypatch):
    _fake_transformers(monkeypatch)
    torch.manual_seed(7)
    net = nn.Sequential(_FakeConv1D(8, 4), nn.Linear(4, 3).double())
    w_conv = net[0].weight.detach().numpy().copy()
    w_lin = net[1].weight.detach().numpy().copy()
    assert TQ.is_hf_conv1d(net[0]) and not TQ.is_hf_conv1d(net[1])
    spec = "rtn-int4-sym-channel"
    deltas = TQ.quantize_module_(net, spec)  # default selection includes Conv1D
    assert sorted(deltas) == ["0.weight", "1.weight"]
    ref_conv = NQ.quantize(w_conv.T, spec).T  # rows of the transpose = output channels
    assert not np.array_equal(ref_conv, NQ.quantize(w_conv, spec))
    assert _bits_equal(deltas["0.weight"], ref_conv - w_conv)
    assert np.array_equal(net[0].weight.detach().numpy(), ref_conv)
    assert _bits_equal(deltas["1.weight"], NQ.quantize(w_lin, spec) - w_lin)
    # a Conv1D whose transpose the scheme cannot quantize: the message says so
    bad = nn.Sequential(_FakeConv1D(6, 4))
    with pytest.raises(InputError) as exc:
        TQ.quantize_module_(bad, "rtn-int4-sym-g4")
    how = "cannot quantize 0.weight (shape (6, 4), a Conv1D quantized as its transpose (4, 6)): "
    assert str(exc.value).startswith(how)


def test_quantize_module_without_transformers_names_and_ties(monkeypatch):
    monkeypatch.delitem(__import__("sys").modules, "transformers.pytorch_utils", raising=False)
    spec = "rtn-int4-sym-channel"
    root = nn.Linear(4, 3).double()
    w = root.weight.detach().numpy().copy()
    deltas = TQ.quantize_module_(root, spec)
    assert list(deltas) == ["weight"] and _bits_equal(deltas["weight"], NQ.quantize(w, spec) - w)

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 4).double()
            self.head = nn.Linear(4, 5, bias=False).double()
            self.head.weight = self.emb.weight
            self.z = nn.Linear(4, 4).double()

    t = Tied()
    wz = t.z.weight.detach().numpy().copy()
    deltas = TQ.quantize_module_(t, spec)
    assert list(deltas) == ["emb.weight", "z.weight"]  # the tied head once, and z after it
    assert _bits_equal(deltas["z.weight"], NQ.quantize(wz, spec) - wz)
    lin = nn.Sequential(nn.Linear(6, 3).double())
    with pytest.raises(InputError) as exc:
        TQ.quantize_module_(lin, "rtn-int4-sym-g4")
    assert str(exc.value).startswith("cannot quantize 0.weight (shape (3, 6)): ")


# --------------------------------------------------------------------------------------
# torch_checks.monitor (reference: dense float64 eigvalsh of the autograd-loop scores)
# --------------------------------------------------------------------------------------

from torch_checks import monitor as MON  # noqa: E402


def _dense_lam(G):
    G = G.detach().double().numpy()
    return float(np.linalg.eigvalsh(G @ G.T / G.shape[0])[-1])


class _SubsetLM(_TinyLM):
    """A model naming its own default parameter subset (head only)."""

    def default_param_names(self):
        return ["head.weight", "head.bias"]


def _clf64(seed=5):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double().eval()


def test_monitor_default_names_come_from_the_model():
    torch.manual_seed(8)
    lm = _SubsetLM().eval()
    tok = torch.randint(0, 7, (7,))
    mon = MON.SigmaMonitor(lm, None, 1.0)
    assert mon.param_names == ("head.weight", "head.bias") and mon.P == 7 * 3 + 7
    G = _autograd_rows(lm, ["head.weight", "head.bias"], tok[:-1], tok[1:], per_token=True)
    assert MON.context_lambda_max(lm, tok) == pytest.approx(_dense_lam(G), rel=1e-10)
    base, _, _ = MON.calibrate(lm, [tok, tok.flip(0)])
    G2 = _autograd_rows(lm, ["head.weight", "head.bias"], tok.flip(0)[:-1], tok.flip(0)[1:], per_token=True)
    assert base == pytest.approx((_dense_lam(G) + _dense_lam(G2)) / 2, rel=1e-10)


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (dict(context=1), 1),
        (dict(context=0, max_position_embeddings=5), 5),
        (dict(max_position_embeddings=9), 9),
        (dict(n_positions=4), 4),
        (dict(context="12", n_positions=3), 3),
        (dict(), None),
    ],
)
def test_monitor_max_context_from_the_model_config(cfg, expected):
    lm = _TinyLM().eval()
    lm.config = types.SimpleNamespace(**cfg)
    assert MON.SigmaMonitor(lm, ["head.bias"], 1.0).max_context == expected


def test_monitor_max_context_truncates_like_a_recomputation():
    torch.manual_seed(9)
    lm = _TinyLM().eval()
    lm.config = types.SimpleNamespace(n_positions=3)
    tok = torch.randint(0, 7, (8,))
    mon = MON.SigmaMonitor(lm, ["head.weight"], 1.0)
    mon.push(tok)
    # the score of position t sees only the last 3 inputs; _TinyLM is position-free, so the
    # scores are those of the whole prefix
    G = _autograd_rows(lm, ["head.weight"], tok[:-1], tok[1:], per_token=True)
    assert mon.lambdas[-1] == pytest.approx(_dense_lam(G), rel=1e-9)


def test_monitor_classifier_samples_cast_to_the_monitor_dtype():
    m = _clf64()
    g = torch.Generator().manual_seed(3)
    X = torch.randn(5, 4, generator=g)  # float32 inputs, float64 monitor
    y = torch.randint(0, 3, (5,), generator=g)
    names = ["2.weight", "0.bias"]
    mon = MON.SigmaMonitor(m, names, 2.0)
    for i in range(5):
        mon.push((X[i], int(y[i])))
    G = _autograd_rows(m, names, X, y)
    assert mon.lambdas[-1] == pytest.approx(_dense_lam(G), rel=1e-10)
    assert mon.sigmas[-1] == pytest.approx(_dense_lam(G) / 2.0, rel=1e-10)
    # a sample given as a list of Python floats is taken in float64, not rounded to float32 first
    X64 = torch.randn(3, 4, generator=g, dtype=F64)
    lst = MON.SigmaMonitor(m, names, 1.0)
    for i in range(3):
        lst.push((X64[i].tolist(), int(y[i])))
    assert lst.lambdas[-1] == pytest.approx(_dense_lam(_autograd_rows(m, names, X64, y[:3])), rel=1e-12)


def test_sigma_trace_window_and_lambda_base_checks():
    g = torch.Generator().manual_seed(4)
    G = torch.randn(9, 6, generator=g, dtype=F64)
    sig = MON.sigma_trace(G, 0.5, window=3)
    ref = [_dense_lam(G[max(0, t - 3) : t]) / 0.5 for t in range(1, 10)]
    np.testing.assert_allclose(sig, ref, rtol=1e-9)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError) as exc:
            MON.sigma_trace(G, bad)
        assert str(exc.value) == f"lambda_base must be positive and finite, got {bad!r}"


def test_context_lambda_max_classifier_window_and_dtype():
    m = _clf64()
    g = torch.Generator().manual_seed(6)
    X = torch.randn(7, 4, generator=g, dtype=F64)
    y = torch.randint(0, 3, (7,), generator=g)
    names = ["0.weight", "2.bias"]
    G = _autograd_rows(m, names, X, y)
    assert MON.context_lambda_max(m, (X, y), names) == pytest.approx(_dense_lam(G), rel=1e-10)
    assert MON.context_lambda_max(m, (X, y), names, window=3) == pytest.approx(_dense_lam(G[-3:]), rel=1e-10)
    # a float32 model scored in float64 (default) is float64-accurate; dtype=float32 computes in float32
    m32 = copy.deepcopy(m).float()
    G32 = _autograd_rows(m32, names, X.float(), y)
    lam64 = MON.context_lambda_max(m32, (X.float(), y), names)
    assert lam64 == pytest.approx(_dense_lam(G32), rel=1e-10)
    lam32 = MON.context_lambda_max(m32, (X.float(), y), names, dtype=torch.float32)
    assert lam32 == pytest.approx(_dense_lam(G32), rel=1e-4) and lam32 != pytest.approx(_dense_lam(G32), rel=1e-12)


def test_context_lambda_max_lm_contexts():
    torch.manual_seed(10)
    lm = _TinyLM().eval()
    names = ["head.weight"]
    two = torch.tensor([3, 5])  # two tokens: one score
    G = _autograd_rows(lm, names, two[:-1], two[1:], per_token=True)
    assert MON.context_lambda_max(lm, two, names) == pytest.approx(_dense_lam(G), rel=1e-10)
    tok = torch.randint(0, 7, (9,))
    G = _autograd_rows(lm, names, tok[:-1], tok[1:], per_token=True)
    assert MON.context_lambda_max(lm, tok, names, window=4) == pytest.approx(_dense_lam(G[-4:]), rel=1e-10)
    lm32 = _TinyLM().eval()  # float32 parameters
    G32 = _autograd_rows(lm32, names, tok[:-1], tok[1:], per_token=True)
    assert MON.context_lambda_max(lm32, tok, names) == pytest.approx(_dense_lam(G32), rel=1e-10)
    lam32 = MON.context_lambda_max(lm32, tok, names, dtype=torch.float32)
    assert lam32 == pytest.approx(_dense_lam(G32), rel=1e-4) and lam32 != pytest.approx(_dense_lam(G32), rel=1e-12)
    for bad in (torch.tensor([3]), torch.tensor([[1, 2, 3]])):
        with pytest.raises(InputError) as exc:
            MON.context_lambda_max(lm, bad, names)
        assert str(exc.value) == "an LM context must be a 1-D tensor of at least 2 tokens"


def test_calibrate_quantiles_window_dtype_and_errors():
    torch.manual_seed(11)
    lm = _TinyLM().eval()
    names = ["head.weight", "emb.weight"]
    ctx = torch.randint(0, 7, (5, 8))
    Gs = [_autograd_rows(lm, names, c[:-1], c[1:], per_token=True) for c in ctx]
    lams = np.array([_dense_lam(G) for G in Gs])
    base, tau, sig = MON.calibrate(lm, ctx, param_names=names)  # default q = 0.95
    assert base == pytest.approx(lams.mean(), rel=1e-10)
    np.testing.assert_allclose(sig, lams / lams.mean(), rtol=1e-10)
    assert tau == pytest.approx(np.quantile(lams / lams.mean(), 0.95), rel=1e-10)
    for q, expected in ((0.0, (lams / lams.mean()).min()), (1.0, (lams / lams.mean()).max())):
        assert MON.calibrate(lm, ctx, quantile=q, param_names=names)[1] == pytest.approx(expected, rel=1e-10)
    lw = np.array([_dense_lam(G[-3:]) for G in Gs])
    assert MON.calibrate(lm, ctx, param_names=names, window=3)[0] == pytest.approx(lw.mean(), rel=1e-10)
    b32 = MON.calibrate(lm, ctx, param_names=names, dtype=torch.float32)[0]
    assert b32 == pytest.approx(lams.mean(), rel=1e-4) and b32 != pytest.approx(lams.mean(), rel=1e-12)
    cases = [
        (dict(quantile=1.5), "quantile must be in [0, 1], got 1.5"),
        (dict(quantile=-0.1), "quantile must be in [0, 1], got -0.1"),
        (dict(statistic="mode"), "statistic must be 'mean' or 'median', got 'mode'"),
    ]
    for kw, msg in cases:
        with pytest.raises(InputError) as exc:
            MON.calibrate(lm, ctx, param_names=names, **kw)
        assert str(exc.value) == msg
    with pytest.raises(InputError) as exc:
        MON.calibrate(lm, [], param_names=names)
    assert str(exc.value) == "no calibration contexts"
    one_class = nn.Linear(3, 1).double().eval()  # log p = log softmax of one logit = 0: all scores 0
    X = torch.randn(4, 3, dtype=F64)
    with pytest.raises(InputError) as exc:
        MON.calibrate(one_class, [(X, torch.zeros(4, dtype=torch.long))])
    assert str(exc.value) == "λ_base = 0.0 is not positive (all scores zero?)"


def test_calibrate_and_context_lambda_max_name_themselves_for_a_training_model():
    torch.manual_seed(12)
    lm = nn.Sequential(nn.Embedding(7, 3), nn.Dropout(0.5), nn.Linear(3, 7))  # training mode
    tok = torch.randint(0, 7, (6,))
    with pytest.raises(InputError, match=r"^context_lambda_max needs a model in eval mode"):
        MON.context_lambda_max(lm, tok, ["2.weight"])
    with pytest.raises(InputError, match=r"^calibrate needs a model in eval mode"):
        MON.calibrate(lm, [tok], param_names=["2.weight"])
    with pytest.warns(UserWarning, match="calibrate: switched the model to eval mode"):
        base, _, _ = MON.calibrate(lm, [tok], param_names=["2.weight"], training="eval")
    assert not lm.training
    G = _autograd_rows(lm, ["2.weight"], tok[:-1], tok[1:], per_token=True)
    assert base == pytest.approx(_dense_lam(G), rel=1e-10)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quantizers_keep_cuda_tensors_on_the_device():
    w = torch.randn(2, 256, generator=torch.Generator().manual_seed(8), dtype=F64)
    wc = w.cuda()
    for spec in ("nf4-b32", "fp4-b32", "gguf-q4_k", "gguf-q8_0"):
        q, s = TQ.quantize_tensor(wc, spec), TQ.step_sizes_tensor(wc, spec)
        assert q.is_cuda and s.is_cuda
        assert _bits_equal(q.cpu(), NQ.quantize(w.numpy(), spec))
        assert _bits_equal(s.cpu(), NQ.step_sizes(w.numpy(), spec))
    spec = "sr-int4-sym-channel"
    u = torch.rand(w.shape, generator=torch.Generator().manual_seed(9), dtype=F64)  # on the CPU
    q = TQ.sr_quantize_tensor_with_uniforms(wc, spec, u)
    assert q.is_cuda and _bits_equal(q.cpu(), NQ.sr_quantize_with_uniforms(w.numpy(), spec, u.numpy()))
    q = TQ.quantize_tensor(wc, spec, generator=torch.Generator(device="cuda").manual_seed(1))
    assert q.is_cuda


def _stream_scores(P=6, n=7, seed=13):
    return torch.randn(n, P, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_monitor_dense_fallback_when_lanczos_stops_short():
    """max_iter = 1: from t = 2 on one Lanczos step cannot reach tol = 1e-10, so every push
    falls back to the dense eigh — the values stay exact and the fallbacks are counted."""
    G = _stream_scores()
    mon = MON._ScoreStream(6, 1.0, max_iter=1)
    for t in range(1, 8):
        mon.push_score(G[t - 1])
        assert mon.lambdas[-1] == pytest.approx(_dense_lam(G[:t]), rel=1e-12)
        # the stored warm-start vector is the top eigenvector of K_t (up to sign)
        K = (G[:t] @ G[:t].T).numpy()
        top = np.linalg.eigh(K)[1][:, -1]
        assert abs(float(np.dot(mon._u.numpy(), top))) == pytest.approx(1.0, abs=1e-9)
    assert mon.iterations == [0] + [1] * 6 or mon.iterations == [1] * 7
    assert mon.fallbacks == 6


def test_monitor_warm_start_is_the_padded_top_vector():
    """A rank-one stream g_t = c_t v: the padded previous top vector (new coordinate
    k·u/λ) is exactly the new top vector, so every warm-started push converges in one
    Lanczos step; a cold start (all-ones, c of mixed signs) needs two. Scores are small
    (λ < 1) on purpose."""
    v = torch.tensor([0.1, -0.1, 0.05], dtype=F64)
    c = torch.tensor([1.0, -2.0, 0.5, 1.5, -1.0, 0.7], dtype=F64)
    mon = MON._ScoreStream(3, 1.0)
    for t, ct in enumerate(c, start=1):
        mon.push_score(ct * v)
        assert mon.lambdas[-1] == pytest.approx(float((c[:t] ** 2).sum() * (v**2).sum()) / t, rel=1e-12)
    assert mon._lam_unnorm < 1.0
    # the start is the padded top vector plus a small seeded random component: K has rank one,
    # so two Lanczos steps span the top vector
    assert mon.iterations[1:] == [2] * 5 and mon.fallbacks == 0


@pytest.mark.parametrize("window", [None, 3])
def test_monitor_score_orthogonal_to_the_previous_ones(window):
    """g_2 ⟂ g_1 with |g_2| > |g_1|: the warm start (u, k·u/λ) = (1, 0) spans an invariant
    subspace of K = diag(1, 9), where Lanczos converges to the eigenvalue 1 with residual 0.
    λ_max(F_2) is 9/2 (this was reported as 1/2). The same with a 2-D block: the start lies in
    the block of eigenvalue 8, the top eigenvalue 9 is in the other one."""
    mon = MON._ScoreStream(2, 1.0, window=window)
    mon.push_score(torch.tensor([1.0, 0.0], dtype=F64))
    mon.push_score(torch.tensor([0.0, 3.0], dtype=F64))
    assert mon.lambdas == [pytest.approx(1.0, rel=1e-12), pytest.approx(4.5, rel=1e-12)]
    G = torch.tensor([[8**0.5, 0, 0], [0, 5**0.5, 0], [0, 4 / 5**0.5, (5 - 16 / 5) ** 0.5]], dtype=F64)
    assert MON.sigma_trace(G, 1.0, window=window)[-1] == pytest.approx(_dense_lam(G[-3:]), rel=1e-12)
    assert _dense_lam(G) == pytest.approx(3.0, rel=1e-12)


def test_monitor_zero_first_score_then_a_real_one():
    G = _stream_scores(n=4)
    G[0] = 0.0
    mon = MON._ScoreStream(6, 1.0)
    for t in range(1, 5):
        mon.push_score(G[t - 1])
        assert math.isfinite(mon.lambdas[-1])
        assert mon.lambdas[-1] == pytest.approx(_dense_lam(G[:t]), rel=1e-12, abs=1e-300)


def test_monitor_tolerance_reaches_lanczos():
    """tol = 100: the first Ritz pair is accepted (residual ≤ λ_max ≤ 100·θ here), one step
    per push; with the default 1e-10 it would need more."""
    G = _stream_scores(n=6)
    mon = MON._ScoreStream(6, 1.0, tol=100.0)
    for row in G:
        mon.push_score(row)
    assert mon.iterations[1:] == [1] * 5 and mon.fallbacks == 0
    tight = MON._ScoreStream(6, 1.0)
    for row in G:
        tight.push_score(row)
    assert max(tight.iterations) > 1


def test_monitor_push_score_casts_and_checks():
    G = _stream_scores(n=3)
    mon = MON._ScoreStream(6, 2.0)
    mon.push_score(G[0].float())  # float32 score into a float64 stream
    mon.push_score(G[1].numpy())  # numpy array
    mon.push_score(G[2].tolist())  # list
    G32 = torch.stack([G[0].float().double(), G[1], G[2]])
    assert mon.lambdas[-1] == pytest.approx(_dense_lam(G32), rel=1e-12)
    with pytest.raises(InputError) as exc:
        mon.push_score(torch.ones(5))
    assert str(exc.value) == "score has length 5, expected P = 6"
    bad = G[0].clone()
    bad[2] = float("inf")
    with pytest.raises(InputError) as exc:
        mon.push_score(bad)
    assert str(exc.value) == "score has NaN or inf entries"


def test_monitor_push_rejects_non_tokens_with_the_reason():
    lm = _TinyLM().eval()
    mon = MON.SigmaMonitor(lm, ["head.bias"], 1.0)
    msg = "push expects integer token(s): an int, a 0-d or 1-D integer tensor, or a classifier pair (x, y)"
    for bad in (torch.tensor([[1, 2], [3, 4]]), torch.tensor([1.0, 2.0]), torch.tensor([1 + 2j])):
        with pytest.raises(InputError) as exc:
            mon.push(bad)
        assert str(exc.value) == msg
    with pytest.raises(InputError) as exc:
        mon.push((torch.zeros(3), 1, 2))
    assert str(exc.value) == "a classifier sample must be a pair (x, y)"


def test_top_eig_warm_defaults_and_start_vector():
    g = torch.Generator().manual_seed(14)
    A = torch.randn(12, 12, generator=g, dtype=F64)
    K = A @ A.T
    w, V = np.linalg.eigh(K.numpy())
    val, vec, it, ok = MON.top_eig_warm(K, None)  # default tol 1e-10
    assert ok and val == pytest.approx(w[-1], rel=1e-9)
    assert float(np.linalg.norm(K.numpy() @ vec.numpy() - val * vec.numpy())) <= 1e-10 * val * 1.0001
    top = torch.from_numpy(V[:, -1].copy())
    for start in (top, 3.0 * top):  # the exact top vector (unit norm, or not): one step
        val, vec, it, ok = MON.top_eig_warm(K, start)
        assert ok and it == 1 and val == pytest.approx(w[-1], rel=1e-12)
    val, vec, it, ok = MON.top_eig_warm(K, torch.zeros(12))  # zero start → all-ones start
    assert ok and val == pytest.approx(w[-1], rel=1e-9)
    val, vec, it, ok = MON.top_eig_warm(K, None, max_iter=1)
    assert it == 1 and not ok


# --------------------------------------------------------------------------------------
# torch_checks.streaming
# --------------------------------------------------------------------------------------

from torch_checks import streaming as STR  # noqa: E402


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("seed", [22, 23, 27])
def test_streaming_embedding_scores_of_distinct_tokens(window, seed):
    """θ = the embedding: the score of position t lives in the row of token x_t, so distinct
    tokens give orthogonal scores and the warm start (u, col·u/θ) spans an invariant subspace.
    Every λ_max(F_t) must equal the dense float64 value (it was off by up to 83%)."""
    torch.manual_seed(seed)
    lm = _TinyLM().double().eval()
    toks = [0, 1, 2, 3, 4, 5, 6]
    st = STR.StreamingSigma(lm, ["emb.weight"], 1.0, window=window)
    for t in toks:
        st.push(t)
    G = _autograd_rows(lm, ["emb.weight"], torch.tensor(toks[:-1]), torch.tensor(toks[1:]), per_token=True)
    ref = [_dense_lam(G[(0 if window is None else max(0, t - window)) : t]) for t in range(1, len(toks))]
    np.testing.assert_allclose(st.lambdas[1:], ref, rtol=1e-10)


def test_require_eval_mode_messages_and_warning_location():
    def model(n_drop, root_eval=False):
        m = nn.Sequential(nn.Linear(2, 2), *[nn.Dropout(0.1) for _ in range(n_drop)])
        if root_eval:  # the root in eval mode, its dropouts still training
            m.eval()
            for d in list(m)[1:]:
                d.train()
        return m

    tail = (
        " in training mode (dropout or batch statistics would change every score); call model.eval() "
        "first, or pass training='eval' to let it switch the model to eval mode"
    )
    with pytest.raises(InputError) as exc:
        MON.require_eval_mode(model(1))
    assert str(exc.value) == "the monitor needs a model in eval mode, but 1 (Dropout) is" + tail
    with pytest.raises(InputError) as exc:
        MON.require_eval_mode(model(4, root_eval=True), what="X")
    assert (
        str(exc.value)
        == "X needs a model in eval mode, but 1 (Dropout), 2 (Dropout), 3 (Dropout), 4 (Dropout) are" + tail
    )
    with pytest.raises(InputError) as exc:
        MON.require_eval_mode(model(6), what="X")
    shown = "1 (Dropout), 2 (Dropout), 3 (Dropout), 4 (Dropout) and 2 more"
    assert str(exc.value) == f"X needs a model in eval mode, but {shown} are" + tail
    with pytest.raises(InputError, match=r"^SigmaMonitor needs a model in eval mode, but 1 \(Dropout\) is"):
        MON.SigmaMonitor(model(1), ["0.bias"], 1.0)
    with pytest.warns(UserWarning) as rec:
        MON.SigmaMonitor(model(1), ["0.bias"], 1.0, training="eval")
    assert str(rec[0].message) == "SigmaMonitor: switched the model to eval mode (1 (Dropout) in training mode)"


def test_monitor_constructor_checks_name_the_argument():
    lm = _TinyLM().eval()
    cases = [
        (dict(model=3), "model must be a torch.nn.Module, got int"),
        (dict(lambda_base=0.0), "lambda_base must be positive and finite, got 0.0"),
        (dict(window=0), "window must be a positive integer or None, got 0"),
        (dict(window=True), "window must be a positive integer or None, got True"),
        (dict(window=2.5), "window must be a positive integer or None, got 2.5"),
        (dict(dtype=torch.int64), "dtype must be torch.float64 or torch.float32, got torch.int64"),
        (dict(tol=0.0), "tol must be positive, got 0.0"),
        (dict(max_context=0), "max_context must be a positive integer or None, got 0"),
    ]
    for kw, msg in cases:
        args = dict(model=lm, lambda_base=1.0)
        args.update(kw)
        model, lb = args.pop("model"), args.pop("lambda_base")
        with pytest.raises(InputError) as exc:
            MON.SigmaMonitor(model, ["head.bias"], lb, **args)
        assert str(exc.value) == msg
    # the smallest legal values are accepted: window 1 (every F_t has one score), max_context 1
    torch.manual_seed(15)
    lm = _TinyLM().double().eval()
    tok = torch.randint(0, 7, (6,))
    mon = MON.SigmaMonitor(lm, ["head.weight"], 1.0, window=1, max_context=1)
    mon.push(tok)
    G = _autograd_rows(lm, ["head.weight"], tok[:-1], tok[1:], per_token=True)
    np.testing.assert_allclose(mon.lambdas, [float(G[t] @ G[t]) for t in range(5)], rtol=1e-12)


def test_monitor_float32_model_scored_in_float64():
    torch.manual_seed(16)
    lm = _TinyLM().eval()  # float32 parameters
    tok = torch.randint(0, 7, (7,))
    mon = MON.SigmaMonitor(lm, ["head.weight", "emb.weight"], 1.0)
    mon.push(tok)
    G = _autograd_rows(lm, ["head.weight", "emb.weight"], tok[:-1], tok[1:], per_token=True)
    assert mon.lambdas[-1] == pytest.approx(_dense_lam(G), rel=1e-12)


def test_top_eig_warm_small_scale_float32_and_zero_matrix():
    g = torch.Generator().manual_seed(17)
    A = torch.randn(10, 10, generator=g, dtype=F64)
    for scale in (1e-6, 1e6):
        K = scale * (A @ A.T)
        w = np.linalg.eigvalsh(K.numpy())
        val, vec, it, ok = MON.top_eig_warm(K, None, tol=1e-10)
        res = float(np.linalg.norm(K.numpy() @ vec.numpy() - val * vec.numpy()))
        assert ok and res <= 1e-10 * val and val == pytest.approx(w[-1], rel=1e-9)
        assert float(torch.linalg.vector_norm(vec)) == pytest.approx(1.0, abs=1e-12)
    K32 = (A @ A.T).float()
    val, vec, it, ok = MON.top_eig_warm(K32, None, tol=1e-5)
    assert vec.dtype == torch.float32 and val == pytest.approx(
        float(np.linalg.eigvalsh(K32.double().numpy())[-1]), rel=1e-5
    )
    assert MON.top_eig_warm(torch.zeros(4, 4, dtype=F64), None) == (0.0, pytest.approx(torch.full((4,), 0.5)), 0, True)


def test_streaming_dense_fallback_when_lanczos_stops_short():
    """max_iter = 1: from two scores on, one Lanczos step cannot reach the tolerance, so every
    push falls back to eigh — values exact, fallbacks counted."""
    torch.manual_seed(18)
    lm = _TinyLM().double().eval()
    toks = torch.randint(0, 7, (8,)).tolist()
    st = STR.StreamingSigma(lm, ["head.weight"], 1.0, max_iter=1)
    for t in toks:
        st.push(t)
    G = _autograd_rows(lm, ["head.weight"], torch.tensor(toks[:-1]), torch.tensor(toks[1:]), per_token=True)
    np.testing.assert_allclose(st.lambdas[1:], [_dense_lam(G[:t]) for t in range(1, 8)], rtol=1e-12)
    assert st.fallbacks == 6


# --------------------------------------------------------------------------------------
# torch_checks.engines
# --------------------------------------------------------------------------------------

from torch_checks import engines as ENG  # noqa: E402


@pytest.mark.parametrize(
    ("n", "P", "method", "operator"), [(9, 4, "dense", "F"), (4, 9, "gram", "K"), (4, 9, "dense", "F")]
)
def test_lambda_max_result_records_what_was_computed(n, P, method, operator):
    G = torch.randn(n, P, generator=torch.Generator().manual_seed(19), dtype=F64)
    ref = _dense_lam(G)
    r = ENG.lambda_max(G, method=method)
    assert r.value == pytest.approx(ref, rel=1e-12)
    assert (r.method, r.iterations, r.n, r.P, r.operator, r.vector) == (method, 0, n, P, operator, None)
    auto = ENG.lambda_max(G)  # small: a dense eigh of the smaller of F and K
    assert auto.method == ("dense" if P <= n else "gram") and auto.vector is None
    lz = ENG.lambda_max(G, method="lanczos")
    assert lz.value == pytest.approx(ref, rel=1e-9)
    assert (lz.method, lz.n, lz.P, lz.operator) == ("lanczos", n, P, "K" if n < P else "F")


def test_engine_input_errors_name_the_problem():
    cases = [
        ([[1.0]], "G must be a torch.Tensor, got list"),
        (torch.zeros(0, 3), "G must be a non-empty 2-D (n, P) tensor, got shape (0, 3)"),
        (torch.zeros(3, dtype=torch.int64).reshape(1, 3), "G must be a real floating tensor, got torch.int64"),
    ]
    bad = torch.ones(2, 3, dtype=F64)
    bad[1, 2] = float("nan")
    cases.append((bad, "G has a NaN or inf entry at index (1, 2)"))
    for G, msg in cases:
        with pytest.raises(InputError) as exc:
            ENG.lambda_max(G)
        assert str(exc.value) == msg
