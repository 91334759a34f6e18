"""fim against exact references: F, K and ḡ as exact rational sums (fractions.Fraction of the
float64 scores), the spectrum at 50 digits, over the whole float64 range of score magnitudes.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from fimtheory import fim
from fimtheory.errors import InputError
from fimtheory.highprec import mp_eigh, working_precision

EPS = np.finfo(float).eps
FMAX = np.finfo(float).max


def _exact_products(X):
    """(exact XᵀX / m, exact |X|ᵀ|X| / m) over the m rows of X, as Fractions."""
    m, p = X.shape
    Xf = [[Fraction(float(x)) for x in row] for row in X]
    val = [[sum(Xf[i][a] * Xf[i][b] for i in range(m)) / m for b in range(p)] for a in range(p)]
    mag = [[sum(abs(Xf[i][a] * Xf[i][b]) for i in range(m)) / m for b in range(p)] for a in range(p)]
    return val, mag


def _assert_close_to_exact(got, X):
    """|got − exact| ≤ 2·m·eps·(|X|ᵀ|X|/m) + tiny entrywise: the dot-product error bound, with
    the exact rational value and absolute sum as the reference."""
    val, mag = _exact_products(X)
    m = X.shape[0]
    tiny = Fraction(np.finfo(float).tiny)
    for a, row in enumerate(val):
        for b, exact in enumerate(row):
            err = abs(Fraction(float(got[a, b])) - exact)
            assert err <= 2 * (m + 2) * Fraction(EPS) * mag[a][b] + tiny, (a, b, float(got[a, b]), float(exact))


def _one_big_row(n, p, big, seed):
    G = np.random.default_rng(seed).standard_normal((n, p))
    G[0] *= big / np.max(np.abs(G[0]))
    return G


CASES = {
    "unit": np.random.default_rng(0).standard_normal((6, 4)),
    "n < P": np.random.default_rng(1).standard_normal((3, 7)),
    "rank-deficient (rank 1)": np.outer(np.arange(1.0, 6.0), [1.0, -2.0, 0.5]),
    "1e150": 1e150 * np.random.default_rng(2).standard_normal((5, 3)),
    "1e-150": 1e-150 * np.random.default_rng(3).standard_normal((5, 3)),
    # one row of 1e155 among 2000: GᵀG overflows (inf before), F = GᵀG/n ≈ 1e306 does not
    "one 1e155 row in 2000": _one_big_row(2000, 3, 1e155, 4),
}


@pytest.mark.parametrize("name", list(CASES))
def test_empirical_fim_and_gram_equal_exact_rational_sums(name):
    G = CASES[name]
    n, p = G.shape
    F = fim.empirical_fim(G)
    assert np.all(np.isfinite(F)) and np.array_equal(F, F.T)
    _assert_close_to_exact(F, G)
    if n <= 50:
        K = fim.gram_matrix(G)
        assert np.all(np.isfinite(K)) and np.array_equal(K, K.T)
        # K = GGᵀ/n: the products of Gᵀ's columns, divided by n instead of p
        _assert_close_to_exact(K * n / p, G.T.copy())


@pytest.mark.parametrize("name", list(CASES))
def test_mean_score_equals_the_exact_mean(name):
    G = CASES[name]
    got = fim.mean_score(G)
    for j in range(G.shape[1]):
        exact = sum(Fraction(float(x)) for x in G[:, j]) / G.shape[0]
        scale = sum(abs(Fraction(float(x))) for x in G[:, j]) / G.shape[0]
        assert abs(Fraction(float(got[j])) - exact) <= 2 * G.shape[0] * Fraction(EPS) * scale


def test_mean_score_of_huge_scores_does_not_overflow():
    """Before: [inf] for two scores of 1e308."""
    assert fim.mean_score(np.array([[1e308], [1e308]]))[0] == 1e308


@pytest.mark.parametrize("name", list(CASES))
def test_fim_spectrum_against_mp(name):
    G = CASES[name]
    n, p = G.shape
    w = fim.fim_spectrum(G)
    assert w.shape == (p,) and np.all(np.diff(w) <= 0) and np.all(w >= 0)
    c = 2.0 ** int(np.frexp(np.max(np.abs(G)))[1])
    Gs = G / c
    with working_precision(50):
        ref = mp_eigh(Gs @ Gs.T / n if n < p else Gs.T @ Gs / n, 50).eigenvalues
    ref = [float(x) * c * c for x in ref] + [0.0] * max(0, p - n)
    tol = 8 * max(n, p) * EPS * ref[0]
    np.testing.assert_allclose(w, np.maximum(ref, 0.0), rtol=0, atol=tol)
    assert fim.lambda_max_from_scores(G) == w[0]


@pytest.mark.parametrize(
    "G",
    [np.full((3, 2), 1e200), _one_big_row(4, 2, 1e160, 5)],
    ids=["all 1e200", "one 1e160 row in 4"],
)
def test_fim_that_is_not_representable_raises(G):
    """Before: an inf matrix. F's entries ~1e400 (or 1e320/4) exceed float64: an InputError."""
    for fn in (fim.empirical_fim, fim.gram_matrix, fim.fim_spectrum, fim.lambda_max_from_scores):
        with pytest.raises(InputError, match=r"overflows float64"):
            fn(G)


def test_scores_at_the_top_of_the_range_with_representable_mean():
    G = np.array([[FMAX], [-FMAX], [FMAX]])
    assert fim.mean_score(G)[0] == pytest.approx(FMAX / 3, rel=4 * EPS)
