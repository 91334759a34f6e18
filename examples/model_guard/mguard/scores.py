"""Per-sample score functions ``score(theta, X, y) -> G`` (n × P, float64): row i is
∇_θ log p(y_i | x_i; θ). Each is declared a fimtheory score subject of its model, so a check
needs no further option."""

import numpy as np

from properties.subjects import score_function


@score_function(model="logistic")
def logistic_score(theta, X, y):
    """Correct: (y − σ(θᵀx)) x."""
    return (y - 1.0 / (1.0 + np.exp(-(X @ theta))))[:, None] * X


@score_function(model="logistic")
def logistic_score_sign_slip(theta, X, y):
    """BUGGY: ``exp(X @ theta)`` where ``exp(-(X @ theta))`` was meant, i.e. σ(−θᵀx)."""
    return (y - 1.0 / (1.0 + np.exp(X @ theta)))[:, None] * X


def _softmax_residuals(theta, X, y):
    n, d = X.shape
    Z = X @ theta.reshape(-1, d).T
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    P[np.arange(n), y] -= 1.0
    return -P


@score_function(model="softmax")
def softmax_score_flattened_wrong(theta, X, y):
    """BUGGY: x ⊗ r where θ = W.reshape(-1) needs r ⊗ x — the right numbers in the wrong order."""
    R = _softmax_residuals(theta, X, y)
    return (X[:, :, None] * R[:, None, :]).reshape(X.shape[0], -1)
