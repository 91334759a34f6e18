"""Subjects for the tests of :mod:`properties.subjects`: correct and deliberately wrong score
functions, and small torch models. Module-level, so that stored counterexamples name them
``tests.subjects_planted:NAME`` and ``fimtheory replay`` imports them again (from the
repository root). Not a test module: nothing here is collected."""

from __future__ import annotations

import numpy as np

from properties.subjects import score_function, torch_model


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softmax_residuals(theta, X, y):
    n, d = X.shape
    Z = X @ theta.reshape(-1, d).T
    Z = Z - Z.max(axis=1, keepdims=True)
    P = np.exp(Z)
    P /= P.sum(axis=1, keepdims=True)
    R = -P
    R[np.arange(n), y] += 1.0
    return R


@score_function(model="logistic")
def logistic_score(theta, X, y):
    """Correct: g_i = (y_i − σ(θᵀx_i)) x_i."""
    return (y - _sigmoid(X @ theta))[:, None] * X


@score_function(model="logistic")
def logistic_loss_gradient(theta, X, y):
    """Correct too: the gradient of the per-sample loss −log p, i.e. −g_i (same FIM)."""
    return (_sigmoid(X @ theta) - y)[:, None] * X


@score_function(model="logistic")
def logistic_score_missing_sigmoid(theta, X, y):
    """WRONG: the linear-Gaussian residual y − θᵀx where y − σ(θᵀx) was meant."""
    return (y - X @ theta)[:, None] * X


@score_function(model="logistic")
def logistic_score_batch_mean(theta, X, y):
    """WRONG: the batch-mean gradient repeated in every row (F becomes ḡḡᵀ, rank one)."""
    G = (y - _sigmoid(X @ theta))[:, None] * X
    return np.repeat(G.mean(axis=0, keepdims=True), X.shape[0], axis=0)


@score_function(model="softmax")
def softmax_score(theta, X, y):
    """Correct: g_i = (e_{y_i} − softmax(W x_i)) ⊗ x_i, θ = W.reshape(-1)."""
    n = X.shape[0]
    return (_softmax_residuals(theta, X, y)[:, :, None] * X[:, None, :]).reshape(n, -1)


@score_function(model="softmax")
def softmax_score_transposed(theta, X, y):
    """WRONG: x ⊗ r instead of r ⊗ x — the parameters in the wrong order. Every eigenvalue of F
    survives (a permutation), so W[score] cannot see it; EF does."""
    n = X.shape[0]
    return (X[:, :, None] * _softmax_residuals(theta, X, y)[:, None, :]).reshape(n, -1)


@score_function(model="logistic")
def logistic_score_float32(theta, X, y):
    """Bad answer: float32."""
    return logistic_score(theta, X, y).astype(np.float32)


@score_function(model="logistic")
def logistic_score_nan(theta, X, y):
    """Bad answer: NaN."""
    return logistic_score(theta, X, y) * np.nan


@score_function(model="logistic")
def logistic_score_wrong_shape(theta, X, y):
    """Bad answer: (P, n)."""
    return logistic_score(theta, X, y).T.copy()


@score_function(model="logistic")
def logistic_score_two_arguments(theta, X):
    """Bad signature."""
    return X


def undeclared_score(theta, X, y):
    """A correct logistic score without the declaration (kind and model must then be given)."""
    return logistic_score(theta, X, y)


@torch_model
def small_mlp():
    """A 3 → 5 → 3 MLP (tanh); θ defaults to its last layer (18 entries)."""
    import torch

    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


@torch_model(input_dim=4, params=("fc.weight",))
def declared_model():
    """A model that declares its input dimension and θ."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.sin(x))

    return Net()


@torch_model
def not_a_model():
    """Bad answer: a factory that returns a function."""
    return lambda x: x


@torch_model
def one_logit_model():
    """Bad answer: logits of shape (m, 1)."""
    import torch

    return torch.nn.Linear(3, 1)
