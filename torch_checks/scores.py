"""Per-sample and per-token scores ``g_i = ∇_θ log p(y_i | x_i; θ)`` with ``torch.func``.

Log-probabilities are natural logs, so scores are in nats per unit of θ, and
``F = GᵀG / n`` is in nats² per θ-unit² (the usual empirical Fisher).

θ is a chosen subset of the model's parameters (named), flattened in the given order, each
tensor flattened row-major (``W.reshape(-1)``); the rest of the model is held fixed.
Models must return logits (or an object with ``.logits``) whose last axis is the class /
vocabulary axis; log p is the log-softmax of the logits at the target.

Two estimators, same numbers:

* :func:`per_sample_scores`: independent samples (x_i, y_i). ``vmap(grad(log p))`` over the
  samples, chunked to bound memory.
* :func:`per_token_scores`: one causal trajectory x_0..x_T, the T samples are the positions
  t with y_t = x_{t+1}. We run the model **once** on the whole prefix and take the Jacobian
  of the vector (log p(y_t | x_≤t))_t with ``jacrev``: that is a ``vmap`` of the VJP over
  the T one-hot cotangents, so the forward pass and its activations are shared by all
  positions; vmapping ``grad`` over positions instead would redo a length-T forward pass
  per position (T times the work). ``chunk_size`` bounds how many VJPs run at once.

Hypotheses: the model is causal (position t's logits depend only on x_≤t) for per-token
scores to be the scores of p(x_{t+1} | x_≤t); it is deterministic (eval mode, no dropout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from fimtheory.errors import InputError, UnknownIdError


@dataclass
class Scores:
    """Stacked scores.

    Attributes
    ----------
    G : torch.Tensor
        ``(n, P)``: row i is g_i (nats per θ-unit), on the model's device.
    names : tuple of str
        Parameter names, in flattening order.
    shapes : tuple of torch.Size
        Their shapes; θ = concatenation of ``param.reshape(-1)``.
    """

    G: torch.Tensor
    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @property
    def n(self) -> int:
        return self.G.shape[0]

    @property
    def P(self) -> int:
        return self.G.shape[1]

    def unflatten(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a length-P vector (a score, an eigenvector, a δ) into named tensors."""
        out, i = {}, 0
        for name, shape in zip(self.names, self.shapes):
            k = shape.numel()
            out[name] = row[i : i + k].reshape(shape)
            i += k
        return out


def _logits(out):
    return out.logits if hasattr(out, "logits") else out


def _split_params(model: nn.Module, names: Sequence[str], dtype):
    names = tuple(names)
    if not names:
        raise InputError("the parameter subset is empty")
    if len(set(names)) != len(names):
        raise InputError(f"duplicate parameter names in {names}")
    allp = dict(model.named_parameters())
    bad = [n for n in names if n not in allp]
    if bad:
        raise UnknownIdError(f"unknown parameter(s) {bad}; the model has {list(allp)[:8]}...")

    def cast(t):
        t = t.detach()
        return t.to(dtype) if (dtype is not None and t.is_floating_point()) else t

    sub = {n: cast(allp[n]) for n in names}
    rest = {n: cast(p) for n, p in allp.items() if n not in sub}
    buffers = {n: cast(b) for n, b in model.named_buffers()}
    return names, sub, rest, buffers


def _check_dtype(dtype):
    if dtype not in (torch.float64, torch.float32, None):
        raise InputError(f"scores dtype must be float64 or float32, got {dtype}")


