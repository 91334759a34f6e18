"""Torch quantizers (:mod:`torch_checks.quantizers`): agreement with the numpy reference and
cross-checks against real quantization libraries on CPU.

Agreement tolerances (each test states its own):

* torch vs numpy: **bit for bit** (0 ulp) for every scheme, dtype (float64, float32,
  float16, bfloat16) and device; SR bit for bit given the same uniforms.
* optimum-quanto, float64 weights: bit for bit (qint8 symmetric per channel / per tensor,
  qint4 / qint2 affine per channel and group-wise).
* optimum-quanto, float32 weights (quanto computes in float32, we in float64):
  ``|Δ| ≤ 4·eps32·max|w_g|`` per group; measured ≤ 2.0·eps32·max|w_g|, no code flips on
  the seeded data.
* gguf Q4_0 / Q4_1 (float32 weights): bit for bit after casting our float64 result to
  float32 (measured: 0 differing entries).
* bitsandbytes NF4 on CPU (float32, 16-bit inputs): bit for bit.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch quantizers need torch (fimtheory[torch])")

from fimtheory.errors import InputError, UnknownIdError  # noqa: E402
from fimtheory.quantize import (  # noqa: E402
    NF4_CODE,
    SCHEME_EXAMPLES,
    parse_scheme,
    quantize,
    sr_quantize_with_uniforms,
    step_sizes,
)
from torch_checks.quantizers import (  # noqa: E402
    quantize_module_,
    quantize_tensor,
    sr_quantize_tensor_with_uniforms,
    step_sizes_tensor,
)

pytestmark = pytest.mark.torch

EPS32 = float(np.finfo(np.float32).eps)

DETERMINISTIC_SPECS = [
    "rtn-int2-sym-channel",
    "rtn-int3-asym-tensor",
    "rtn-int4-sym-channel",
    "rtn-int4-asym-g64",
    "rtn-int4-sym-g32",
    "rtn-int8-sym-tensor",
    "rtn-int8-asym-channel",
    "nf4-b64",
    "nf4-channel",
    "fp4-b32",
    "fp4-tensor",
    "gguf-q4_0",
    "gguf-q4_1",
]
SR_SPECS = ["sr-int4-sym-channel", "sr-int4-asym-g32", "sr-int8-sym-tensor", "sr-int2-asym-g64"]
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device available"),
        ],
    ),
]


def make_w(shape=(16, 128), seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=torch.float64) * 0.05
    return w.to(device=device, dtype=dtype)


def numpy_ref(w, spec):
    return torch.from_numpy(quantize(w.double().cpu().numpy(), spec)).to(w.dtype)


# -- torch vs numpy -------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("spec", DETERMINISTIC_SPECS)
def test_bit_for_bit_with_numpy(spec, dtype, device):
    """Tolerance 0: torch.equal with the numpy result on w.double(), cast to w.dtype."""
    w = make_w(dtype=dtype, device=device)
    q = quantize_tensor(w, spec)
    assert q.dtype == dtype and q.device == w.device and q.shape == w.shape
    assert torch.equal(q.cpu(), numpy_ref(w, spec))
    s = step_sizes_tensor(w, spec)
    assert torch.equal(s.cpu(), torch.from_numpy(step_sizes(w.double().cpu().numpy(), spec)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", DETERMINISTIC_SPECS)
def test_bit_for_bit_1d(spec, device):
    w = make_w((128,), seed=1, device=device)
    assert torch.equal(quantize_tensor(w, spec).cpu(), numpy_ref(w, spec))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("spec", SR_SPECS)
def test_sr_bit_for_bit_given_uniforms(spec, dtype, device):
    """Tolerance 0 for SR driven by the same uniforms."""
    w = make_w(dtype=dtype, device=device)
    u = torch.rand(w.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    q = sr_quantize_tensor_with_uniforms(w, spec, u.to(device))
    ref = sr_quantize_with_uniforms(w.double().cpu().numpy(), spec, u.numpy())
    assert torch.equal(q.cpu(), torch.from_numpy(ref).to(dtype))


@pytest.mark.parametrize("spec", SR_SPECS)
def test_sr_with_generator_neighbours_and_reproducible(spec):
    s = parse_scheme(spec)
    w = make_w((8, 64), seed=4)
    zeros = torch.zeros(w.shape, dtype=torch.float64)
    ones = torch.full(w.shape, 1 - 2.0**-53, dtype=torch.float64)
    down = sr_quantize_tensor_with_uniforms(w, s, ones)  # u ≥ frac always: round down
    up = sr_quantize_tensor_with_uniforms(w, s, zeros)  # u < frac unless frac = 0
    a = quantize_tensor(w, s, generator=torch.Generator().manual_seed(9))
    b = quantize_tensor(w, s, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    assert bool(((a == down) | (a == up)).all())
    mean = torch.stack([quantize_tensor(w, s, generator=torch.Generator().manual_seed(k)) for k in range(400)]).mean(0)
    step = step_sizes_tensor(w, s)
    # 6 standard errors of a mean of 400 Bernoulli-scaled draws (SE ≤ s/(2·20))
    assert bool((torch.abs(mean - w) <= 6 * step / 40 + 1e-12).all())


def test_sr_needs_generator():
    with pytest.raises(InputError, match="torch.Generator"):
        quantize_tensor(make_w(), "sr-int4-sym-channel")


@pytest.mark.parametrize(
    ("w", "match"),
    [
        (np.ones(4), "torch.Tensor"),
        (torch.ones(4, dtype=torch.int64), "floating dtype"),
        (torch.ones(2, 2, 2), "1-D or 2-D"),
        (torch.ones(0, 4), "empty"),
        (torch.tensor([1.0, float("nan")]), "non-finite"),
        (torch.tensor([[1.0, float("-inf")]]), "non-finite"),
    ],
)
def test_bad_input_rejected(w, match):
    with pytest.raises(InputError, match=match):
        quantize_tensor(w, "rtn-int4-sym-channel")


def test_bad_scheme_and_group_size():
    with pytest.raises(UnknownIdError):
        quantize_tensor(make_w(), "int4")
    with pytest.raises(InputError, match="does not divide"):
        quantize_tensor(make_w((4, 48)), "nf4-b64")


def test_input_not_modified_and_no_grad():
    w = make_w().requires_grad_(True)
    before = w.detach().clone()
    q = quantize_tensor(w, "rtn-int4-sym-channel")
    assert torch.equal(w.detach(), before) and not q.requires_grad


# -- quantize_module_ -------------------------------------------------------------------------


class TinyLM(torch.nn.Module):
    def __init__(self, tie=False):
        super().__init__()
        self.emb = torch.nn.Embedding(40, 64)
        self.fc = torch.nn.Linear(64, 64)
        self.head = torch.nn.Linear(64, 40, bias=False)
        if tie:
            self.head.weight = self.emb.weight


def tiny(tie=False, dtype=torch.float32):
    torch.manual_seed(0)
    return TinyLM(tie).to(dtype)


@pytest.mark.parametrize(
    ("include", "expected"),
    [
        (None, {"emb.weight", "fc.weight", "head.weight"}),
        ("linear", {"fc.weight", "head.weight"}),
        ("embedding", {"emb.weight"}),
        ([torch.nn.Linear, "embedding"], {"emb.weight", "fc.weight", "head.weight"}),
        (lambda name, m: name == "fc", {"fc.weight"}),
    ],
)
def test_quantize_module_selects_and_returns_deltas(include, expected):
    m = tiny()
    orig = {k: v.detach().clone() for k, v in m.state_dict().items()}
    deltas = quantize_module_(m, "rtn-int4-sym-g32", include=include)
    assert set(deltas) == expected
    sd = m.state_dict()
    for name, value in sd.items():
        if name in expected:
            assert torch.equal(value, quantize_tensor(orig[name], "rtn-int4-sym-g32"))
            assert deltas[name].dtype == torch.float64
            assert torch.equal(deltas[name], value.double() - orig[name].double())
        else:
            assert torch.equal(value, orig[name])  # biases and unselected weights untouched


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_quantize_module_preserves_dtype(dtype):
    m = tiny(dtype=dtype)
    quantize_module_(m, "nf4-b64")
    assert all(p.dtype == dtype for p in m.parameters())


def test_quantize_module_tied_weights_once():
    m = tiny(tie=True)
    orig = m.emb.weight.detach().clone()
    deltas = quantize_module_(m, "rtn-int4-sym-channel")
    assert set(deltas) == {"emb.weight", "fc.weight"}
    assert m.head.weight is m.emb.weight
    assert torch.equal(m.emb.weight, quantize_tensor(orig, "rtn-int4-sym-channel"))


def test_quantize_module_sr_with_generator():
    m = tiny()
    d1 = quantize_module_(m, "sr-int4-sym-channel", generator=torch.Generator().manual_seed(0))
    m2 = tiny()
    d2 = quantize_module_(m2, "sr-int4-sym-channel", generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(d1[k], d2[k]) for k in d1)


def test_quantize_module_errors_name_the_parameter():
    with pytest.raises(InputError, match=r"fc\.weight"):
        quantize_module_(tiny(), "rtn-int4-sym-g48", include="linear")
    with pytest.raises(InputError, match="unknown module kind"):
        quantize_module_(tiny(), "nf4-b64", include="conv")
    with pytest.raises(InputError, match="nn.Module"):
        quantize_module_(object(), "nf4-b64")


# -- cross-checks against real libraries -----------------------------------------------------


def _import_quanto():
    """Import optimum.quanto, working around a torchvision build that does not match torch.

    quanto imports transformers, which imports torchvision when it is installed; a
    torchvision compiled for another torch fails at import ("operator torchvision::nms does
    not exist"). In that case torchvision is hidden from this process (it is unusable
    anyway) and the import is retried.
    """
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass
    except Exception:  # broken binary build: hide it
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        sys.modules["torchvision"] = None
    return pytest.importorskip("optimum.quanto", reason="optimum-quanto not installed (fimtheory[torch] extra)")


QUANTO_CASES = [
    # (quanto qtype name, group size or None (per output channel), our spec)
    ("qint8", None, "rtn-int8-sym-channel"),
    ("qint8", "tensor", "rtn-int8-sym-tensor"),
    ("qint4", None, "rtn-int4-asym-channel"),
    ("qint4", 32, "rtn-int4-asym-g32"),
    ("qint4", 128, "rtn-int4-asym-g128"),
    ("qint2", 64, "rtn-int2-asym-g64"),
]


def _quanto_dequantize(quanto, w, qname, group):
    from optimum.quanto.tensor.optimizers import AbsmaxOptimizer, MaxOptimizer
    from optimum.quanto.tensor.weights.qbytes import WeightQBytesTensor

    qtype = getattr(quanto, qname)
    if qname == "qint8":
        if group == "tensor":
            scale = AbsmaxOptimizer()(w, qtype, axis=None)
            return WeightQBytesTensor.quantize(w, qtype, None, scale, None, False).dequantize()
        scale = AbsmaxOptimizer()(w, qtype, axis=0)
        return quanto.quantize_weight(w, qtype, axis=0, scale=scale, optimized=False).dequantize()
    scale, shift = MaxOptimizer()(w, qtype, axis=0, group_size=group)
    return quanto.quantize_weight(
        w, qtype, axis=0, scale=scale, shift=shift, group_size=group, optimized=False
    ).dequantize()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("qname", "group", "spec"), QUANTO_CASES)
def test_quanto_float64_bit_for_bit(qname, group, spec, seed):
    """Tolerance 0: quanto on float64 weights equals our float64 result exactly."""
    quanto = _import_quanto()
    w = make_w((32, 256), seed=seed)
    ref = _quanto_dequantize(quanto, w, qname, group)
    assert ref.dtype == torch.float64
    assert torch.equal(ref, quantize_tensor(w, spec))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("qname", "group", "spec"), QUANTO_CASES)
def test_quanto_float32(qname, group, spec, seed):
    """Tolerance |Δ| ≤ 4·eps32·max|w_g| per group (quanto works in float32; measured ≤ 2)."""
    quanto = _import_quanto()
    w = make_w((32, 256), seed=seed, dtype=torch.float32)
    ref = _quanto_dequantize(quanto, w, qname, group).double().numpy()
    ours = quantize(w.double().numpy(), spec)
    s = parse_scheme(spec)
    g = w.double().numpy().reshape(-1, 256 if s.granularity != "group" else s.group_size)
    if s.granularity == "tensor":
        g = g.reshape(1, -1)
    amax = np.abs(g).max(axis=1, keepdims=True)
    diff = np.abs(ref - ours).reshape(g.shape)
    assert np.all(diff <= 4 * EPS32 * amax)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("qname", "spec"), [("Q4_0", "gguf-q4_0"), ("Q4_1", "gguf-q4_1")])
def test_gguf_bit_for_bit(qname, spec, seed):
    """Tolerance 0: gguf's numpy reference Q4_0 / Q4_1 (float32) vs ours cast to float32.

    Codes could in principle differ at exact float32 near-ties (gguf computes w·(1/d) in
    float32, we in float64); none occur on this seeded data.
    """
    gguf = pytest.importorskip("gguf", reason="gguf not installed (fimtheory[torch] extra)")
    qtype = getattr(gguf.GGMLQuantizationType, qname)
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((32, 256)) * 0.05).astype(np.float32)
    w[3, :32] = 0.0  # an all-zero block
    ref = gguf.quants.dequantize(gguf.quants.quantize(w, qtype), qtype)
    ours = quantize(w.astype(np.float64), spec).astype(np.float32)
    np.testing.assert_array_equal(ref, ours)
    ours_t = quantize_tensor(torch.from_numpy(w), spec).numpy()
    np.testing.assert_array_equal(ref, ours_t)


@pytest.fixture(scope="module")
def bnb_functional():
    pytest.importorskip("bitsandbytes", reason="bitsandbytes not installed (optional cross-check)")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes.functional as F
    try:
        q, st = F.quantize_4bit(torch.ones(64), blocksize=64, quant_type="nf4")
        F.dequantize_4bit(q, st)
    except Exception as exc:  # pragma: no cover - depends on the installed build
        pytest.skip(f"bitsandbytes NF4 does not run on CPU here: {type(exc).__name__}: {exc}")
    return F


def test_bnb_nf4_codebook(bnb_functional):
    code = bnb_functional.get_4bit_type("nf4", device="cpu")
    np.testing.assert_array_equal(code.double().numpy(), NF4_CODE)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("block", [64, 128])
def test_bnb_nf4_bit_for_bit(bnb_functional, block, dtype):
    """Tolerance 0: bitsandbytes NF4 (CPU) dequantized vs ours in the same dtype."""
    F = bnb_functional
    w = make_w((32, 256), seed=block, dtype=dtype)
    q, st = F.quantize_4bit(w, blocksize=block, quant_type="nf4")
    ref = F.dequantize_4bit(q, st).reshape(w.shape)
    assert ref.dtype == dtype
    assert torch.equal(ref, quantize_tensor(w, f"nf4-b{block}"))


def test_scheme_examples_all_run_in_torch():
    w = make_w((4, 128))
    for spec in SCHEME_EXAMPLES:
        q = quantize_tensor(w, spec, generator=torch.Generator().manual_seed(0))
        assert q.shape == w.shape
