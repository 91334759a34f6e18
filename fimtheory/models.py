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


def check_model_data(model: str, X, y, theta):
    """Validate (model, X, y, θ) and return (X, y, θ) as float64 X/θ and the labels as given.

    Raises :class:`UnknownIdError` for an unknown model and :class:`InputError` naming the
    problem for shapes, θ sizes and labels out of range.
    """
    return _check(model, X, y, theta)


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
    """E[½D²F[δ,δ]] for zero-mean δ with covariance diag(variances) (docs/theory.md §3(d))."""
    X, y, theta = _check(model, X, y, theta)
    variances = as_vector(variances, "variances")
    if variances.shape != theta.shape or np.any(variances < 0):
        raise InputError("variances must be non-negative with the shape of θ")
    fn = getattr(_generated(), f"expected_fim_second_order_{model}")
    return np.asarray(fn(X, y, theta, variances), dtype=float)


def fim(model: str, X, y, theta) -> np.ndarray:
    """Empirical FIM of the model on the batch (X, y) at θ."""
    return empirical_fim(scores(model, X, y, theta))


def n_classes(model: str, X, theta) -> int:
    """Number of label values: 2 for logistic, K = θ.size // d for softmax."""
    return 2 if model == "logistic" else int(np.asarray(theta).size // np.asarray(X).shape[1])


def predictive(model: str, X, theta) -> np.ndarray:
    """π_i(c) = p(c | x_i; θ), shape (n, number of classes), from the generated scores: for a
    canonical-link model g(x, c) = (e_c − μ(x)) ⊗ x, so μ is read off the score of label 0."""
    X = as_matrix(X, "X")
    k = n_classes(model, X, theta)
    if model == "logistic":
        g0 = scores(model, X, np.zeros(X.shape[0]), theta)  # g = (0 − p) x
        p = _ratio_along_inputs(-g0, X)
        return np.stack([1.0 - p, p], axis=1)
    G0 = scores(model, X, np.zeros(X.shape[0], dtype=int), theta).reshape(X.shape[0], k, X.shape[1])
    mu = np.stack([_ratio_along_inputs(-G0[:, c, :], X) for c in range(k)], axis=1)
    mu[:, 0] += 1.0  # g(x, 0)_0 = (1 − μ_0) x
    return mu


def _ratio_along_inputs(U: np.ndarray, X: np.ndarray) -> np.ndarray:
    """r_i with U_i = r_i x_i (exact division on the largest |x_ij|)."""
    j = np.argmax(np.abs(X), axis=1)
    rows = np.arange(X.shape[0])
    return U[rows, j] / X[rows, j]


def model_label_fim(model: str, X, theta_labels, theta) -> np.ndarray:
    """F_π(θ) = (1/n) Σ_i Σ_c π_i(c) g(θ; x_i, c) g(θ; x_i, c)ᵀ with π = p(·|x; θ_labels).

    At θ = θ_labels it is the expected (true) Fisher information of the batch.
    """
    X = as_matrix(X, "X")
    pi = predictive(model, X, theta_labels)
    n = X.shape[0]
    F = 0.0
    for c in range(pi.shape[1]):
        yc = np.full(n, c, dtype=int) if model == "softmax" else np.full(n, float(c))
        G = scores(model, X, yc, theta)
        F = F + (G * pi[:, c : c + 1]).T @ G / n
    return 0.5 * (F + F.T)


def mp_scores(model: str, X, y, theta):
    """Per-sample scores at mpmath's working precision from the exact float inputs.

    The closed form is the one the symbolic derivation generates for these canonical-link
    models, g = (e_y − μ(z)) ⊗ x with μ the sigmoid/softmax of z = Wx; evaluated here in mp
    for adjudication (numpy's exp cannot act on mpf).
    """
    import mpmath

    X = np.asarray(X, dtype=float)
    theta = np.asarray(theta, dtype=float).reshape(-1)
    n, d = X.shape
    k = n_classes(model, X, theta)
    W = theta.reshape(-1, d)
    rows = []
    for i in range(n):
        x = [mpmath.mpf(float(v)) for v in X[i]]
        z = [mpmath.fsum(mpmath.mpf(float(W[c, j])) * x[j] for j in range(d)) for c in range(W.shape[0])]
        if model == "logistic":
            p = 1 / (1 + mpmath.exp(-z[0]))
            r = [mpmath.mpf(float(y[i])) - p]
        else:
            zmax = max(z)
            ex = [mpmath.exp(zc - zmax) for zc in z]
            tot = mpmath.fsum(ex)
            r = [(1 if c == int(y[i]) else 0) - ex[c] / tot for c in range(k)]
        rows.append([rc * xj for rc in r for xj in x])
    return mpmath.matrix(rows)


def mp_predictive(model: str, X, theta):
    """π_i(c) at mp precision (list of lists)."""
    X = np.asarray(X, dtype=float)
    k = n_classes(model, X, theta)
    out = []
    zero = np.zeros(X.shape[0], dtype=int)
    G0 = mp_scores(model, X, zero, theta)
    d = X.shape[1]
    for i in range(X.shape[0]):
        j = int(np.argmax(np.abs(X[i])))
        xj = X[i, j]
        if model == "logistic":
            p = -G0[i, j] / xj
            out.append([1 - p, p])
        else:
            mu = [-G0[i, c * d + j] / xj for c in range(k)]
            mu[0] += 1
            out.append(mu)
    return out


def batch_lambda_max(model: str, X, y, theta) -> float:
    """Λ(X) = λ_max of the empirical FIM of the model on the batch (X, y)."""
    return lambda_max_from_scores(scores(model, X, y, theta))
