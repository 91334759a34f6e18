"""Mutation killers for torch_checks functions re-run after their fixes (quantizers' subnormal
groups, the monitor's top_eig_warm).

Each test compares with an independent reference: the numpy quantizers of fimtheory.quantize
(bit for bit), dense float64 eigenvalues.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from fimtheory import quantize as NQ  # noqa: E402
from torch_checks import quantizers as TQ  # noqa: E402

F64 = torch.float64
BASE = np.array([10, -3, 7, 0, 1, 2, -9, 4] * 4, dtype=np.float64) / 11.0


def _same(t: torch.Tensor, a) -> bool:
    a = np.asarray(a, dtype=np.float64)
    return t.dtype == F64 and t.shape == a.shape and np.array_equal(t.numpy().view(np.int64), a.view(np.int64))


def _mixed() -> np.ndarray:
    """One group per row: normal, subnormal-range (2^-1000), zero, large (2^500)."""
    return np.stack([BASE, BASE * 2.0**-1000, np.zeros_like(BASE), BASE[::-1] * 2.0**500])


@pytest.mark.parametrize("spec", ["rtn-int4-sym-channel", "rtn-int4-asym-channel", "nf4-b32", "fp4-b32"])
def test_tensor_with_tiny_normal_zero_and_large_groups_matches_numpy(spec):
    """A tensor mixing groups below 2^-960 with normal, zero and large ones: every group is
    quantized (and its step size taken) as numpy does, bit for bit — the tiny groups on the
    rescaled copy, the others on their own values."""
    w = _mixed()
    out = TQ.quantize_tensor(torch.tensor(w), spec)
    assert _same(out, NQ.quantize(w, spec))
    assert bool(torch.isfinite(out).all()) and not np.array_equal(out.numpy()[0], w[0])
    assert _same(TQ.step_sizes_tensor(torch.tensor(w), spec), NQ.step_sizes(w, spec))


@pytest.mark.parametrize("spec", ["sr-int4-sym-channel", "sr-int4-asym-channel"])
def test_sr_with_uniforms_on_mixed_groups_matches_numpy(spec):
    w = _mixed()
    u = np.random.default_rng(3).random(w.shape)
    ref = NQ.sr_quantize_with_uniforms(w, spec, u)
    out = TQ.sr_quantize_tensor_with_uniforms(torch.tensor(w), spec, torch.tensor(u))
    assert _same(out, ref) and bool(torch.isfinite(out).all())
    assert _same(TQ.step_sizes_tensor(torch.tensor(w), spec), NQ.step_sizes(w, spec))
