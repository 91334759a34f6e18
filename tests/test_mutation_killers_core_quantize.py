"""Mutation killers for fimtheory/quantize.py, fimtheory/approx.py and fimtheory/monitor.py.

Each test asserts a documented property against an independent reference: the scheme rules of
:class:`~fimtheory.quantize.QuantScheme` with their exact messages, the spec grammar of
:func:`~fimtheory.quantize.parse_scheme`, integer grids and codebooks near the top of the float64
range against exact rational arithmetic (:class:`fractions.Fraction`), gguf Q8_0 against the gguf
package's own quantizer and the float32/float16 arithmetic of its scale, no stray floating-point
warnings on the error paths, the heuristic and Lanczos edge cases against closed forms, and the
streaming monitor's default seed and overflow messages.
"""

from __future__ import annotations

import re
import warnings
from fractions import Fraction

import numpy as np
import pytest

from fimtheory import quantize as qz
from fimtheory.approx import heuristic, lanczos_ritz
from fimtheory.errors import InputError, UnknownIdError
from fimtheory.monitor import StreamingLambdaMax

EPS = np.finfo(float).eps
FMAX = float(np.finfo(float).max)


def _raises_exactly(exc, pattern, fn, *args, **kwargs):
    """``fn(*args)`` raises ``exc`` whose whole message matches ``pattern`` (re.fullmatch)."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert re.fullmatch(pattern, msg, flags=re.DOTALL), msg


# --------------------------------------------------------------------------------------
# QuantScheme: every valid combination is accepted, every invalid one names its rule
# --------------------------------------------------------------------------------------

VALID_SCHEMES = [
    *[("rtn", b, "channel", None, True) for b in range(2, 9)],
    *[("sr", b, "tensor", None, False) for b in (2, 8)],
    ("rtn", 4, "group", 1, False),
    ("rtn", np.int64(3), "group", np.int64(7), np.bool_(True)),
    ("sr", 4, "group", 32, True),
    ("nf4", 4, "group", 64, True),
    ("nf4", 4, "channel", None, True),
    ("fp4", 4, "tensor", None, True),
    ("q4_0", 4, "group", 32, True),
    ("q4_1", 4, "group", 32, False),
    ("q8_0", 8, "group", 32, True),
    ("q5_0", 5, "group", 32, True),
    ("q5_1", 5, "group", 32, False),
    ("q4_k", 4, "group", 256, False),
    ("q5_k", 5, "group", 256, False),
    ("q6_k", 6, "group", 256, True),
    ("q4_k-or-q5_0", 4, "group", 256, False),
    ("q5_k-or-q5_1", 5, "group", 256, False),
    ("q6_k-or-q8_0", 6, "group", 256, True),
]


@pytest.mark.parametrize("fields", VALID_SCHEMES, ids=lambda f: f"{f[0]}-{f[1]}-{f[2]}-{f[3]}-{f[4]}")
def test_every_valid_scheme_is_accepted_with_its_fields(fields):
    s = qz.QuantScheme(*fields)
    assert (s.kind, s.bits, s.granularity, s.group_size, s.symmetric) == fields


def _kinds():
    return re.escape(repr(qz.KINDS))


INVALID_SCHEMES = [
    (("int4", 4, "channel"), rf"unknown quantizer kind 'int4'; expected one of {_kinds()}"),
    (("rtn", 4.0, "channel"), r"bits must be an integer, got 4\.0"),
    (("rtn", True, "channel"), r"bits must be an integer, got True"),
    (("rtn", 1, "channel"), r"bits must be in 2\.\.8 for 'rtn', got 1"),
    (("rtn", 9, "channel"), r"bits must be in 2\.\.8 for 'rtn', got 9"),
    (("sr", 9, "channel"), r"bits must be in 2\.\.8 for 'sr', got 9"),
    (("q8_0", 4, "group", 32), r"'q8_0' is a 8-bit format; bits must be 8, got 4"),
    (("nf4", 3, "group", 64), r"'nf4' is a 4-bit format; bits must be 4, got 3"),
    (("q4_0", 5, "group", 32), r"'q4_0' is a 4-bit format; bits must be 4, got 5"),
    (("rtn", 4, "row"), r"unknown granularity 'row'; expected one of \('tensor', 'channel', 'group'\)"),
    (("rtn", 4, "group", None), r"granularity 'group' needs a positive integer group_size, got None"),
    (("rtn", 4, "group", 0), r"granularity 'group' needs a positive integer group_size, got 0"),
    (("rtn", 4, "group", 2.5), r"granularity 'group' needs a positive integer group_size, got 2\.5"),
    (("rtn", 4, "group", True), r"granularity 'group' needs a positive integer group_size, got True"),
    (
        ("rtn", 4, "channel", 32),
        r"group_size=32 given with granularity 'channel'; it is only meaningful with granularity 'group'",
    ),
    (("rtn", 4, "channel", None, 1), r"symmetric must be a bool, got 1"),
    (("nf4", 4, "group", 64, False), r"'nf4' is a symmetric \(absmax\) format; symmetric must be True"),
    (("fp4", 4, "group", 32, False), r"'fp4' is a symmetric \(absmax\) format; symmetric must be True"),
    (("q4_0", 4, "group", 32, False), r"'q4_0' is a symmetric \(absmax\) format; symmetric must be True"),
    (("q4_1", 4, "group", 32, True), r"'q4_1' is an asymmetric \(min/scale\) format; symmetric must be False"),
    (("q4_0", 4, "channel"), r"'q4_0' uses blocks of 32: granularity must be 'group' with group_size=32"),
    (("q4_0", 4, "group", 64), r"'q4_0' uses blocks of 32: granularity must be 'group' with group_size=32"),
    (("q4_1", 4, "group", 16, False), r"'q4_1' uses blocks of 32: granularity must be 'group' with group_size=32"),
    (("q8_0", 8, "group", 64), r"'q8_0' uses blocks of 32: granularity must be 'group' with group_size=32"),
    (("q8_0", 8, "tensor"), r"'q8_0' uses blocks of 32: granularity must be 'group' with group_size=32"),
    (("q4_k", 4, "group", 32, False), r"'q4_k' uses blocks of 256: granularity must be 'group' with group_size=256"),
    (
        ("q4_k-or-q5_0", 4, "group", 32, False),
        r"'q4_k-or-q5_0' uses blocks of 256: granularity must be 'group' with group_size=256",
    ),
    (("q5_1", 5, "group", 32, True), r"'q5_1' needs symmetric=False"),
    (("q8_0", 8, "group", 32, False), r"'q8_0' needs symmetric=True"),
]


@pytest.mark.parametrize(("args", "message"), INVALID_SCHEMES, ids=[m[:40] for _, m in INVALID_SCHEMES])
def test_every_invalid_scheme_is_rejected_naming_its_rule(args, message):
    _raises_exactly(InputError, message, qz.QuantScheme, *args)


# --------------------------------------------------------------------------------------
# parse_scheme: the spec grammar of the module docstring
# --------------------------------------------------------------------------------------

PARSED = {
    "nf4": ("nf4", 4, "group", 64, True),
    "nf4-b16": ("nf4", 4, "group", 16, True),
    "fp4": ("fp4", 4, "group", 32, True),
    "fp4-b8": ("fp4", 4, "group", 8, True),
    "nf4-tensor": ("nf4", 4, "tensor", None, True),
    "gguf-q4_0": ("q4_0", 4, "group", 32, True),
    "gguf-q4_1": ("q4_1", 4, "group", 32, False),
    "gguf-q8_0": ("q8_0", 8, "group", 32, True),
    "gguf-q5_0": ("q5_0", 5, "group", 32, True),
    "gguf-q5_1": ("q5_1", 5, "group", 32, False),
    "gguf-q4_k": ("q4_k", 4, "group", 256, False),
    "gguf-q5_k": ("q5_k", 5, "group", 256, False),
    "gguf-q6_k": ("q6_k", 6, "group", 256, True),
    "gguf-q4_k-or-q5_0": ("q4_k-or-q5_0", 4, "group", 256, False),
    "gguf-q5_k-or-q5_1": ("q5_k-or-q5_1", 5, "group", 256, False),
    "gguf-q6_k-or-q8_0": ("q6_k-or-q8_0", 6, "group", 256, True),
}


@pytest.mark.parametrize("spec", list(PARSED))
def test_parse_scheme_gives_the_documented_fields(spec):
    s = qz.parse_scheme(spec)
    assert (s.kind, s.bits, s.granularity, s.group_size, s.symmetric) == PARSED[spec]
    assert qz.parse_scheme(s.name) == s


def test_parse_scheme_error_messages_name_the_spec_and_the_valid_forms():
    forms = re.escape(qz._VALID_FORMS)
    _raises_exactly(
        UnknownIdError,
        r"invalid quantization scheme 'rtn-int9-sym-channel': bits must be in 2\.\.8 for 'rtn', got 9; " + forms,
        qz.parse_scheme,
        "rtn-int9-sym-channel",
    )
    _raises_exactly(UnknownIdError, r"unknown quantization scheme 'gguf-q3_k'; " + forms, qz.parse_scheme, "gguf-q3_k")


# --------------------------------------------------------------------------------------
# integer grids and codebooks near the top of the float64 range, against exact rationals
# --------------------------------------------------------------------------------------


def _round_half_even(x: Fraction) -> int:
    f = x.numerator // x.denominator
    rest = x - f
    return f + 1 if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and f % 2 == 1) else f


#: rows = channels (one group each): +max, −max, a big row of absmax max/2, rows of ordinary size
#: (computed on the plain path) and zero. For absmax max and max/2 the float scale times the top
#: code rounds above the absmax (fl(qmax·fl(a/qmax)) > a), so the clip to [−absmax, absmax] matters.
NEAR_MAX = np.array(
    [
        [FMAX, -0.3 * FMAX, 0.2 * FMAX, 1.0, 0.0, -1e300, 0.7 * FMAX, 0.1 * FMAX],
        [-FMAX, 0.4 * FMAX, -0.9 * FMAX, 0.0, 2.0, 1e307, -0.05 * FMAX, 0.6 * FMAX],
        [0.5 * FMAX, -0.2 * FMAX, 0.1 * FMAX, 3.0, -0.45 * FMAX, 0.0, 0.33 * FMAX, -0.01 * FMAX],
        [0.75, -1.5, 0.25, 2.0, -0.125, 1.0, -2.0, 0.5],
        [1e-3, -3e-3, 2e-3, 0.0, 5e-4, -1e-3, 3e-3, -2e-3],
        [0.0] * 8,
    ]
)
INT_NEAR_MAX = [
    ("rtn-int4-sym-channel", 4, True),
    ("rtn-int8-sym-channel", 8, True),
    ("rtn-int3-asym-channel", 3, False),
    ("rtn-int8-asym-channel", 8, False),
]


def _exact_grid(row, bits, symmetric):
    fr = [Fraction(float(x)) for x in row]
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        return max(abs(x) for x in fr) / qmax, Fraction(0), -qmax, qmax, fr
    qmax = 2**bits - 1
    return (max(fr) - min(fr)) / qmax, min(fr), 0, qmax, fr


def _quantize_quietly(w, spec, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warning on the way
        return qz.quantize(w, spec, **kw)


@pytest.mark.parametrize(("spec", "bits", "symmetric"), INT_NEAR_MAX)
def test_rtn_near_float64_max_equals_exact_rationals_row_by_row(spec, bits, symmetric):
    got = _quantize_quietly(NEAR_MAX, spec)
    assert got.shape == NEAR_MAX.shape and np.all(np.isfinite(got))
    for row, qrow in zip(NEAR_MAX, got):
        a = np.max(np.abs(row))
        assert np.max(np.abs(qrow)) <= a  # inside the group's [−absmax, absmax]
        np.testing.assert_array_equal(qrow, qz.quantize(row, spec))  # groups are independent
        if a == 0:
            np.testing.assert_array_equal(qrow, row)
            continue
        s, off, lo, hi, fr = _exact_grid(row, bits, symmetric)
        for x, g in zip(fr, qrow):
            q = min(max(_round_half_even((x - off) / s), lo), hi)
            assert abs(Fraction(float(g)) - (q * s + off)) <= Fraction(8 * EPS) * Fraction(float(a))
    steps = qz.step_sizes(NEAR_MAX, spec)
    for row, srow in zip(NEAR_MAX, steps):
        if np.max(np.abs(row)) == 0:
            assert np.all(srow == 0)
            continue
        s = _exact_grid(row, bits, symmetric)[0]
        assert np.all(srow == srow[0]) and abs(Fraction(float(srow[0])) - s) <= Fraction(2 * EPS) * s


@pytest.mark.parametrize(
    ("spec", "bits", "symmetric"), [("sr-int4-sym-channel", 4, True), ("sr-int3-asym-channel", 3, False)]
)
def test_sr_near_float64_max_lands_on_an_adjacent_exact_grid_point(spec, bits, symmetric):
    u = np.random.default_rng(3).random(NEAR_MAX.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = qz.sr_quantize_with_uniforms(NEAR_MAX, spec, u)
    assert np.all(np.isfinite(got))
    for row, urow, qrow in zip(NEAR_MAX, u, got):
        a = np.max(np.abs(row))
        assert np.max(np.abs(qrow)) <= a
        np.testing.assert_array_equal(qrow, qz.sr_quantize_with_uniforms(row, spec, urow))
        if a == 0:
            np.testing.assert_array_equal(qrow, row)
            continue
        s, off, lo, hi, fr = _exact_grid(row, bits, symmetric)
        for x, g in zip(fr, qrow):
            y = (x - off) / s
            f = y.numerator // y.denominator
            near = min(abs(Fraction(float(g)) - (min(max(f + d, lo), hi) * s + off)) for d in (0, 1))
            assert near <= Fraction(8 * EPS) * Fraction(float(a))


def _plain_formula(row, spec, u=None):
    """The plain per-channel RTN / SR formula in float64, operation for operation as the docstring
    of ``_range_safe`` calls it: s = absmax/qmax (symmetric) or (max − min)/qmax with shift −min,
    q = clip(round((w + shift)/s)) — or floor + (u < frac) for SR — and Q = q·s − shift."""
    scheme = qz.parse_scheme(spec)
    if scheme.symmetric:
        s, shift, lo = np.max(np.abs(row)) / scheme.qmax, 0.0, -scheme.qmax
    else:
        s, shift, lo = (np.max(row) - np.min(row)) / scheme.qmax, -np.min(row), 0
    y = (row + shift) / s
    q = np.round(y) if u is None else np.floor(y) + (u < (y - np.floor(y)))
    return np.clip(q, lo, scheme.qmax) * s - shift


BOUNDARY_ROW = np.array([FMAX / 8, -FMAX / 24, FMAX / 56, 0.1])  # absmax exactly max/8


@pytest.mark.parametrize(
    "spec", [f"rtn-int{b}-{sym}-channel" for b in (3, 4, 8) for sym in ("sym", "asym")] + ["sr-int4-sym-channel"]
)
def test_a_group_of_magnitude_exactly_max_over_8_is_computed_by_the_plain_formula(spec):
    # _range_safe's docstring: a group whose magnitude *exceeds* max/8 is computed on g/4 and
    # clipped to ±absmax; other groups are computed unchanged, bit-identical to the plain formulas.
    # At exactly max/8 the plain q·s of the absmax entry is qmax·fl(absmax/qmax) = absmax + 1 ulp
    # (asserted: the boundary decides the last bit), which the g/4 path would clip.
    u = np.random.default_rng(5).random(BOUNDARY_ROW.shape) if spec.startswith("sr") else None
    ref = _plain_formula(BOUNDARY_ROW, spec, u)
    if qz.parse_scheme(spec).symmetric:
        assert np.max(np.abs(ref)) == np.nextafter(FMAX / 8, np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = qz.quantize(BOUNDARY_ROW, spec) if u is None else qz.sr_quantize_with_uniforms(BOUNDARY_ROW, spec, u)
    np.testing.assert_array_equal(got, ref)


def _exact_codebook(row, kind):
    a = Fraction(float(np.max(np.abs(row))))
    if kind == "nf4":
        scale, code = a, [Fraction(float(c)) for c in qz.NF4_CODE]
    else:
        scale, code = a / 6, [Fraction(float(c)) for c in qz.FP4_E2M1_VALUES]
    out = []
    for x in row:
        y = Fraction(float(x)) / scale
        ranked = sorted(code, key=lambda c: abs(c - y))
        near_tie = abs(abs(ranked[0] - y) - abs(ranked[1] - y)) < Fraction(1, 10**9)
        out.append([c * scale for c in (ranked[:2] if near_tie else ranked[:1])])  # a near tie: either
    return out, a


@pytest.mark.parametrize("kind", ["nf4", "fp4"])
def test_codebooks_near_float64_max_equal_exact_rationals_row_by_row(kind):
    spec = f"{kind}-channel"
    got = _quantize_quietly(NEAR_MAX, spec)
    assert np.all(np.isfinite(got))
    for row, qrow in zip(NEAR_MAX, got):
        np.testing.assert_array_equal(qrow, qz.quantize(row, spec))
        if not np.any(row):
            np.testing.assert_array_equal(qrow, row)
            continue
        ref, a = _exact_codebook(row, kind)
        assert np.max(np.abs(qrow)) <= float(a)
        for g, candidates in zip(qrow, ref):
            assert min(abs(Fraction(float(g)) - r) for r in candidates) <= Fraction(8 * EPS) * a
    steps = qz.step_sizes(NEAR_MAX, spec)
    assert np.all(np.isfinite(steps)) and np.all(steps >= 0)
    for row, srow in zip(NEAR_MAX, steps):
        a = float(np.max(np.abs(row)))
        assert np.all(srow <= a)


# --------------------------------------------------------------------------------------
# gguf: the gguf package's quantizer, the scale's float32/float16 arithmetic, clean errors
# --------------------------------------------------------------------------------------


def test_gguf_q8_0_equals_the_gguf_package_and_its_step_is_the_stored_scale():
    w = np.random.default_rng(7).standard_normal((3, 64)) * np.array([[1.0], [1e-3], [40.0]])
    steps = qz.step_sizes(w, "gguf-q8_0")
    # Q8_0's stored scale: d = absmax/127 in float32, stored as float16 (ggml's reference quantizer)
    amax = np.abs(w.astype(np.float32)).reshape(-1, 32).max(axis=1)
    d16 = (amax / np.float32(127)).astype(np.float16).astype(np.float64)
    np.testing.assert_array_equal(steps.reshape(-1, 32), np.repeat(d16[:, None], 32, axis=1))
    got = qz.quantize(w, "gguf-q8_0")
    assert got.dtype == np.float64 and got.shape == w.shape
    codes = got.reshape(-1, 32) / d16[:, None]
    np.testing.assert_array_equal(codes, np.round(codes))  # on the stored grid
    assert np.max(np.abs(codes)) <= 127
    gguf = pytest.importorskip("gguf", reason="the gguf package is not installed")
    from gguf import quants

    t = gguf.GGMLQuantizationType.Q8_0
    ref = quants.dequantize(quants.quantize(w.astype(np.float32), t), t).astype(np.float64)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("spec", ["gguf-q4_0", "gguf-q4_1"])
def test_gguf_subnormal_blocks_give_zero_without_warnings(spec):
    """1/d overflows for a subnormal scale d: ggml's ``id = d ? 1/d : 0`` dequantizes to zero."""
    w = np.tile([5e-324, -5e-324, 1e-310, 0.0], 8)
    got = _quantize_quietly(w, spec)
    np.testing.assert_array_equal(np.abs(got), np.zeros(32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steps = qz.step_sizes(w, spec)
    np.testing.assert_array_equal(steps, np.zeros(32))  # float16 cannot hold the scale


def test_gguf_overflowing_range_is_a_clear_error_without_warnings():
    w = np.resize(np.array([1e308, -1e308, 3e307, 0.0]), 32)
    for spec, what in (("gguf-q4_1", "Q4_1 scale d"), ("gguf-q4_0", "Q4_0 scale d")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(InputError, match=re.escape(f"gguf {what} ") + r".* overflows the float16"):
                qz.quantize(w, spec)


def test_zero_and_constant_gguf_blocks_are_reproduced():
    w = np.concatenate([np.zeros(32), np.full(32, 0.75)])
    np.testing.assert_array_equal(_quantize_quietly(w, "gguf-q4_0")[:32], np.zeros(32))
    np.testing.assert_array_equal(_quantize_quietly(w, "gguf-q4_1"), w)  # 0.75 is a float16 value


def test_sr_uniforms_must_be_numeric_with_the_message():
    _raises_exactly(
        InputError,
        r"u must be a real numeric array, got dtype <U1",
        qz.sr_quantize_with_uniforms,
        np.ones(4),
        "sr-int4-sym-channel",
        np.array(["a"] * 4),
    )


def test_finite_result_guard_names_the_scheme_and_the_quantity():
    scheme = qz.parse_scheme("rtn-int4-sym-channel")
    _raises_exactly(
        InputError,
        r"Q\(w\) of scheme 'rtn-int4-sym-channel' is not finite for these finite weights \(overflow\)",
        qz._finite_result,
        np.array([1.0, np.inf]),
        scheme,
        "Q(w)",
    )


# --------------------------------------------------------------------------------------
# approx: heuristic overflow messages, Lanczos input messages and its invariant-subspace rule
# --------------------------------------------------------------------------------------


def test_heuristic_overflow_names_the_heuristic_value():
    G = np.full((3, 2), 1e160)  # λ̂_H = 2e320 > max
    _raises_exactly(InputError, r"the heuristic λ̂_H overflows float64 \(its largest entry exceeds .*\)", heuristic, G)


def test_heuristic_overflow_of_the_mean_score_norm_names_it():
    """One column (x = ±1 exactly): at unit scale λ̂_H = fl(mean g²) = (2 − 2⁻⁵²)·2⁻³ while
    fl(ḡ)² = 2⁻² (the mean 0.5 − 2⁻⁵⁵ rounds to 0.5); scaled by c = 2⁵¹³ λ̂_H is the float64
    maximum and ‖fl(ḡ)‖² = 2¹⁰²⁴ overflows — the error names ‖ḡ‖², not λ̂_H."""
    G = np.array([[0.5], [0.5 - 2.0**-54]]) * 2.0**513
    mean = G.mean(axis=0) / 2.0**513
    assert mean[0] == 0.5  # the float64 mean (exact mean 0.5 − 2⁻⁵⁵ rounds up)
    assert float((Fraction(G[0, 0]) ** 2 + Fraction(G[1, 0]) ** 2) / 2) == FMAX  # λ̂_H rounds to max: it fits
    _raises_exactly(InputError, r"‖ḡ‖² overflows float64 \(its largest entry exceeds .*\)", heuristic, G)


def test_lanczos_messages_name_the_matrix_k():
    _raises_exactly(
        InputError,
        r"K is not symmetric: \|K\[0,1\] - K\[1,0\]\| = .* exceeds tolerance .*",
        lanczos_ritz,
        np.array([[1.0, 2.0], [0.0, 1.0]]),
        2,
        np.ones(2),
    )


def test_lanczos_ritz_value_overflow_names_it():
    """λ_max(0.9·max·[[1, 1], [1, 1]]) = 1.8·max is not representable."""
    K = np.full((2, 2), 0.9 * FMAX)
    _raises_exactly(
        InputError, r"the Ritz value overflows float64 \(its largest entry exceeds .*\)", lanczos_ritz, K, 2, np.ones(2)
    )


def test_two_sided_overflow_names_the_term():
    """Lower terms first: with scores of 1e160 every term (≈ 1e320) overflows, the first named is
    max_i ‖g_i‖²/n. With four orthogonal scores a·e_i, a²/4 = 0.6·max, every lower term is a²/4
    (finite) and the upper term tr F = a² = 2.4·max overflows."""
    from fimtheory.approx import two_sided

    _raises_exactly(
        InputError,
        r"AB term max_row_norm_sq_over_n overflows float64 \(its largest entry exceeds .*\)",
        two_sided,
        np.full((3, 2), 1e160),
    )
    a = float(np.sqrt(2.4) * np.sqrt(FMAX))
    assert np.isfinite((a / 2) ** 2) and Fraction(a) ** 2 > Fraction(FMAX)
    _raises_exactly(
        InputError, r"AB term trace overflows float64 \(its largest entry exceeds .*\)", two_sided, a * np.eye(4)
    )


def test_lanczos_stops_at_the_documented_invariant_subspace_threshold():
    """β₀ = 1e-14·|α₀| exactly (b ≤ threshold): the second step adds nothing, so two steps give
    exactly the one-step Ritz pair (α₀, e₁)."""
    K = np.array([[1.0, 1e-14], [1e-14, 0.0]])
    e1 = np.array([1.0, 0.0])
    one = lanczos_ritz(K, 1, e1)
    two = lanczos_ritz(K, 2, e1)
    assert one[0] == two[0] == 1.0
    np.testing.assert_array_equal(two[1], e1)
    np.testing.assert_array_equal(one[1], e1)


def test_heuristic_is_the_rayleigh_quotient_of_a_power_iterate_whose_norm_is_inexact():
    """G = [[ε, 1], [ε, −1]] with ε² = 1.2e-161: ḡ = (ε, 0), x₀ = e₁, and one power step gives
    y = Fx₀ ∝ e₁ with ‖y‖² in the subnormal range (9.9e-324 at unit scale), so ‖y‖ is off by ~5%
    and x = y/‖y‖ is not a unit vector (xᵀx = 0.91, asserted). λ̂_H must still be the Rayleigh
    quotient xᵀFx/xᵀx = F₁₁ = ε² (exact, Fractions), which is also the documented lower guarantee
    ‖ḡ‖² here (all rows share ε)."""
    eps_ = float(np.sqrt(1.2e-161))
    G = np.array([[eps_, 1.0], [eps_, -1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = heuristic(G, power_steps=1)
    x = est.vector
    assert x[1] == 0.0 and abs(float(x @ x) - 1) > 0.05  # premise: a power iterate of inexact norm
    f11 = (Fraction(eps_) ** 2 + Fraction(eps_) ** 2) / 2  # e₁ᵀFe₁ = Σ G_i1²/n, exact
    assert abs(Fraction(est.value) - f11) <= 4 * Fraction(EPS) * f11
    assert est.value >= est.mean_score_norm_sq * (1 - 4 * EPS)


def test_lanczos_returns_a_unit_ritz_vector_when_a_lanczos_vector_norm_is_inexact():
    """K = [[1, τ], [τ, 0]], τ = 6e-162, start e₂: the first residual w = (τ/2, 0) at unit scale has
    ‖w‖² in the subnormal range, so the second Lanczos vector w/‖w‖ is ~5% off unit length. With
    k = n = 2 steps the docstring promises λ_max(K) = (1 + √(1 + 4τ²))/2 = 1 in float64, as the
    Rayleigh quotient of the returned unit Ritz vector."""
    tau = 6e-162
    K = np.array([[1.0, tau], [tau, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, y = lanczos_ritz(K, 2, np.array([0.0, 1.0]))
    w = np.array([tau / 2, 0.0])
    assert abs(np.linalg.norm(w) / (tau / 2) - 1) > 0.04  # premise: that norm is inexact
    assert abs(float(y @ y) - 1) <= 4 * EPS
    assert abs(value - 1.0) <= 4 * EPS
    yf = [Fraction(float(t)) for t in y]
    kf = [[Fraction(float(t)) for t in row] for row in K]
    rq = sum(yf[i] * kf[i][j] * yf[j] for i in range(2) for j in range(2)) / sum(t * t for t in yf)
    assert abs(Fraction(value) - rq) <= 4 * Fraction(EPS) * rq


# --------------------------------------------------------------------------------------
# monitor: the default seed, and the overflow error without floating-point warnings
# --------------------------------------------------------------------------------------


def test_streaming_default_seed_is_zero():
    """``seed=0`` is the documented default: a stream without a seed reproduces seed 0 bit for bit
    (and differs from seed 1 on this stream, so the seed is really used)."""
    r = np.random.default_rng(5)
    scores = r.standard_normal((12, 3))
    runs = [StreamingLambdaMax(3), StreamingLambdaMax(3, seed=0), StreamingLambdaMax(3, seed=1)]
    values = [[m.push(g) for g in scores] for m in runs]
    assert values[0] == values[1]
    assert values[0] != values[2]
    dense = np.array([np.linalg.eigvalsh(scores[: t + 1] @ scores[: t + 1].T / (t + 1))[-1] for t in range(12)])
    np.testing.assert_allclose(values[0], dense, rtol=1e-9)


def test_streaming_overflowing_inner_products_raise_the_clear_error_without_warnings():
    m = StreamingLambdaMax(2)
    m.push(np.array([1e150, -1e150]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # s·g = inf − inf: no 'invalid value' warning first
        _raises_exactly(
            InputError,
            r"score inner products overflow float64 \(entries up to 1e\+200\); "
            r"rescale the scores before streaming them",
            m.push,
            np.array([1e200, 1e200]),
        )


@pytest.mark.parametrize("power_steps", [0, 1, 3])
def test_heuristic_when_the_mean_score_norm_underflows(power_steps):
    """ḡ = (0, 1e-200) ≠ 0 but ‖ḡ‖² = 1e-400 underflows: before, x = ḡ/‖ḡ‖ = ḡ/0 gave a NaN λ̂_H.
    The estimate is the Rayleigh quotient of the unit vector e₂ ∝ ḡ, e₂ᵀFe₂ = 1e-400 → 0 in
    float64, inside [‖ḡ‖², λ_max] = [0, 1] (F = diag(1, 1e-400), dense)."""
    G = np.array([[1.0, 1e-200], [-1.0, 1e-200]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = heuristic(G, power_steps=power_steps)
    F = G.T @ G / 2
    lam = np.linalg.eigvalsh(F)[-1]
    assert lam == 1.0
    np.testing.assert_array_equal(est.vector, [0.0, 1.0])
    assert est.value == float(est.vector @ F @ est.vector) == 0.0
    assert est.mean_score_norm_sq == 0.0 <= est.value <= lam
    assert est.power_steps == power_steps


@pytest.mark.parametrize("spec", ["rtn-int4-sym-channel", "rtn-int8-asym-channel", "sr-int4-sym-channel"])
def test_groups_whose_scale_is_zero_are_reproduced_exactly(spec):
    """The module docstring: a group whose scale is zero has step 0 and is reproduced exactly —
    here the scale absmax/qmax (resp. range/qmax) underflows to 0 for entries of one ulp of the
    smallest subnormal, next to an all-zero group and a constant group."""
    tiny = 5e-324
    w = np.array([[tiny, -tiny, 0.0, tiny], [0.0] * 4, [0.25] * 4])
    steps = qz.step_sizes(w, spec)
    assert np.all(steps[:2] == 0)
    got = _quantize_quietly(w, spec, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(got[:2], w[:2])
    if not qz.parse_scheme(spec).symmetric:
        assert np.all(steps[2] == 0)
        np.testing.assert_array_equal(got[2], w[2])


TINY_ROW = np.array([10.0, -10.0, 3.0, 1.0]) * 5e-324  # multiples of the smallest subnormal; no ties


@pytest.mark.parametrize(
    ("spec", "bits", "symmetric"), [("rtn-int4-sym-channel", 4, True), ("rtn-int4-asym-channel", 4, False)]
)
def test_tiny_groups_keep_full_precision_rtn(spec, bits, symmetric):
    """A group of subnormal weights: its scale absmax/qmax has few significant bits in float64,
    yet Q(w) must be the exact q·s (s = absmax/qmax exactly) up to one final rounding (half the
    smallest subnormal). Before: s = fl(10u/7) = u gave Q(10u) = 7u (int4 symmetric) and Q(10u)
    = 5u (int4 asymmetric)."""
    got = _quantize_quietly(TINY_ROW, spec)
    s, off, lo, hi, fr = _exact_grid(TINY_ROW, bits, symmetric)
    half_ulp = Fraction(5e-324) / 2
    for x, g in zip(fr, got):
        exact = min(max(_round_half_even((x - off) / s), lo), hi) * s + off
        assert abs(Fraction(float(g)) - exact) <= half_ulp, (float(x), float(g), float(exact))


def test_tiny_groups_keep_full_precision_fp4_and_sr():
    got = _quantize_quietly(TINY_ROW, "fp4-channel")
    ref, _ = _exact_codebook(TINY_ROW, "fp4")
    half_ulp = Fraction(5e-324) / 2
    for g, candidates in zip(got, ref):
        assert min(abs(Fraction(float(g)) - r) for r in candidates) <= half_ulp
    u = np.array([0.1, 0.9, 0.5, 0.3])
    got = qz.sr_quantize_with_uniforms(TINY_ROW, "sr-int4-sym-channel", u)
    s, off, lo, hi, fr = _exact_grid(TINY_ROW, 4, True)
    for x, uu, g in zip(fr, u, got):
        y = x / s
        f = y.numerator // y.denominator
        exact = min(max(f + (Fraction(float(uu)) < y - f), lo), hi) * s
        assert abs(Fraction(float(g)) - exact) <= half_ulp


def test_streaming_pushes_emit_no_warnings():
    """An ordinary stream raises no warning of any kind (run under warnings-as-errors) and every
    value is λ_max of the dense Gram matrix of the scores so far."""
    scores = np.random.default_rng(11).standard_normal((6, 4))
    m = StreamingLambdaMax(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = [m.push(g) for g in scores]
    dense = [np.linalg.eigvalsh(scores[: t + 1] @ scores[: t + 1].T / (t + 1))[-1] for t in range(6)]
    np.testing.assert_allclose(values, dense, rtol=1e-9)


@pytest.mark.parametrize("tol", [0.0, -1.0])
def test_dense_fallback_counted_on_every_push_when_tol_is_at_most_zero(tol):
    """tol ≤ 0 forces the dense eigensolver on every push (the documented switch). Before: with
    tol = 0 a push whose Lanczos residual was exactly 0 (the first push: a 1×1 Gram matrix) was
    not sent to the dense solver."""
    scores = np.random.default_rng(2).standard_normal((5, 3))
    m = StreamingLambdaMax(3, tol=tol)
    values = [m.push(g) for g in scores]
    assert m.dense_fallbacks == len(scores)
    dense = [np.linalg.eigvalsh(scores[: t + 1] @ scores[: t + 1].T / (t + 1))[-1] for t in range(5)]
    np.testing.assert_allclose(values, dense, rtol=1e-12)


@pytest.mark.parametrize("bad", [[None, 0.5], ["0.5", 1.0], [1 + 2j, 0.0]], ids=["None", "string", "complex"])
def test_product_partition_rejects_non_real_statistics(bad):
    """Like ThresholdPartition.cell, a statistic that is not a real number is bad input. Before:
    None became NaN (the NaN cell) and the string '0.5' the number 0.5, silently."""
    from fimtheory.monitor import ProductPartition, ThresholdPartition

    pp = ProductPartition([ThresholdPartition([1.0]), ThresholdPartition([0.0, 2.0])])
    assert pp.cell([0.5, 1.0]) == (0, 1) and pp.cell(np.array([np.nan, 3])) == (2, 2)
    with pytest.raises(InputError, match=r"^sigmas must be real numbers, got "):
        pp.cell(bad)


def test_sr_extreme_uniforms_stay_on_the_two_adjacent_grid_points():
    """With s = fl(a/7) for a = 0.9752318481629676, a/s rounds to 7 + 2^-50 > qmax: u = 0 < frac
    would round up to code 8 (and u = 1 − 2^-53 keep −a at code −8) without the clip. Q(w) is
    one of the two grid points k·s, |k| ≤ qmax, adjacent to w (the module docstring)."""
    a = 0.9752318481629676
    s = a / 7
    assert a / s > 7  # the overshoot the clip has to catch
    w = np.array([a, -a, 0.5 * a, 0.0])
    for u in (np.zeros(4), np.full(4, 1 - 2.0**-53)):
        got = qz.sr_quantize_with_uniforms(w, "sr-int4-sym-channel", u)
        np.testing.assert_array_equal(got[:2], [7 * s, -7 * s])
        codes = got / s
        np.testing.assert_array_equal(codes, np.round(codes))
        assert np.max(np.abs(codes)) <= 7


# --------------------------------------------------------------------------------------
# StreamingLambdaMax: the documented probe (warm start, steps, residual test, guards)
# --------------------------------------------------------------------------------------

# Eigenvalues (1.5, 1.2, 0.3) on the orthonormal basis (1,1,1)/√3, (1,−1,0)/√2, (1,1,−2)/√6:
# diag = (1.15, 1.15, 0.7), so λ2 = 1.2 lies above max diag (the diagonal guard cannot see it).
_BASIS = np.column_stack(
    [np.ones(3) / np.sqrt(3), np.array([1.0, -1.0, 0.0]) / np.sqrt(2), np.array([1.0, 1.0, -2.0]) / np.sqrt(6)]
)
_K_LAMBDA2_ABOVE_DIAG = _BASIS @ np.diag([1.5, 1.2, 0.3]) @ _BASIS.T


def _relative_residual(K, value, vector):
    """‖Kv − θv‖/|θ| of a returned pair, in 50-digit mpmath (K, θ, v as given)."""
    import mpmath

    with mpmath.workdps(50):
        Km, v = mpmath.matrix(K.tolist()), mpmath.matrix(vector.tolist())
        return float(mpmath.norm(Km * v - mpmath.mpf(value) * v) / abs(mpmath.mpf(value)) / mpmath.norm(v))


def test_top_eig_refuses_a_pair_converged_to_a_lower_eigenvalue_below_max_diag():
    # A start that is exactly the second eigenvector: Lanczos stops at once with the exact pair
    # (λ2, v2), residual ~0. λ2 = 0.6 < max diag ≈ 0.99: the diagonal guard sends it to dense.
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    K = q @ np.diag([1.0, 0.6, 0.1]) @ q.T
    K = 0.5 * (K + K.T)
    w, V = np.linalg.eigh(K)
    assert w[1] < np.max(np.diag(K)) * 0.9  # premise
    m = StreamingLambdaMax(3)
    value, _ = m._top_eig(K, V[:, 1], 0.0)
    assert m.dense_fallbacks == 1
    assert value == pytest.approx(1.0, rel=1e-13)


def test_top_eig_refuses_a_pair_below_the_interlacing_floor():
    # λ2 = 1.2 ≥ max diag = 1.15 passes the diagonal guard; the floor 1.3 (> λ2) must catch it.
    K = _K_LAMBDA2_ABOVE_DIAG
    w, V = np.linalg.eigh(K)
    assert np.max(np.diag(K)) < w[1] < 1.3 < w[2]  # premise
    m = StreamingLambdaMax(3)
    value, _ = m._top_eig(K, V[:, 1], 1.3)
    assert m.dense_fallbacks == 1
    assert value == pytest.approx(1.5, rel=1e-13)
    # the same pair above the floor is a legitimate answer of the probe: accepted as it is
    value, _ = m._top_eig(K, V[:, 1], 1.0)
    assert m.dense_fallbacks == 1 and value == pytest.approx(1.2, rel=1e-13)


def test_top_eig_guards_are_strict_at_exactly_their_thresholds():
    # K = diag(1, b) with the start e2: Lanczos returns exactly (b/c, e2), residual 0 (c = 2).
    # θ exactly (1 − 1e-12)·max diag is accepted ("θ ≥"), one ulp lower is refused.
    at = float(0.5 * (1 - 1e-12))
    for b, dense in [(2 * at, 0), (2 * np.nextafter(at, 0.0), 1)]:
        m = StreamingLambdaMax(2)
        value, _ = m._top_eig(np.diag([1.0, b]), np.array([0.0, 1.0]), 0.0)
        assert m.dense_fallbacks == dense and value == (b if dense == 0 else 1.0)
    # the interlacing floor: c·θ = 1 with floor·(1 − 1e-12) exactly 1 is accepted, a floor one ulp
    # higher is refused (value 1 either way: the dense solver gives the same top eigenvalue)
    floor = 1.0
    while floor * (1 - 1e-12) < 1.0:
        floor = np.nextafter(floor, 2.0)
    assert floor * (1 - 1e-12) == 1.0  # premise: such a floor exists
    for f, dense in [(floor, 0), (np.nextafter(floor, 2.0), 1)]:
        m = StreamingLambdaMax(2)
        value, _ = m._top_eig(np.diag([1.0, 0.5]), np.array([1.0, 0.0]), float(f))
        assert (m.dense_fallbacks, value) == (dense, 1.0)


def test_top_eig_returns_only_pairs_meeting_the_relative_residual_test():
    # K = diag(1, 0.5) (Ks = diag(0.5, 0.25), θ = 0.5 < 1) from the start (1, 1e-14): Lanczos
    # stops after one step (β₀ = 2.5e-15 ≤ 1e-14·α₀) with the start's pair, whose relative
    # residual is 5e-15. With tol = 2.5e-15 it fails the test and the dense pair (1, ±e1) is returned.
    K = np.diag([1.0, 0.5])
    start = np.array([1.0, 1e-14])
    tol = 2.5e-15
    assert _relative_residual(K, 1.0, start) == pytest.approx(5e-15, rel=1e-6)  # premise
    m = StreamingLambdaMax(2, tol=tol)
    value, vector = m._top_eig(K, start, 0.0)
    assert m.dense_fallbacks == 1
    assert _relative_residual(K, value, vector) <= tol
    # a tol above that residual accepts the Lanczos pair
    m = StreamingLambdaMax(2, tol=1e-14)
    value, vector = m._top_eig(K, start, 0.0)
    assert m.dense_fallbacks == 0 and _relative_residual(K, value, vector) <= 1e-14


def _krylov_best_relative_residual(K, start, k):
    """min over the k-dim Krylov space of the top Ritz pair's relative residual, by Rayleigh–Ritz on
    an orthonormal basis built in 60-digit mpmath (full reorthogonalisation)."""
    import mpmath

    with mpmath.workdps(60):
        Km = mpmath.matrix(K.tolist())
        basis = []
        q = mpmath.matrix(start.tolist())
        for _ in range(k):
            for b in basis:
                q -= b * (b.T * q)[0, 0]
            for b in basis:
                q -= b * (b.T * q)[0, 0]
            q /= mpmath.norm(q)
            basis.append(q)
            q = Km * q
        Q = mpmath.matrix(K.shape[0], k)
        for j, b in enumerate(basis):
            for i in range(K.shape[0]):
                Q[i, j] = b[i]
        T = Q.T * Km * Q
        w, S = mpmath.eigsy(T)
        top = max(range(k), key=lambda i: w[i])
        y = Q * S[:, top]
        return float(mpmath.norm(Km * y - w[top] * y) / abs(w[top]) / mpmath.norm(y))


def test_top_eig_runs_30_lanczos_steps_on_a_31_dimensional_problem():
    # 31 eigenvalues 1 − (j/30)² and the start 1: the best top pair of the 30-dimensional Krylov
    # space has a relative residual ~1e-7 > tol, so 30 steps cannot meet tol = 1e-10 and the dense
    # solver is used (31 steps would span the whole space and meet it).
    lam = 1.0 - (np.arange(31) / 30.0) ** 2
    K = np.diag(lam)
    start = np.ones(31)
    assert _krylov_best_relative_residual(K, start, 30) > 1e3 * 1e-10  # premise
    m = StreamingLambdaMax(31)
    value, _ = m._top_eig(K, start, 0.0)
    assert m.dense_fallbacks == 1 and value == 1.0


def test_an_exact_pair_is_accepted_for_every_positive_tol():
    # The first push of g = (1, 0): K = [[1]] scaled to [[0.5]], Lanczos gives it exactly, residual 0.
    # With tol = 5e-324 the allowance tol·|θ| rounds to 0, and 0 ≤ 0: accepted, no dense fallback.
    m = StreamingLambdaMax(2, tol=5e-324)
    assert m.push([1.0, 0.0]) == 1.0
    assert m.dense_fallbacks == 0


def test_the_warm_start_is_the_previous_top_vector_plus_the_seeded_perturbation(monkeypatch):
    import fimtheory.approx as approx

    real, starts = approx.lanczos_ritz, []

    def recording(K, steps, start):
        starts.append(np.array(start, dtype=float))
        return real(K, steps, start)

    monkeypatch.setattr(approx, "lanczos_ritz", recording)
    scores = np.random.default_rng(5).standard_normal((6, 4))
    m = StreamingLambdaMax(4, seed=7)
    for g in scores:
        m.push(g)
    draws = np.random.default_rng(7)
    for t in range(1, 7):
        perturbation = 1e-2 * draws.standard_normal(t) / np.sqrt(t)
        if t == 1:
            previous = np.zeros(1)
        else:  # the top eigenvector of the previous Gram matrix (dense reference), up to sign
            G = scores[: t - 1] @ scores[: t - 1].T
            previous = np.append(np.linalg.eigh(G)[1][:, -1], 0.0)
        warm = starts[t - 1] - perturbation
        assert min(np.linalg.norm(warm - previous), np.linalg.norm(warm + previous)) < 1e-8, t


def test_the_guards_catch_a_lanczos_run_converged_to_the_second_eigenvalue(monkeypatch):
    # Fault injection: Lanczos returning the exact second eigenpair (a run that converged to λ2).
    # Scores with Gram matrix _K_LAMBDA2_ABOVE_DIAG (λ2 = 1.2 ≥ max diag = 1.15): at push 3 only the
    # interlacing floor (λ1 of the first two scores' Gram matrix)/3 catches it. Every value must
    # still be λ_max of the dense Gram matrix.
    import fimtheory.approx as approx

    def second_pair(K, steps, start):
        w, V = np.linalg.eigh(K)
        i = -2 if K.shape[0] > 1 else -1
        return float(w[i]), V[:, i]

    monkeypatch.setattr(approx, "lanczos_ritz", second_pair)
    order = [0, 2, 1]  # the first two scores' Gram block [[1.15, 0.4], [0.4, 0.7]]: λ1 ≈ 1.38 > λ2 = 1.2
    scores = (_BASIS * np.sqrt([1.5, 1.2, 0.3]))[order]  # rows g_i with g_i·g_j = K_ij
    l1_two = np.linalg.eigvalsh(scores[:2] @ scores[:2].T)[-1]
    # premise: λ2 = 1.2 lies between the (t−2)/t and (t−1)/t floors
    assert l1_two * (1 - 1e-9) > 1.2
    assert l1_two / 2 <= 1.2
    m = StreamingLambdaMax(3)
    for t, g in enumerate(scores, start=1):
        value = m.push(g)
        reference = np.linalg.eigvalsh(scores[:t] @ scores[:t].T / t)[-1]
        assert value == pytest.approx(reference, rel=1e-12), t
    assert m.dense_fallbacks == 2
