"""The empirical Fisher information matrix and its Gram-matrix twin.

F = GᵀG / n (P×P) and K = GGᵀ / n (n×n) share their nonzero spectrum, so
λ_max(F) = λ_max(K) = ‖G‖₂² / n. The cheaper of the two is used.
"""

from __future__ import annotations

import numpy as np

from fimtheory.validation import as_matrix, power_of_two_scale, rescale


def score_matrix(G, name: str = "G") -> np.ndarray:
    """Validate a score matrix: finite, 2-D, at least one row and one column."""
    return as_matrix(G, name)


def empirical_fim(G) -> np.ndarray:
    """Empirical FIM F = GᵀG / n of the per-sample scores G (n samples × P parameters).

    Returns an exactly symmetric P×P float64 matrix (units: score², i.e. nats² per parameter²).
    Computed on G/c for a power of two c ~ max|g| (exact), so scores of any float64 magnitude
    give F to working accuracy; entries below the float64 range underflow gracefully.

    Raises
    ------
    InputError
        Malformed G, or an F whose entries exceed the float64 range.
    """
    G = score_matrix(G)
    c = power_of_two_scale(G)
    G = G / c
    F = G.T @ G / G.shape[0]
    return rescale(0.5 * (F + F.T), c, 2, "the empirical FIM GᵀG/n")


def gram_matrix(G) -> np.ndarray:
    """Gram matrix K = GGᵀ / n (n×n); same nonzero eigenvalues as the empirical FIM.

    Scale-safe like :func:`empirical_fim`; raises :class:`InputError` when K overflows.
    """
    G = score_matrix(G)
    c = power_of_two_scale(G)
    G = G / c
    K = G @ G.T / G.shape[0]
    return rescale(0.5 * (K + K.T), c, 2, "the Gram matrix GGᵀ/n")


def mean_score(G) -> np.ndarray:
    """ḡ, the mean of the rows of G (zero at a maximum-likelihood fit of the training set)."""
    G = score_matrix(G)
    c = power_of_two_scale(G)
    return rescale((G / c).mean(axis=0), c, 1, "the mean score")


def fim_spectrum(G) -> np.ndarray:
    """All eigenvalues of F = GᵀG/n in descending order (length P), through the smaller matrix.

    When n < P the n Gram eigenvalues are padded with P − n exact zeros. Computed on G/c
    (c a power of two, exact) and rescaled; :class:`InputError` if λ_max overflows float64.
    """
    G = score_matrix(G)
    n, p = G.shape
    c = power_of_two_scale(G)
    Gs = G / c
    small = gram_matrix(Gs) if n < p else empirical_fim(Gs)
    w = np.linalg.eigvalsh(small)[::-1]
    w = np.maximum(w, 0.0)  # PSD: negative values are rounding of zeros
    if n < p:
        w = np.concatenate([w, np.zeros(p - n)])
    return rescale(w, c, 2, "the FIM spectrum")


def lambda_max_from_scores(G) -> float:
    """λ_max of the empirical FIM of G, through the Gram matrix when n < P, F otherwise."""
    return float(fim_spectrum(G)[0])
