"""Properties of the numpy quantizers in :mod:`fimtheory.quantize` (docs/theory.md §1).

All randomness is seeded. Floating-point tolerances are stated where used; "exact" means
bit-for-bit equality of float64 arrays.
"""

from __future__ import annotations

import numpy as np
import pytest

from fimtheory.errors import InputError, UnknownIdError
from fimtheory.quantize import (
    FP4_E2M1_VALUES,
    NF4_CODE,
    SCHEME_EXAMPLES,
    QuantScheme,
    group_shape,
    parse_scheme,
    quantize,
    sr_quantize_with_uniforms,
    step_sizes,
    widrow_noise,
)

EPS = np.finfo(np.float64).eps

# -- test data: schemes --------------------------------------------------------------------

RTN_SPECS = [
    f"rtn-int{b}-{sym}-{gran}" for b in (2, 3, 4, 8) for sym in ("sym", "asym") for gran in ("tensor", "channel", "g32")
]
SR_SPECS = ["sr-int4-sym-channel", "sr-int4-asym-g32", "sr-int2-sym-tensor", "sr-int8-asym-channel"]
CODEBOOK_SPECS = ["nf4-b64", "nf4-b32", "nf4-channel", "fp4-b32", "fp4-b64", "fp4-tensor"]
GGUF_SPECS = ["gguf-q4_0", "gguf-q4_1"]
DETERMINISTIC_SPECS = RTN_SPECS + CODEBOOK_SPECS + GGUF_SPECS
ALL_SPECS = DETERMINISTIC_SPECS + SR_SPECS
SYMMETRIC_ABSMAX_SPECS = [s for s in RTN_SPECS if "-sym-" in s] + CODEBOOK_SPECS


def weights(shape=(16, 128), seed=0, dist="normal"):
    rng = np.random.default_rng(seed)
    if dist == "normal":
        return rng.standard_normal(shape) * 0.05
    if dist == "heavy":
        return rng.standard_t(3, shape) * 0.02
    return rng.uniform(-1, 1, shape)


def groups_of(x, scheme):
    return np.asarray(x).reshape(group_shape(np.shape(x), scheme))


# -- parsing and validation -----------------------------------------------------------------


@pytest.mark.parametrize("spec", SCHEME_EXAMPLES)
def test_examples_parse_and_round_trip(spec):
    s = parse_scheme(spec)
    assert s.name == spec
    assert parse_scheme(s.name) == s
    assert parse_scheme(s) is s


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("rtn-int4-sym-channel", QuantScheme("rtn", 4, "channel", None, True)),
        ("rtn-int4-asym-g64", QuantScheme("rtn", 4, "group", 64, False)),
        ("rtn-int8-sym-tensor", QuantScheme("rtn", 8, "tensor", None, True)),
        ("sr-int4-sym-channel", QuantScheme("sr", 4, "channel", None, True)),
        ("nf4-b64", QuantScheme("nf4", 4, "group", 64, True)),
        ("NF4", QuantScheme("nf4", 4, "group", 64, True)),
        ("fp4-b32", QuantScheme("fp4", 4, "group", 32, True)),
        ("gguf-q4_0", QuantScheme("q4_0", 4, "group", 32, True)),
        ("gguf-q4_1", QuantScheme("q4_1", 4, "group", 32, False)),
    ],
)
def test_parse_fields(spec, expected):
    assert parse_scheme(spec) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "rtn",
        "rtn-int4",
        "rtn-int9-sym-channel",
        "rtn-int1-sym-channel",
        "rtn-int4-sym-g0",
        "rtn-int4-foo-channel",
        "nf5-b64",
        "fp4-b0",
        "gguf-q3_k",
        "int4",
        4,
    ],
)
def test_parse_rejects_bad_specs_listing_valid_forms(bad):
    with pytest.raises(UnknownIdError, match="valid scheme forms"):
        parse_scheme(bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "xyz"}, "unknown quantizer kind"),
        ({"bits": 1}, "bits must be in 2..8"),
        ({"bits": 9}, "bits must be in 2..8"),
        ({"bits": True}, "bits must be an integer"),
        ({"bits": 4.0}, "bits must be an integer"),
        ({"kind": "nf4", "bits": 3, "granularity": "group", "group_size": 64}, "bits must be 4"),
        ({"granularity": "row"}, "unknown granularity"),
        ({"granularity": "group"}, "positive integer group_size"),
        ({"granularity": "group", "group_size": 0}, "positive integer group_size"),
        ({"granularity": "channel", "group_size": 32}, "only meaningful"),
        ({"symmetric": "yes"}, "symmetric must be a bool"),
        ({"kind": "fp4", "granularity": "group", "group_size": 32, "symmetric": False}, "symmetric must be True"),
        ({"kind": "q4_1", "granularity": "group", "group_size": 32, "symmetric": True}, "symmetric must be False"),
        ({"kind": "q4_0", "granularity": "group", "group_size": 64}, "blocks of 32"),
    ],
)
def test_scheme_validation(kwargs, match):
    with pytest.raises(InputError, match=match):
        QuantScheme(**kwargs)


