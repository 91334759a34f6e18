"""Quantizing Hugging Face ``Conv1D`` weights (GPT-2 family) along the right axis.

A ``Conv1D`` weight is (in_features, out_features), the transpose of ``nn.Linear``'s, so its
output channels are its columns. :func:`torch_checks.checks.quantize_model`,
:func:`~torch_checks.checks.quantized_copy` and
:func:`torch_checks.quantizers.quantize_module_` must quantize it as the ``nn.Linear`` with
weight Wᵀ would be: per-channel scales per output column, integer groups, NF4/FP4 blocks and
GGUF blocks along the input dimension (llama.cpp's GPT-2 converter transposes these weights,
bitsandbytes too). References: an ``nn.Linear`` stack with weights Wᵀ through the same entry
point, and the numpy quantizer of :mod:`fimtheory.quantize` on Wᵀ (independent of torch).
Weights left in full precision are named, never dropped silently.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")
pytest.importorskip("transformers", reason="the GPT-2 models need transformers")

from torch import nn  # noqa: E402

from fimtheory.errors import InputError  # noqa: E402
from fimtheory.quantize import quantize as np_quantize  # noqa: E402
from tests import byo_models as B  # noqa: E402
from torch_checks import checks as C  # noqa: E402
from torch_checks.quantizers import is_hf_conv1d, quantize_module_  # noqa: E402

pytestmark = pytest.mark.torch

#: Scheme specs covering each quantizer family: per-channel and group integers (RTN, SR),
#: NF4 blocks dividing the rows and blocks that must be taken over the flattened (out, in)
#: tensor (c_attn's Wᵀ is 96 × 32, NF4-b64), FP4, GGUF Q4_0 / Q8_0 and the k-quant fallback.
SCHEMES = [
    "rtn-int4-sym-channel",
    "rtn-int4-asym-channel",
    "rtn-int3-asym-g16",
    "sr-int4-sym-channel",
    "nf4-b32",
    "nf4-b64",
    "fp4-b32",
    "gguf-q4_0",
    "gguf-q8_0",
    "gguf-q4_k-or-q5_0",
]


def _gpt2():
    return B.gpt2_model(seed=11).double()


def _params(model) -> dict:
    return dict(model.named_parameters(remove_duplicate=False))  # tied aliases too (lm_head)


def _conv1d_names(model) -> list[str]:
    return [f"{n}.weight" for n, m in model.named_modules() if is_hf_conv1d(m)]


def _linear_reference(model) -> tuple[nn.Sequential, list[str]]:
    """The model's quantizable weights, in module order, as ``nn.Linear`` layers with weight
    (out, in): Wᵀ for a Conv1D, W itself for an ``nn.Linear`` (GPT-2's tied head)."""
    layers, names = [], []
    for name, mod in model.named_modules():
        if is_hf_conv1d(mod):
            w = mod.weight.detach().T.clone()
        elif isinstance(mod, nn.Linear):
            w = mod.weight.detach().clone()
        else:
            continue
        lin = nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(w)
        layers.append(lin)
        names.append(f"{name}.weight")
    return nn.Sequential(*layers), names


def _np_reference(w_out_in: torch.Tensor, spec: str) -> np.ndarray:
    """Q of an (out, in) weight by the numpy quantizer; NF4/FP4 blocks not dividing a row are
    taken over the flattened tensor (the documented bitsandbytes rule)."""
    a = w_out_in.detach().numpy()
    try:
        return np_quantize(a, spec)
    except InputError:
        return np_quantize(a.reshape(-1), spec).reshape(a.shape)


def test_the_tiny_gpt2_has_conv1d_weights_of_shape_in_out():
    model = _gpt2()
    names = _conv1d_names(model)
    assert len(names) == 8  # c_attn, attn.c_proj, c_fc, mlp.c_proj in each of 2 blocks
    params = _params(model)
    assert tuple(params["transformer.h.0.mlp.c_fc.weight"].shape) == (32, 128)  # (in, out)
    assert tuple(params["transformer.h.0.mlp.c_proj.weight"].shape) == (128, 32)


@pytest.mark.parametrize("spec", SCHEMES)
def test_conv1d_quantization_equals_the_linear_on_the_transpose(spec):
    """quantize_model on GPT-2 = quantize_model on nn.Linear(weight = Wᵀ), bit for bit, for
    every weight (SR: the same seeded generator walks the weights in the same order)."""
    model = _gpt2()
    ref, names = _linear_reference(model)
    gen = (lambda: torch.Generator().manual_seed(5)) if spec.startswith("sr-") else (lambda: None)
    q, deltas = C.quantize_model(model, spec, generator=gen())
    qref, dref = C.quantize_model(ref, spec, generator=gen())
    assert list(deltas) == names  # every Conv1D and the head, nothing else, in module order
    qparams = _params(q)
    conv = set(_conv1d_names(model))
    for i, name in enumerate(names):
        expect = qref[i].weight.detach()
        got = qparams[name].detach()
        got_out_in = got.T if name in conv else got
        assert torch.equal(got_out_in, expect), name
        assert torch.equal(deltas[name].T if name in conv else deltas[name], dref[f"{i}.weight"]), name
    assert any(bool(deltas[n].abs().max() > 0) for n in conv)


@pytest.mark.parametrize("spec", [s for s in SCHEMES if not s.startswith("sr-")])
def test_conv1d_quantization_matches_numpy_on_the_transpose(spec):
    """An independent reference: fimtheory.quantize (numpy) on Wᵀ (out, in), transposed back."""
    model = _gpt2()
    q, summary = C.quantized_copy(model, spec)
    qparams = _params(q)
    for name in _conv1d_names(model):
        w = _params(model)[name].detach()
        expect = _np_reference(w.T, spec).T
        np.testing.assert_array_equal(qparams[name].detach().numpy(), expect, err_msg=name)
    assert summary.changed > 0


def test_per_channel_scale_follows_the_output_column():
    """Scaling one output column of c_fc (a column of the (in, out) weight) by 1000 changes
    only that column's quantized values (its scale ×1000); with the scale taken along the
    wrong axis (rows of W) every column would change."""
    spec, col = "rtn-int4-sym-channel", 5
    model = _gpt2()
    name = "transformer.h.1.mlp.c_fc.weight"
    scaled = _gpt2()
    with torch.no_grad():
        _params(scaled)[name][:, col].mul_(1000.0)
    q0 = _params(C.quantized_copy(model, spec)[0])[name].detach()
    q1 = _params(C.quantized_copy(scaled, spec)[0])[name].detach()
    w0 = _params(model)[name].detach()
    assert not torch.equal(q0, w0)  # quantization happened
    others = [j for j in range(w0.shape[1]) if j != col]
    assert torch.equal(q1[:, others], q0[:, others])
    torch.testing.assert_close(q1[:, col], 1000.0 * q0[:, col], rtol=1e-12, atol=0.0)
    # the column's step: its distinct nonzero magnitudes are multiples of max|w_col| / 7
    step = float(w0[:, col].abs().max()) / 7.0
    levels = (q0[:, col] / step).numpy()
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-9)
    # the check is able to fail: row-wise scales (the wrong axis) move the other columns too
    from torch_checks.quantizers import quantize_tensor

    wrong0 = quantize_tensor(w0, spec)
    wrong1 = quantize_tensor(_params(scaled)[name].detach(), spec)
    assert not torch.equal(wrong1[:, others], wrong0[:, others])


