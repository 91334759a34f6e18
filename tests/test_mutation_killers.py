"""Tests written to kill mutants that survived the first mutmut run (docs/mutation.md).

Each test states a documented property of the numeric core that the rest of the suite did not
pin down: error messages that name the offending argument ("each raises InputError naming the
problem", fimtheory.validation), documented defaults, individual terms of the AB bracket, the
streaming monitor's dense fallback, gguf arithmetic on several blocks, and the float32 → float16
double rounding of gguf scales. All are deterministic and fast.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from fimtheory import approx, bounds, quantize, spectral
from fimtheory._generated import series
from fimtheory.errors import HypothesesNotMet, InputError, UnknownIdError
from fimtheory.monitor import ProductPartition, StreamingLambdaMax, ThresholdPartition
from fimtheory.quantize import QuantScheme, parse_scheme, sr_quantize_with_uniforms, step_sizes, widrow_noise

EPS = float(np.finfo(float).eps)


def _raises(exc, pattern, fn, *args, **kw):
    with pytest.raises(exc) as info:
        fn(*args, **kw)
    assert re.search(pattern, str(info.value)), str(info.value)
    return info.value


# --------------------------------------------------------------------------------------
# errors name the offending argument (anchored: the message starts with the name)
# --------------------------------------------------------------------------------------

NOT_PSD = np.diag([1.0, -1.0])
ASYM = np.array([[1.0, 2.0], [0.0, 1.0]])


@pytest.mark.parametrize(
    "fn,args,pattern",
    [
        (spectral.perturbation_coefficients, (NOT_PSD, np.eye(2)), r"^A is not positive semidefinite"),
        (bounds.weyl_bounds, (NOT_PSD, np.eye(2)), r"^A is not positive semidefinite"),
        (spectral.eigen_data, (ASYM, "G"), r"^G is not symmetric"),
        (spectral.lambda_max, (ASYM, "F"), r"^F is not symmetric"),
        (bounds.directional_lower_bound, (np.eye(2), np.eye(2), np.ones((2, 1))), r"^v must be 1-D"),
        (bounds.directional_lower_bound, (np.eye(2), np.eye(2), np.zeros(2)), r"^v must be a nonzero vector$"),
        (bounds.coefficient_bounds, (-1.0, 1.0), r"^eta must be >= 0, got -1\.0$"),
        (bounds.remainder_bounds, (0.1, -1.0), r"^gap must be >= 0, got -1\.0$"),
        (approx.lanczos_ritz, (np.eye(3), 0, np.ones(3)), r"^steps must be >= 1"),
        (approx.lanczos_ritz, (np.eye(3), 2, np.zeros(3)), r"^start must be a finite nonzero vector of length 3$"),
        (approx.lanczos_ritz, (np.eye(3), 2, np.ones(2)), r"^start must be a finite nonzero vector of length 3$"),
        (series.series_coefficients, ([2.0, 1.0], np.eye(2), 5), r"^order must be an integer in 1\.\.4, got 5$"),
        (series.series_coefficients, ([2.0, 1.0], np.eye(2), 2.5), r"^order must be an integer in 1\.\.4, got 2\.5$"),
        (series.series_coefficients, ([2.0, 1.0], np.eye(3), 2), r"^need lam of shape \(n,\) and M of shape"),
        (series.series_coefficients, ([1.0, 1.0], np.eye(2), 2), r"^lam must be descending with lam\[0\] simple"),
        (series.series_coefficients, ([1.0, 2.0], np.eye(2), 2), r"^lam must be descending with lam\[0\] simple"),
    ],
)
def test_input_errors_name_the_argument(fn, args, pattern):
    err = _raises(InputError, pattern, fn, *args)
    assert not isinstance(err, HypothesesNotMet)


def test_hypothesis_messages_name_the_result():
    _raises(HypothesesNotMet, r"^SIGN needs a simple top eigenvalue", bounds.sign_bounds, np.eye(2), np.eye(2))
    _raises(HypothesesNotMet, r"^AH needs a nonzero mean score", approx.heuristic, np.array([[1.0, 2.0], [-1.0, -2.0]]))


def test_partition_errors_are_specific():
    p = ThresholdPartition([0.0, 1.0])
    _raises(InputError, r"^sigma must be a real number or array of them", p.cell, "x")
    _raises(InputError, r"^ProductPartition needs one or more ThresholdPartition objects$", ProductPartition, [])


# --------------------------------------------------------------------------------------
# documented defaults and returned fields
# --------------------------------------------------------------------------------------


def test_documented_defaults():
    A, E = np.diag([3.0, 1.0, 0.5]), 0.01 * np.ones((3, 3))
    lam1, coeffs = spectral.perturbation_coefficients(A, E)
    assert coeffs.shape == (3,)  # order=3 by default
    assert series.series_coefficients([3.0, 1.0, 0.5], E).shape == (3,)
    assert bounds.coefficient_bounds(0.1, 1.0).shape == (4,)
    assert spectral.series_value(2.0, [0.5, 0.25]) == 2.75  # t = 1 by default
    b = approx.two_sided(np.arange(12.0).reshape(3, 4))
    assert (b.lanczos_steps, b.q) == (3, 4)
    assert StreamingLambdaMax(2).tol == 1e-10


def test_remainder_bounds_record_their_inputs():
    rb = bounds.remainder_bounds(0.1, 1.0)
    assert (rb.eta, rb.gap) == (0.1, 1.0)
    assert rb.first == pytest.approx(2 * 0.01 / 0.8) and rb.second == pytest.approx(4 * 0.001 / 0.8)


def test_series_computes_in_float64_whatever_the_input_dtype():
    rng = np.random.default_rng(5)
    lam = np.array([3.0, 1.25, 0.5, 0.125], dtype=np.float32)
    M = rng.standard_normal((4, 4)).astype(np.float32)
    M = (M + M.T) / 2
    got = series.series_coefficients(lam, M, 4)
    want = series.series_coefficients(lam.astype(np.float64), M.astype(np.float64), 4)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------
# spectral: gap resolution scales with n and with max(|λmax|, |λmin|)
# --------------------------------------------------------------------------------------


def test_gap_resolution_uses_the_largest_magnitude_eigenvalue():
    # λmin = 0: the relevant scale is λmax, so a gap of 1 ulp of λmax is unresolved.
    with pytest.raises(HypothesesNotMet):
        spectral.perturbation_coefficients(np.diag([1.0 + 2 * EPS, 1.0, 0.0]), np.zeros((3, 3)))
    # |λmin| > λmax (symmetric, not PSD): the scale is |λmin|.
    eig = spectral.eigen_data(np.diag([1e-3, 1e-3 - 1e-16, -1.0]))
    assert 0 < eig.gap < 16 * 3 * EPS
    assert not eig.gap_resolved()


def test_gap_resolution_threshold_grows_with_n():
    n = 4
    lam = np.zeros(n)
    lam[0], lam[1] = 1.0, 1.0 - 20 * EPS  # 20 eps < 16 n eps = 64 eps: not resolved
    assert not spectral.eigen_data(np.diag(lam)).gap_resolved()
    lam[1] = 1.0 - 128 * EPS
    assert spectral.eigen_data(np.diag(lam)).gap_resolved()


# --------------------------------------------------------------------------------------
# approx
# --------------------------------------------------------------------------------------


def test_power_of_two_scale_contract():
    rng = np.random.default_rng(1)
    for scale in (1e-200, 3e-7, 1.0, 5.5, 7e150):
        a = rng.standard_normal(7) * scale
        c = approx.power_of_two_scale(a)
        assert 0.5 <= np.max(np.abs(a)) / c <= 1.0
        assert np.frexp(c)[0] == 0.5  # a power of two
    assert approx.power_of_two_scale(np.zeros(3)) == 1.0
    assert approx.power_of_two_scale(np.zeros(0)) == 1.0


def test_heuristic_returns_the_unit_vector_it_evaluates():
    rng = np.random.default_rng(2)
    G = rng.standard_normal((6, 4)) + 0.5
    for steps in (0, 3):
        est = approx.heuristic(G, power_steps=steps)
        x = est.vector
        assert isinstance(x, np.ndarray) and x.shape == (4,)
        assert np.linalg.norm(x) == pytest.approx(1.0, rel=1e-14)
        F = G.T @ G / G.shape[0]
        assert est.value == pytest.approx(x @ F @ x, rel=1e-12)
    gbar = G.mean(axis=0)
    np.testing.assert_allclose(approx.heuristic(G).vector, gbar / np.linalg.norm(gbar), rtol=1e-14)


def test_lanczos_ritz_continues_from_a_nearly_null_start():
    # The start has a 1e-15 component on the top eigenvector: full-dimension Lanczos still
    # finds λ_max = 1 (the breakdown test is relative to |α|, with a 1e-300 floor only).
    K = np.diag([1.0, 0.0, 0.0])
    val, vec = approx.lanczos_ritz(K, 3, np.array([1e-15, 1.0, 0.0]))
    assert val == pytest.approx(1.0, rel=1e-12)
    assert abs(vec[0]) == pytest.approx(1.0, rel=1e-12)


def _ab_reference_terms(G, k, q):
    n = G.shape[0]
    K = G @ G.T / n
    w = np.linalg.eigvalsh(K)
    trq = float(np.sum(np.clip(w, 0, None) ** q))
    r = min(G.shape[1], int(np.count_nonzero(np.any(G != 0, axis=1))))
    return {
        "trace_power_root": trq ** (1 / q),
        "trace_power_over_rank": (trq / r) ** (1 / q) if r else 0.0,
        "max_abs_row_sum_gram": float(np.max(np.sum(np.abs(K), axis=1))),
        "trace": float(np.trace(K)),
    }


@pytest.mark.parametrize("k,q", [(1, 1), (2, 3), (3, 4), (4, 7)])
def test_two_sided_terms_match_their_definitions(k, q):
    rng = np.random.default_rng(10 + q)
    G = rng.standard_normal((5, 3)) * np.array([3.0, 1.0, 0.2]) + 0.3
    b = approx.two_sided(G, lanczos_steps=k, q=q)
    ref = _ab_reference_terms(G, k, q)
    for key in ("trace_power_root", "max_abs_row_sum_gram", "trace"):
        assert b.upper_terms[key] == pytest.approx(ref[key], rel=1e-10), key
    assert b.lower_terms["trace_power_over_rank"] == pytest.approx(ref["trace_power_over_rank"], rel=1e-10)


def test_two_sided_zero_mean_scores_start_lanczos_at_the_largest_row():
    # ḡ = 0 so Gḡ = 0: the Krylov start is the largest row (index 1 here, row 0 is zero).
    G = np.array([[0.0, 0.0], [2.0, 1.0], [-2.0, -1.0], [0.0, 0.5]])
    b = approx.two_sided(G, lanczos_steps=4, q=2)
    lam = np.linalg.eigvalsh(G.T @ G / 4)[-1]
    assert b.lower_terms["lanczos_ritz"] == pytest.approx(lam, rel=1e-12)


def test_two_sided_of_zero_scores_is_zero():
    b = approx.two_sided(np.zeros((3, 2)))
    assert b.lower == 0.0 and b.upper == 0.0
    assert all(v == 0.0 for v in b.upper_terms.values())


# --------------------------------------------------------------------------------------
# monitor: streaming λ_max
# --------------------------------------------------------------------------------------


def _dense(scores):
    G = np.array(scores)
    return float(np.linalg.eigvalsh(G @ G.T / G.shape[0])[-1])


def test_streaming_benign_stream_needs_no_dense_fallback():
    # Well-separated spectra at a large scale (power-of-two rescaling c ≠ 1), an orthogonal
    # small score (interlacing floor met with equality) and a window: the Lanczos path must
    # certify every value by itself.
    rng = np.random.default_rng(3)
    for window in (None, 3):
        s = StreamingLambdaMax(4, window=window)
        assert s.dense_fallbacks == 0
        scores = [1e3 * np.array([3.0, 0.0, 0.0, 0.0])] + [1e3 * rng.standard_normal(4) * 0.1 for _ in range(5)]
        scores.insert(1, np.array([0.0, 0.0, 0.0, 1e-3]))
        for i, g in enumerate(scores):
            got = s.push(g)
            lo = 0 if window is None else max(0, i + 1 - window)
            assert got == pytest.approx(_dense(scores[lo : i + 1]), rel=1e-10)
        assert s.dense_fallbacks == 0


def test_streaming_dense_fallback_counts_and_is_exact():
    # A negative tolerance forces the dense path on every push.
    rng = np.random.default_rng(4)
    s = StreamingLambdaMax(3, tol=-1.0)
    scores = [rng.standard_normal(3) * 37.0 for _ in range(5)]
    for i, g in enumerate(scores):
        got = s.push(g)
        assert s.dense_fallbacks == i + 1
        assert got == pytest.approx(_dense(scores[: i + 1]), rel=1e-12)


def test_streaming_default_seed_is_reproducible_bit_for_bit():
    rng = np.random.default_rng(6)
    scores = [rng.standard_normal(5) for _ in range(8)]
    a, b = StreamingLambdaMax(5), StreamingLambdaMax(5)
    assert [a.push(g) for g in scores] == [b.push(g) for g in scores]


def test_streaming_unconverged_lanczos_falls_back_to_dense():
    # 80 scores with a clustered top spectrum in dimension 80: 30 Lanczos steps do not reach the
    # 1e-10 residual, and the value must still be λ_max to rounding.
    rng = np.random.default_rng(7)
    Q, _ = np.linalg.qr(rng.standard_normal((80, 80)))
    sv = np.linspace(1.0, 0.9, 80)
    G = (Q * sv) @ np.linalg.qr(rng.standard_normal((80, 80)))[0]
    s = StreamingLambdaMax(80)
    for g in G:
        got = s.push(g)
    assert s.dense_fallbacks > 0  # the path under test was taken
    assert got == pytest.approx(_dense(list(G)), rel=1e-13)


# --------------------------------------------------------------------------------------
# quantize
# --------------------------------------------------------------------------------------


def test_scheme_validation_edges():
    assert QuantScheme("rtn", 4, "group", 1).group_size == 1  # group of one weight is valid
    np.testing.assert_array_equal(
        quantize.quantize(np.array([[0.3, -1.0]]), QuantScheme("rtn", 4, "group", 1)), [[0.3, -1.0]]
    )
    for kind in ("nf4", "fp4", "q4_0"):
        gs = 32 if kind == "q4_0" else 64
        _raises(InputError, rf"^'{kind}' is a symmetric \(absmax\) format", QuantScheme, kind, 4, "group", gs, False)
    _raises(InputError, r"^'q4_1' is an asymmetric \(min/scale\) format", QuantScheme, "q4_1", 4, "group", 32, True)


def test_scheme_methods_delegate():
    w = np.random.default_rng(8).standard_normal((3, 64))
    for spec in ("sr-int4-sym-g32", "nf4-b64", "gguf-q4_1"):
        s = parse_scheme(spec)
        np.testing.assert_array_equal(s.step_sizes(w), step_sizes(w, s))
        np.testing.assert_array_equal(
            s.quantize(w, rng=np.random.default_rng(1)), quantize.quantize(w, s, rng=np.random.default_rng(1))
        )


def test_type_errors_name_the_offending_type():
    w = np.ones(4)
    _raises(UnknownIdError, r"scheme spec must be a string, got int", parse_scheme, 3)
    _raises(InputError, r"^scheme must be a QuantScheme or a spec string, got int$", quantize.quantize, w, 3)
    _raises(
        InputError,
        r"^stochastic rounding needs rng=.*got RandomState$",
        quantize.quantize,
        w,
        "sr-int4-sym-channel",
        rng=np.random.RandomState(0),
    )
    _raises(
        InputError,
        r"^widrow_noise needs rng=numpy.random.Generator, got RandomState$",
        widrow_noise,
        w,
        "rtn-int4-sym-channel",
        rng=np.random.RandomState(0),
    )
    _raises(InputError, r"^w must be 1-D or 2-D", quantize.quantize, np.ones((2, 2, 2)), "rtn-int4-sym-channel")
    _raises(
        InputError,
        r"^w has a non-finite entry \S*nan\S* at index \(1,\)$",
        quantize.quantize,
        [1.0, np.nan, 2.0],
        "rtn-int4-sym-channel",
    )
    _raises(InputError, r"^u must lie in \[0, 1\)$", sr_quantize_with_uniforms, w, "sr-int4-sym-channel", np.ones(4))


def test_step_equal_to_one_is_quantized():
    # scale exactly 1 (absmax 7 at int4): 0.4 rounds to 0 for RTN and to 0 or 1 for SR.
    w = np.array([[7.0, 0.4, -2.6]])
    np.testing.assert_array_equal(quantize.quantize(w, "rtn-int4-sym-channel"), [[7.0, 0.0, -3.0]])
    u = np.array([[0.5, 0.5, 0.5]])
    np.testing.assert_array_equal(sr_quantize_with_uniforms(w, "sr-int4-sym-channel", u), [[7.0, 0.0, -3.0]])


def test_sr_uses_an_independent_uniform_per_weight():
    w = np.full((1, 4000), 0.5)
    w[0, 0] = 1.0  # absmax 1, int4 sym: scale 1/7, so every 0.5 sits at fraction 0.5 of its cell
    q = quantize.quantize(w, "sr-int4-sym-channel", rng=np.random.default_rng(0))[0, 1:]
    up = np.mean(q > 0.5)
    assert 0.45 < up < 0.55  # one shared draw would round all of them the same way


@pytest.mark.parametrize("spec", ["sr-int4-sym-g32", "sr-int4-asym-g32", "sr-int3-sym-tensor"])
def test_sr_with_uniforms_groups_like_quantize(spec):
    rng = np.random.default_rng(9)
    w = rng.standard_normal((3, 64)) * np.array([[1.0], [10.0], [0.1]])
    u = rng.random(w.shape)
    got = sr_quantize_with_uniforms(w, spec, u)
    assert got.shape == w.shape
    s = step_sizes(w, spec)
    assert np.all(np.abs(got - w) <= s * (1 + 1e-12))  # a neighbouring point of *its group's* grid
    np.testing.assert_array_equal(sr_quantize_with_uniforms(w, spec, u), got)
    # u = 0 rounds up exactly when w is off-grid: the group's grid is the one of step s
    up = sr_quantize_with_uniforms(w, spec, np.zeros_like(w))
    assert np.all(up >= w - 1e-12 * np.abs(w).max())


def test_fp16_storage_rounds_through_float32_like_gguf():
    # 1 + 2^-11 + 2^-30: direct float16 rounding goes up (above the midpoint); via float32 the
    # 2^-30 is lost, leaving an exact tie that rounds to even (1.0).
    x = np.array([[1.0 + 2.0**-11 + 2.0**-30]])
    assert quantize._fp16(x, "d")[0, 0] == 1.0
    np.testing.assert_array_equal(quantize._fp16(np.array([[65504.0]]), "d"), [[65504.0]])


def test_gguf_scale_overflow_is_an_input_error_naming_the_field():
    big = np.zeros((1, 32))
    big[0, 0] = 1e6  # Q4_0 d = -m/8 = -125000 > float16 max
    _raises(InputError, r"^gguf Q4_0 scale d 125000 overflows the float16", quantize.quantize, big, "gguf-q4_0")
    w = np.zeros((1, 32))
    w[0, 1] = 2e6
    _raises(InputError, r"^gguf Q4_1 scale d 133333 overflows the float16", quantize.quantize, w, "gguf-q4_1")
    _raises(
        InputError,
        r"^gguf Q4_1 minimum m 1e\+06 overflows the float16",
        quantize.quantize,
        np.full((1, 32), -1e6),
        "gguf-q4_1",
    )


def test_gguf_blocks_are_independent():
    rng = np.random.default_rng(11)
    w = np.concatenate([rng.standard_normal(32) * 0.01, rng.standard_normal(32) * 5.0]).reshape(1, 64)
    for spec in ("gguf-q4_0", "gguf-q4_1"):
        whole = quantize.quantize(w, spec)
        for b in range(2):
            blk = w[:, 32 * b : 32 * (b + 1)]
            np.testing.assert_array_equal(whole[:, 32 * b : 32 * (b + 1)], quantize.quantize(blk, spec))


def test_gguf_q4_1_error_at_most_half_the_min_max_step():
    rng = np.random.default_rng(12)
    w = rng.uniform(-3.0, 5.0, size=(4, 64))
    q = quantize.quantize(w, "gguf-q4_1")
    g = w.reshape(-1, 32)
    d = (g.max(axis=1) - g.min(axis=1)) / 15.0  # independent of step_sizes
    err = np.abs(q.reshape(-1, 32) - g)
    # half a step, plus the float16 storage of d (relative 2^-11 per level, ≤ 15 levels) and of m
    slack = 15 * d * 2.0**-11 + np.abs(g.min(axis=1)) * 2.0**-11
    assert np.all(err <= (d / 2 + slack)[:, None])


def test_gguf_unit_scales_are_quantized():
    w = np.zeros((1, 32))
    w[0, :3] = [-8.0, 3.0, 0.4]  # Q4_0: m = -8, d = 1
    np.testing.assert_array_equal(quantize.quantize(w, "gguf-q4_0")[0, :3], [-8.0, 3.0, 0.0])
    w = np.zeros((1, 32))
    w[0, :3] = [15.0, 3.0, 0.4]  # Q4_1: min 0, max 15, d = 1
    np.testing.assert_array_equal(quantize.quantize(w, "gguf-q4_1")[0, :3], [15.0, 3.0, 0.0])


# --------------------------------------------------------------------------------------
# S2: the second-order remainder bound is valid and within a factor ~5.2 of tight
# --------------------------------------------------------------------------------------


def test_s2_second_remainder_bound_is_nearly_attained():
    # A = diag(1, 0), E = η [[cos θ, sin θ], [sin θ, −cos θ]] (‖E‖₂ = η): the remainder is
    # ≈ |a3| = η³ sin²θ · 2|cos θ| / γ², maximal at cos²θ = 1/3, i.e. 4η³/(3√3 γ²), while the
    # bound is 4η³/(γ(γ−2η)). So the ratio → 1/(3√3) ≈ 0.192 as η → 0: any bound more than
    # ~5.2× too small (e.g. a wrong constant) is violated here.
    theta = np.arccos(-1 / np.sqrt(3))
    worst = 0.0
    for eta in (1e-3, 1e-2, 0.05):
        A = np.diag([1.0, 0.0])
        E = eta * np.array([[np.cos(theta), np.sin(theta)], [np.sin(theta), -np.cos(theta)]])
        lam1, (a1, a2) = spectral.perturbation_coefficients(A, E, order=2)
        rb = bounds.remainder_bounds(float(np.linalg.norm(E, 2)), 1.0)
        top = spectral.lambda_max(A + E)
        r2 = abs(top - lam1 - a1 - a2)
        r1 = abs(top - lam1 - a1)
        assert r2 <= rb.second and r1 <= rb.first
        worst = max(worst, r2 / rb.second)
    assert 0.18 < worst < 1 / (3 * np.sqrt(3)) + 1e-6


def test_two_sided_exactly_zero_mean_scores_start_lanczos_at_the_largest_row():
    """ḡ = 0 exactly (antithetic rows): Lanczos starts at the row of largest norm, so its Ritz
    value is at least that row's K_ii = ‖g_i‖²/n, and still at most λ_max."""
    from fimtheory import approx

    G = np.array([[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0], [0.0, 3.0, 1.0], [0.0, -3.0, -1.0]])
    assert not np.any(G.mean(axis=0))
    b = approx.two_sided(G, lanczos_steps=1, q=2)
    lam = float(np.linalg.eigvalsh(G @ G.T / 4)[-1])
    ritz = b.lower_terms["lanczos_ritz"]
    assert np.isfinite(ritz)
    assert b.lower_terms["max_row_norm_sq_over_n"] <= ritz * (1 + 1e-15) + 1e-15
    assert ritz <= lam * (1 + 1e-14)


def test_streaming_window_small_scale_needs_no_dense_fallback():
    """A benign windowed stream whose λ_max is far below 1: the Lanczos path converges, so no
    dense fallback is taken (the interlacing floor does not apply to windows)."""
    from fimtheory.monitor import StreamingLambdaMax

    rng = np.random.default_rng(7)
    s = StreamingLambdaMax(6, window=5)
    for _ in range(20):
        value = s.push(1e-3 * rng.standard_normal(6))
    assert s.dense_fallbacks == 0
    assert value < 1e-4
