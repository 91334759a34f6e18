"""GGUF Q8_0, Q5_0, Q5_1 and k-quants (Q4_K, Q5_K, Q6_K): llama.cpp's reference quantizers.

numpy only. The quantizers are faithful ports of ggml's *reference* row quantizers
``quantize_row_q8_0_ref``, ``quantize_row_q5_0_ref``, ``quantize_row_q5_1_ref``,
``quantize_row_q4_K_ref``, ``quantize_row_q5_K_ref`` and ``quantize_row_q6_K_ref``
(ggml 0.15.3, llama.cpp commit ded1561b; ``ggml-quants.c``; the same function bodies
as in the llama.cpp vendored by llama-cpp-python 0.3.36), including their scale
searches ``make_qkx2_quants`` (Q4_K, Q5_K) and ``make_qx_quants`` with ``rmse_type = 1``
(Q6_K). These are the functions ``llama-quantize`` calls for
these types when no importance matrix is given (with an imatrix it calls the
``*_impl`` variants, which weight the search differently and are *not* implemented
here). Every float32 operation is reproduced in the C order — sums accumulated left to
right, no fused multiply-add — so the bytes equal those of the C reference compiled
without FMA contraction: ``-ffp-contract=off``, or any x86-64 build without FMA in its
target (llama.cpp compiles ``ggml-quants.c`` into ``ggml-base``, which does not get the
CPU backend's ``-march`` flags, so an x86-64 ``llama-quantize`` is such a build). A build
that contracts products into FMAs (aarch64, where FMA is baseline; or x86 with
``-march=native``) chooses other scales in some super-blocks: measured against the same
C source built with ``-O2 -march=native`` on 2048 super-blocks of Gaussian rows of mixed
scale, Q4_K differed in 116, Q5_K in 606, Q6_K in 2, Q8_0 in none.

Byte layout (one block; all little-endian, exactly the GGUF tensor data):

``q8_0`` (32 weights, 34 bytes)
    ``d`` float16, ``qs`` 32 × int8.  ``x ≈ d·q``, ``d = amax/127``, ``q = roundf(x/d)``.
``q5_0`` (32 weights, 22 bytes)
    ``d`` float16, 4 bytes of 5th bits, 16 bytes of nibbles.  ``x ≈ d·(q − 16)`` with
    ``d = m/−16`` (m the entry of largest magnitude), ``q = min(31, trunc(x/d + 16.5))``.
``q5_1`` (32 weights, 24 bytes)
    ``d``, ``m`` float16, 5th bits, nibbles.  ``x ≈ d·q + m``, ``d = (max − min)/31``,
    ``q = trunc((x − min)/d + 0.5)``.
``q4_k`` (256 weights, 144 bytes)
    ``d``, ``dmin`` float16; 12 bytes of 6-bit sub-block scales ``sc_j`` and mins ``m_j``
    (j = 0..7, 32 weights each, packed as ``get_scale_min_k4``); 128 bytes of 4-bit codes.
    ``x ≈ (d·sc_j)·q − dmin·m_j``, q in 0..15.
``q5_k`` (256 weights, 176 bytes)
    as ``q4_k`` plus 32 bytes of high bits; q in 0..31.
``q6_k`` (256 weights, 210 bytes)
    128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 × int8 sub-block scales (16
    weights each), ``d`` float16.  ``x ≈ (d·sc_j)·(q − 32)``, q in 0..63.

Rows are quantized independently and must hold a whole number of blocks (32 weights
for ``q8_0`` / ``q5_0`` / ``q5_1``, 256 for the k-quants): GGUF does not pad. llama.cpp
stores a tensor whose rows do not fit in another type (:data:`LLAMA_CPP_FALLBACK`,
:func:`llama_cpp_tensor_type`); the pseudo-types ``'q4_k-or-q5_0'``, ``'q5_k-or-q5_1'``,
``'q6_k-or-q8_0'`` of :func:`fake_quantize` do the same per array. Weights are first rounded to
float32 (as the GGUF converters do); the dequantized values are float32 computed with
exactly the operations of ``gguf.quants.dequantize`` (and of ggml's ``dequantize_row_*``).

Error and idempotence (tested in ``tests/test_kquants.py``). With ``a = fp16(d)·sc_j`` and
``m = fp16(dmin)·m_j`` the stored grid of a k-quant sub-block is ``{l·a − m}``, and Q(w)
is its point nearest to w: the error is ≤ |a|/2 inside the grid's range and the distance
to the end point outside it (the scale search and the 6-bit / int8 scale rounding may
leave a sub-block's extremes outside; on N(0, 1) rows the largest error measured is
0.91·a for Q4_K, 1.05·a for Q5_K, 0.74·a for Q6_K). The 32-blocks round with the
float32 ``d``, so ``|w − Q(w)| ≤ dist(w, {l·d + min}) + l_max·|d − fp16(d)| +
|min − fp16(min)|``: at most (1/2 + 127·2^−11)·|fp16(d)| for Q8_0 (normal float16 d),
(1 + 16·2^−11)·|fp16(d)| for Q5_0 (the side opposite the largest entry is clipped at 15·d).
Q8_0 is idempotent (values, and bytes except blocks whose scale underflowed to 0); the
k-quant searches are not projections: re-quantizing Q5_K output moved 2.5% of N(0, 1)
weights.

Departures from the C reference, all outside its defined behaviour:

* a Q8_0 / Q5_0 / Q5_1 block whose float32 scale ``d`` is so small that ``1/d``
  overflows gets codes 0 (C converts ``±inf`` or NaN to an integer, which is undefined;
  x86 yields 0). Its float16 scale is 0, so it dequantizes as in C.
* weights whose block scale does not fit float16 (the file format cannot store it)
  raise :class:`~fimtheory.errors.InputError` instead of writing an infinite scale.
"""

