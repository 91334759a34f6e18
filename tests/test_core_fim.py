"""fimtheory.fim and fimtheory.validation against float64 dense references and mpmath.

Cases are data: every score matrix G (n × P) below is run through every check. Tolerances are
c·max(n, P)·eps·‖G‖₂² (the scale of F and K).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.linalg

from fimtheory import approx, bounds, fim, highprec, monitor, spectral
from fimtheory.errors import InputError
from fimtheory.instances import MatrixPerturbation, NoiseEnsemble

EPS = np.finfo(np.float64).eps
_R = np.random.default_rng(7)


def _rank_deficient(n, p, r, scale=1.0):
    return scale * (_R.standard_normal((n, r)) @ _R.standard_normal((r, p)))


_g = _R.standard_normal((2, 4))
SCORE_CASES = {
    "n>P": _R.standard_normal((9, 3)),
    "n<P": _R.standard_normal((3, 8)),
    "square": _R.standard_normal((5, 5)),
    "rank-2 of 6x5": _rank_deficient(6, 5, 2),
    "rank-1 of 4x7": _rank_deficient(4, 7, 1),
    "duplicate rows": np.vstack([_g, _g, _g[:1]]),
    "antithetic rows": np.vstack([_g, -_g]),
    "zero": np.zeros((4, 3)),
    "1x1": np.array([[3.0]]),
    "single row": _R.standard_normal((1, 6)),
    "single column": _R.standard_normal((6, 1)),
    "repeated singular values": 2.0 * np.eye(3, 5),
    "integer dtype": np.arange(12).reshape(4, 3),
    "float32": _R.standard_normal((4, 6)).astype(np.float32),
    "tiny 1e-150": 1e-150 * _R.standard_normal((5, 3)),
    "huge 1e150": 1e150 * _R.standard_normal((3, 5)),
    "subnormal-adjacent 1e-154": 1e-154 * _R.standard_normal((4, 4)),
}
IDS = list(SCORE_CASES)


def _scale(G):
    G = np.asarray(G, dtype=float)
    s = scipy.linalg.svdvals(G)[0] if G.size else 0.0
    return max(s * s / G.shape[0], np.finfo(float).tiny)


def _tol(G, c=64.0):
    return c * max(np.shape(G)) * EPS * _scale(G)


@pytest.mark.parametrize("name", IDS)
def test_fim_and_gram_share_nonzero_spectrum(name):
    G = np.asarray(SCORE_CASES[name], dtype=float)
    n, p = G.shape
    wf = np.linalg.eigvalsh(fim.empirical_fim(G))[::-1]
    wk = np.linalg.eigvalsh(fim.gram_matrix(G))[::-1]
    m = min(n, p)
    tol = _tol(G)
    np.testing.assert_allclose(wf[:m], wk[:m], rtol=0, atol=tol)
    # the rest of the larger one is zero (rank ≤ min(n, P))
    assert np.all(np.abs(wf[m:]) <= tol) and np.all(np.abs(wk[m:]) <= tol)


@pytest.mark.parametrize("name", IDS)
def test_lambda_max_is_spectral_norm_squared_over_n(name):
    G = np.asarray(SCORE_CASES[name], dtype=float)
    ref = scipy.linalg.svdvals(G)[0] ** 2 / G.shape[0]
    got = fim.lambda_max_from_scores(G)
    assert abs(got - ref) <= _tol(G), (got, ref)
    assert got == fim.fim_spectrum(G)[0]


@pytest.mark.parametrize("name", IDS)
def test_fim_spectrum_shape_order_and_zero_padding(name):
    G = np.asarray(SCORE_CASES[name], dtype=float)
    n, p = G.shape
    w = fim.fim_spectrum(G)
    assert w.shape == (p,)
    assert np.all(np.diff(w) <= 0), "descending"
    assert np.all(w >= 0), "PSD: clipped at 0"
    if n < p:
        assert np.all(w[n:] == 0.0), "P − n exact zeros when n < P"
    ref = np.linalg.eigvalsh(G.T @ G / n)[::-1]
    np.testing.assert_allclose(w, np.maximum(ref, 0), rtol=0, atol=_tol(G))


@pytest.mark.parametrize("name", IDS)
def test_fim_and_gram_exactly_symmetric_and_mean_score(name):
    G = np.asarray(SCORE_CASES[name], dtype=float)
    F, K = fim.empirical_fim(G), fim.gram_matrix(G)
    assert F.shape == (G.shape[1],) * 2 and K.shape == (G.shape[0],) * 2
    assert np.array_equal(F, F.T) and np.array_equal(K, K.T)
    assert F.dtype == K.dtype == np.float64
    np.testing.assert_allclose(np.trace(F), np.trace(K), rtol=0, atol=_tol(G))
    np.testing.assert_array_equal(fim.mean_score(G), G.mean(axis=0))


@pytest.mark.parametrize("name", IDS)
def test_lambda_max_against_mpmath(name):
    """λ_max from the exact float scores at 50 digits (Gram side in mp) vs the float64 value."""
    G = np.asarray(SCORE_CASES[name], dtype=float)
    n, p = G.shape
    with highprec.working_precision(50):
        Gm = highprec.mp_matrix(G)
        small = Gm * Gm.T / n if n <= p else Gm.T * Gm / n
        ref = highprec.mp_eigh(small, 50).lambda_max
        assert abs(mpmath.mpf(fim.lambda_max_from_scores(G)) - ref) <= _tol(G)


# --------------------------------------------------------------------------------------
# validation: every public entry point raises InputError naming the problem
# --------------------------------------------------------------------------------------

_NAN = np.ones((3, 3))
_NAN[1, 2] = np.nan
_INF = np.eye(3)
_INF[2, 0] = -np.inf
_ASYM = np.array([[1.0, 2.0], [0.0, 1.0]])
_NOT_PSD = np.diag([1.0, -0.5])
_A2, _A3 = np.eye(2), np.eye(3)

BAD_INPUT = [
    ("1-D scores", fim.empirical_fim, (np.ones(3),), r"G must be 2-D, got shape \(3,\)"),
    ("3-D scores", fim.gram_matrix, (np.ones((2, 2, 2)),), r"2-D, got shape \(2, 2, 2\)"),
    ("0-D scores", fim.fim_spectrum, (np.float64(1.0),), r"2-D, got shape \(\)"),
    ("empty rows", fim.empirical_fim, (np.zeros((0, 3)),), r"G is empty \(shape \(0, 3\)\)"),
    ("empty cols", fim.lambda_max_from_scores, (np.zeros((2, 0)),), r"empty \(shape \(2, 0\)\)"),
    ("NaN score", fim.empirical_fim, (_NAN,), r"non-finite entry (np\.float64\()?nan\)? at index \(1, 2\)"),
    ("-inf score", fim.mean_score, (_INF,), r"non-finite entry (np\.float64\()?-inf\)? at index \(2, 0\)"),
    ("complex", fim.empirical_fim, (np.ones((2, 2), complex),), r"real numeric array, got dtype complex128"),
    ("bool", fim.empirical_fim, (np.ones((2, 2), bool),), r"got dtype bool"),
    ("str", fim.empirical_fim, (np.array([["a", "b"]]),), r"got dtype <U1"),
    ("object", fim.empirical_fim, (np.array([[1, None]], dtype=object),), r"got dtype object"),
    ("non-square", spectral.eigen_data, (np.ones((2, 3)),), r"A must be square, got shape \(2, 3\)"),
    ("non-symmetric", spectral.lambda_max, (_ASYM,), r"A is not symmetric: \|A\[0,1\] - A\[1,0\]\| = 2"),
    ("NaN symmetric", spectral.eigen_data, (_NAN,), r"nan\)? at index \(1, 2\)"),
    ("not PSD", spectral.perturbation_coefficients, (_NOT_PSD, _A2), r"smallest eigenvalue -0\.5"),
    ("E non-symmetric", spectral.perturbation_coefficients, (_A2, _ASYM), r"E is not symmetric"),
    ("shape mismatch", spectral.perturbation_coefficients, (_A2, _A3), r"\(2, 2\) and \(3, 3\)"),
    ("weyl mismatch", bounds.weyl_bounds, (_A3, _A2), r"same shape, got \(3, 3\) and \(2, 2\)"),
    ("weyl not PSD", bounds.weyl_index_margins, (_NOT_PSD, _A2), r"not positive semidefinite"),
    ("sign mismatch", bounds.sign_bounds, (_A2, _A3), r"\(2, 2\) and \(3, 3\)"),
    ("R E inf", bounds.directional_lower_bound, (_A3, _INF), r"E has a non-finite entry (np\.float64\()?-inf"),
    ("eta NaN", bounds.remainder_bounds, (np.nan, 1.0), r"eta must be finite, got nan"),
    ("eta negative", bounds.remainder_bounds, (-1.0, 1.0), r"eta must be >= 0, got -1\.0"),
    ("eta str", bounds.remainder_bounds, ("big", 1.0), r"eta must be a real number, got 'big'"),
    ("gap inf", bounds.remainder_bounds, (0.1, np.inf), r"gap must be finite, got inf"),
    ("gap zero", bounds.coefficient_bounds, (0.1, 0.0), r"gap must be > 0, got 0\.0"),
    ("power_steps -1", lambda G: approx.heuristic(G, power_steps=-1), (np.ones((2, 2)),), r">= 0, got -1"),
    (
        "power_steps float",
        lambda G: approx.heuristic(G, power_steps=1.5),
        (np.ones((2, 2)),),
        r"power_steps must be an integer, got float 1\.5",
    ),
    (
        "power_steps bool",
        lambda G: approx.heuristic(G, power_steps=True),
        (np.ones((2, 2)),),
        r"must be an integer, got bool True",
    ),
    ("q 0", lambda G: approx.two_sided(G, q=0), (np.ones((2, 2)),), r"q must be >= 1, got 0"),
    ("lanczos 0", lambda G: approx.two_sided(G, lanczos_steps=0), (np.ones((2, 2)),), r"lanczos_steps must be >= 1"),
    ("two_sided NaN", approx.two_sided, (_NAN,), r"nan\)? at index \(1, 2\)"),
    ("dps 10", lambda A: highprec.mp_eigh(A, dps=10), (_A2,), r"dps must be an integer >= 20, got 10"),
    ("dps float", lambda A: highprec.eigenvalue_enclosures(A, dps=50.0), (_A2,), r"got 50\.0"),
    ("enclosure asym", highprec.eigenvalue_enclosures, (_ASYM,), r"not symmetric"),
    ("stream dim 0", monitor.StreamingLambdaMax, (0,), r"dim must be >= 1, got 0"),
    ("stream window 0", lambda: monitor.StreamingLambdaMax(2, window=0), (), r"window must be >= 1, got 0"),
    ("stream length", lambda g: monitor.StreamingLambdaMax(3).push(g), (np.ones(2),), r"length 2, expected 3"),
    (
        "stream NaN",
        lambda g: monitor.StreamingLambdaMax(2).push(g),
        (np.array([0.0, np.nan]),),
        r"g has a non-finite entry (np\.float64\()?nan\)? at index 1",
    ),
    ("stream 2-D", lambda g: monitor.StreamingLambdaMax(2).push(g), (np.ones((1, 2)),), r"1-D, got shape \(1, 2\)"),
    (
        "calibration q",
        lambda s: monitor.calibration_threshold(s, 1.5),
        ([1.0, 2.0],),
        r"q must be a number in \[0, 1\], got 1\.5",
    ),
    ("calibration q NaN", lambda s: monitor.calibration_threshold(s, np.nan), ([1.0],), r"got nan"),
    ("calibration NaN", lambda s: monitor.calibration_threshold(s, 0.5), ([1.0, np.nan],), r"nan\)? at index 1"),
    ("calibration empty", lambda s: monitor.calibration_threshold(s, 0.5), ([],), r"sigmas is empty"),
    ("instance mismatch", MatrixPerturbation, (_A2, _A3), r"\(2, 2\) and \(3, 3\)"),
    ("instance v length", lambda: MatrixPerturbation(_A2, _A2, v=np.ones(3)), (), r"v has length 3, expected 2"),
    ("ensemble empty", NoiseEnsemble, (_A2, ()), r"at least one perturbation"),
    ("ensemble shape", NoiseEnsemble, (_A2, (_A3,)), r"E\[0\] has shape \(3, 3\), expected \(2, 2\)"),
    ("ensemble t inf", lambda: NoiseEnsemble(_A2, (_A2,), t=np.inf), (), r"t must be finite"),
]


@pytest.mark.parametrize(("fn", "args", "match"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_raises_input_error_naming_it(fn, args, match):
    with pytest.raises(InputError, match=match):
        fn(*args)


def test_symmetry_within_rounding_is_accepted_and_removed():
    A = np.array([[2.0, 1.0], [1.0, 3.0]])
    B = A.copy()
    B[0, 1] += 4 * EPS  # far below 8·n·eps·max|A|
    e = spectral.eigen_data(B)
    ref = scipy.linalg.eigh(0.5 * (B + B.T), eigvals_only=True)[::-1]
    np.testing.assert_allclose(e.eigenvalues, ref, rtol=0, atol=16 * 2 * EPS * 3)
    B[0, 1] += 1e-6
    with pytest.raises(InputError, match=r"exceeds tolerance"):
        spectral.eigen_data(B)


def test_psd_within_rounding_is_accepted():
    """A rank-deficient AAᵀ has eigenvalues −O(n·eps·‖A‖) in float64: accepted as PSD."""
    X = _rank_deficient(6, 6, 2)
    A = X @ X.T + np.diag([100.0, 0, 0, 0, 0, 0])
    w = np.linalg.eigvalsh(A)
    assert abs(w[0]) <= 16 * 6 * EPS * w[-1]  # zero eigenvalues, possibly rounded negative
    lam1, coeffs = spectral.perturbation_coefficients(A, np.zeros((6, 6)), 2)
    assert abs(lam1 - w[-1]) <= 64 * 6 * EPS * w[-1]
    assert coeffs.tolist() == [0.0, 0.0]


# Public entry points that do not validate (contract in errors.py: every public entry point
# raises a FimTheoryError on bad input).
def test_directional_lower_bound_rejects_wrong_length_v():
    with pytest.raises(InputError, match=r"v has length 3, expected 2"):
        bounds.directional_lower_bound(_A2, _A2, v=np.ones(3))


def test_directional_lower_bound_rejects_zero_v():
    with pytest.raises(InputError):
        bounds.directional_lower_bound(_A2, _A2, v=np.zeros(2))


def test_calibration_threshold_rejects_string_q():
    with pytest.raises(InputError, match=r"q must be"):
        monitor.calibration_threshold([1.0, 2.0], "0.5")
