"""quantize against independent references: the table constants from their published
definitions (NF4 from normal quantiles as in QLoRA, FP4 E2M1 decoded from its bit layout, the gguf
block layout from the gguf package), gguf Q4_0/Q4_1 against gguf-py's own quantizer, and the
integer grids near the top of the float64 range against exact rational arithmetic.
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest

from fimtheory import quantize as qz
from fimtheory.errors import InputError

EPS = np.finfo(float).eps
FMAX = float(np.finfo(float).max)


# --------------------------------------------------------------------------------------
# table constants
# --------------------------------------------------------------------------------------


def _nf4_from_definition() -> np.ndarray:
    """QLoRA's NormalFloat-4 (bitsandbytes ``create_normal_map(offset=0.9677083)``): 8 positive
    normal quantiles Φ⁻¹(linspace(offset, ½, 9)[:-1]), 7 negative ones −Φ⁻¹(linspace(offset, ½,
    8)[:-1]), and an exact 0, normalised by the largest magnitude."""
    from scipy.stats import norm

    offset = 0.9677083
    pos = norm.ppf(np.linspace(offset, 0.5, 9)[:-1])
    neg = -norm.ppf(np.linspace(offset, 0.5, 8)[:-1])
    v = np.sort(np.concatenate([pos, [0.0], neg]))
    return v / np.max(np.abs(v))


def test_nf4_code_matches_its_published_definition():
    ref = _nf4_from_definition()
    assert ref.shape == qz.NF4_CODE.shape == (16,)
    # bitsandbytes ships the float32 rounding of this computation (done in float32 torch)
    np.testing.assert_allclose(qz.NF4_CODE, ref, rtol=0, atol=2e-7)
    assert qz.NF4_CODE[7] == 0.0 and qz.NF4_CODE[0] == -1.0 and qz.NF4_CODE[-1] == 1.0
    np.testing.assert_array_equal(qz.NF4_CODE.astype(np.float32).astype(np.float64), qz.NF4_CODE)


def test_nf4_code_equals_the_bitsandbytes_table():
    bnb_functional = pytest.importorskip("bitsandbytes.functional", reason="bitsandbytes is not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = bnb_functional.get_4bit_type("nf4", device="cpu").numpy()
    np.testing.assert_array_equal(code.astype(np.float64), qz.NF4_CODE)


def _fp4_e2m1_decode(bits: int) -> float:
    """OCP MX FP4 E2M1: sign bit, 2 exponent bits (bias 1), 1 mantissa bit; e = 0 is subnormal."""
    sign = -1.0 if bits & 0b1000 else 1.0
    e, m = (bits >> 1) & 0b11, bits & 0b1
    mag = m * 0.5 if e == 0 else (1.0 + m / 2.0) * 2.0 ** (e - 1)
    return sign * mag


def test_fp4_tables_match_the_e2m1_bit_layout():
    decoded = [_fp4_e2m1_decode(b) for b in range(16)]
    np.testing.assert_array_equal(sorted({abs(x) for x in decoded}), qz.FP4_E2M1_MAGNITUDES)
    np.testing.assert_array_equal(sorted({x + 0.0 for x in decoded}), qz.FP4_E2M1_VALUES)  # ±0 merged
    assert qz.QuantScheme("fp4", 4, "group", 32).levels_per_group == 15


def test_gguf_block_constants_match_the_gguf_package():
    gguf = pytest.importorskip("gguf", reason="the gguf package is not installed")
    T = gguf.GGMLQuantizationType
    # (block size, bytes per block): fp16 d (+ fp16 m for Q4_1) + 32 nibbles
    assert gguf.GGML_QUANT_SIZES[T.Q4_0] == (qz._GGUF_BLOCK, 2 + qz._GGUF_BLOCK // 2)
    assert gguf.GGML_QUANT_SIZES[T.Q4_1] == (qz._GGUF_BLOCK, 2 + 2 + qz._GGUF_BLOCK // 2)
    assert qz.parse_scheme("gguf-q4_0").group_size == qz.parse_scheme("gguf-q4_1").group_size == 32
    assert qz._FP16_MAX == 65504.0


def _gguf_blocks(seed):
    r = np.random.default_rng(seed)
    rows = [
        r.standard_normal(64),
        r.uniform(-1, 1, 64) * 1e-3,
        np.concatenate([np.zeros(32), np.full(32, 0.75)]),  # a zero block and a constant block
        np.concatenate([np.linspace(-8, 7, 32), -np.linspace(-8, 7, 32)]),  # exact grid points, ties
        np.concatenate([np.full(31, -1.0), [2.0], r.standard_normal(32) * 100]),
    ]
    return np.stack(rows).astype(np.float32)


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1"])
@pytest.mark.parametrize("seed", range(3))
def test_gguf_quantize_equals_gguf_py(kind, seed):
    gguf = pytest.importorskip("gguf", reason="the gguf package is not installed")
    from gguf import quants

    w = _gguf_blocks(seed)
    qtype = getattr(gguf.GGMLQuantizationType, kind)
    ref = quants.dequantize(quants.quantize(w, qtype), qtype).astype(np.float64)
    got = qz.quantize(w.astype(np.float64), f"gguf-{kind.lower()}")
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("spec", ["gguf-q4_0", "gguf-q4_1"])
def test_gguf_subnormal_blocks_dequantize_to_zero(spec):
    """Before: NaN for Q4_0 (0·inf in w·(1/d)) and Q4_1 with subnormal weights."""
    w = np.tile([5e-324, -5e-324, 1e-310, 0.0], 8)
    got = qz.quantize(w, spec)
    assert np.all(np.isfinite(got))
    np.testing.assert_array_equal(np.abs(got), np.zeros(32))


# --------------------------------------------------------------------------------------
# integer grids near the top of the float64 range, against exact rationals
# --------------------------------------------------------------------------------------


def _round_half_even(x: Fraction) -> int:
    f = x.numerator // x.denominator
    rest = x - f
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and f % 2 == 1):
        return f + 1
    return f


def _exact_int_grid(row, bits, symmetric):
    """(scale s, offset, qmin, qmax) of one group in exact arithmetic."""
    fr = [Fraction(float(x)) for x in row]
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        return max(abs(x) for x in fr) / qmax, Fraction(0), -qmax, qmax, fr
    qmax = 2**bits - 1
    mn, mx = min(fr), max(fr)
    return (mx - mn) / qmax, mn, 0, qmax, fr


WIDE = {
    "±1e308": np.array([1e308, -1e308, 3e307, -5e307, 1.0, 0.0, 2e307, -1e307]),
    "±max": np.array([FMAX, -FMAX, 0.5 * FMAX, 1.0, -0.25 * FMAX, 3e307, 0.0, -1e300]),
    "positive near max": np.array([FMAX, 0.9 * FMAX, 0.0, 0.1 * FMAX, 0.37 * FMAX, 1.0, 2.0, 0.6 * FMAX]),
    "random 1e307": np.random.default_rng(0).uniform(-17, 17, 8) * 1e307,
}
INT_SPECS = [
    ("rtn-int4-asym-channel", 4, False),
    ("rtn-int2-asym-channel", 2, False),
    ("rtn-int8-asym-channel", 8, False),
    ("rtn-int4-sym-channel", 4, True),
    ("rtn-int8-sym-channel", 8, True),
]


@pytest.mark.parametrize("name", list(WIDE))
@pytest.mark.parametrize(("spec", "bits", "symmetric"), INT_SPECS)
def test_rtn_near_float64_max_equals_exact_rational_grid(name, spec, bits, symmetric):
    """Before: the asymmetric schemes returned all NaN ((max − min) = inf) and the symmetric ones
    ±inf at ±max (q·s rounded above max)."""
    w = WIDE[name]
    got = qz.quantize(w, spec)
    s, off, qlo, qhi, fr = _exact_int_grid(w, bits, symmetric)
    tol = Fraction(8 * EPS) * max(abs(x) for x in fr)
    for x, g in zip(fr, got):
        y = (x - off) / s
        q = min(max(_round_half_even(y), qlo), qhi)
        exact = q * s + off
        near_tie = abs(y - int(y) - Fraction(1, 2)) < Fraction(1, 10**9)
        assert abs(Fraction(float(g)) - exact) <= tol or near_tie, (float(x), float(g), float(exact))
    steps = qz.step_sizes(w, spec)
    assert np.all(steps == steps[0]) and abs(Fraction(float(steps[0])) - s) <= Fraction(2 * EPS) * s


@pytest.mark.parametrize("name", list(WIDE))
@pytest.mark.parametrize(
    ("spec", "bits", "symmetric"), [("sr-int4-asym-channel", 4, False), ("sr-int4-sym-channel", 4, True)]
)
def test_sr_near_float64_max_lands_on_an_adjacent_exact_grid_point(name, spec, bits, symmetric):
    w = WIDE[name]
    s, off, qlo, qhi, fr = _exact_int_grid(w, bits, symmetric)
    tol = Fraction(8 * EPS) * max(abs(x) for x in fr)
    for seed in range(4):
        got = qz.quantize(w, spec, rng=np.random.default_rng(seed))
        for x, g in zip(fr, got):
            y = (x - off) / s
            f = y.numerator // y.denominator
            candidates = [min(max(f + d, qlo), qhi) * s + off for d in (0, 1)]
            assert min(abs(Fraction(float(g)) - c) for c in candidates) <= tol, (float(x), float(g))


@pytest.mark.parametrize("spec", [s for s in qz.SCHEME_EXAMPLES if not s.startswith("gguf")] + ["fp4-b8", "nf4-b8"])
@pytest.mark.parametrize("name", list(WIDE))
def test_every_scheme_near_float64_max_is_finite_and_scale_covariant(spec, name):
    """Q(w) = 4·Q(w/4) exactly (scaling by 4 is exact), all finite, |Q(w)| ≤ max|w|."""
    w = WIDE[name]
    scheme = qz.parse_scheme(spec)
    if scheme.granularity == "group" and w.shape[0] % scheme.group_size:
        w = np.resize(w, scheme.group_size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        got = qz.quantize(w, scheme, rng=np.random.default_rng(1))
        quarter = qz.quantize(w / 4, scheme, rng=np.random.default_rng(1))
        steps = qz.step_sizes(w, scheme)
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(steps))
    assert np.max(np.abs(got)) <= np.max(np.abs(w))
    np.testing.assert_allclose(got, 4 * quarter, rtol=0, atol=4 * EPS * np.max(np.abs(w)))


def test_gguf_near_float64_max_is_a_clear_error():
    w = np.resize(WIDE["±1e308"], 32)
    for spec in ("gguf-q4_0", "gguf-q4_1"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(InputError, match=r"overflows the float16 it is stored in"):
                qz.quantize(w, spec)


def test_sr_with_uniforms_rejects_non_numeric_u():
    with pytest.raises(InputError, match=r"u must be a real numeric array"):
        qz.sr_quantize_with_uniforms(np.ones(4), "sr-int4-sym-channel", np.array(["a"] * 4))