from __future__ import annotations

import numpy as np

from fimtheory.errors import InputError

__all__ = [
    "BLOCK_BYTES",
    "BLOCK_WEIGHTS",
    "CODE_MAX",
    "GGUF_TYPES",
    "LLAMA_CPP_FALLBACK",
    "WITH_FALLBACK",
    "dequantize_bytes",
    "fake_quantize",
    "llama_cpp_tensor_type",
    "quantize_to_bytes",
    "sub_block_steps",
]

#: The supported GGUF tensor types (lower-case ggml names).
GGUF_TYPES: tuple[str, ...] = ("q8_0", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k")
#: The type llama.cpp's quantizer writes instead of a 256-block type when a tensor's rows
#: (``ne[0]``) are not whole 256-blocks (``tensor_type_fallback`` in ``llama-quant.cpp``);
#: rows that are not whole 32-blocks either are stored as F16.
LLAMA_CPP_FALLBACK: dict[str, str] = {"q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}
#: Pseudo-types "k-quant, or llama.cpp's fallback for this row length", per array.
WITH_FALLBACK: dict[str, str] = {f"{k}-or-{v}": k for k, v in LLAMA_CPP_FALLBACK.items()}
#: Weights per block (GGML_QUANT_SIZES[...][0]).
BLOCK_WEIGHTS: dict[str, int] = {"q8_0": 32, "q5_0": 32, "q5_1": 32, "q4_k": 256, "q5_k": 256, "q6_k": 256}
#: Bytes per block (GGML_QUANT_SIZES[...][1]).
BLOCK_BYTES: dict[str, int] = {"q8_0": 34, "q5_0": 22, "q5_1": 24, "q4_k": 144, "q5_k": 176, "q6_k": 210}
#: Largest code: Q8_0 |q| ≤ 127, Q5_0 q − 16 in −16..15, Q5_1 / Q5_K q ≤ 31, Q4_K q ≤ 15,
#: Q6_K q − 32 in −32..31.
CODE_MAX: dict[str, int] = {"q8_0": 127, "q5_0": 15, "q5_1": 31, "q4_k": 15, "q5_k": 31, "q6_k": 31}

_F32 = np.float32
_GROUP_MAX_EPS = _F32(1e-15)  # ggml-quants.c GROUP_MAX_EPS
_MAGIC = _F32(12582912.0)  # 1.5·2^23, nearest_int's rounding constant
#: Weights quantized per vectorised pass (temporaries ≈ 30 float32 arrays of this size).
_CHUNK_WEIGHTS = 1 << 18


# --------------------------------------------------------------------------------------
# float32 helpers reproducing C semantics
# --------------------------------------------------------------------------------------


def _nearest_int(f: np.ndarray) -> np.ndarray:
    """ggml's ``nearest_int``: the bit trick ``(bits(f + 1.5·2^23) & 0x7fffff) − 2^22``.

    Round-half-to-even for |f| ≤ 2^22 − 1; for larger or non-finite f the same
    (meaningless) integer the C code produces, which callers then clamp as C does.
    """
    v = (np.asarray(f, dtype=_F32) + _MAGIC).astype(_F32)
    return (v.view(np.int32) & 0x007FFFFF) - 0x00400000


def _seq_sum(terms: np.ndarray) -> np.ndarray:
    """Left-to-right float32 sum over the last axis, starting from 0 (a C ``+=`` loop)."""
    s = np.zeros(terms.shape[:-1], dtype=_F32)
    for i in range(terms.shape[-1]):
        s = s + terms[..., i]
    return s


def _roundf(v: np.ndarray) -> np.ndarray:
    """C ``roundf``: nearest integer, halves away from zero (exact, no ``x + 0.5``)."""
    a = np.abs(v)
    fl = np.floor(a)
    return np.sign(v) * (fl + np.floor(_F32(2) * (a - fl)))


def _to_fp16_bits(x: np.ndarray, what: str, qtype: str) -> np.ndarray:
    """float32 → float16 (round to nearest even, as ggml's ``GGML_FP32_TO_FP16``), as uint16."""
    h = np.asarray(x, dtype=_F32).astype(np.float16)
    if not np.all(np.isfinite(h)):
        bad = int(np.argmax(~np.isfinite(h)))
        raise InputError(
            f"{qtype.upper()} {what} {float(np.asarray(x).ravel()[bad]):.6g} (block {bad}) overflows "
            f"the float16 it is stored in (max {float(np.finfo(np.float16).max)}): the weights are "
            "too large for this GGUF type"
        )
    return h.view(np.uint16)


def _fp16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint16).view(np.float16).astype(_F32)


def _u16_bytes(bits: np.ndarray) -> np.ndarray:
    """(n,) uint16 → (n, 2) little-endian bytes."""
    return np.ascontiguousarray(bits.astype("<u2")).view(np.uint8).reshape(-1, 2)


# --------------------------------------------------------------------------------------
# Scale searches (vectorised over sub-blocks; the C loop over elements kept in order)
# --------------------------------------------------------------------------------------


def _make_qkx2_quants(x, weights, nmax: int, rmin: float, rdelta: float, nstep: int):
    """``make_qkx2_quants(n, nmax, x, weights, L, &the_min, Laux, rmin, rdelta, nstep, false)``.

    x, weights: (m, n) float32. Returns (scale (m,), the_min (m,), L (m, n) int32).
    """
    m, n = x.shape
    mn = x[:, 0].copy()
    mx = x[:, 0].copy()
    sum_w = weights[:, 0].copy()
    sum_x = sum_w * x[:, 0]
    for i in range(1, n):
        xi = x[:, i]
        mn = np.where(xi < mn, xi, mn)
        mx = np.where(xi > mx, xi, mx)
        sum_w = sum_w + weights[:, i]
        sum_x = sum_x + weights[:, i] * xi
    mn = np.where(mn > 0, _F32(0), mn)
    flat = mx == mn
    nmax_f = _F32(nmax)
    iscale = nmax_f / (mx - mn)
    scale = _F32(1) / iscale
    L = np.clip(_nearest_int(iscale[:, None] * (x - mn[:, None])), 0, nmax)
    diff = (scale[:, None] * L.astype(_F32) + mn[:, None]) - x
    best_error = _seq_sum(weights * (diff * diff))
    for step in range(nstep + 1):
        iscale = (_F32(rmin) + _F32(rdelta) * _F32(step) + nmax_f) / (mx - mn)
        laux = np.clip(_nearest_int(iscale[:, None] * (x - mn[:, None])), 0, nmax)
        lf = laux.astype(_F32)
        wl = weights * lf
        sum_l = _seq_sum(wl)
        sum_l2 = _seq_sum(wl * lf)
        sum_xl = _seq_sum(wl * x)
        det = sum_w * sum_l2 - sum_l * sum_l
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
        pos = this_min > 0
        this_min = np.where(pos, _F32(0), this_min)
        this_scale = np.where(pos, sum_xl / sum_l2, this_scale)
        diff = (this_scale[:, None] * lf + this_min[:, None]) - x
        cur_error = _seq_sum(weights * (diff * diff))
        better = (det > 0) & (cur_error < best_error)
        L = np.where(better[:, None], laux, L)
        best_error = np.where(better, cur_error, best_error)
        scale = np.where(better, this_scale, scale)
        mn = np.where(better, this_min, mn)
    L = np.where(flat[:, None], 0, L)
    scale = np.where(flat, _F32(0), scale)
    return scale, -mn, L


def _make_qx_quants_rmse1(x, nmax: int):
    """``make_qx_quants(n, nmax, x, L, rmse_type=1, qw=NULL)``.

    x: (m, n) float32. Returns (scale (m,), L (m, n) int32 in 0..2·nmax−1).
    """
    m, n = x.shape
    amax = np.zeros(m, dtype=_F32)
    xmax = np.zeros(m, dtype=_F32)
    for i in range(n):
        ax = np.abs(x[:, i])
        up = ax > amax
        amax = np.where(up, ax, amax)
        xmax = np.where(up, x[:, i], xmax)
    zero = amax < _GROUP_MAX_EPS
    safe_max = np.where(zero, _F32(1), xmax)

    def codes(iscale):
        return np.clip(_nearest_int(iscale[:, None] * x), -nmax, nmax - 1)

    w = x * x
    wx = w * x
    iscale = _F32(-nmax) / safe_max
    lv = codes(iscale)
    L = lv + nmax
    lf = lv.astype(_F32)
    sumlx = _seq_sum(wx * lf)
    suml2 = _seq_sum((w * lf) * lf)
    scale = np.where(suml2 != 0, sumlx / np.where(suml2 != 0, suml2, _F32(1)), _F32(0))
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(_F32(nmax) + _F32(0.1) * _F32(step)) / safe_max
        lv = codes(iscale)
        lf = lv.astype(_F32)
        sumlx = _seq_sum(wx * lf)
        suml2 = _seq_sum((w * lf) * lf)
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        L = np.where(better[:, None], lv + nmax, L)
        scale = np.where(better, sumlx / np.where(better, suml2, _F32(1)), scale)
        best = np.where(better, scale * sumlx, best)
    L = np.where(zero[:, None], 0, L)
    scale = np.where(zero, _F32(0), scale)
    return scale, L


def _running_max_positive(v: np.ndarray) -> np.ndarray:
    """``m = 0; for j: if (v[j] > m) m = v[j];`` over the last axis."""
    out = np.zeros(v.shape[:-1], dtype=_F32)
    for j in range(v.shape[-1]):
        out = np.where(v[..., j] > out, v[..., j], out)
    return out


def _check_scales_finite(values: np.ndarray, what: str, qtype: str) -> None:
    if not np.all(np.isfinite(values)):
        raise InputError(
            f"{qtype.upper()} {what} is not finite in float32 for these weights (overflow): "
            "the weights are too large for this GGUF type"
        )


# --------------------------------------------------------------------------------------
# Block quantizers: (nb, block) float32 → (nb, block_bytes) uint8
# --------------------------------------------------------------------------------------


def _quantize_q8_0(x: np.ndarray) -> np.ndarray:
    amax = np.max(np.abs(x), axis=1)
    d = amax / _F32(127)
    with np.errstate(divide="ignore", over="ignore"):
        inv = np.where(d != 0, _F32(1) / np.where(d != 0, d, _F32(1)), _F32(0))
    inv = np.where(np.isfinite(inv), inv, _F32(0))
    qs = _roundf(x * inv[:, None]).astype(np.int8)
    dbits = _to_fp16_bits(d, "scale d", "q8_0")
    return np.concatenate([_u16_bytes(dbits), qs.view(np.uint8)], axis=1)


def _inverse_or_inf(d: np.ndarray) -> np.ndarray:
    """C's ``d ? 1.0f/d : 0.0f`` in float32 (may be ±inf for a subnormal d)."""
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(d != 0, _F32(1) / np.where(d != 0, d, _F32(1)), _F32(0))


def _trunc_to_code(v: np.ndarray) -> np.ndarray:
    """C's float → integer conversion (truncation) as x86 performs it: non-finite → 0."""
    ok = np.isfinite(v) & (np.abs(v) < 2.0**31)
    return np.where(ok, np.trunc(np.where(ok, v, _F32(0))), _F32(0)).astype(np.int64)


def _pack_5bit(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """32 codes 0..31 per block → (qh: 4 bytes of 5th bits, little-endian; qs: 16 nibble bytes)."""
    q = q.astype(np.uint8)
    qs = (q[:, :16] & 0xF) | ((q[:, 16:] & 0xF) << 4)
    qh = np.packbits((q >> 4) & 1, axis=1, bitorder="little")
    return qh, qs


def _quantize_q5_0(x: np.ndarray) -> np.ndarray:
    imax = np.argmax(np.abs(x), axis=1)[:, None]  # first entry of largest magnitude
    mx = np.take_along_axis(x, imax, axis=1)[:, 0]
    d = mx / _F32(-16)
    inv = _inverse_or_inf(d)
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.minimum(31, _trunc_to_code(x * inv[:, None] + _F32(16.5)) & 0xFF)  # (int8_t), MIN
    dbits = _to_fp16_bits(d, "scale d", "q5_0")
    qh, qs = _pack_5bit(q)
    return np.concatenate([_u16_bytes(dbits), qh, qs], axis=1)


def _quantize_q5_1(x: np.ndarray) -> np.ndarray:
    mn = np.min(x, axis=1)
    mx = np.max(x, axis=1)
    d = (mx - mn) / _F32(31)
    _check_scales_finite(d, "scale d", "q5_1")
    inv = _inverse_or_inf(d)
    with np.errstate(invalid="ignore", over="ignore"):
        q = _trunc_to_code((x - mn[:, None]) * inv[:, None] + _F32(0.5)) & 0xFF  # (uint8_t)
    dbits = _to_fp16_bits(d, "scale d", "q5_1")
    mbits = _to_fp16_bits(mn, "minimum m", "q5_1")
    qh, qs = _pack_5bit(q)
    return np.concatenate([_u16_bytes(dbits), _u16_bytes(mbits), qh, qs], axis=1)


def _kquant_super_scales(x: np.ndarray, nmax: int, rmin: float, nstep: int, qtype: str):
    """Shared first half of Q4_K / Q5_K: sub-block search, 6-bit scales, float16 d/dmin."""
    nb = x.shape[0]
    xs = x.reshape(nb * 8, 32)
    av_x = np.sqrt(_seq_sum(xs * xs) / _F32(32))
    weights = av_x[:, None] + np.abs(xs)
    scales, mins, L = _make_qkx2_quants(xs, weights, nmax, rmin, 0.1, nstep)
    _check_scales_finite(scales, "sub-block scale", qtype)
    _check_scales_finite(mins, "sub-block min", qtype)
    scales = scales.reshape(nb, 8)
    mins = mins.reshape(nb, 8)
    L = L.reshape(nb, 256)
    max_scale = _running_max_positive(scales)
    max_min = _running_max_positive(mins)
    inv_scale = np.where(max_scale > 0, _F32(63) / np.where(max_scale > 0, max_scale, _F32(1)), _F32(0))
    inv_min = np.where(max_min > 0, _F32(63) / np.where(max_min > 0, max_min, _F32(1)), _F32(0))
    ls = np.minimum(_nearest_int(inv_scale[:, None] * scales) & 0xFF, 63).astype(np.uint8)
    lm = np.minimum(_nearest_int(inv_min[:, None] * mins) & 0xFF, 63).astype(np.uint8)
    packed = np.zeros((nb, 12), dtype=np.uint8)
    packed[:, 0:4] = ls[:, 0:4]
    packed[:, 4:8] = lm[:, 0:4]
    packed[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    packed[:, 0:4] |= (ls[:, 4:8] >> 4) << 6
    packed[:, 4:8] |= (lm[:, 4:8] >> 4) << 6
    dbits = _to_fp16_bits(max_scale / _F32(63), "super-block scale d", qtype)
    mbits = _to_fp16_bits(max_min / _F32(63), "super-block min scale dmin", qtype)
    sc, m = _scale_min_k4(packed)
    d_sub = _fp16_bits_to_f32(dbits)[:, None] * sc.astype(_F32)
    dm_sub = _fp16_bits_to_f32(mbits)[:, None] * m.astype(_F32)
    xr = x.reshape(nb, 8, 32)
    live = d_sub != 0
    safe = np.where(live, d_sub, _F32(1))
    with np.errstate(over="ignore", invalid="ignore"):
        lnew = np.clip(_nearest_int((xr + dm_sub[..., None]) / safe[..., None]), 0, nmax)
    L = np.where(live[..., None], lnew, L.reshape(nb, 8, 32)).reshape(nb, 256)
    head = np.concatenate([_u16_bytes(dbits), _u16_bytes(mbits), packed], axis=1)
    return head, L


def _quantize_q4_k(x: np.ndarray) -> np.ndarray:
    head, L = _kquant_super_scales(x, 15, -1.0, 20, "q4_k")
    L = L.astype(np.uint8).reshape(-1, 4, 2, 32)
    qs = (L[:, :, 0, :] | (L[:, :, 1, :] << 4)).reshape(-1, 128)
    return np.concatenate([head, qs], axis=1)


def _quantize_q5_k(x: np.ndarray) -> np.ndarray:
    head, L = _kquant_super_scales(x, 31, -0.5, 15, "q5_k")
    L = L.astype(np.uint8).reshape(-1, 4, 2, 32)  # chunk c, half h, index j
    lo = L & 0xF
    hi = (L >> 4) & 1
    qs = (lo[:, :, 0, :] | (lo[:, :, 1, :] << 4)).reshape(-1, 128)
    shifts = (2 * np.arange(4)[:, None] + np.arange(2)[None, :]).astype(np.uint8)  # bit 2c + h
    qh = np.bitwise_or.reduce((hi << shifts[None, :, :, None]).reshape(-1, 8, 32), axis=1)
    return np.concatenate([head, qh.astype(np.uint8), qs], axis=1)


def _quantize_q6_k(x: np.ndarray) -> np.ndarray:
    nb = x.shape[0]
    scales, L = _make_qx_quants_rmse1(x.reshape(nb * 16, 16), 32)
    _check_scales_finite(scales, "sub-block scale", "q6_k")
    scales = scales.reshape(nb, 16)
    L = L.reshape(nb, 256)
    max_abs = np.zeros(nb, dtype=_F32)
    max_scale = np.zeros(nb, dtype=_F32)
    for j in range(16):
        a = np.abs(scales[:, j])
        up = a > max_abs
        max_abs = np.where(up, a, max_abs)
        max_scale = np.where(up, scales[:, j], max_scale)
    zero = max_abs < _GROUP_MAX_EPS
    safe_max = np.where(zero, _F32(1), max_scale)
    iscale = _F32(-128) / safe_max
    dbits = _to_fp16_bits(np.where(zero, _F32(0), _F32(1) / iscale), "super-block scale d", "q6_k")
    sc_int = np.minimum(127, _nearest_int(iscale[:, None] * scales))
    sc = (sc_int & 0xFF).astype(np.uint8).view(np.int8)  # C's int → int8_t conversion (wraps)
    d_sub = _fp16_bits_to_f32(dbits)[:, None] * sc.astype(_F32)
    live = d_sub != 0
    safe = np.where(live, d_sub, _F32(1))
    xr = x.reshape(nb, 16, 16)
    with np.errstate(over="ignore", invalid="ignore"):
        lnew = np.clip(_nearest_int(xr / safe[..., None]), -32, 31) + 32
    L = np.where(live[..., None], lnew, L.reshape(nb, 16, 16)).reshape(nb, 256)
    L = np.where(zero[:, None], 0, L).astype(np.uint8)
    sc = np.where(zero[:, None], np.int8(0), sc)
    Lq = L.reshape(nb, 2, 4, 32)  # half, quarter, index
    lo = Lq & 0xF
    ql = np.concatenate([lo[:, :, 0, :] | (lo[:, :, 2, :] << 4), lo[:, :, 1, :] | (lo[:, :, 3, :] << 4)], axis=2)
    hi = Lq >> 4
    qh = hi[:, :, 0, :] | (hi[:, :, 1, :] << 2) | (hi[:, :, 2, :] << 4) | (hi[:, :, 3, :] << 6)
    return np.concatenate(
        [ql.reshape(nb, 128), qh.reshape(nb, 64), sc.view(np.uint8), _u16_bytes(dbits)], axis=1
    ).astype(np.uint8)


def _scale_min_k4(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``get_scale_min_k4`` for j = 0..7: (nb, 12) bytes → (sc, m), each (nb, 8) uint8."""
    q = packed
    sc = np.empty((q.shape[0], 8), dtype=np.uint8)
    m = np.empty((q.shape[0], 8), dtype=np.uint8)
    sc[:, :4] = q[:, 0:4] & 63
    m[:, :4] = q[:, 4:8] & 63
    sc[:, 4:] = (q[:, 8:12] & 0xF) | ((q[:, 0:4] >> 6) << 4)
    m[:, 4:] = (q[:, 8:12] >> 4) | ((q[:, 4:8] >> 6) << 4)
    return sc, m


_QUANTIZERS = {
    "q8_0": _quantize_q8_0,
    "q5_0": _quantize_q5_0,
    "q5_1": _quantize_q5_1,
    "q4_k": _quantize_q4_k,
    "q5_k": _quantize_q5_k,
    "q6_k": _quantize_q6_k,
}


# --------------------------------------------------------------------------------------
# Block dequantizers: (nb, block_bytes) uint8 → (nb, block) float32, gguf-py's operations
# --------------------------------------------------------------------------------------


def _dequantize_q8_0(b: np.ndarray) -> np.ndarray:
    d = _fp16_bits_to_f32(b[:, 0:2].copy().view("<u2")[:, 0])
    q = b[:, 2:].view(np.int8).astype(_F32)
    return q * d[:, None]


def _unpack_5bit(qh: np.ndarray, qs: np.ndarray) -> np.ndarray:
    lo = np.concatenate([qs & 0xF, qs >> 4], axis=1)
    hi = np.unpackbits(qh, axis=1, bitorder="little")
    return lo | (hi << 4)


def _dequantize_q5_0(b: np.ndarray) -> np.ndarray:
    d = _fp16_bits_to_f32(b[:, 0:2].copy().view("<u2")[:, 0])
    q = (_unpack_5bit(b[:, 2:6], b[:, 6:22]).astype(np.int8) - np.int8(16)).astype(_F32)
    return d[:, None] * q


def _dequantize_q5_1(b: np.ndarray) -> np.ndarray:
    d = _fp16_bits_to_f32(b[:, 0:2].copy().view("<u2")[:, 0])
    m = _fp16_bits_to_f32(b[:, 2:4].copy().view("<u2")[:, 0])
    q = _unpack_5bit(b[:, 4:8], b[:, 8:24]).astype(_F32)
    return d[:, None] * q + m[:, None]


def _k_head(b: np.ndarray):
    d = _fp16_bits_to_f32(b[:, 0:2].copy().view("<u2")[:, 0])
    dmin = _fp16_bits_to_f32(b[:, 2:4].copy().view("<u2")[:, 0])
    sc, m = _scale_min_k4(b[:, 4:16])
    return d[:, None] * sc.astype(_F32), dmin[:, None] * m.astype(_F32)  # (nb, 8) each


def _dequantize_q4_k(b: np.ndarray) -> np.ndarray:
    nb = b.shape[0]
    d_sub, dm_sub = _k_head(b)
    qs = b[:, 16:].reshape(nb, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    q = (qs & 0xF).reshape(nb, 8, 32).astype(_F32)
    return (d_sub[..., None] * q - dm_sub[..., None]).reshape(nb, 256)


def _dequantize_q5_k(b: np.ndarray) -> np.ndarray:
    nb = b.shape[0]
    d_sub, dm_sub = _k_head(b)
    qh = b[:, 16:48]
    qs = b[:, 48:]
    ql = (qs.reshape(nb, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)) & 0xF
    hb = (qh.reshape(nb, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1
    q = (ql.reshape(nb, 8, 32) | (hb << 4)).astype(_F32)
    return (d_sub[..., None] * q - dm_sub[..., None]).reshape(nb, 256)


def _dequantize_q6_k(b: np.ndarray) -> np.ndarray:
    nb = b.shape[0]
    ql = b[:, 0:128]
    qh = b[:, 128:192]
    sc = b[:, 192:208].view(np.int8).astype(_F32)
    d = _fp16_bits_to_f32(b[:, 208:210].copy().view("<u2")[:, 0])
    d_sub = (d[:, None] * sc).reshape(nb, 16, 1)
    lo = (ql.reshape(nb, 2, 1, 64) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)) & 0xF
    lo = lo.reshape(nb, 8, 32)
    hi = (qh.reshape(nb, 2, 1, 32) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)) & 3
    hi = hi.reshape(nb, 8, 32)
    q = ((lo | (hi << 4)).astype(np.int8) - np.int8(32)).reshape(nb, 16, 16).astype(_F32)
    return (d_sub * q).reshape(nb, 256)


_DEQUANTIZERS = {
    "q8_0": _dequantize_q8_0,
    "q5_0": _dequantize_q5_0,
    "q5_1": _dequantize_q5_1,
    "q4_k": _dequantize_q4_k,
    "q5_k": _dequantize_q5_k,
    "q6_k": _dequantize_q6_k,
}


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def _qtype(qtype) -> str:
    t = str(qtype).strip().lower() if isinstance(qtype, str) else None
    if t not in GGUF_TYPES:
        raise InputError(f"unknown GGUF type {qtype!r}; expected one of {GGUF_TYPES}")
    return t


def _weights_f32(w, qtype: str) -> np.ndarray:
    """Validate and return ``w`` as a 2-D float32 array (a 1-D array is one row)."""
    rows = _weights_f32_unblocked(w)
    block = BLOCK_WEIGHTS[qtype]
    if rows.shape[1] % block != 0:
        pad = -rows.shape[1] % block
        raise InputError(
            f"row length (input dimension) {rows.shape[1]} of a weight of shape {np.shape(w)} is not a "
            f"multiple of the {block}-weight block of GGUF {qtype.upper()}: GGUF does not pad rows; pad "
            f"the input dimension with {pad} zero columns (to {rows.shape[1] + pad}) or use another type"
            + (
                f" (llama.cpp itself falls back to {LLAMA_CPP_FALLBACK[qtype].upper()}: scheme "
                f"'gguf-{qtype}-or-{LLAMA_CPP_FALLBACK[qtype]}')"
                if qtype in LLAMA_CPP_FALLBACK
                else ""
            )
        )
    return rows


def _weights_f32_unblocked(w) -> np.ndarray:
    arr = np.asarray(w)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"w must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise InputError(f"w must be 1-D or 2-D (rows = output channels), got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"w is empty (shape {arr.shape})")
    a64 = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a64)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a64))[0])
        raise InputError(f"w has a non-finite entry {a64[bad]!r} at index {bad}")
    f32max = float(np.finfo(np.float32).max)
    if np.any(np.abs(a64) > f32max):
        raise InputError(f"w has entries beyond the float32 range (|w| ≤ {f32max:.6g}); GGUF quantizes float32")
    rows = a64.reshape(1, -1) if a64.ndim == 1 else a64
    return rows.astype(_F32)


# --------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------


def quantize_to_bytes(w, qtype: str) -> np.ndarray:
    """Quantize weights to the GGUF tensor bytes of ``qtype`` (llama.cpp's reference quantizer).

    Parameters
    ----------
    w : array_like, shape (n,) or (rows, n)
        Finite real weights within the float32 range; rounded to float32 first. Each row
        is quantized on its own and ``n`` must be a multiple of ``BLOCK_WEIGHTS[qtype]``.
    qtype : {'q8_0', 'q5_0', 'q5_1', 'q4_k', 'q5_k', 'q6_k'}

    Returns
    -------
    numpy.ndarray of uint8, shape (rows, n // block · block_bytes) (1-D input: (bytes,))
        Exactly the layout ``gguf.quants.quantize`` returns and ``gguf.quants.dequantize``
        reads.

    Raises
    ------
    InputError
        Non-numeric, empty, >2-D, non-finite or beyond-float32 ``w``; a row length that is
        not a whole number of blocks (the padding rule is named); a block whose scale
        overflows the float16 the format stores it in; an unknown ``qtype``.
    """
    qtype = _qtype(qtype)
    rows = _weights_f32(w, qtype)
    block = BLOCK_WEIGHTS[qtype]
    blocks = rows.reshape(-1, block)
    out = np.empty((blocks.shape[0], BLOCK_BYTES[qtype]), dtype=np.uint8)
    step = _CHUNK_WEIGHTS // block  # blocks are independent: bounded temporaries
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        for start in range(0, blocks.shape[0], step):
            try:
                out[start : start + step] = _QUANTIZERS[qtype](blocks[start : start + step])
            except InputError as exc:
                raise InputError(f"{exc}; block index counted from block {start} of {blocks.shape[0]}") from exc
    out = out.reshape(rows.shape[0], -1)
    return out[0] if np.ndim(w) == 1 else out


def dequantize_bytes(data, qtype: str) -> np.ndarray:
    """Decode GGUF tensor bytes to float32 weights (the operations of gguf's dequantizer).

    Parameters
    ----------
    data : array_like of uint8, shape (..., k · block_bytes)
    qtype : {'q8_0', 'q5_0', 'q5_1', 'q4_k', 'q5_k', 'q6_k'}

    Returns
    -------
    numpy.ndarray of float32, shape (..., k · block)
    """
    qtype = _qtype(qtype)
    b = np.asarray(data)
    if b.dtype != np.uint8:
        raise InputError(f"data must be uint8 bytes, got dtype {b.dtype}")
    nbytes = BLOCK_BYTES[qtype]
    if b.ndim == 0 or b.shape[-1] == 0 or b.shape[-1] % nbytes != 0:
        raise InputError(
            f"the last axis of data must be a positive multiple of {nbytes} bytes ({qtype}), got shape {b.shape}"
        )
    blocks = np.ascontiguousarray(b).reshape(-1, nbytes)
    out = _DEQUANTIZERS[qtype](blocks)
    return out.reshape(*b.shape[:-1], b.shape[-1] // nbytes * BLOCK_WEIGHTS[qtype]).astype(_F32, copy=False)


def llama_cpp_tensor_type(qtype: str, row_length: int) -> str:
    """The type llama.cpp stores a tensor of ``row_length``-weight rows in when asked for
    ``qtype``: ``qtype`` itself if the rows are whole blocks, else :data:`LLAMA_CPP_FALLBACK`
    (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0), else ``'f16'``."""
    qtype = _qtype(qtype)
    if isinstance(row_length, bool) or not isinstance(row_length, (int, np.integer)) or row_length < 1:
        raise InputError(f"row_length must be a positive integer, got {row_length!r}")
    if row_length % BLOCK_WEIGHTS[qtype] == 0:
        return qtype
    fallback = LLAMA_CPP_FALLBACK.get(qtype)
    if fallback is not None and row_length % BLOCK_WEIGHTS[fallback] == 0:
        return fallback
    return "f16"


def _resolve(w, qtype) -> str:
    """A GGUF type, or for a ``'<k-quant>-or-<fallback>'`` name the type this array gets."""
    t = str(qtype).strip().lower() if isinstance(qtype, str) else qtype
    if t in WITH_FALLBACK:
        shape = np.shape(w)
        return llama_cpp_tensor_type(WITH_FALLBACK[t], int(shape[-1]) if shape else 1)
    return _qtype(qtype)


def _fake_f16(w) -> np.ndarray:
    rows = np.asarray(w)
    x = _weights_f32_unblocked(rows)
    if np.any(np.abs(x) > float(np.finfo(np.float16).max)):
        raise InputError(f"F16 (llama.cpp's last fallback) cannot hold |w| up to {float(np.max(np.abs(x))):.6g}")
    return x.astype(np.float16).astype(_F32).reshape(np.shape(w))


def fake_quantize(w, qtype: str) -> np.ndarray:
    """``dequantize_bytes(quantize_to_bytes(w))``: the float32 weights a GGUF file would hold.

    ``qtype`` may also be a name of :data:`WITH_FALLBACK` (``'q4_k-or-q5_0'`` …): the array
    is then quantized with the type :func:`llama_cpp_tensor_type` gives for its row length
    (F16 rounding when llama.cpp would store F16). Same shape as ``w``; float32. Raises as
    :func:`quantize_to_bytes`.
    """
    t = _resolve(w, qtype)
    if t == "f16":
        return _fake_f16(w)
    q = quantize_to_bytes(w, t)
    return dequantize_bytes(q, t).reshape(np.shape(w))


def sub_block_steps(w, qtype: str) -> np.ndarray:
    """Per weight, the step of the grid it is quantized on: ``|d·sc_j|``; ``|d|`` for the
    32-blocks Q8_0, Q5_0, Q5_1.

    float64, same shape as ``w``; 0 where the stored sub-block scale is 0 (that sub-block
    dequantizes to the constant ``−dmin·m_j``, or 0). Q(w) is the grid point nearest to w
    whenever w lies inside the grid's range; see the module docstring.
    """
    qtype = _resolve(w, qtype)
    if qtype == "f16":  # the float16 spacing at the stored value
        return np.spacing(np.abs(_fake_f16(w)).astype(np.float16)).astype(np.float64)
    q = quantize_to_bytes(w, qtype)
    blocks = np.atleast_2d(q).reshape(-1, BLOCK_BYTES[qtype])
    if qtype in ("q8_0", "q5_0", "q5_1"):
        step = np.abs(_fp16_bits_to_f32(blocks[:, 0:2].copy().view("<u2")[:, 0]))[:, None]
        per = np.broadcast_to(step, (blocks.shape[0], 32))
    elif qtype == "q6_k":
        d = _fp16_bits_to_f32(blocks[:, 208:210].copy().view("<u2")[:, 0])
        d_sub = np.abs(d[:, None] * blocks[:, 192:208].view(np.int8).astype(_F32))
        per = np.repeat(d_sub, 16, axis=1)
    else:
        d_sub, _ = _k_head(blocks)
        per = np.repeat(d_sub, 32, axis=1)
    return np.asarray(per, dtype=np.float64).reshape(np.shape(w))
