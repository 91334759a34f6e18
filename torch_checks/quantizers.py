"""Torch mirrors of the quantizers of :mod:`fimtheory.quantize` (docs/theory.md §1).

The scheme object is the same :class:`fimtheory.quantize.QuantScheme` (or a spec string
for :func:`fimtheory.quantize.parse_scheme`); the arithmetic is the numpy one, operation by
operation, so the results agree **bit for bit**:

* every computation runs in float64 on the input's device (CPU or CUDA), then the result
  is cast back to the input's dtype (dtype-preserving). For a float64 input the output
  equals the numpy result exactly; for float32 / float16 / bfloat16 inputs it equals the
  numpy result on ``w.double()`` rounded once to that dtype.
* stochastic rounding uses ``torch.rand`` with the given generator, so its draws differ
  from numpy's stream; :func:`sr_quantize_tensor_with_uniforms` takes the uniforms
  explicitly and agrees bit for bit with
  :func:`fimtheory.quantize.sr_quantize_with_uniforms`.

The kinds of :mod:`fimtheory.kquants` (``gguf-q8_0``, ``gguf-q5_0``, ``gguf-q5_1``,
``gguf-q4_k``, ``gguf-q5_k``, ``gguf-q6_k`` and the ``-or-`` fallback forms) are not ported
to torch kernels: their sequential scale searches run in
:mod:`fimtheory.kquants` on a CPU copy of ``w.double()`` and the result is moved back to
``w``'s device and dtype, so they agree with numpy bit for bit by construction (CPU-bound
on every device).

For a low-precision dtype the dequantized grid values are rounded to that dtype, so the
grid properties (exact levels, idempotence) hold only up to that rounding.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

import torch
from torch import nn

from fimtheory import kquants
from fimtheory.errors import InputError
from fimtheory.quantize import (
    FP4_E2M1_MAGNITUDES,
    FP4_E2M1_VALUES,
    NF4_CODE,
    QuantScheme,
    group_shape,
    parse_scheme,
)

__all__ = [
    "MODULE_KINDS",
    "is_hf_conv1d",
    "quantize_module_",
    "quantize_tensor",
    "sr_quantize_tensor_with_uniforms",
    "step_sizes_tensor",
]

F64 = torch.float64
_FP16_MAX = 65504.0
#: Module types :func:`quantize_module_` can select, by name.
MODULE_KINDS: dict[str, type[nn.Module]] = {"linear": nn.Linear, "embedding": nn.Embedding}


def is_hf_conv1d(mod: nn.Module) -> bool:
    """Whether ``mod`` is a Hugging Face ``transformers.pytorch_utils.Conv1D`` (GPT-2 family).

    Its ``weight`` is (in_features, out_features), the transpose of ``nn.Linear``'s, so its
    output channels are the *columns*: quantize ``weight.T`` (rows = output channels, blocks
    along the input dimension, as llama.cpp's GPT-2 converter and bitsandbytes do after their
    own transpose) and transpose back. Never imports transformers: a Conv1D instance exists
    only once its module is imported.
    """
    utils = sys.modules.get("transformers.pytorch_utils")
    cls = getattr(utils, "Conv1D", None)
    return isinstance(cls, type) and isinstance(mod, cls)


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


def _scheme(scheme) -> QuantScheme:
    if isinstance(scheme, QuantScheme):
        return scheme
    if isinstance(scheme, str):
        return parse_scheme(scheme)
    raise InputError(f"scheme must be a QuantScheme or a spec string, got {type(scheme).__name__}")


def _check_tensor(w, name: str = "w") -> torch.Tensor:
    if not isinstance(w, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(w).__name__}")
    if not w.dtype.is_floating_point:
        raise InputError(f"{name} must have a floating dtype, got {w.dtype}")
    if w.ndim not in (1, 2):
        raise InputError(f"{name} must be 1-D or 2-D (rows = output channels), got shape {tuple(w.shape)}")
    if w.numel() == 0:
        raise InputError(f"{name} is empty (shape {tuple(w.shape)})")
    x = w.detach().to(F64)
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = tuple(int(i) for i in torch.nonzero(~finite)[0])
        raise InputError(f"{name} has a non-finite entry {x[bad].item()!r} at index {bad}")
    return x


#: Nonzero groups whose largest magnitude is below this are computed on g·2^600 (as
#: :func:`fimtheory.quantize._range_safe`): their scale would have few significant bits, or none.
_TINY = 2.0**-960
_TINY_UP = 2.0**600


def _tiny_safe(g: torch.Tensor, core, *extra: torch.Tensor) -> torch.Tensor:
    """``core(g, *extra)`` per group (row of g), with every nonzero group below 2^-960 computed on
    g·2^600 (exact) and multiplied by 2^-600 (one final rounding), as the numpy reference does."""
    amax = torch.amax(torch.abs(g), dim=1)
    tiny = (amax < _TINY) & (amax > 0)
    if not bool(tiny.any()):
        return core(g, *extra)
    out = torch.empty(g.shape, dtype=F64, device=g.device)
    rest = ~tiny
    if bool(rest.any()):
        out[rest] = core(g[rest], *(x[rest] for x in extra))
    out[tiny] = core(g[tiny] * _TINY_UP, *(x[tiny] for x in extra)) / _TINY_UP
    return out


def _const(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values.tolist(), dtype=F64, device=like.device)


# --------------------------------------------------------------------------------------
# Grouped arithmetic (mirrors fimtheory.quantize._*_grouped)
# --------------------------------------------------------------------------------------


def _int_params(g: torch.Tensor, scheme: QuantScheme):
    if scheme.symmetric:
        s = torch.amax(torch.abs(g), dim=1, keepdim=True) / scheme.qmax
        shift = torch.zeros_like(s)
    else:
        mn = torch.amin(g, dim=1, keepdim=True)
        mx = torch.amax(g, dim=1, keepdim=True)
        s = (mx - mn) / scheme.qmax
        shift = -mn
    return s, shift


def _bounds(scheme: QuantScheme) -> tuple[int, int]:
    return (-scheme.qmax, scheme.qmax) if scheme.symmetric else (0, scheme.qmax)


def _rtn(g: torch.Tensor, scheme: QuantScheme) -> torch.Tensor:
    s, shift = _int_params(g, scheme)
    safe = torch.where(s == 0, torch.ones_like(s), s)
    lo, hi = _bounds(scheme)
    q = torch.clamp(torch.round((g + shift) / safe), lo, hi)
    return torch.where(s == 0, g, q * s - shift)


def _sr(g: torch.Tensor, u: torch.Tensor, scheme: QuantScheme) -> torch.Tensor:
    s, shift = _int_params(g, scheme)
    safe = torch.where(s == 0, torch.ones_like(s), s)
    lo, hi = _bounds(scheme)
    y = (g + shift) / safe
    fl = torch.floor(y)
    q = torch.clamp(fl + (u < (y - fl)).to(F64), lo, hi)
    return torch.where(s == 0, g, q * s - shift)


def _nearest_code(y: torch.Tensor, code: torch.Tensor, *, ties: str) -> torch.Tensor:
    mid = 0.5 * (code[1:] + code[:-1])
    idx = torch.searchsorted(mid, y.contiguous(), right=False)
    if ties == "even":
        at = torch.clamp(idx, max=len(mid) - 1)
        tie = (idx < len(mid)) & (y == mid[at]) & (idx % 2 == 1)
        idx = torch.where(tie, idx + 1, idx)
    return idx


def _codebook(g: torch.Tensor, scheme: QuantScheme, *, want_step: bool = False):
    a = torch.amax(torch.abs(g), dim=1, keepdim=True)
    if scheme.kind == "nf4":
        codebook = _const(NF4_CODE, g)
        scale = a
        safe = torch.where(scale == 0, torch.ones_like(scale), scale)
        idx = _nearest_code(g / safe, codebook, ties="lower")
        value = codebook[idx] * scale
    else:
        mags = _const(FP4_E2M1_MAGNITUDES, g)
        codebook = _const(FP4_E2M1_VALUES, g)
        scale = a / 6.0
        safe = torch.where(scale == 0, torch.ones_like(scale), scale)
        mag = _nearest_code(torch.abs(g) / safe, mags, ties="even")
        value = torch.sign(g) * (mags[mag] * scale)
        idx = torch.searchsorted(codebook, (torch.sign(g) * mags[mag]).contiguous())
    if not want_step:
        return value
    width = torch.empty_like(codebook)
    width[1:-1] = 0.5 * (codebook[2:] - codebook[:-2])
    width[0] = codebook[1] - codebook[0]
    width[-1] = codebook[-1] - codebook[-2]
    return width[idx] * scale


def _fp16(x: torch.Tensor, what: str) -> torch.Tensor:
    if bool((torch.abs(x) > _FP16_MAX).any()):
        raise InputError(
            f"gguf {what} {float(torch.abs(x).max()):.6g} overflows the float16 it is stored in (max {_FP16_MAX})"
        )
    return x.to(torch.float32).to(torch.float16).to(F64)


def _inverse(d: torch.Tensor) -> torch.Tensor:
    """1/d, and 0 where d = 0 or 1/d overflows (a subnormal d), as
    :func:`fimtheory.quantize._inverse_scale`: such a block dequantizes to zero, never NaN."""
    ones = torch.ones_like(d)
    inv = ones / torch.where(d == 0, ones, d)
    return torch.where((d == 0) | ~torch.isfinite(inv), torch.zeros_like(d), inv)


def _gguf(g: torch.Tensor, scheme: QuantScheme, *, want_step: bool = False):
    if scheme.kind not in ("q4_0", "q4_1"):  # never run another kind through the Q4_1 branch
        raise InputError(f"no torch quantizer for scheme kind {scheme.kind!r}")
    if scheme.kind == "q4_0":
        imax = torch.argmax(torch.abs(g), dim=1, keepdim=True)
        m = torch.gather(g, 1, imax)
        d = m / -8.0
        q = torch.clamp(torch.floor(g * _inverse(d) + 8.5), 0, 15)
        d16 = _fp16(d, "Q4_0 scale d")
        if want_step:
            return torch.abs(d16).expand(g.shape).clone()
        return (q - 8.0) * d16
    mn = torch.amin(g, dim=1, keepdim=True)
    mx = torch.amax(g, dim=1, keepdim=True)
    d = (mx - mn) / 15.0
    q = torch.clamp(torch.floor((g - mn) * _inverse(d) + 0.5), 0, 15)
    d16 = _fp16(d, "Q4_1 scale d")
    m16 = _fp16(mn, "Q4_1 minimum m")
    if want_step:
        return d16.expand(g.shape).clone()
    return q * d16 + m16


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def quantize_tensor(w: torch.Tensor, scheme, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Quantize-dequantize a weight tensor; torch mirror of :func:`fimtheory.quantize.quantize`.

    Parameters
    ----------
    w : torch.Tensor, shape (n,) or (out, in)
        Finite floating weights on any device; rows are output channels. Not modified.
    scheme : QuantScheme or str
    generator : torch.Generator, optional
        Required for stochastic rounding (``kind='sr'``); must live on ``w``'s device.

    Returns
    -------
    torch.Tensor
        ``Q(w)``: same shape, dtype and device as ``w``, no autograd history. Equal bit for
        bit to the numpy result on ``w.double()`` cast to ``w.dtype`` (SR: in law only; see
        :func:`sr_quantize_tensor_with_uniforms`).

    Raises
    ------
    InputError
        Non-tensor, non-floating, empty, non-finite or >2-D ``w``; a group size that does
        not divide the row length; SR without a generator.
    """
    scheme = _scheme(scheme)
    x = _check_tensor(w)
    if scheme.kind in kquants.GGUF_TYPES or scheme.kind in kquants.WITH_FALLBACK:
        q = kquants.fake_quantize(x.cpu().numpy(), scheme.kind)
        return torch.from_numpy(q.astype("float64")).to(device=x.device).to(w.dtype)
    shape = group_shape(tuple(x.shape), scheme)
    g = x.reshape(shape)
    if scheme.kind == "rtn":
        out = _tiny_safe(g, lambda x: _rtn(x, scheme))
    elif scheme.kind == "sr":
        if not isinstance(generator, torch.Generator):
            raise InputError(
                "stochastic rounding needs generator=torch.Generator (seeded, on the device "
                f"of w), got {type(generator).__name__}"
            )
        u = torch.rand(shape, generator=generator, dtype=F64, device=x.device)
        out = _tiny_safe(g, lambda x, uu: _sr(x, uu, scheme), u)
    elif scheme.kind in ("nf4", "fp4"):
        out = _tiny_safe(g, lambda x: _codebook(x, scheme))
    else:
        out = _gguf(g, scheme)
    return out.reshape(x.shape).to(w.dtype)


