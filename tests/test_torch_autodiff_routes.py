"""Which torch.func route gives correct second derivatives through LayerNorm.

Found while building the §3(d) prediction for the byte LM: in torch 2.13 (CPU), forward-over-
forward AD (jvp of jvp) through layer_norm disagrees with converged float64 finite differences
(about 15% here), while forward-over-reverse, reverse-over-reverse and the dense Hessian agree.
The suite therefore never uses jvp-of-jvp; this test guards the routes we rely on. Reproduce the
upstream discrepancy with `python -m torch_checks.autodiff_note` (prints the four routes).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[torch]')")
F = torch.nn.functional
from torch.func import grad, jvp  # noqa: E402


def _setup():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 8, dtype=torch.float64, generator=g)
    v = torch.randn(5, 8, dtype=torch.float64, generator=g)

    def f(y):
        return F.layer_norm(y, (8,)).pow(3).sum()

    h = 1e-4
    fd = float((f(x + h * v) - 2 * f(x) + f(x - h * v)) / h**2)
    return f, x, v, fd


def test_second_derivative_routes_the_suite_uses_agree_with_finite_differences():
    f, x, v, fd = _setup()
    fwd_rev = float((jvp(grad(f), (x,), (v,))[1] * v).sum())
    rev_rev = float((grad(lambda y: (grad(f)(y) * v).sum())(x) * v).sum())
    # central differences at h = 1e-4 in float64: error O(h²·|f''''|) + O(eps·|f|/h²) ≈ 1e-6 relative
    assert fwd_rev == pytest.approx(fd, rel=1e-6)
    assert rev_rev == pytest.approx(fd, rel=1e-6)