def test_summary_names_what_was_and_was_not_quantized():
    model = _gpt2()
    before = {n: p.detach().clone() for n, p in _params(model).items()}
    q, summary = C.quantized_copy(model, "rtn-int4-sym-channel")
    assert all(torch.equal(before[n], p) for n, p in _params(model).items())  # the original is untouched
    shared = [n for n, p in _params(q).items() if p is _params(model)[n]]
    assert not set(shared) & set(_conv1d_names(model))  # Conv1D weights are copied, not shared
    ref, names = _linear_reference(model)
    assert summary.quantized == tuple(names)
    assert len(summary.quantized) == 9  # 8 Conv1D + the head (tied to wte, quantized once)
    assert summary.not_quantized == ("transformer.wpe.weight (Embedding)",)
    assert summary.total == sum(lin.weight.numel() for lin in ref)
    changed = sum(
        int(np.count_nonzero(_np_reference(lin.weight, "rtn-int4-sym-channel") != lin.weight.detach().numpy()))
        for lin in ref
    )
    assert summary.changed == changed


def test_unknown_weight_types_are_named_and_tied_weights_quantized_once():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a = nn.Linear(8, 8, dtype=torch.float64)
            self.b = nn.Linear(8, 8, dtype=torch.float64)
            self.b.weight = self.a.weight  # tied
            self.conv = nn.Conv2d(1, 2, 3, dtype=torch.float64)
            self.attn = nn.MultiheadAttention(8, 2, dtype=torch.float64)

    m = Model()
    _, summary = C.quantized_copy(m, "rtn-int4-sym-channel")
    assert summary.quantized == ("a.weight", "attn.out_proj.weight")
    assert summary.total == 2 * 64
    assert set(summary.not_quantized) == {"conv.weight (Conv2d)", "attn.in_proj_weight (MultiheadAttention)"}


def test_conv1d_error_names_the_transposed_shape():
    """GGUF Q4_K needs rows (the input dimension, 32 here) that are multiples of 256."""
    with pytest.raises(InputError, match=r"c_attn\.weight \(shape \(32, 96\), a Conv1D quantized as its transpose"):
        C.quantize_model(_gpt2(), "gguf-q4_k")


@pytest.mark.parametrize("spec", ["rtn-int4-sym-channel", "rtn-int4-asym-g32", "gguf-q4_0"])
def test_quantize_module_quantizes_conv1d_along_output_channels(spec):
    model = _gpt2()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    deltas = quantize_module_(model, spec)
    conv = _conv1d_names(model)
    assert set(conv) <= set(deltas)
    for name in conv:
        expect = _np_reference(before[name].T, spec).T
        np.testing.assert_array_equal(_params(model)[name].detach().numpy(), expect, err_msg=name)
        np.testing.assert_array_equal(deltas[name].numpy(), expect - before[name].numpy(), err_msg=name)


def test_check_models_on_a_saved_gpt2_reports_conv1d_quantized(tmp_path, capsys):
    """check-models --model DIR (a saved tiny GPT-2): the rows record the 9 weight tensors
    quantized (8 Conv1D + the tied head), the one left (wpe), the changed-entry count of the
    independent reference, and η > 0 for RTN."""
    from fimtheory.cli import main

    model = B.gpt2_model(seed=2)
    d = B.save_hf(model, str(tmp_path / "gpt2"))
    out = tmp_path / "rows.json"
    rc = main(["check-models", "--model", d, "--scheme", "rtn-int4-sym-channel", "--json", str(out)])
    capsys.readouterr()
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    ref, _ = _linear_reference(model.double())
    changed = sum(
        int(np.count_nonzero(_np_reference(lin.weight, "rtn-int4-sym-channel") != lin.weight.detach().numpy()))
        for lin in ref
    )
    for claim in ("T4.3a", "S2"):
        det = next(r for r in rows if r["claim"] == claim)["details"]
        assert det["weight_tensors_quantized"] == 9
        assert det["weights_not_quantized"] == ["transformer.wpe.weight (Embedding)"]
        assert det["weights_changed"] == changed
        assert det["eta"] > 0