def sr_quantize_tensor_with_uniforms(w: torch.Tensor, scheme, u: torch.Tensor) -> torch.Tensor:
    """Stochastic rounding driven by given uniforms ``u`` in [0, 1) (same shape as ``w``).

    Mirrors :func:`fimtheory.quantize.sr_quantize_with_uniforms` bit for bit.
    """
    scheme = _scheme(scheme)
    if scheme.kind != "sr":
        raise InputError(f"sr_quantize_tensor_with_uniforms needs an 'sr' scheme, got {scheme.name!r}")
    x = _check_tensor(w)
    if not isinstance(u, torch.Tensor) or tuple(u.shape) != tuple(x.shape):
        raise InputError(f"u must be a tensor of the shape of w {tuple(x.shape)}")
    uu = u.detach().to(device=x.device, dtype=F64)
    if not bool(((uu >= 0) & (uu < 1)).all()):
        raise InputError("u must lie in [0, 1)")
    shape = group_shape(tuple(x.shape), scheme)
    out = _tiny_safe(x.reshape(shape), lambda g, u_: _sr(g, u_, scheme), uu.reshape(shape))
    return out.reshape(x.shape).to(w.dtype)


def step_sizes_tensor(w: torch.Tensor, scheme) -> torch.Tensor:
    """Torch mirror of :func:`fimtheory.quantize.step_sizes`; float64, on ``w``'s device."""
    scheme = _scheme(scheme)
    x = _check_tensor(w)
    if scheme.kind in kquants.GGUF_TYPES or scheme.kind in kquants.WITH_FALLBACK:
        return torch.from_numpy(kquants.sub_block_steps(x.cpu().numpy(), scheme.kind)).to(x.device)
    g = x.reshape(group_shape(tuple(x.shape), scheme))
    if scheme.kind in ("rtn", "sr"):
        out = _tiny_safe(g, lambda x: _int_params(x, scheme)[0].expand(x.shape))
    elif scheme.kind in ("nf4", "fp4"):
        out = _tiny_safe(g, lambda x: _codebook(x, scheme, want_step=True))
    else:
        out = _gguf(g, scheme, want_step=True)
    return out.reshape(x.shape).clone()


