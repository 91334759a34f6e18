"""Weight quantizers Q(θ) and Widrow's additive-noise model (docs/theory.md §1).

numpy only, float64 throughout; torch mirrors live in :mod:`torch_checks.quantizers`.

Conventions
-----------
A weight array ``w`` is 1-D or 2-D. For 2-D arrays rows are *output channels* and the
second axis is the *input* dimension; a 1-D array is treated as a single row (one output
channel). Every scheme partitions ``w`` into **groups** that share one scale:

``tensor``
    the whole array is one group;
``channel``
    each row is a group (a 1-D array is one row, so this equals ``tensor`` there);
``group``
    consecutive runs of ``group_size`` weights along the input dimension (blocks of the
    row-major flattened array). ``group_size`` must divide the row length.

Quantized values are returned in the units of ``w`` (dequantized, "fake quantization"):
``Q(w)`` has the same shape as ``w`` and ``δ = Q(w) − w``.

Schemes (``QuantScheme.kind``)
------------------------------
``rtn`` — round to nearest, integer b-bit, ``b`` in 2..8.
    *symmetric* (absmax): scale ``s = max|w_g| / qmax`` with ``qmax = 2^{b−1} − 1``;
    codes ``q = clip(round(w/s), −qmax, qmax)`` (the *restricted* range
    −(2^{b−1}−1)…2^{b−1}−1, so 2^b − 1 levels, zero exactly representable and the
    absmax preserved); ``Q(w) = q·s``. This is optimum-quanto's ``qint8`` convention
    (scale = absmax / 127).
    *asymmetric* (min/max affine, 2^b levels): ``s = (max w_g − min w_g)/(2^b − 1)``,
    ``shift = −min w_g``, ``q = clip(round((w + shift)/s), 0, 2^b − 1)``,
    ``Q(w) = q·s − shift``. The zero point is the *float* offset ``min w_g`` (grid
    ``min + k·s``), which is optimum-quanto's ``qint4`` convention (``MaxOptimizer`` with
    a float shift) and gguf's Q4_1 convention; zero is in general **not** on the grid.
    ``round`` is round-half-to-even (numpy / torch).
``sr`` — stochastic rounding on the same integer grid as ``rtn``: with
    ``y = w/s`` (or ``(w + shift)/s``), ``q = floor(y) + [u < y − floor(y)]``, ``u`` uniform
    on [0, 1). In exact arithmetic ``E[Q(w)] = w`` and ``Q(w)`` is one of the two grid
    points adjacent to ``w``. Needs a seeded :class:`numpy.random.Generator`.
``nf4`` — the 16-value NormalFloat codebook of QLoRA / bitsandbytes (:data:`NF4_CODE`,
    the float32 constants bitsandbytes ships) scaled by the per-group absmax:
    ``Q(w) = c_i · max|w_g|`` with ``c_i`` the code nearest to ``w / max|w_g|``; an exact
    tie goes to the *lower* code (bitsandbytes compares ``x > threshold``).
``fp4`` — FP4 E2M1, magnitudes :data:`FP4_E2M1_MAGNITUDES` = {0, 0.5, 1, 1.5, 2, 3, 4, 6}
    with a sign, scaled by ``max|w_g| / 6``; nearest value, ties to the even mantissa
    (the OCP microscaling rounding rule), sign applied after rounding the magnitude.
``q4_0`` — gguf/GGML Q4_0, blocks of 32: ``m`` = the block entry of largest magnitude
    (signed, first if repeated), ``d = m / −8``, ``q = clip(floor(w·(1/d) + 8.5), 0, 15)``,
    ``Q(w) = (q − 8)·fp16(d)``. The levels are d·(−8…7), so weights of the sign opposite
    to ``m`` near ``−m`` are clipped to ``7d`` (error up to ``|d|``, not ``|d|/2``: the
    format's known asymmetry). The scale is rounded to float32 and then stored in float16
    exactly as the file format does, so Q4_0 is idempotent and within s/2 only up to that
    float16 rounding (relative 2^−11).
``q4_1`` — gguf/GGML Q4_1, blocks of 32: ``d = (max − min)/15``,
    ``q = clip(floor((w − min)·(1/d) + 0.5), 0, 15)``, ``Q(w) = q·fp16(d) + fp16(min)``.
``q8_0``, ``q5_0``, ``q5_1``, ``q4_k``, ``q5_k``, ``q6_k`` — gguf/GGML Q8_0, Q5_0, Q5_1
    (blocks of 32) and the k-quants
    Q4_K, Q5_K (super-blocks of 256 = 8 sub-blocks of 32, 6-bit scales and mins) and Q6_K
    (16 sub-blocks of 16, int8 scales), quantized by llama.cpp's reference quantizers
    ported in :mod:`fimtheory.kquants` (which states the algorithm and byte layout). The
    weights are rounded to float32 first and Q(w) is the float32 value a GGUF file would
    hold, widened to float64. Spec names ``gguf-q8_0``, ``gguf-q5_0``, ``gguf-q5_1``,
    ``gguf-q4_k``, ``gguf-q5_k``, ``gguf-q6_k`` (bits 8, 5, 5, 4, 5, 6; group = block of 32
    or super-block of 256); the row length must be a multiple of the block (GGUF does not
    pad). ``gguf-q4_k-or-q5_0``, ``gguf-q5_k-or-q5_1``, ``gguf-q6_k-or-q8_0`` do what
    llama.cpp's quantizer does per tensor: the k-quant where the rows are whole 256-blocks,
    else the 32-block fallback type, else float16 (:func:`kquants.llama_cpp_tensor_type`).

Step sizes (Widrow's model)
---------------------------
:func:`step_sizes` returns, per weight, the local step ``s_k`` of its group's grid:
for ``rtn`` / ``sr`` / ``q4_*`` the uniform scale of the group (for ``q4_*`` the stored
float16 ``d``); for ``q8_0`` and the k-quants the step of the (sub-)block grid the weight is
rounded on, ``|fp16(d)·sc_j|`` (:func:`fimtheory.kquants.sub_block_steps`); for the
non-uniform codebooks (``nf4``, ``fp4``) the width of the
*Voronoi cell* of the code the weight rounds to, ``(c_{i+1} − c_{i−1})/2``, times the
group scale, and at the two end codes the distance to the single neighbour
``c_1 − c_0`` (resp. ``c_{n−1} − c_{n−2}``). For uniform grids the two definitions agree.
A group whose scale is zero (all-zero group, or constant group for asymmetric schemes)
has step 0 and is reproduced exactly. The bound ``|Q(w) − w| ≤ s/2`` holds for ``rtn``
(uniform grid, nearest rounding) up to rounding in the last place; for non-uniform
codebooks the error can exceed half the *average* cell width on the wide side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from fimtheory import kquants
from fimtheory.errors import InputError, UnknownIdError

__all__ = [
    "FP4_E2M1_MAGNITUDES",
    "FP4_E2M1_VALUES",
    "KINDS",
    "KQUANT_SCHEME_EXAMPLES",
    "NF4_CODE",
    "QuantScheme",
    "SCHEME_EXAMPLES",
    "GRANULARITIES",
    "parse_scheme",
    "quantize",
    "sr_quantize_with_uniforms",
    "step_sizes",
    "widrow_noise",
]

#: The 16 NF4 code values, exactly the float32 constants of bitsandbytes
#: (``bitsandbytes.functional.get_4bit_type("nf4")``), widened to float64 without change.
NF4_CODE: np.ndarray = np.array(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ],
    dtype=np.float32,
).astype(np.float64)
NF4_CODE.setflags(write=False)

#: FP4 E2M1 magnitudes (sign bit separate): 0, 0.5 (subnormal), 1, 1.5, 2, 3, 4, 6.
FP4_E2M1_MAGNITUDES: np.ndarray = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
FP4_E2M1_MAGNITUDES.setflags(write=False)
#: The 15 distinct signed FP4 E2M1 values (+0 and −0 merged), ascending.
FP4_E2M1_VALUES: np.ndarray = np.concatenate([-FP4_E2M1_MAGNITUDES[:0:-1], FP4_E2M1_MAGNITUDES])
FP4_E2M1_VALUES.setflags(write=False)

KINDS = (
    "rtn",
    "sr",
    "nf4",
    "fp4",
    "q4_0",
    "q4_1",
    "q8_0",
    "q5_0",
    "q5_1",
    "q4_k",
    "q5_k",
    "q6_k",
    "q4_k-or-q5_0",
    "q5_k-or-q5_1",
    "q6_k-or-q8_0",
)
GRANULARITIES = ("tensor", "channel", "group")
_CODEBOOK_KINDS = ("nf4", "fp4")
_GGUF_KINDS = ("q4_0", "q4_1")
_GGUF_BLOCK = 32
#: gguf types quantized by :mod:`fimtheory.kquants`, with their bit widths.
_KQUANT_BITS = {"q8_0": 8, "q5_0": 5, "q5_1": 5, "q4_k": 4, "q5_k": 5, "q6_k": 6}
_KQUANT_SYMMETRIC = {"q8_0": True, "q5_0": True, "q5_1": False, "q4_k": False, "q5_k": False, "q6_k": True}
for _name, _primary in kquants.WITH_FALLBACK.items():  # k-quant, or llama.cpp's fallback type
    _KQUANT_BITS[_name] = _KQUANT_BITS[_primary]
    _KQUANT_SYMMETRIC[_name] = _KQUANT_SYMMETRIC[_primary]
#: Scheme names of the kinds of :mod:`fimtheory.kquants` (row length a multiple of 32 resp. 256).
KQUANT_SCHEME_EXAMPLES: tuple[str, ...] = (
    "gguf-q8_0",
    "gguf-q5_0",
    "gguf-q5_1",
    "gguf-q4_k",
    "gguf-q5_k",
    "gguf-q6_k",
    "gguf-q4_k-or-q5_0",
    "gguf-q5_k-or-q5_1",
    "gguf-q6_k-or-q8_0",
)
_FP16_MAX = float(np.finfo(np.float16).max)

SCHEME_EXAMPLES: tuple[str, ...] = (
    "rtn-int4-sym-channel",
    "rtn-int4-asym-g64",
    "rtn-int8-sym-tensor",
    "rtn-int8-sym-channel",
    "rtn-int2-asym-channel",
    "sr-int4-sym-channel",
    "sr-int4-asym-g32",
    "nf4-b64",
    "fp4-b32",
    "gguf-q4_0",
    "gguf-q4_1",
)

_VALID_FORMS = (
    "valid scheme forms: '{rtn|sr}-int{2..8}-{sym|asym}-{tensor|channel|g<N>}' "
    "(e.g. 'rtn-int4-sym-channel', 'rtn-int4-asym-g64', 'sr-int4-sym-channel'), "
    "'nf4-b<N>' (or 'nf4' = 'nf4-b64'), 'fp4-b<N>' (or 'fp4' = 'fp4-b32'), "
    "'gguf-q4_0', 'gguf-q4_1', 'gguf-q8_0', 'gguf-q5_0', 'gguf-q5_1', 'gguf-q4_k', 'gguf-q5_k', 'gguf-q6_k', "
    "'gguf-q4_k-or-q5_0', 'gguf-q5_k-or-q5_1', 'gguf-q6_k-or-q8_0'"
)


# --------------------------------------------------------------------------------------
# The scheme object
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantScheme:
    """A weight quantization scheme (see the module docstring for the exact arithmetic).

    Parameters
    ----------
    kind : {'rtn', 'sr', 'nf4', 'fp4', 'q4_0', 'q4_1'}
        Rounding rule / codebook.
    bits : int
        Bit width, 2..8 for ``rtn``/``sr``; must be 4 for the codebook and gguf kinds.
    granularity : {'tensor', 'channel', 'group'}
        Which weights share a scale. ``q4_0``/``q4_1`` require ``'group'`` with size 32.
    group_size : int or None
        Number of consecutive weights along the input dimension per group; required iff
        ``granularity == 'group'``.
    symmetric : bool
        Absmax (zero-centred) scale if True, min/max affine grid if False. ``nf4``,
        ``fp4`` and ``q4_0`` are symmetric, ``q4_1`` is not.

    Raises
    ------
    InputError
        On any inconsistent field (bad bits, unknown kind or granularity, missing or
        superfluous group size, wrong symmetry for a fixed-format kind).
    """

    kind: str = "rtn"
    bits: int = 4
    granularity: str = "channel"
    group_size: int | None = None
    symmetric: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown quantizer kind {self.kind!r}; expected one of {KINDS}")
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)):
            raise InputError(f"bits must be an integer, got {self.bits!r}")
        if self.kind in ("rtn", "sr"):
            if not 2 <= self.bits <= 8:
                raise InputError(f"bits must be in 2..8 for {self.kind!r}, got {self.bits}")
        elif self.kind in _KQUANT_BITS:
            if self.bits != _KQUANT_BITS[self.kind]:
                raise InputError(
                    f"{self.kind!r} is a {_KQUANT_BITS[self.kind]}-bit format; bits must be "
                    f"{_KQUANT_BITS[self.kind]}, got {self.bits}"
                )
        elif self.bits != 4:
            raise InputError(f"{self.kind!r} is a 4-bit format; bits must be 4, got {self.bits}")
        if self.granularity not in GRANULARITIES:
            raise InputError(f"unknown granularity {self.granularity!r}; expected one of {GRANULARITIES}")
        if self.granularity == "group":
            gs = self.group_size
            if isinstance(gs, bool) or not isinstance(gs, (int, np.integer)) or gs < 1:
                raise InputError(f"granularity 'group' needs a positive integer group_size, got {gs!r}")
        elif self.group_size is not None:
            raise InputError(
                f"group_size={self.group_size!r} given with granularity "
                f"{self.granularity!r}; it is only meaningful with granularity 'group'"
            )
        if not isinstance(self.symmetric, (bool, np.bool_)):
            raise InputError(f"symmetric must be a bool, got {self.symmetric!r}")
        if self.kind in ("nf4", "fp4", "q4_0") and not self.symmetric:
            raise InputError(f"{self.kind!r} is a symmetric (absmax) format; symmetric must be True")
        if self.kind == "q4_1" and self.symmetric:
            raise InputError("'q4_1' is an asymmetric (min/scale) format; symmetric must be False")
        if self.kind in _GGUF_KINDS and (self.granularity != "group" or self.group_size != _GGUF_BLOCK):
            raise InputError(
                f"{self.kind!r} uses blocks of {_GGUF_BLOCK}: granularity must be 'group' with group_size={_GGUF_BLOCK}"
            )
        if self.kind in _KQUANT_BITS:
            block = kquants.BLOCK_WEIGHTS[kquants.WITH_FALLBACK.get(self.kind, self.kind)]
            if self.granularity != "group" or self.group_size != block:
                raise InputError(
                    f"{self.kind!r} uses blocks of {block}: granularity must be 'group' with group_size={block}"
                )
            if self.symmetric != _KQUANT_SYMMETRIC[self.kind]:
                raise InputError(f"{self.kind!r} needs symmetric={_KQUANT_SYMMETRIC[self.kind]}")

    # -- descriptive properties --------------------------------------------------------

    @property
    def name(self) -> str:
        """Canonical spec string; ``parse_scheme(s.name) == s``."""
        if self.kind in _GGUF_KINDS or self.kind in _KQUANT_BITS:
            return f"gguf-{self.kind}"
        if self.kind in _CODEBOOK_KINDS:
            if self.granularity == "group":
                return f"{self.kind}-b{self.group_size}"
            return f"{self.kind}-{self.granularity}"
        gran = f"g{self.group_size}" if self.granularity == "group" else self.granularity
        return f"{self.kind}-int{self.bits}-{'sym' if self.symmetric else 'asym'}-{gran}"

    @property
    def levels_per_group(self) -> int:
        """Number of distinct values a single group can take (≤ 2**bits).

        ``2^b − 1`` for symmetric integer grids (restricted range), ``2^b`` for asymmetric
        ones, 16 for NF4, 15 for FP4 (+0 and −0 coincide), 16 for Q4_0 / Q4_1; for the gguf
        k-quants the levels of one sub-block grid (Q4_K 16, Q5_K 32, Q6_K 64), 32 for Q5_0 /
        Q5_1 and 255 for Q8_0 (codes −127..127).
        """
        if self.kind in _KQUANT_BITS:
            return 255 if self.kind == "q8_0" else 2**self.bits
        if self.kind in ("rtn", "sr"):
            return 2**self.bits - 1 if self.symmetric else 2**self.bits
        if self.kind == "fp4":
            return len(FP4_E2M1_VALUES)
        return 16

    @property
    def stochastic(self) -> bool:
        """True for stochastic rounding (needs a random generator)."""
        return self.kind == "sr"

    @property
    def qmax(self) -> int:
        """Largest integer code: ``2^{b−1} − 1`` (symmetric) or ``2^b − 1`` (asymmetric)."""
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2**self.bits - 1

    def __str__(self) -> str:
        return self.name

    # -- operations ---------------------------------------------------------------------

    def quantize(self, w, *, rng: np.random.Generator | None = None) -> np.ndarray:
        """Return ``Q(w)`` (float64, same shape as ``w``); see :func:`quantize`."""
        return quantize(w, self, rng=rng)

    def step_sizes(self, w) -> np.ndarray:
        """Return the local steps ``s`` (same shape and units as ``w``); see :func:`step_sizes`."""
        return step_sizes(w, self)


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------

_INT_RE = re.compile(r"^(rtn|sr)-int(\d+)-(sym|asym)-(tensor|channel|g(\d+))$")
_CODEBOOK_RE = re.compile(r"^(nf4|fp4)(?:-b(\d+)|-(tensor|channel))?$")
_GGUF_RE = re.compile(r"^gguf-(q4_0|q4_1|q8_0|q5_0|q5_1|q4_k-or-q5_0|q5_k-or-q5_1|q6_k-or-q8_0|q4_k|q5_k|q6_k)$")
_CODEBOOK_DEFAULT_BLOCK = {"nf4": 64, "fp4": 32}


def parse_scheme(spec) -> QuantScheme:
    """Parse a scheme spec string such as ``'rtn-int4-sym-channel'`` or ``'nf4-b64'``.

    Parameters
    ----------
    spec : str or QuantScheme
        A spec string (case-insensitive, surrounding blanks ignored); a
        :class:`QuantScheme` is returned unchanged.

    Returns
    -------
    QuantScheme

    Raises
    ------
    UnknownIdError
        If ``spec`` matches none of the valid forms or names impossible options (bits
        outside 2..8, group size 0); the message lists the valid forms.
    """
    if isinstance(spec, QuantScheme):
        return spec
    if not isinstance(spec, str):
        raise UnknownIdError(f"scheme spec must be a string, got {type(spec).__name__}; {_VALID_FORMS}")
    s = spec.strip().lower()
    try:
        if m := _INT_RE.match(s):
            kind, bits, sym, gran, gsize = m.groups()
            if gsize is not None:
                return QuantScheme(kind, int(bits), "group", int(gsize), sym == "sym")
            return QuantScheme(kind, int(bits), gran, None, sym == "sym")
        if m := _CODEBOOK_RE.match(s):
            kind, block, gran = m.groups()
            if gran is not None:
                return QuantScheme(kind, 4, gran, None, True)
            size = int(block) if block is not None else _CODEBOOK_DEFAULT_BLOCK[kind]
            return QuantScheme(kind, 4, "group", size, True)
        if m := _GGUF_RE.match(s):
            kind = m.group(1)
            if kind in _KQUANT_BITS:
                block = kquants.BLOCK_WEIGHTS[kquants.WITH_FALLBACK.get(kind, kind)]
                return QuantScheme(kind, _KQUANT_BITS[kind], "group", block, _KQUANT_SYMMETRIC[kind])
            return QuantScheme(kind, 4, "group", _GGUF_BLOCK, kind == "q4_0")
    except InputError as exc:
        raise UnknownIdError(f"invalid quantization scheme {spec!r}: {exc}; {_VALID_FORMS}") from exc
    raise UnknownIdError(f"unknown quantization scheme {spec!r}; {_VALID_FORMS}")


# --------------------------------------------------------------------------------------
# Input checks and grouping
# --------------------------------------------------------------------------------------


def _as_weights(w, name: str = "w") -> np.ndarray:
    arr = np.asarray(w)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise InputError(f"{name} must be 1-D or 2-D (rows = output channels), got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape})")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise InputError(f"{name} has a non-finite entry {arr[bad]!r} at index {bad}")
    return arr


def _as_scheme(scheme) -> QuantScheme:
    if isinstance(scheme, QuantScheme):
        return scheme
    if isinstance(scheme, str):
        return parse_scheme(scheme)
    raise InputError(f"scheme must be a QuantScheme or a spec string, got {type(scheme).__name__}")


def group_shape(shape: tuple[int, ...], scheme: QuantScheme) -> tuple[int, int]:
    """Shape ``(n_groups, group_len)`` of the row-major regrouping of an array of ``shape``.

    Raises
    ------
    InputError
        If the group size does not divide the row length (input dimension).
    """
    scheme = _as_scheme(scheme)
    rows, cols = (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])
    if scheme.granularity == "tensor":
        return 1, rows * cols
    if scheme.granularity == "channel":
        return rows, cols
    g = int(scheme.group_size)
    if cols % g != 0:
        raise InputError(
            f"group size {g} of scheme {scheme.name!r} does not divide the row length "
            f"(input dimension) {cols} of a weight of shape {tuple(shape)}"
        )
    return rows * cols // g, g


def _grouped(w: np.ndarray, scheme: QuantScheme) -> np.ndarray:
    return w.reshape(group_shape(w.shape, scheme))


def _fp16(x: np.ndarray, what: str) -> np.ndarray:
    if np.any(np.abs(x) > _FP16_MAX):
        raise InputError(
            f"gguf {what} {float(np.max(np.abs(x))):.6g} overflows the float16 it is stored in (max {_FP16_MAX})"
        )
    # via float32, as gguf does (it computes the scale in float32, then stores float16);
    # torch mirrors exactly this double rounding.
    return x.astype(np.float32).astype(np.float16).astype(np.float64)


# --------------------------------------------------------------------------------------
# Core arithmetic (grouped arrays of shape (n_groups, group_len))
# --------------------------------------------------------------------------------------


def _int_params(g: np.ndarray, scheme: QuantScheme) -> tuple[np.ndarray, np.ndarray]:
    """Scale ``s`` and float shift (``w + shift`` is ≥ 0 for asymmetric), per group."""
    if scheme.symmetric:
        s = np.max(np.abs(g), axis=1, keepdims=True) / scheme.qmax
        shift = np.zeros_like(s)
    else:
        mn = np.min(g, axis=1, keepdims=True)
        mx = np.max(g, axis=1, keepdims=True)
        s = (mx - mn) / scheme.qmax
        shift = -mn
    return s, shift


def _int_bounds(scheme: QuantScheme) -> tuple[int, int]:
    return (-scheme.qmax, scheme.qmax) if scheme.symmetric else (0, scheme.qmax)


#: Groups whose largest magnitude exceeds this are computed on g/4 (see :func:`_range_safe`).
_WIDE = float(np.finfo(np.float64).max) / 8
#: Nonzero groups whose largest magnitude is below this are computed on g·2^600 (see :func:`_range_safe`).
_TINY = 2.0**-960
_TINY_UP = 2.0**600


def _range_safe(g: np.ndarray, core, *extra: np.ndarray, clip: bool = True) -> np.ndarray:
    """``core(g, *extra)`` on grouped arrays, safe against overflow near the float64 maximum.

    A group whose magnitude exceeds max/8 would overflow in ``max − min``, ``w + shift`` or
    ``q·s`` (an integer code times a rounded scale can exceed the absmax by an ulp). Such
    groups are computed on g/4 — exact in binary floating point, and every scheme here is
    scale-covariant — and multiplied back by 4; with ``clip`` the scaled result is first
    clipped to the group's [−absmax, absmax], where the exact Q(w) lies. Other groups are
    computed unchanged (bit-identical to the plain formulas).

    A nonzero group whose magnitude is below 2^-960 would get a scale (absmax/qmax, range/qmax,
    absmax/6) with few significant bits, or none, in the subnormal range: such groups are computed
    on g·2^600 (exact) and the result is multiplied by 2^-600, one final rounding.
    """
    amax = np.max(np.abs(g), axis=1)
    big = amax > _WIDE
    tiny = (amax < _TINY) & (amax > 0)
    if not np.any(big) and not np.any(tiny):
        return core(g, *extra)
    out = np.empty(g.shape, dtype=np.float64)
    small = ~(big | tiny)
    if np.any(small):
        out[small] = core(g[small], *(x[small] for x in extra))
    if np.any(tiny):
        out[tiny] = np.asarray(core(g[tiny] * _TINY_UP, *(x[tiny] for x in extra)), dtype=np.float64) / _TINY_UP
    if not np.any(big):
        return out
    gb = g[big] * 0.25
    qb = np.asarray(core(gb, *(x[big] for x in extra)), dtype=np.float64)
    if clip:
        a = np.max(np.abs(gb), axis=1, keepdims=True)
        qb = np.clip(qb, -a, a)
    out[big] = qb * 4.0
    return out


def _rtn_grouped(g: np.ndarray, scheme: QuantScheme) -> np.ndarray:
    return _range_safe(g, lambda x: _rtn_core(x, scheme))


def _sr_grouped(g: np.ndarray, u: np.ndarray, scheme: QuantScheme) -> np.ndarray:
    return _range_safe(g, lambda x, uu: _sr_core(x, uu, scheme), u)


def _rtn_core(g: np.ndarray, scheme: QuantScheme) -> np.ndarray:
    s, shift = _int_params(g, scheme)
    safe = np.where(s == 0, 1.0, s)
    lo, hi = _int_bounds(scheme)
    q = np.clip(np.round((g + shift) / safe), lo, hi)
    return np.where(s == 0, g, q * s - shift)


def _sr_core(g: np.ndarray, u: np.ndarray, scheme: QuantScheme) -> np.ndarray:
    s, shift = _int_params(g, scheme)
    safe = np.where(s == 0, 1.0, s)
    lo, hi = _int_bounds(scheme)
    y = (g + shift) / safe
    fl = np.floor(y)
    q = np.clip(fl + (u < (y - fl)), lo, hi)
    return np.where(s == 0, g, q * s - shift)


def _nearest_code(y: np.ndarray, code: np.ndarray, *, ties: str) -> np.ndarray:
    """Index of the code value nearest to ``y`` (``code`` ascending).

    ``ties='lower'`` sends an exact midpoint to the lower code; ``ties='even'`` to the
    even index.
    """
    mid = 0.5 * (code[1:] + code[:-1])
    idx = np.searchsorted(mid, y, side="left")  # y <= mid[i]  ->  code i (lower)
    if ties == "even":
        at = np.minimum(idx, len(mid) - 1)
        tie = (idx < len(mid)) & (y == mid[at]) & (idx % 2 == 1)
        idx = np.where(tie, idx + 1, idx)
    return idx


def _codebook_grouped(g: np.ndarray, scheme: QuantScheme, *, want_step: bool = False):
    return _range_safe(g, lambda x: _codebook_core(x, scheme, want_step=want_step), clip=not want_step)


def _codebook_core(g: np.ndarray, scheme: QuantScheme, *, want_step: bool = False):
    a = np.max(np.abs(g), axis=1, keepdims=True)
    if scheme.kind == "nf4":
        scale = a
        safe = np.where(scale == 0, 1.0, scale)
        idx = _nearest_code(g / safe, NF4_CODE, ties="lower")
        value = NF4_CODE[idx] * scale
        code = NF4_CODE
    else:  # fp4
        scale = a / 6.0
        safe = np.where(scale == 0, 1.0, scale)
        mag = _nearest_code(np.abs(g) / safe, FP4_E2M1_MAGNITUDES, ties="even")
        value = np.sign(g) * (FP4_E2M1_MAGNITUDES[mag] * scale)
        code = FP4_E2M1_VALUES
        idx = np.searchsorted(code, np.sign(g) * FP4_E2M1_MAGNITUDES[mag])
    if not want_step:
        return value
    width = np.empty_like(code)
    width[1:-1] = 0.5 * (code[2:] - code[:-2])
    width[0] = code[1] - code[0]
    width[-1] = code[-1] - code[-2]
    return width[idx] * scale


def _inverse_scale(d: np.ndarray) -> np.ndarray:
    """1/d, and 0 where d = 0 or 1/d overflows (a subnormal d stores as float16 zero, so the
    block dequantizes to zero, as ggml's float32 ``id = d ? 1/d : 0`` gives)."""
    with np.errstate(divide="ignore", over="ignore"):
        inv = 1.0 / np.where(d == 0, 1.0, d)
    return np.where((d == 0) | ~np.isfinite(inv), 0.0, inv)


def _gguf_grouped(g: np.ndarray, scheme: QuantScheme, *, want_step: bool = False):
    if scheme.kind == "q4_0":
        imax = np.argmax(np.abs(g), axis=1)[:, None]
        m = np.take_along_axis(g, imax, axis=1)
        d = m / -8.0
        d16 = _fp16(d, "Q4_0 scale d")  # checked first: an overflowing scale is an error
        inv = _inverse_scale(d)
        q = np.clip(np.floor(g * inv + 8.5), 0, 15)
        if want_step:
            return np.broadcast_to(np.abs(d16), g.shape).copy()
        return (q - 8.0) * d16
    mn = np.min(g, axis=1, keepdims=True)
    mx = np.max(g, axis=1, keepdims=True)
    with np.errstate(over="ignore"):  # an infinite range is reported by _fp16 below
        d = (mx - mn) / 15.0
    d16 = _fp16(d, "Q4_1 scale d")  # checked first: an overflowing scale is an error
    m16 = _fp16(mn, "Q4_1 minimum m")
    inv = _inverse_scale(d)
    q = np.clip(np.floor((g - mn) * inv + 0.5), 0, 15)
    if want_step:
        return np.broadcast_to(d16, g.shape).copy()
    return q * d16 + m16


# --------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------


def quantize(w, scheme, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Quantize-dequantize a weight array.

    Parameters
    ----------
    w : array_like, shape (n,) or (out, in)
        Finite real weights (any units; converted to float64). Rows are output channels.
    scheme : QuantScheme or str
        The scheme, or a spec string accepted by :func:`parse_scheme`.
    rng : numpy.random.Generator, optional
        Required for stochastic rounding (``kind='sr'``), ignored otherwise.

    Returns
    -------
    numpy.ndarray
        ``Q(w)``, float64, same shape and units as ``w``.

    Raises
    ------
    InputError
        Empty, non-finite, non-numeric or >2-D ``w``; a group size not dividing the row
        length (for the gguf k-quants: not a multiple of the block, the message names the
        padding); SR without a :class:`numpy.random.Generator`; gguf scales overflowing
        float16; weights beyond the float32 range for the k-quant kinds.
    UnknownIdError
        An unknown spec string.
    """
    scheme = _as_scheme(scheme)
    arr = _as_weights(w)
    if scheme.kind in _KQUANT_BITS:
        return kquants.fake_quantize(arr, scheme.kind).astype(np.float64)
    g = _grouped(arr, scheme)
    if scheme.kind == "rtn":
        out = _rtn_grouped(g, scheme)
    elif scheme.kind == "sr":
        if not isinstance(rng, np.random.Generator):
            raise InputError(
                "stochastic rounding needs rng=numpy.random.Generator (seeded, e.g. "
                f"numpy.random.default_rng(0)), got {type(rng).__name__}"
            )
        out = _sr_grouped(g, rng.random(g.shape), scheme)
    elif scheme.kind in _CODEBOOK_KINDS:
        out = _codebook_grouped(g, scheme)
    else:
        out = _gguf_grouped(g, scheme)
    return _finite_result(out, scheme, "Q(w)").reshape(arr.shape)


def _finite_result(out: np.ndarray, scheme: QuantScheme, what: str) -> np.ndarray:
    """Guard: never return a non-finite value for finite weights."""
    if not np.all(np.isfinite(out)):
        raise InputError(f"{what} of scheme {scheme.name!r} is not finite for these finite weights (overflow)")
    return out


def sr_quantize_with_uniforms(w, scheme, u) -> np.ndarray:
    """Stochastic rounding driven by given uniforms (the deterministic core of ``sr``).

    ``Q(w)_k`` rounds up iff ``u_k < frac_k``, where ``frac_k`` is the fractional position
    of ``w_k`` between its two neighbouring grid points. Used to compare implementations
    (numpy / torch) bit for bit on the same draws.

    Parameters
    ----------
    w : array_like, shape (n,) or (out, in)
    scheme : QuantScheme or str
        Must be of kind ``'sr'``.
    u : array_like, same shape as ``w``
        Values in [0, 1).

    Returns
    -------
    numpy.ndarray
        float64, same shape as ``w``.
    """
    scheme = _as_scheme(scheme)
    if scheme.kind != "sr":
        raise InputError(f"sr_quantize_with_uniforms needs an 'sr' scheme, got {scheme.name!r}")
    arr = _as_weights(w)
    uu = np.asarray(u)
    if uu.dtype.kind not in "fiu":
        raise InputError(f"u must be a real numeric array, got dtype {uu.dtype}")
    uu = uu.astype(np.float64)
    if uu.shape != arr.shape:
        raise InputError(f"u must have the shape of w {arr.shape}, got {uu.shape}")
    if not np.all((uu >= 0) & (uu < 1)):
        raise InputError("u must lie in [0, 1)")
    shape = group_shape(arr.shape, scheme)
    out = _sr_grouped(arr.reshape(shape), uu.reshape(shape), scheme)
    return _finite_result(out, scheme, "Q(w)").reshape(arr.shape)


def step_sizes(w, scheme) -> np.ndarray:
    """Local quantization step ``s_k`` of every weight (Widrow's model), in units of ``w``.

    Parameters
    ----------
    w : array_like, shape (n,) or (out, in)
    scheme : QuantScheme or str

    Returns
    -------
    numpy.ndarray
        float64, same shape as ``w``, ≥ 0. Uniform grids (``rtn``, ``sr``, ``q4_*``): the
        group scale. Codebooks (``nf4``, ``fp4``): the Voronoi-cell width of the code the
        weight rounds to times the group scale (one-sided neighbour distance at the end
        codes); see the module docstring. Zero where the group scale is zero.
    """
    scheme = _as_scheme(scheme)
    arr = _as_weights(w)
    if scheme.kind in _KQUANT_BITS:
        return kquants.sub_block_steps(arr, scheme.kind)
    g = _grouped(arr, scheme)
    if scheme.kind in ("rtn", "sr"):
        out = _range_safe(g, lambda x: np.broadcast_to(_int_params(x, scheme)[0], x.shape), clip=False)
    elif scheme.kind in _CODEBOOK_KINDS:
        out = _codebook_grouped(g, scheme, want_step=True)
    else:
        out = _gguf_grouped(g, scheme, want_step=True)
    return _finite_result(np.array(out, dtype=np.float64), scheme, "step size").reshape(arr.shape)


def widrow_noise(w, scheme, *, rng: np.random.Generator) -> np.ndarray:
    """Draw Widrow's additive quantization noise δ for ``w`` under ``scheme``.

    Hypotheses of the model: δ_k independent of each other and of ``w``, uniform on
    ``[−s_k/2, s_k/2]`` with ``s_k`` from :func:`step_sizes`; hence ``E δ_k = 0`` and
    ``Var δ_k = s_k²/12``.

    Parameters
    ----------
    w : array_like, shape (n,) or (out, in)
    scheme : QuantScheme or str
    rng : numpy.random.Generator
        Seeded generator (required).

    Returns
    -------
    numpy.ndarray
        δ (not ``w + δ``), float64, same shape and units as ``w``.
    """
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"widrow_noise needs rng=numpy.random.Generator, got {type(rng).__name__}")
    s = step_sizes(w, scheme)
    return (rng.random(s.shape) - 0.5) * s