@pytest.mark.parametrize(
    ("w", "match"),
    [
        (np.array([]), "empty"),
        (np.zeros((0, 4)), "empty"),
        (np.array([1.0, np.nan]), "non-finite"),
        (np.array([[1.0, np.inf]]), "non-finite"),
        (np.zeros((2, 2, 2)), "1-D or 2-D"),
        (np.array(["a", "b"]), "real numeric"),
        (np.array([1 + 1j]), "real numeric"),
    ],
)
@pytest.mark.parametrize("spec", ["rtn-int4-sym-channel", "nf4-b64"])
def test_bad_weights_rejected(w, match, spec):
    with pytest.raises(InputError, match=match):
        quantize(w, spec)
    with pytest.raises(InputError, match=match):
        step_sizes(w, spec)


@pytest.mark.parametrize("spec", ["rtn-int4-sym-g64", "nf4-b64", "fp4-b32", "gguf-q4_0"])
def test_group_size_must_divide_row_length(spec):
    with pytest.raises(InputError, match="does not divide the row length"):
        quantize(np.ones((3, 48 + 8)), spec)


def test_sr_requires_generator():
    w = weights()
    with pytest.raises(InputError, match="numpy.random.Generator"):
        quantize(w, "sr-int4-sym-channel")
    with pytest.raises(InputError, match="numpy.random.Generator"):
        quantize(w, "sr-int4-sym-channel", rng=np.random.RandomState(0))
    with pytest.raises(InputError, match="numpy.random.Generator"):
        widrow_noise(w, "rtn-int4-sym-channel", rng=None)


def test_unknown_scheme_in_quantize():
    with pytest.raises(UnknownIdError):
        quantize(np.ones(4), "int4")
    with pytest.raises(InputError, match="QuantScheme or a spec string"):
        quantize(np.ones(4), 4)


def test_integer_input_accepted_and_output_float64():
    w = np.arange(-8, 8).reshape(2, 8)
    q = quantize(w, "rtn-int4-sym-channel")
    assert q.dtype == np.float64 and q.shape == w.shape
    q8 = quantize(np.arange(-7, 8), "rtn-int4-sym-tensor")
    np.testing.assert_array_equal(q8, np.arange(-7, 8))


# -- structural properties ------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_SPECS)
@pytest.mark.parametrize("dist", ["normal", "heavy"])
def test_at_most_2_to_the_b_levels_per_group(spec, dist):
    s = parse_scheme(spec)
    q = quantize(weights(dist=dist), s, rng=np.random.default_rng(1))
    n_levels = max(len(np.unique(row)) for row in groups_of(q, s))
    assert n_levels <= s.levels_per_group <= 2**s.bits


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_shape_dtype_and_1d(spec):
    s = parse_scheme(spec)
    w = weights((4, 64))
    q = quantize(w, s, rng=np.random.default_rng(0))
    assert q.shape == w.shape and q.dtype == np.float64
    q1 = quantize(w[0], s, rng=np.random.default_rng(0))
    assert q1.shape == (64,)
    assert step_sizes(w, s).shape == w.shape


