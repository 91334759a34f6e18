"""The generated FIM-expansion module against finite differences and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest

from fimtheory._generated import fim_expansion as fx
from fimtheory.errors import InputError

MODELS = {"linear": 1, "logistic": 1, "softmax": 3}


def _problem(model: str, seed: int = 0, n: int = 7, d: int = 4):
    rng = np.random.default_rng(seed)
    K = MODELS[model]
    X = rng.normal(size=(n, d))
    theta = rng.normal(size=K * d) * 0.7
    if model == "linear":
        y = rng.normal(size=n)
    elif model == "logistic":
        y = rng.integers(0, 2, size=n).astype(float)
    else:
        y = rng.integers(0, K, size=n)
    return X, y, theta, rng


def _fn(kind: str, model: str):
    return getattr(fx, f"{kind}_{model}")


@pytest.mark.parametrize("model", MODELS)
def test_jvp_and_second_derivative_match_central_differences(model):
    X, y, theta, rng = _problem(model)
    delta = rng.normal(size=theta.size)
    scores = _fn("scores", model)
    H = _fn("score_jvp", model)(X, y, theta, delta)
    T = _fn("score_second", model)(X, y, theta, delta)
    for eps in (1e-3, 5e-4):
        plus, minus, mid = (scores(X, y, theta + c * eps * delta) for c in (1, -1, 0))
        np.testing.assert_allclose((plus - minus) / (2 * eps), H, atol=5 * eps**2 * (1 + abs(H).max()))
        np.testing.assert_allclose((plus - 2 * mid + minus) / eps**2, T, atol=10 * eps**2 + 1e-7)


@pytest.mark.parametrize("model", MODELS)
def test_scores_are_gradients_of_the_log_likelihood(model):
    X, y, theta, _ = _problem(model, seed=1)

    def loglik(th):
        z = X @ th.reshape(-1, X.shape[1]).T
        if model == "linear":
            return -0.5 * (y - z[:, 0]) ** 2
        if model == "logistic":
            return y * z[:, 0] - np.logaddexp(0, z[:, 0])
        return z[np.arange(len(y)), y] - np.logaddexp.reduce(z, axis=1)

    G = _fn("scores", model)(X, y, theta)
    eps = 1e-6
    for j in range(theta.size):
        step = np.zeros_like(theta)
        step[j] = eps
        np.testing.assert_allclose((loglik(theta + step) - loglik(theta - step)) / (2 * eps), G[:, j], atol=1e-7)


@pytest.mark.parametrize("model", MODELS)
def test_fim_variations_match_finite_differences_of_the_fim(model):
    X, y, theta, rng = _problem(model, seed=2)
    delta = rng.normal(size=theta.size)
    G = _fn("scores", model)(X, y, theta)
    H = _fn("score_jvp", model)(X, y, theta, delta)
    T = _fn("score_second", model)(X, y, theta, delta)

    def fim(c):
        return fx.fim_from_scores(_fn("scores", model)(X, y, theta + c * delta))

    eps = 1e-3
    np.testing.assert_allclose((fim(eps) - fim(-eps)) / (2 * eps), fx.fim_first_variation(G, H), atol=1e-5)
    half_second = (fim(eps) - 2 * fim(0) + fim(-eps)) / (2 * eps**2)
    np.testing.assert_allclose(half_second, fx.fim_half_second_variation(G, H, T), atol=1e-4)


def test_linear_gaussian_second_derivative_is_zero():
    X, y, theta, rng = _problem("linear", seed=3)
    for _ in range(3):
        assert not np.any(fx.score_second_linear(X, y, theta, rng.normal(size=theta.size)))
    assert not np.any(fx.expected_score_second_linear(X, y, theta, rng.uniform(size=theta.size)))


@pytest.mark.parametrize("model", MODELS)
def test_expectations_match_exact_second_moment_formula_and_monte_carlo(model):
    X, y, theta, rng = _problem(model, seed=4, n=5, d=3)
    P = theta.size
    steps = rng.uniform(0.05, 0.3, size=P)
    variances = steps**2 / 12  # Widrow: uniform on [−s/2, s/2]
    ET = _fn("expected_score_second", model)(X, y, theta, variances)
    EF = _fn("expected_fim_second_order", model)(X, y, theta, variances)
    G = _fn("scores", model)(X, y, theta)

    # Exact: t and h h^T are quadratic in δ, so E over δ = Σ_b var_b · (value at δ = e_b).
    exact_T = np.zeros_like(ET)
    exact_F = np.zeros((P, P))
    for b in range(P):
        unit = np.zeros(P)
        unit[b] = 1.0
        T_b = _fn("score_second", model)(X, y, theta, unit)
        H_b = _fn("score_jvp", model)(X, y, theta, unit)
        exact_T += variances[b] * T_b
        exact_F += variances[b] * fx.fim_half_second_variation(G, H_b, T_b)
    np.testing.assert_allclose(ET, exact_T, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(EF, exact_F, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(EF, EF.T, atol=1e-15)

    # Monte Carlo with uniform (Widrow) noise: the mean of ½D²F[δ,δ] converges to EF.
    draws = 4000
    deltas = rng.uniform(-0.5, 0.5, size=(draws, P)) * steps
    acc = np.zeros((P, P))
    for delta in deltas:
        H = _fn("score_jvp", model)(X, y, theta, delta)
        T = _fn("score_second", model)(X, y, theta, delta)
        acc += fx.fim_half_second_variation(G, H, T)
    mc = acc / draws
    assert np.abs(mc - EF).max() <= 6 * np.abs(EF).max() / np.sqrt(draws) + 1e-12


def test_softmax_layout_is_row_major_over_classes():
    X, y, theta, _ = _problem("softmax", seed=5, n=4, d=3)
    G = fx.scores_softmax(X, y, theta)
    W = theta.reshape(3, 3)
    logits = X @ W.T
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    k, j = 2, 1
    np.testing.assert_allclose(G[:, k * 3 + j], ((y == k) - P[:, k]) * X[:, j])


def test_softmax_with_two_classes_has_logistic_structure():
    """K = 2 softmax with W = [w, 0] is logistic in w (scores of class 0)."""
    X, _, w, rng = _problem("logistic", seed=6)
    labels = rng.integers(0, 2, size=X.shape[0])
    theta = np.concatenate([w, np.zeros_like(w)])
    G = fx.scores_softmax(X, labels, theta)
    np.testing.assert_allclose(G[:, : X.shape[1]], fx.scores_logistic(X, (labels == 0).astype(float), w))


def test_large_logits_do_not_warn():
    X = np.array([[1000.0, -1000.0], [-800.0, 5.0]])
    for model, y in (("logistic", np.array([1.0, 0.0])), ("softmax", np.array([0, 1]))):
        theta = np.ones(2 * MODELS[model])
        with np.errstate(all="raise"):
            G = _fn("scores", model)(X, y, theta)
        assert np.all(np.isfinite(G))


@pytest.mark.parametrize(
    "call",
    [
        lambda: fx.scores_linear(np.ones(3), np.ones(3), np.ones(1)),
        lambda: fx.scores_linear(np.ones((3, 2)), np.ones(2), np.ones(2)),
        lambda: fx.scores_logistic(np.ones((3, 2)), np.array([0, 1, 2.0]), np.ones(2)),
        lambda: fx.scores_softmax(np.ones((3, 2)), np.array([0, 1, 3]), np.ones(6)),
        lambda: fx.scores_softmax(np.ones((3, 2)), np.array([0, 1, 1]), np.ones(5)),
        lambda: fx.score_jvp_linear(np.ones((3, 2)), np.ones(3), np.ones(2), np.ones(3)),
        lambda: fx.expected_score_second_logistic(np.ones((3, 2)), np.ones(3), np.ones(2), -np.ones(2)),
        lambda: fx.scores_linear(np.full((3, 2), np.nan), np.ones(3), np.ones(2)),
    ],
)
def test_bad_inputs_raise_input_error(call):
    with pytest.raises(InputError):
        call()