def _selector(include) -> Callable[[str, nn.Module], bool]:
    if include is None:
        types = tuple(MODULE_KINDS.values())
        return lambda _name, mod: isinstance(mod, types) or is_hf_conv1d(mod)
    if callable(include) and not isinstance(include, type):
        return include
    items = [include] if isinstance(include, (str, type)) else list(include)
    types_: list[type] = []
    for it in items:
        if isinstance(it, str):
            if it not in MODULE_KINDS:
                raise InputError(
                    f"include names an unknown module kind {it!r}; expected any of "
                    f"{sorted(MODULE_KINDS)}, module types, or a callable(name, module)"
                )
            types_.append(MODULE_KINDS[it])
        elif isinstance(it, type) and issubclass(it, nn.Module):
            types_.append(it)
        else:
            raise InputError(f"include entries must be kind names or nn.Module types, got {it!r}")
    sel = tuple(types_)
    return lambda _name, mod: isinstance(mod, sel)


def quantize_module_(
    module: nn.Module,
    scheme,
    *,
    include: str | type | Iterable | Callable[[str, nn.Module], bool] | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Quantize the ``weight`` of selected submodules in place.

    Parameters
    ----------
    module : torch.nn.Module
        Modified in place (``weight.data`` replaced by ``Q(weight)``, same dtype/device).
    scheme : QuantScheme or str
    include : optional
        Which submodules: ``None`` (default) = every ``nn.Linear``, ``nn.Embedding`` and
        Hugging Face ``Conv1D``; a kind name ``'linear'`` / ``'embedding'``, an ``nn.Module``
        subclass, an iterable of those, or a callable ``(qualified_name, module) -> bool``.
        ``nn.Linear`` weights are (out, in); ``nn.Embedding`` weights are (num_embeddings,
        dim), so their rows (one per token) play the role of output channels; a ``Conv1D``
        weight is (in, out) and is quantized as its transpose (:func:`is_hf_conv1d`).
    generator : torch.Generator, optional
        Required for stochastic rounding.

    Returns
    -------
    dict[str, torch.Tensor]
        ``{parameter name: δ}`` with ``δ = Q(w) − w`` in float64 on the weight's device
        (the stored quantized value minus the original, computed in float64, hence exact
        for float32/float16/bfloat16 weights of ordinary magnitudes). A weight shared by
        several modules (tied embeddings) is quantized once, under its first name.

    Raises
    ------
    InputError
        Not a module; bad ``include``; a weight that the scheme cannot quantize (the
        message names the parameter).
    """
    if not isinstance(module, nn.Module):
        raise InputError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    scheme = _scheme(scheme)
    select = _selector(include)
    deltas: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, mod in module.named_modules():
        weight = getattr(mod, "weight", None)
        if not isinstance(weight, torch.Tensor) or not select(name, mod):
            continue
        if id(weight) in seen:
            continue
        seen.add(id(weight))
        pname = f"{name}.weight" if name else "weight"
        transposed = is_hf_conv1d(mod)  # (in, out): rows must be output channels
        target = weight.detach().T.contiguous() if transposed else weight.detach()
        try:
            q = quantize_tensor(target, scheme, generator=generator)
        except InputError as exc:
            how = f", a Conv1D quantized as its transpose {tuple(target.shape)}" if transposed else ""
            raise InputError(f"cannot quantize {pname} (shape {tuple(weight.shape)}{how}): {exc}") from exc
        if transposed:
            q = q.T
        with torch.no_grad():
            delta = q.to(F64) - weight.detach().to(F64)
            weight.copy_(q)
        deltas[pname] = delta
    return deltas