@pytest.mark.parametrize("spec", RTN_SPECS + CODEBOOK_SPECS + GGUF_SPECS)
def test_idempotent(spec):
    """Q(Q(w)) == Q(w) exactly (bit-for-bit) for the deterministic schemes.

    For gguf this holds because the re-derived scale of a dequantized block equals the
    stored float16 scale on this data; it is not a theorem for Q4_1 (rounding of
    (max − min)/15).
    """
    w = weights()
    q = quantize(w, spec)
    np.testing.assert_array_equal(quantize(q, spec), q)


@pytest.mark.parametrize("spec", RTN_SPECS)
@pytest.mark.parametrize("dist", ["normal", "heavy", "uniform"])
def test_rtn_error_at_most_half_step(spec, dist):
    """|Q(w) − w| ≤ s/2, up to 4 ulp of the group's largest |w| (rounding of w/s)."""
    w = weights(dist=dist)
    s = parse_scheme(spec)
    err = np.abs(quantize(w, s) - w)
    tol = 4 * EPS * np.abs(groups_of(w, s)).max(axis=1, keepdims=True)
    assert np.all(groups_of(err, s) <= groups_of(step_sizes(w, s), s) / 2 + tol)


@pytest.mark.parametrize("spec", RTN_SPECS)
def test_rtn_is_nearest_grid_point(spec):
    """RTN output is on the grid and no other grid point is closer (4-ulp slack)."""
    s = parse_scheme(spec)
    w = weights((4, 64), seed=3)
    g = groups_of(w, s)
    q = groups_of(quantize(w, s), s)
    step = groups_of(step_sizes(w, s), s)[:, :1]
    offset = 0.0 if s.symmetric else g.min(axis=1, keepdims=True)
    k = np.arange(0 if not s.symmetric else -s.qmax, s.qmax + 1)
    grid = offset[..., None] + step[..., None] * k if not s.symmetric else step[..., None] * k
    dist_all = np.abs(g[..., None] - grid).min(axis=-1)
    tol = 4 * EPS * np.abs(g).max(axis=1, keepdims=True)
    assert np.all(np.abs(q - g) <= dist_all + tol)


@pytest.mark.parametrize("spec", SYMMETRIC_ABSMAX_SPECS + ["sr-int4-sym-channel", "gguf-q4_0"])
def test_absmax_preserved(spec):
    """max|Q(w_g)| == max|w_g| per group within 2 ulp (s·qmax with s = absmax/qmax)."""
    s = parse_scheme(spec)
    w = weights()
    q = quantize(w, s, rng=np.random.default_rng(2))
    a = np.abs(groups_of(w, s)).max(axis=1)
    aq = np.abs(groups_of(q, s)).max(axis=1)
    if s.kind == "q4_0":  # the stored scale is float16: relative 2^-11
        np.testing.assert_allclose(aq, a, rtol=2.0**-11, atol=0)
    else:
        np.testing.assert_allclose(aq, a, rtol=2 * EPS, atol=0)


@pytest.mark.parametrize("spec", ["rtn-int4-asym-channel", "rtn-int3-asym-g32", "sr-int4-asym-g32"])
def test_asymmetric_range_preserved(spec):
    """min and max of each group are grid points (float-shift convention), ≤ 4 ulp."""
    s = parse_scheme(spec)
    w = weights()
    q = groups_of(quantize(w, s, rng=np.random.default_rng(0)), s)
    g = groups_of(w, s)
    tol = 4 * EPS * np.abs(g).max()
    assert np.all(np.abs(q.min(axis=1) - g.min(axis=1)) <= tol)
    assert np.all(np.abs(q.max(axis=1) - g.max(axis=1)) <= tol)


