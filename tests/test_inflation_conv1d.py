"""The inflation study quantizes Hugging Face ``Conv1D`` weights (GPT-2) as their transpose.

A ``Conv1D`` weight is (in_features, out_features); its output channels are its columns. The
study (:mod:`torch_checks.monitor_study`) must quantize every weight tensor of a GPT-2 exactly
as ``check-models`` does (:func:`torch_checks.checks.quantized_copy`): per-channel scales per
output column, groups and NF4 blocks along the input dimension. Before, it quantized only the
``nn.Linear`` / ``nn.Embedding`` weights and left the eight Conv1D weights of a two-block GPT-2
in full precision without saying so. References: ``check-models``' quantizer, the numpy
quantizer of :mod:`fimtheory.quantize` on Wᵀ (independent of torch), and the per-column
integer grid of symmetric RTN written out by hand.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")
pytest.importorskip("transformers", reason="the GPT-2 models need transformers")

from torch import nn  # noqa: E402

from fimtheory.errors import InputError  # noqa: E402
from fimtheory.quantize import quantize as np_quantize  # noqa: E402
from tests import byo_models as B  # noqa: E402
from torch_checks import checks as C  # noqa: E402
from torch_checks import monitor_study as S  # noqa: E402
from torch_checks.quantizers import is_hf_conv1d  # noqa: E402

pytestmark = pytest.mark.torch

PROF = S.get_profile("test")


def _gpt2():
    return B.gpt2_model(seed=3).double()


def _conv1d_names(model) -> list[str]:
    return [f"{n}.weight" for n, m in model.named_modules() if is_hf_conv1d(m)]


def _params(model) -> dict:
    return dict(model.named_parameters())


def _np_reference(w_out_in: torch.Tensor, spec: str) -> np.ndarray:
    a = w_out_in.detach().numpy()
    try:
        return np_quantize(a, spec)
    except InputError:  # NF4 blocks not dividing a row: over the flattened tensor
        return np_quantize(a.reshape(-1), spec).reshape(a.shape)


def test_the_study_quantizes_every_weight_tensor_of_a_gpt2():
    model = _gpt2()
    names = [k for k, _ in S._weights(model)]
    conv = _conv1d_names(model)
    assert len(conv) == 8
    # the 8 Conv1D weights, the token embedding (tied with the head: once) and the positions
    assert sorted(names) == sorted(conv + ["transformer.wte.weight", "transformer.wpe.weight"])
    multi = [n for n, p in model.named_parameters() if p.ndim >= 2]
    assert sorted(multi) == sorted(names)
    assert S.weights_not_quantized(model) == []
    # a Conv1D weight is seen as its transpose (out, in): rows are the output channels
    seen = dict(S._weights(model))
    w = _params(model)["transformer.h.0.mlp.c_fc.weight"]
    assert tuple(w.shape) == (32, 128) and tuple(seen["transformer.h.0.mlp.c_fc.weight"].shape) == (128, 32)
    assert S._numel(model) == sum(p.numel() for p in model.parameters() if p.ndim >= 2)


def test_weights_left_in_full_precision_are_named():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)
            self.conv = nn.Conv2d(1, 2, 3)
            self.table = nn.Parameter(torch.zeros(5, 4))
            self.emb = nn.Embedding(6, 4)

    m = Odd()
    assert S.weights_not_quantized(m) == ["table", "conv.weight (Conv2d)"]  # parameters() order
    m.unquantized_weights = ("emb.weight",)
    assert S.weights_not_quantized(m) == ["table", "conv.weight (Conv2d)", "emb.weight (Embedding)"]
    assert [k for k, _ in S._weights(m)] == ["lin.weight"]
    g = _gpt2()
    g.unquantized_weights = ("transformer.h.1.attn.c_attn.weight",)
    assert S.weights_not_quantized(g) == ["transformer.h.1.attn.c_attn.weight (Conv1D)"]


@pytest.mark.parametrize("family", ["rtn-channel", "rtn-group", "nf4"])
def test_conv1d_quantization_equals_numpy_on_the_transpose(family):
    model = _gpt2()
    work = copy.deepcopy(model)
    rel = S.quantize_into(work, model, family, 4, PROF, seed=0)
    q, w0 = _params(work), _params(model)
    dsq = wsq = 0.0
    for name in _conv1d_names(model) + ["transformer.wte.weight", "transformer.wpe.weight"]:
        wt = w0[name].detach()
        conv = name in _conv1d_names(model)
        target = wt.T if conv else wt
        sch = S.scheme_for(family, 4, target.shape[-1], PROF)
        expect = _np_reference(target, sch.name)
        got = q[name].detach()
        assert np.array_equal((got.T if conv else got).numpy(), expect), name
        dsq += float(((got - wt) ** 2).sum())
        wsq += float((wt**2).sum())
    assert rel == pytest.approx(math.sqrt(dsq / wsq), rel=1e-12)


@pytest.mark.parametrize("bits", [4, 2])
def test_conv1d_quantization_equals_check_models(bits):
    """RTN per channel (a scheme independent of the row length): the study's Q(θ) equals
    check-models' bit for bit on every Conv1D weight and on the tied embedding/head."""
    model = _gpt2()
    work = copy.deepcopy(model)
    S.quantize_into(work, model, "rtn-channel", bits, PROF, seed=0)
    ref, summary = C.quantized_copy(model, S.scheme_for("rtn-channel", bits, 32, PROF))
    assert summary.not_quantized == ("transformer.wpe.weight (Embedding)",)  # check-models keeps it
    qs, qr = _params(work), _params(ref)
    for name in _conv1d_names(model) + ["transformer.wte.weight"]:
        assert torch.equal(qs[name], qr[name]), name
        assert not torch.equal(qs[name], _params(model)[name]), name


