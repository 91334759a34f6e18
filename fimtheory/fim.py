"""The empirical Fisher information matrix and its Gram-matrix twin.

F = GᵀG / n (P×P) and K = GGᵀ / n (n×n) share their nonzero spectrum, so
λ_max(F) = λ_max(K) = ‖G‖₂² / n. The cheaper of the two is used.
"""

from __future__ import annotations

import numpy as np

from fimtheory.validation import as_matrix


def score_matrix(G, name: str = "G") -> np.ndarray:
    """Validate a score matrix: finite, 2-D, at least one row and one column."""
    return as_matrix(G, name)


def empirical_fim(G) -> np.ndarray:
    """Empirical FIM F = GᵀG / n of the per-sample scores G (n samples × P parameters).

    Returns an exactly symmetric P×P float64 matrix (units: score², i.e. nats² per parameter²).
    """
    G = score_matrix(G)
    F = G.T @ G / G.shape[0]
    return 0.5 * (F + F.T)


def gram_matrix(G) -> np.ndarray:
    """Gram matrix K = GGᵀ / n (n×n); same nonzero eigenvalues as the empirical FIM."""
    G = score_matrix(G)
    K = G @ G.T / G.shape[0]
    return 0.5 * (K + K.T)


def mean_score(G) -> np.ndarray:
    """ḡ, the mean of the rows of G (zero at a maximum-likelihood fit of the training set)."""
    return score_matrix(G).mean(axis=0)


def fim_spectrum(G) -> np.ndarray:
    """All eigenvalues of F = GᵀG/n in descending order (length P), through the smaller matrix.

    When n < P the n Gram eigenvalues are padded with P − n exact zeros.
    """
    G = score_matrix(G)
    n, p = G.shape
    small = gram_matrix(G) if n < p else empirical_fim(G)
    w = np.linalg.eigvalsh(small)[::-1]
    w = np.maximum(w, 0.0)  # PSD: negative values are rounding of zeros
    if n < p:
        w = np.concatenate([w, np.zeros(p - n)])
    return w


def lambda_max_from_scores(G) -> float:
    """λ_max of the empirical FIM of G, through the Gram matrix when n < P, F otherwise."""
    return float(fim_spectrum(G)[0])
