"""Small numpy models whose scores, JVPs and second derivatives come from the symbolic
derivation (:mod:`fimtheory._generated.fim_expansion`): linear-Gaussian (unit noise),
logistic (labels {0, 1}) and softmax regression (θ = W.reshape(-1), W of shape (K, d)).
"""

from __future__ import annotations

import importlib

import numpy as np

from fimtheory.errors import InputError, UnknownIdError
from fimtheory.fim import empirical_fim, lambda_max_from_scores
from fimtheory.validation import as_matrix, as_vector

MODELS = ("linear", "logistic", "softmax")


def _generated():
    return importlib.import_module("fimtheory._generated.fim_expansion")


def _check(model: str, X, y, theta):
    if model not in MODELS:
        raise UnknownIdError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    X = as_matrix(X, "X")
    theta = as_vector(theta, "theta")
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise InputError(f"y must have shape ({X.shape[0]},), got {y.shape}")
    d = X.shape[1]
    if model == "softmax":
        if theta.size % d or theta.size // d < 2:
            raise InputError(f"softmax θ must have K·d entries with K ≥ 2 (d = {d}), got {theta.size}")
        k = theta.size // d
        if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= k)):
            raise InputError(f"softmax labels must be integers in 0..{k - 1}")
    else:
        if theta.size != d:
            raise InputError(f"{model} θ must have d = {d} entries, got {theta.size}")
        if model == "logistic" and not np.all((y == 0) | (y == 1)):
            raise InputError("logistic labels must be 0 or 1")
    return X, y, theta


def scores(model: str, X, y, theta) -> np.ndarray:
    """Per-sample scores g_i = ∇_θ log p(y_i | x_i; θ), shape (n, P), in nats per unit θ."""
    X, y, theta = _check(model, X, y, theta)
    return np.asarray(getattr(_generated(), f"scores_{model}")(X, y, theta), dtype=float)


def score_jvp(model: str, X, y, theta, delta) -> np.ndarray:
    """h_i = ∇g_i · δ, shape (n, P)."""
    X, y, theta = _check(model, X, y, theta)
    delta = as_vector(delta, "delta")
    return np.asarray(getattr(_generated(), f"score_jvp_{model}")(X, y, theta, delta), dtype=float)


def score_second(model: str, X, y, theta, delta) -> np.ndarray:
    """t_i = D²g_i[δ, δ], shape (n, P)."""
    X, y, theta = _check(model, X, y, theta)
    delta = as_vector(delta, "delta")
    return np.asarray(getattr(_generated(), f"score_second_{model}")(X, y, theta, delta), dtype=float)


def expected_fim_second_order(model: str, X, y, theta, variances) -> np.ndarray:
    """E[½D²F[δ,δ]] for zero-mean δ with covariance diag(variances) (THEORY.md §3(d))."""
    X, y, theta = _check(model, X, y, theta)
    variances = as_vector(variances, "variances")
    if variances.shape != theta.shape or np.any(variances < 0):
        raise InputError("variances must be non-negative with the shape of θ")
    fn = getattr(_generated(), f"expected_fim_second_order_{model}")
    return np.asarray(fn(X, y, theta, variances), dtype=float)


def fim(model: str, X, y, theta) -> np.ndarray:
    """Empirical FIM of the model on the batch (X, y) at θ."""
    return empirical_fim(scores(model, X, y, theta))


def batch_lambda_max(model: str, X, y, theta) -> float:
    """Λ(X) = λ_max of the empirical FIM of the model on the batch (X, y)."""
    return lambda_max_from_scores(scores(model, X, y, theta))
