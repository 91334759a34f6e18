"""Second directional derivative of a LayerNorm function by four routes, vs finite differences.

``python -m torch_checks.autodiff_note`` prints them. With torch 2.13 (CPU) forward-over-forward
(jvp of jvp) disagrees with the others and with converged central differences; the suite uses
forward-over-reverse or reverse-over-reverse only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import grad, hessian, jvp


def routes(seed: int = 0) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 8, dtype=torch.float64, generator=g)
    v = torch.randn(5, 8, dtype=torch.float64, generator=g)

    def f(y):
        return F.layer_norm(y, (8,)).pow(3).sum()

    h = 1e-4
    return {
        "central differences (h=1e-4)": float((f(x + h * v) - 2 * f(x) + f(x - h * v)) / h**2),
        "forward-over-forward (jvp of jvp)": float(jvp(lambda y: jvp(f, (y,), (v,))[1], (x,), (v,))[1]),
        "forward-over-reverse (jvp of grad)": float((jvp(grad(f), (x,), (v,))[1] * v).sum()),
        "reverse-over-reverse (grad of grad)": float((grad(lambda y: (grad(f)(y) * v).sum())(x) * v).sum()),
        "dense Hessian": float(hessian(f)(x).reshape(40, 40) @ v.reshape(-1) @ v.reshape(-1)),
    }


if __name__ == "__main__":  # pragma: no cover
    print(f"torch {torch.__version__}")
    for name, value in routes().items():
        print(f"{name:<38} {value:.10g}")