def _default_chunk(n: int, P: int, dtype) -> int:
    item = 8 if dtype in (torch.float64, None) else 4
    # ~128 MiB of gradients per chunk (activations come on top; callers may lower it).
    return int(max(1, min(n, (128 * 2**20) // max(1, P * item))))


def per_sample_scores(
    model: nn.Module,
    names: Sequence[str],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    dtype: torch.dtype | None = torch.float64,
    chunk_size: int | None = None,
) -> Scores:
    """Scores of n independent samples: row i = ∇_θ log p(targets[i] | inputs[i]; θ).

    Parameters
    ----------
    model : nn.Module
        Maps a batch ``inputs[i:i+1]`` to logits ``(1, K)``; must not mix samples (no
        batch-norm in training mode).
    names : sequence of str
        The parameter subset θ.
    inputs : tensor ``(n, ...)``; targets : int64 tensor ``(n,)``
    dtype : torch.float64 (default, for checks), torch.float32 (speed) or None (as is)
        Parameters, buffers and floating inputs are cast to it.
    chunk_size : int, optional
        Samples per vmap call (default: about 128 MiB of gradients per chunk).

    Returns
    -------
    Scores
    """
    _check_dtype(dtype)
    if inputs.shape[0] != targets.shape[0] or targets.ndim != 1:
        raise InputError(
            f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} "
            "must have the same length n and targets must be 1-D"
        )
    names, sub, rest, buffers = _split_params(model, names, dtype)
    dev = next(iter(sub.values())).device
    x_all = inputs.to(dev)
    if x_all.is_floating_point() and dtype is not None:
        x_all = x_all.to(dtype)
    y_all = targets.to(dev).long()

    def logp(p, x, y):
        out = _logits(functional_call(model, (p, rest, buffers), (x.unsqueeze(0),)))
        lp = torch.log_softmax(out.reshape(-1), dim=-1)
        return lp.gather(0, y.reshape(1)).squeeze(0)

    n = x_all.shape[0]
    shapes = tuple(sub[k].shape for k in names)
    P = sum(s.numel() for s in shapes)
    dt = next(iter(sub.values())).dtype
    G = torch.empty(n, P, dtype=dt, device=dev)
    cs = chunk_size or _default_chunk(n, P, dtype)
    per = vmap(grad(logp), in_dims=(None, 0, 0))
    for i in range(0, n, cs):
        g = per(sub, x_all[i : i + cs], y_all[i : i + cs])
        G[i : i + cs] = torch.cat([g[k].reshape(g[k].shape[0], -1) for k in names], dim=1)
    return Scores(G, names, shapes)


def per_token_scores(
    model: nn.Module,
    names: Sequence[str],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    dtype: torch.dtype | None = torch.float64,
    chunk_size: int | None = None,
) -> Scores:
    """Per-token scores of one trajectory: row t = ∇_θ log p(targets[t] | inputs[:t+1]; θ).

    Parameters
    ----------
    model : nn.Module
        Causal LM mapping int64 ``(1, T)`` to logits ``(1, T, V)`` (or ``.logits``).
    names : sequence of str
        The parameter subset θ.
    inputs, targets : int64 tensors ``(T,)``
        Usually ``tokens[:-1]`` and ``tokens[1:]`` (observed or generated tokens).
    dtype, chunk_size
        As in :func:`per_sample_scores`; ``chunk_size`` = positions per vmapped VJP batch.

    Returns
    -------
    Scores
        ``G`` of shape ``(T, P)``.
    """
    _check_dtype(dtype)
    if inputs.ndim != 1 or targets.shape != inputs.shape:
        raise InputError(
            f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} must be 1-D of the same length T"
        )
    names, sub, rest, buffers = _split_params(model, names, dtype)
    dev = next(iter(sub.values())).device
    x = inputs.to(dev).long()
    y = targets.to(dev).long()

    def logps(p):
        out = _logits(functional_call(model, (p, rest, buffers), (x.unsqueeze(0),)))[0]
        lp = torch.log_softmax(out, dim=-1)
        return lp.gather(-1, y[:, None]).squeeze(-1)  # (T,)

    shapes = tuple(sub[k].shape for k in names)
    P = sum(s.numel() for s in shapes)
    T = x.shape[0]
    cs = chunk_size or _default_chunk(T, P, dtype)
    J = jacrev(logps, chunk_size=cs)(sub)
    G = torch.cat([J[k].reshape(T, -1) for k in names], dim=1)
    return Scores(G, names, shapes)


def per_sample_scores_loop(
    model: nn.Module,
    names: Sequence[str],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    dtype: torch.dtype | None = torch.float64,
    per_token: bool = False,
) -> Scores:
    """Reference implementation: one ``torch.autograd.grad`` call per sample (slow).

    With ``per_token`` the model is run on the whole trajectory for every position and the
    gradient of position t's log-probability is taken.
    """
    _check_dtype(dtype)
    names = tuple(names)
    ref = model
    if dtype is not None:
        import copy

        ref = copy.deepcopy(model).to(dtype)
    params = dict(ref.named_parameters())
    sub = [params[n] for n in names]
    dev = sub[0].device
    rows = []
    n = targets.shape[0]
    for i in range(n):
        if per_token:
            out = _logits(ref(inputs.to(dev).long().unsqueeze(0)))[0, i]
        else:
            x = inputs[i : i + 1].to(dev)
            if x.is_floating_point() and dtype is not None:
                x = x.to(dtype)
            out = _logits(ref(x)).reshape(-1)
        lp = torch.log_softmax(out, dim=-1)[int(targets[i])]
        gs = torch.autograd.grad(lp, sub)
        rows.append(torch.cat([g.reshape(-1) for g in gs]))
    return Scores(torch.stack(rows).detach(), names, tuple(p.shape for p in sub))


@torch.no_grad()
def model_targets(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    mode: str = "argmax",
    seed: int = 0,
    per_token: bool = False,
) -> torch.Tensor:
    """Targets generated by the model itself instead of observed labels.

    Parameters
    ----------
    mode : {"argmax", "sample"}
        The most likely class / next token, or a draw from p(·|x; θ) (seeded generator on
        the CPU). With sampled targets the mean score is zero in expectation, and F is an
        unbiased estimate of the (true) Fisher information.
    per_token : bool
        ``inputs`` is one LM trajectory (T,) and the result has one target per position.
    """
    if mode not in ("argmax", "sample"):
        raise InputError(f"unknown target mode {mode!r}; expected argmax or sample")
    dev = next(model.parameters()).device
    x = inputs.to(dev)
    p0 = next(model.parameters())
    if x.is_floating_point():
        x = x.to(p0.dtype)
    logits = _logits(model(x.unsqueeze(0) if per_token else x))
    if per_token:
        logits = logits[0]
    logits = logits.reshape(logits.shape[0], -1)
    if mode == "argmax":
        return logits.argmax(-1)
    gen = torch.Generator().manual_seed(int(seed))
    probs = torch.softmax(logits.double(), -1).cpu()
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1).to(dev)
