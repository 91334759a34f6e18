"""The λ_max(F) methods compared, F = GᵀG/n the empirical FIM of a :class:`Workload`.

* ``scores``: the per-sample (per-token) scores G alone, the floor of every G-based path.
* ``gram`` / ``lanczos``: :func:`torch_checks.engines.lambda_max` on G (totals add the scores).
* ``curvlinops``: ``curvlinops.EFLinearOperator`` (reduction "mean", so EF = F) exported with
  ``to_scipy`` and ``scipy.sparse.linalg.eigsh(k=1, which="LA", tol=…)``.
* ``autodiff``: Lanczos on K with Gᵀv by a backward and G w by reverse-over-reverse on one
  recorded forward (:func:`torch_checks.engines.lambda_max_autodiff`); neither G nor K.
* ``power``: matrix-free power iteration on F; every product F v = Gᵀ(G v)/n recomputes the
  per-sample gradients implicitly: G v by one batched forward-mode product (``torch.func.jvp``
  of the n-vector of log-probabilities), Gᵀ u by one reverse-mode product (``vjp``), as
  PyHessian does with autograd products. Stops when the Rayleigh quotient's relative change
  is ≤ tol.
"""

from __future__ import annotations

import importlib
import math
import sys
import types

import numpy as np
import torch
from torch.func import jvp, vjp

from torch_checks.engines import lambda_max

from .workloads import Workload

_CURVLINOPS: dict = {}


def import_curvlinops():
    """(curvlinops module or None, note). If its import fails because the installed
    torchvision does not match torch (backpack imports it), retry once with a stub
    ``torchvision`` module in ``sys.modules`` — in this process only."""
    if "mod" in _CURVLINOPS:
        return _CURVLINOPS["mod"], _CURVLINOPS["note"]
    note = "imported normally"
    try:
        mod = importlib.import_module("curvlinops")
    except Exception as exc:  # noqa: BLE001 - any import failure is reported
        if "torchvision" not in repr(exc) and "torchvision" not in sys.modules:
            mod, note = None, f"import failed: {type(exc).__name__}: {exc}"
        else:
            for k in [k for k in sys.modules if k.startswith(("torchvision", "curvlinops", "backpack"))]:
                del sys.modules[k]
            sys.modules["torchvision"] = types.ModuleType("torchvision")
            try:
                mod = importlib.import_module("curvlinops")
                note = f"imported with a stub torchvision (real import failed: {exc})"
            except Exception as exc2:  # noqa: BLE001
                mod, note = None, f"import failed even with a torchvision stub: {exc2}"
    _CURVLINOPS.update(mod=mod, note=note)
    return mod, note


def curvlinops_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("curvlinops-for-pytorch")
    except Exception:  # noqa: BLE001
        return None