@pytest.mark.parametrize(
    ("per_channel", "per_tensor"),
    [
        ("rtn-int4-sym-channel", "rtn-int4-sym-tensor"),
        ("rtn-int3-asym-channel", "rtn-int3-asym-tensor"),
        ("sr-int4-sym-channel", "sr-int4-sym-tensor"),
        ("nf4-channel", "nf4-tensor"),
        ("fp4-channel", "fp4-tensor"),
    ],
)
@pytest.mark.parametrize("shape", [(1, 96), (96,)])
def test_per_channel_equals_per_tensor_on_single_row(per_channel, per_tensor, shape):
    w = weights(shape, seed=5)
    a = quantize(w, per_channel, rng=np.random.default_rng(7))
    b = quantize(w, per_tensor, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(step_sizes(w, per_channel), step_sizes(w, per_tensor))


@pytest.mark.parametrize(
    ("grouped", "channel"),
    [
        ("rtn-int4-sym-g64", "rtn-int4-sym-channel"),
        ("rtn-int4-asym-g64", "rtn-int4-asym-channel"),
        ("sr-int4-asym-g64", "sr-int4-asym-channel"),
        ("nf4-b64", "nf4-channel"),
        ("fp4-b64", "fp4-channel"),
    ],
)
def test_group_of_row_length_equals_per_channel(grouped, channel):
    w = weights((8, 64), seed=6)
    a = quantize(w, grouped, rng=np.random.default_rng(7))
    b = quantize(w, channel, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("spec", SYMMETRIC_ABSMAX_SPECS + ["sr-int4-sym-channel", "sr-int2-sym-tensor", "gguf-q4_0"])
def test_zero_maps_to_zero_for_symmetric(spec):
    w = weights((4, 64), seed=8)
    w[:, ::5] = 0.0
    w[1] = 0.0  # an all-zero row (zero scale)
    q = quantize(w, spec, rng=np.random.default_rng(0))
    assert np.all(q[w == 0] == 0)
    if parse_scheme(spec).granularity != "tensor":  # the zero row is its own group(s)
        assert np.all(step_sizes(w, spec)[1] == 0)


@pytest.mark.parametrize("spec", ["rtn-int4-asym-channel", "sr-int4-asym-channel", "gguf-q4_1"])
def test_constant_group_reproduced_by_asymmetric(spec):
    w = np.full((2, 32), 0.25)
    w[1] = -1.5
    np.testing.assert_array_equal(quantize(w, spec, rng=np.random.default_rng(0)), w)
    assert np.all(step_sizes(w, spec) == 0)


# -- codebooks ------------------------------------------------------------------------------


def test_nf4_codebook_constants():
    assert NF4_CODE.shape == (16,)
    assert np.all(np.diff(NF4_CODE) > 0)
    assert NF4_CODE[0] == -1.0 and NF4_CODE[-1] == 1.0 and NF4_CODE[7] == 0.0
    # exactly representable in float32 (they are bitsandbytes' float32 constants)
    np.testing.assert_array_equal(NF4_CODE.astype(np.float32).astype(np.float64), NF4_CODE)
    assert NF4_CODE[8] == np.float32(0.07958029955625534)


def test_nf4_values_are_code_times_absmax():
    w = weights((4, 64), seed=9)
    q = quantize(w, "nf4-b64")
    a = np.abs(w).max(axis=1, keepdims=True)
    candidates = NF4_CODE * a[..., None]  # (rows, 1, 16): exact products code·absmax
    assert np.all((q[..., None] == candidates).any(axis=-1))
    # and it is the nearest candidate (4-ulp slack for the rounding of w/absmax)
    d = np.abs(w[..., None] - candidates).min(axis=-1)
    assert np.all(np.abs(q - w) <= d + 4 * EPS * a)


def test_fp4_values_and_ties_to_even():
    # block with absmax 6 -> scale 1: the codebook is used directly
    pts = np.array([6.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.3, 2.6, 4.9, 0.0])
    expected = np.array([6.0, 0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 0.5, 3.0, 4.0, 0.0])
    w = np.concatenate([pts, -pts])
    w = np.concatenate([w, np.zeros(32 - len(w))])
    q = quantize(w, "fp4-b32")
    np.testing.assert_array_equal(q[: len(pts)], expected)
    np.testing.assert_array_equal(q[len(pts) : 2 * len(pts)], -expected)
    # random data: every value is a code times absmax/6 (exact division check)
    w = weights((4, 64))
    scale = np.abs(w).reshape(-1, 32).max(axis=1, keepdims=True) / 6
    ratio = quantize(w, "fp4-b32").reshape(-1, 32) / scale
    assert np.all(np.isin(ratio, FP4_E2M1_VALUES))


def test_nf4_ties_go_to_lower_code():
    mid = 0.5 * (NF4_CODE[8] + NF4_CODE[9])
    w = np.zeros(64)
    w[0] = 1.0
    w[1] = mid
    w[2] = -mid
    q = quantize(w, "nf4-b64")
    assert q[1] == NF4_CODE[8] and q[2] == NF4_CODE[6]


def test_codebook_step_sizes_are_voronoi_widths():
    w = np.zeros(32)
    w[0] = 6.0  # fp4 scale 1
    w[1:5] = [0.1, 1.0, 5.9, -3.1]
    s = step_sizes(w, "fp4-b32")
    np.testing.assert_array_equal(s[:5], [2.0, 0.5, 0.5, 2.0, 1.0])
    w = np.zeros(64)
    w[0] = -2.0
    w[1] = 0.0
    s = step_sizes(w, "nf4-b64")
    assert s[0] == 2.0 * (NF4_CODE[1] - NF4_CODE[0])
    assert s[1] == 2.0 * 0.5 * (NF4_CODE[8] - NF4_CODE[6])


def test_q4_0_format_arithmetic():
    """Hand example: block max (signed) −0.8 -> d = 0.1; the opposite extreme is clipped."""
    w = np.zeros(32)
    w[:5] = [-0.8, 0.8, 0.34, 0.35, -0.05]
    q = quantize(w, "gguf-q4_0")
    d = float(np.float16(0.1))
    # x/d = -8 -> -8 ; 8 -> clip 7 ; -3.4 -> floor(5.1)-8 = -4... sign: d = max/-8 = +0.1
    np.testing.assert_array_equal(q[:5], np.array([-8, 7, 3, 4, 0]) * d)
    assert np.all(step_sizes(w, "gguf-q4_0") == d)


# -- stochastic rounding ----------------------------------------------------------------------


@pytest.mark.parametrize("spec", SR_SPECS)
def test_sr_lands_on_a_neighbouring_grid_point(spec):
    s = parse_scheme(spec)
    w = weights((4, 64), seed=11)
    step = step_sizes(w, s)
    g = groups_of(w, s)
    shift = 0.0 if s.symmetric else -g.min(axis=1, keepdims=True)
    y = (g + shift) / groups_of(step, s)
    down = groups_of(np.floor(y) * groups_of(step, s) - shift, s).reshape(w.shape)
    up = groups_of(np.ceil(y) * groups_of(step, s) - shift, s).reshape(w.shape)
    rng = np.random.default_rng(12)
    for _ in range(20):
        q = quantize(w, s, rng=rng)
        assert np.all((q == down) | (q == up))


@pytest.mark.parametrize("spec", SR_SPECS)
def test_sr_unbiased_monte_carlo(spec):
    """E[Q(w)] = w: per weight, |mean of N draws − w| < 6 standard errors + rounding.

    Rounding slack: 2·N·eps·max|w| (a naive sum of N draws along axis 0).

    The SE is s·sqrt(f(1−f)/N) with f the fractional position; 6 SE over 256 weights
    gives a false-alarm probability below 1e-6 (the test is seeded, hence deterministic).
    """
    s = parse_scheme(spec)
    w = weights((4, 64), seed=13)
    n = 2000
    rng = np.random.default_rng(14)
    draws = np.stack([quantize(w, s, rng=rng) for _ in range(n)])
    step = step_sizes(w, s)
    g = groups_of(w, s)
    shift = 0.0 if s.symmetric else -g.min(axis=1, keepdims=True)
    y = ((g + shift) / groups_of(step, s)).reshape(w.shape)
    f = y - np.floor(y)
    se = step * np.sqrt(f * (1 - f) / n)
    slack = 2 * n * EPS * np.abs(w).max()
    assert np.all(np.abs(draws.mean(axis=0) - w) <= 6 * se + slack)
    # and the bias of the mean over all weights, normalised, is small
    z = (draws.mean(axis=0) - w)[se > 0] / se[se > 0]
    assert abs(z.mean()) < 6 / np.sqrt(z.size)


def test_sr_exact_expectation_on_uniform_grid():
    """With u on the equispaced grid j/M the up-fraction is ceil(f·M)/M: mean within s/M."""
    s = parse_scheme("sr-int4-sym-channel")
    w = weights((2, 16), seed=15)
    m = 4096
    qs = [sr_quantize_with_uniforms(w, s, np.full(w.shape, j / m)) for j in range(m)]
    mean = np.mean(qs, axis=0)
    assert np.all(np.abs(mean - w) <= step_sizes(w, s) / m + 1e-15)


def test_sr_with_uniforms_validation():
    w = weights((2, 16))
    with pytest.raises(InputError, match="'sr' scheme"):
        sr_quantize_with_uniforms(w, "rtn-int4-sym-channel", np.zeros_like(w))
    with pytest.raises(InputError, match="shape"):
        sr_quantize_with_uniforms(w, "sr-int4-sym-channel", np.zeros(3))
    with pytest.raises(InputError, match=r"\[0, 1\)"):
        sr_quantize_with_uniforms(w, "sr-int4-sym-channel", np.ones_like(w))


def test_sr_seeded_reproducible():
    w = weights()
    a = quantize(w, "sr-int4-sym-channel", rng=np.random.default_rng(3))
    b = quantize(w, "sr-int4-sym-channel", rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


# -- Widrow's model -----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["rtn-int4-sym-channel", "rtn-int8-asym-g32", "nf4-b64", "fp4-b32", "gguf-q4_0"])
def test_widrow_noise_moments(spec):
    """δ/s is uniform on [−1/2, 1/2]: mean 0 and variance 1/12 within 6 SE; |δ| ≤ s/2."""
    w = weights((16, 128), seed=16)
    s = step_sizes(w, spec)
    rng = np.random.default_rng(17)
    deltas = np.stack([widrow_noise(w, spec, rng=rng) for _ in range(50)])
    assert np.all(np.abs(deltas) <= s / 2)
    z = (deltas / s).ravel()
    n = z.size
    assert abs(z.mean()) < 6 * np.sqrt(1 / 12 / n)
    # Var of z² for U(-1/2,1/2): E z⁴ − (E z²)² = 1/80 − 1/144
    assert abs(np.mean(z**2) - 1 / 12) < 6 * np.sqrt((1 / 80 - 1 / 144) / n)
    # per-weight variance s²/12 (pooled over draws, relative to s²)
    var_hat = deltas.var(axis=0, ddof=1)
    np.testing.assert_allclose(np.mean(var_hat / s**2), 1 / 12, rtol=0.02)


def test_widrow_zero_step_gives_zero_noise():
    w = np.zeros((2, 32))
    w[0] = weights((32,), seed=1)
    d = widrow_noise(w, "rtn-int4-sym-channel", rng=np.random.default_rng(0))
    assert np.all(d[1] == 0) and np.any(d[0] != 0)


@pytest.mark.parametrize("spec", ["rtn-int4-sym-channel", "rtn-int4-asym-g32"])
def test_rtn_error_variance_close_to_widrow(spec):
    """Empirical sanity of the model (not a theorem): mean of (δ/s)² ≈ 1/12 within 15 %."""
    w = weights((64, 256), seed=18)
    s = step_sizes(w, spec)
    z = (quantize(w, spec) - w) / s
    assert abs(np.mean(z**2) - 1 / 12) < 0.15 / 12