def test_conv1d_per_channel_scales_run_over_output_columns():
    """Symmetric 4-bit RTN per channel: column j of a Conv1D weight W (in, out) lies on the
    grid s_j·ℤ with s_j = max_i |W_ij| / 7 (its own output channel), not on the rows' grids."""
    model = _gpt2()
    work = copy.deepcopy(model)
    S.quantize_into(work, model, "rtn-channel", 4, PROF, seed=0)
    for name in _conv1d_names(model):
        w = _params(model)[name].detach()
        qw = _params(work)[name].detach()
        s = w.abs().amax(dim=0, keepdim=True) / 7.0
        k = qw / s
        assert torch.allclose(k, k.round(), atol=1e-9), name
        assert float(k.abs().max()) <= 7 + 1e-9
        assert float((qw - w).abs().max()) <= float(s.max()) / 2 * (1 + 1e-9)


def test_sigma_and_perturbation_use_the_same_orientation():
    """Σ (SR exact, Widrow) is computed on Wᵀ and the perturbed copy adds δ back in W's layout."""
    model = _gpt2()
    name = "transformer.h.0.attn.c_attn.weight"  # (32, 96): in = 32, out = 96
    w = _params(model)[name].detach()
    var = S.expectation_variances(model, "sr-channel", 4, PROF)[name]
    sch = S.scheme_for("sr-channel", 4, 32, PROF)
    assert tuple(var.shape) == (96, 32)
    assert torch.equal(var, S.sr_variance(w.T.contiguous(), sch))
    wid = S.expectation_variances(model, "rtn-channel", 4, PROF)[name]
    s = w.abs().amax(dim=0) / 7.0  # per output column
    assert torch.allclose(wid, (s * s / 12.0)[:, None].expand(96, 32), rtol=1e-12, atol=0)
    pert = S.Perturbed(model)
    delta = {name: torch.randn(96, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)}
    got = _params(pert.set(delta, 0.25))[name].detach()
    assert torch.allclose(got, w + 0.25 * delta[name].T, rtol=0, atol=1e-15)
    assert torch.equal(_params(pert.set(None))[name], w)


def test_run_model_on_a_gpt2_records_what_it_quantized(tmp_path):
    """End to end on a config-built GPT-2: every weight tensor quantized (none named as left),
    ‖δ‖/‖θ‖ over all of them, and the quantized model's scores differ from full precision."""
    model = _gpt2().eval()
    prof = replace(
        PROF,
        n_trajectories=3,
        prompt_len=4,
        gen_len=3,
        configs=("rtn-channel/4",),
        n_traces=1,
    )
    spec = S.ModelSpec("gpt2-tiny", "user", None, predict=False)
    prompts = torch.randint(0, B.VOCAB, (3, 4), generator=torch.Generator().manual_seed(2))
    names = ("transformer.h.1.mlp.c_proj.weight",)
    ld = S.Loaded(spec, model, names, "lm", prompts, None, {})
    res = S.run_model(ld, prof, 0, _NullProgress(), shard_path=str(tmp_path / "gpt2.json"))
    assert res["weights_not_quantized"] == []
    assert res["quantized_weights"] == sum(p.numel() for p in model.parameters() if p.ndim >= 2)
    c = res["configs"]["rtn-channel/4"]
    work = copy.deepcopy(model)
    assert c["rel_delta"] == pytest.approx(S.quantize_into(work, model, "rtn-channel", 4, prof, 0), rel=1e-12)
    assert c["fixed"]["lam"] != res["fp"]["lam"]
    assert len(c["first_order"]) == 3 and all(np.isfinite(c["first_order"]))


class _NullProgress:
    def __call__(self, *_a, **_k):
        return None

    def note(self, *_a, **_k):
        return None