def start_vector(P: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    v = torch.randn(P, generator=g, dtype=torch.float64)
    return v / torch.linalg.vector_norm(v)


# ---------------------------------------------------------------------- ours


def run_gram(G: torch.Tensor) -> dict:
    r = lambda_max(G, method="gram")
    return {"value": r.value, "iterations": 0}


def run_lanczos(G: torch.Tensor, tol: float) -> dict:
    r = lambda_max(G, method="lanczos", tol=tol)
    return {"value": r.value, "iterations": r.iterations, "products_with_G": 2 * (r.iterations + 1)}


# ---------------------------------------------------------------------- (a) curvlinops + eigsh


def run_curvlinops(wl: Workload, tol: float, seed: int = 0) -> dict:
    from scipy.sparse.linalg import LinearOperator, eigsh

    cl, _ = import_curvlinops()
    if cl is None:
        raise RuntimeError("curvlinops is not importable")
    func, loss, params, data = wl.curvlinops_problem()
    op = cl.EFLinearOperator(func, loss, params, data, check_deterministic=False, num_data=int(wl.inputs.shape[0]))
    A = op.to_scipy(np.float64)
    count = [0]

    def mv(x):
        count[0] += 1 if x.ndim == 1 else x.shape[1]
        return A.matmat(x.reshape(A.shape[1], -1)).reshape(x.shape)

    L = LinearOperator(A.shape, matvec=mv, matmat=mv, dtype=np.float64)
    v0 = start_vector(wl.P, seed).numpy()
    vals = eigsh(L, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
    return {"value": float(vals[-1]), "iterations": count[0], "matvecs": count[0]}


# ---------------------------------------------------------------------- (b) power iteration


def run_power(wl: Workload, tol: float, *, max_iter: int = 3000, seed: int = 0) -> dict:
    p = wl.params()
    keys = list(p)
    primals = tuple(p[k] for k in keys)
    shapes = [t.shape for t in primals]
    sizes = [t.numel() for t in primals]
    n = wl.n

    def f(*vals):
        return wl.logp(dict(zip(keys, vals)))

    def split(vec):
        return tuple(c.reshape(s) for c, s in zip(torch.split(vec, sizes), shapes))

    v = start_vector(wl.P, seed).to(device=wl.device, dtype=primals[0].dtype)
    with torch.no_grad():  # the transforms ignore it; it stops graphs for the fixed params
        return _power_loop(f, primals, split, v, n, tol, max_iter)


def _power_loop(f, primals, split, v, n, tol, max_iter):
    theta_old, theta, k = math.nan, math.nan, 0
    converged = False
    for k in range(1, max_iter + 1):
        _, Gv = jvp(f, primals, split(v))  # G v: one forward-mode pass over the batch
        theta = float(Gv @ Gv) / n  # Rayleigh quotient vᵀ F v, ‖v‖ = 1
        _, back = vjp(f, *primals)
        w = torch.cat([t.reshape(-1) for t in back(Gv / n)])  # Gᵀ(Gv)/n: one reverse pass
        v = w / torch.linalg.vector_norm(w)
        if k > 1 and abs(theta - theta_old) <= tol * abs(theta):
            converged = True
            break
        theta_old = theta
    return {"value": theta, "iterations": k, "matvecs": k, "converged": converged}


# ---------------------------------------------------------------------- prototype: Kronecker Gram


def run_kron_gram(wl: Workload) -> dict:
    """λ_max(F) through the library's structured Gram path
    (:func:`torch_checks.engines.lambda_max_structured`): for scores that are rank one per
    Linear layer, K = Σ_layers (ΔΔᵀ)∘(AAᵀ + [bias]) / n from one batched forward/backward,
    without forming G. Valid for the MLP (independent samples) and the byte LM's default
    subset (the last block's MLP down-projection: only position-wise ops follow it);
    ``wl.info["rank_one_scores"]`` says whether the workload qualifies.
    """
    from torch_checks.engines import lambda_max_structured

    if not wl.info.get("rank_one_scores"):
        raise NotImplementedError("scores are not rank one per Linear layer for this workload")
    if wl.info.get("structured") == "per-token":
        raise NotImplementedError("per-token workloads use run_structured")
    p = wl.params()
    r = lambda_max_structured(wl.model, lambda: wl.logp(p), wl.names)
    return {"value": r.value, "iterations": 0}


# ---------------------------------------------------------------------- (f) the score floor


def run_floor(wl: Workload) -> dict:
    """One forward + backward over the same samples/tokens: ∇θ Σ_i log p_i (what any method that
    needs per-sample information costs at least once)."""
    p = {k: v.detach().requires_grad_(True) for k, v in wl.params().items()}
    with torch.enable_grad():
        lp = wl.logp(p)
        torch.autograd.grad(lp.sum(), list(p.values()))
    return {"value": None}


# ---------------------------------------------------------------------- structured, every layer


def structured_applicability(wl: Workload) -> str | None:
    """Why the structured (no-G) path does not apply to the workload, or None."""
    kind = wl.info.get("structured")
    if kind == "per-sample" and wl.info.get("rank_one_scores", True):
        return None
    if kind == "per-token":
        return None
    return "no structured route for this workload"


def run_structured(wl: Workload) -> dict:
    """Per-sample workloads: :func:`torch_checks.engines.lambda_max_structured` (independent
    samples; Linear/Conv2d rows per sample). Per-token workloads with every layer scored:
    :func:`torch_checks.engines.lambda_max_per_token` with ``method="gram"`` (K formed per tensor by
    the cheapest exact route, G never formed; ``eigvalsh``/Lanczos on K)."""
    from torch_checks.engines import lambda_max_per_token

    if wl.info.get("structured") == "per-token":
        r = lambda_max_per_token(wl.model, wl.logp_windows, wl.names, method="gram", tol=1e-12)
        return {"value": r.value, "iterations": r.iterations, "structure": list(r.structure or ())}
    return run_kron_gram(wl)


def run_structured_lanczos(wl: Workload, tol: float) -> dict:
    """Per-token workloads: Lanczos on the factored operator of
    :func:`torch_checks.engines.lambda_max_per_token` (``method="lanczos"``): neither G nor K."""
    from torch_checks.engines import lambda_max_per_token

    if wl.info.get("structured") != "per-token":
        raise NotImplementedError("the factored per-token operator is for per-token workloads")
    r = lambda_max_per_token(wl.model, wl.logp_windows, wl.names, method="lanczos", tol=tol)
    return {"value": r.value, "iterations": r.iterations}


# ---------------------------------------------------------------------- ours: autodiff Lanczos


def run_autodiff(wl: Workload, tol: float, seed: int = 0) -> dict:
    """:func:`torch_checks.engines.lambda_max_autodiff`: Lanczos on K = GGᵀ/n with Gᵀv by a
    backward and G w by reverse-over-reverse on one recorded forward (no G, no K, no structural
    hypotheses: any differentiable model, per-sample or per-token samples)."""
    from torch_checks.engines import lambda_max_autodiff

    r = lambda_max_autodiff(wl.model, wl.logp_model, wl.names, tol=tol, seed=seed)
    return {"value": r.value, "iterations": r.iterations, "products_with_G": 2 * (r.iterations + 2)}
