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


def test_top_eig_warm_float32_step_just_above_the_breakdown_level_is_not_a_breakdown():
    """K = diag(1, 1 + δ, 0) in float32 from (1, 1, 0): the first Lanczos step leaves β = δ/2,
    here 16.5 float32 eps·‖K‖_F — above the breakdown level 16 eps·‖K‖_F, so Lanczos goes on
    and finds λ_max = 1 + δ to float32 rounding (a breakdown would stop at the Ritz value
    1 + δ/2, 2.8e-6 too low). Reference: float64 eigvalsh."""
    from torch_checks.monitor import top_eig_warm

    eps = float(torch.finfo(torch.float32).eps)
    delta = 2 * 16.5 * eps * np.sqrt(2.0)
    K = torch.diag(torch.tensor([1.0, 1.0 + delta, 0.0], dtype=torch.float32))
    ref = float(np.linalg.eigvalsh(K.double().numpy())[-1])
    val, vec, it, ok = top_eig_warm(K, torch.tensor([1.0, 1.0, 0.0], dtype=torch.float32), tol=1e-6)
    assert ok and it == 2 and vec.dtype == torch.float32
    assert abs(val - ref) <= 1e-6 * ref
