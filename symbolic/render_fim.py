"""Render ``fimtheory/_generated/fim_expansion.py`` from the derivations in fim.py."""

from __future__ import annotations

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from symbolic import fim


def _code(expr: sp.Expr) -> str:
    text = NumPyPrinter({"fully_qualified_modules": True}).doprint(expr)
    return text.replace("numpy.", "np.")


def _text(expr: sp.Expr) -> str:
    return sp.sstr(expr)


_ONE_CLASS = {
    fim.p_i[fim.cls]: sp.Symbol("P"),
    fim.u_i[fim.cls]: sp.Symbol("U"),
    fim.s_i[fim.cls]: sp.Symbol("S"),
}
_TWO_CLASSES = {
    fim.p_i[fim.cls]: sp.Symbol("P_k"),
    fim.p_i[fim.cls2]: sp.Symbol("P_l"),
    fim.s_i[fim.cls]: sp.Symbol("S_k"),
    fim.s_i[fim.cls2]: sp.Symbol("S_l"),
    sp.KroneckerDelta(fim.cls, fim.cls2): sp.Symbol("identity"),
}


def _per_class(expr: sp.Expr) -> str:
    return _code(expr.xreplace(_ONE_CLASS))


def _class_pair(expr: sp.Expr) -> str:
    return _code(expr.xreplace(_TWO_CLASSES))


def _return_rows(name: str, factor: sp.Expr, comment: str) -> list[str]:
    if factor == 0:
        return [f"return np.zeros_like(X)  # derived: {comment} = 0 identically for this model"]
    return [f"{name} = {_code(factor)}  # {comment}", f"return {name}[:, None] * X"]


def _indent(lines: list[str]) -> str:
    return "\n".join("    " + line for line in lines)


def render_scalar(model: str) -> str:
    link = fim.scalar_link(model)
    return SCALAR_TEMPLATE.format(
        model=model,
        mean=_code(link.mean),
        residual=_code(link.residual),
        residual_text=_text(link.residual),
        mean_text=_text(fim.SCALAR_MEANS[model]),
        dr_text=_text(link.dr),
        d2r_text=_text(link.d2r),
        jvp_lines=_indent(_return_rows("dr_u", link.jvp_factor, "Dr[u] = r'(z) u")),
        second_lines=_indent(_return_rows("d2r_uu", link.second_factor, "D²r[u,u] = r''(z) u²")),
        expected_second_lines=_indent(
            _return_rows("expected_d2r", link.expected_second_factor, "E[D²r[u,u]] = r''(z) s")
        ),
        expected_outer=_code(link.expected_outer_factor),
        expected_outer_text=_text(link.expected_outer_factor),
    )


def render_softmax() -> str:
    link = fim.softmax_link()
    return SOFTMAX_TEMPLATE.format(
        jvp=_per_class(link.jvp_factor),
        second=_per_class(link.second_factor),
        expected_second=_per_class(link.expected_second_factor),
        expected_outer=_class_pair(link.expected_outer_factor),
        dp_text=_text(link.dp),
        d2p_text=_text(link.d2p),
        expected_second_text=_text(link.expected_second_factor),
        expected_outer_text=_text(link.expected_outer_factor),
    )


def render() -> str:
    """Source text of the generated FIM-expansion module (without the header)."""
    parts = [PREAMBLE, render_scalar("linear"), render_scalar("logistic"), render_softmax()]
    return "\n\n\n".join(part.strip("\n") for part in parts) + "\n"


def derivation_objects() -> list:
    return fim.derivation_objects()


PREAMBLE = '''"""Second-order expansion of the empirical FIM in the parameters (docs/theory.md §3(d)).

Models (θ ∈ R^P, X of shape (n, d), per-sample score g_i, z = Wx, g = vec(r(z) xᵀ)):

* linear   — y ∈ R, unit-noise Gaussian: r = y − z, P = d;
* logistic — y ∈ {{0, 1}}, p = σ(z): r = y − p, P = d;
* softmax  — y ∈ {{0..K−1}}, θ = W.reshape(-1) with W of shape (K, d) (row-major),
  p = softmax(Wx): r = onehot(y) − p, P = K·d; K is inferred as theta.size // d.

For a step δ (shaped like θ; Δ = δ reshaped like W) let u = Δx. Then
h_i = Dg_i[δ] = vec(Dr[u] xᵀ) and t_i = D²g_i[δ, δ] = vec(D²r[u, u] xᵀ). For zero-mean δ
with diagonal covariance diag(variances), s_k = Σ_j variances[k, j] x_j² is the variance
of u_k, E[t_i] = vec(E[D²r] xᵀ), and E[h_i h_iᵀ] = J_i Σ J_iᵀ = E[Dr Drᵀ] ⊗ x_i x_iᵀ, so

    E[½D²F[δ, δ]] = (1/n) Σ_i (E[h_i h_iᵀ] + ½(g_i E[t_i]ᵀ + E[t_i] g_iᵀ)).
"""

import numpy as np

from fimtheory.errors import InputError


def _as_data(X, y, theta, model):
    X = np.asarray(X, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64).reshape(-1)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"X must be a non-empty (n, d) array, got shape {{X.shape}}")
    n, d = X.shape
    if y.shape != (n,):
        raise InputError(f"y must have shape ({{n}},), got {{y.shape}}")
    if model == "softmax":
        if theta.size == 0 or theta.size % d != 0:
            raise InputError(f"theta.size = {{theta.size}} is not a multiple of d = {{d}}")
    elif theta.size != d:
        raise InputError(f"theta must have {{d}} entries for the {{model}} model, got {{theta.size}}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(theta))):
        raise InputError("X and theta must be finite")
    if model == "softmax":
        classes = theta.size // d
        if not np.all((y == np.round(y)) & (y >= 0) & (y < classes)):
            raise InputError(f"softmax labels must be integers in 0..{{classes - 1}}")
        y = y.astype(np.int64)
    else:
        y = y.astype(np.float64)
        if not np.all(np.isfinite(y)):
            raise InputError("y must be finite")
        if model == "logistic" and not np.all((y == 0) | (y == 1)):
            raise InputError("logistic labels must be 0 or 1")
    return X, y, theta


def _as_step(delta, theta, name="delta"):
    delta = np.asarray(delta, dtype=np.float64).reshape(-1)
    if delta.shape != theta.shape:
        raise InputError(f"{{name}} must have {{theta.size}} entries, got {{delta.size}}")
    if not np.all(np.isfinite(delta)):
        raise InputError(f"{{name}} must be finite")
    return delta


def _as_variances(variances, theta):
    variances = _as_step(variances, theta, "variances")
    if np.any(variances < 0):
        raise InputError("variances must be non-negative")
    return variances


def fim_from_scores(G):
    """Empirical FIM F = GᵀG / n from the (n, P) per-sample scores."""
    G = np.asarray(G, dtype=np.float64)
    return G.T @ G / G.shape[0]


def fim_first_variation(G, H):
    """DF[δ] = (1/n) Σ_i (g_i h_iᵀ + h_i g_iᵀ) from scores G and JVPs H, both (n, P)."""
    cross = np.asarray(G, dtype=np.float64).T @ np.asarray(H, dtype=np.float64) / len(G)
    return cross + cross.T


def fim_half_second_variation(G, H, T):
    """½D²F[δ, δ] = (1/n) Σ_i (h_i h_iᵀ + ½(g_i t_iᵀ + t_i g_iᵀ)); G, H, T of shape (n, P)."""
    G, H, T = (np.asarray(a, dtype=np.float64) for a in (G, H, T))
    cross = G.T @ T / len(G)
    return H.T @ H / len(G) + 0.5 * (cross + cross.T)
'''

SCALAR_TEMPLATE = '''
# ---- {model}: μ(z) = {mean_text}, r = {residual_text}, r'(z) = {dr_text}, r''(z) = {d2r_text}


def scores_{model}(X, y, theta):
    """Per-sample scores g_i = r(z_i) x_i with z = Xθ; shape (n, d)."""
    X, y, theta = _as_data(X, y, theta, "{model}")
    z = X @ theta
    p = {mean}
    residual = {residual}
    return residual[:, None] * X


def score_jvp_{model}(X, y, theta, delta):
    """h_i = Dg_i[δ] = r'(z_i)(x_iᵀδ) x_i; shape (n, d)."""
    X, y, theta = _as_data(X, y, theta, "{model}")
    delta = _as_step(delta, theta)
    z = X @ theta
    p = {mean}
    u = X @ delta
{jvp_lines}


def score_second_{model}(X, y, theta, delta):
    """t_i = D²g_i[δ, δ] = r''(z_i)(x_iᵀδ)² x_i; shape (n, d)."""
    X, y, theta = _as_data(X, y, theta, "{model}")
    delta = _as_step(delta, theta)
    z = X @ theta
    p = {mean}
    u = X @ delta
{second_lines}


def expected_score_second_{model}(X, y, theta, variances):
    """E[t_i] = r''(z_i)(x_iᵀ Σ x_i) x_i for zero-mean δ with Σ = diag(variances); (n, d)."""
    X, y, theta = _as_data(X, y, theta, "{model}")
    variances = _as_variances(variances, theta)
    z = X @ theta
    p = {mean}
    s = (X * X) @ variances  # s_i = x_iᵀ Σ x_i = E[u_i²]
{expected_second_lines}


def expected_fim_second_order_{model}(X, y, theta, variances):
    """E[½D²F[δ, δ]] for zero-mean δ with covariance diag(variances); shape (d, d)."""
    X, y, theta = _as_data(X, y, theta, "{model}")
    variances = _as_variances(variances, theta)
    n = X.shape[0]
    z = X @ theta
    p = {mean}
    s = (X * X) @ variances  # s_i = x_iᵀ Σ x_i = E[u_i²]
    expected_dr_sq = {expected_outer} + np.zeros_like(z)  # E[(Dr[u])²] = {expected_outer_text}
    expected_hh = (X * expected_dr_sq[:, None]).T @ X / n  # (1/n) Σ_i J_i Σ J_iᵀ
    G = scores_{model}(X, y, theta)
    expected_T = expected_score_second_{model}(X, y, theta, variances)
    cross = G.T @ expected_T / n
    return expected_hh + 0.5 * (cross + cross.T)
'''

SOFTMAX_TEMPLATE = '''
# ---- softmax: Dp_k[u] = {dp_text}
#               D²p_k[u,u] = {d2p_text}
#      with mean_u = Σ_a p_a u_a, mean_u_sq = Σ_a p_a u_a², and r = onehot(y) − p.


def _softmax_parts(X, y, theta):
    X, y, theta = _as_data(X, y, theta, "softmax")
    n, d = X.shape
    K = theta.size // d
    W = theta.reshape(K, d)
    logits = X @ W.T
    logits = logits - logits.max(axis=1, keepdims=True)
    P = np.exp(logits)
    P = P / P.sum(axis=1, keepdims=True)
    return X, y, theta, K, P


def _outer_with_inputs(per_class, X):
    """Rows vec(c_i x_iᵀ) (row-major over (K, d)) from per-class factors c of shape (n, K)."""
    n, d = X.shape
    return (per_class[:, :, None] * X[:, None, :]).reshape(n, -1)


def scores_softmax(X, y, theta):
    """Per-sample scores g_i = vec((onehot(y_i) − p_i) x_iᵀ); shape (n, K·d)."""
    X, y, theta, K, P = _softmax_parts(X, y, theta)
    residual = np.eye(K)[y] - P
    return _outer_with_inputs(residual, X)


def score_jvp_softmax(X, y, theta, delta):
    """h_i = Dg_i[δ] = vec(Dr[u_i] x_iᵀ) with u_i = Δ x_i; shape (n, K·d)."""
    X, y, theta, K, P = _softmax_parts(X, y, theta)
    delta = _as_step(delta, theta)
    U = X @ delta.reshape(K, -1).T
    mean_u = np.sum(P * U, axis=1, keepdims=True)
    dr_u = {jvp}
    return _outer_with_inputs(dr_u, X)


def score_second_softmax(X, y, theta, delta):
    """t_i = D²g_i[δ, δ] = vec(D²r[u_i, u_i] x_iᵀ) with u_i = Δ x_i; shape (n, K·d)."""
    X, y, theta, K, P = _softmax_parts(X, y, theta)
    delta = _as_step(delta, theta)
    U = X @ delta.reshape(K, -1).T
    mean_u = np.sum(P * U, axis=1, keepdims=True)
    mean_u_sq = np.sum(P * U * U, axis=1, keepdims=True)
    d2r_uu = {second}
    return _outer_with_inputs(d2r_uu, X)


def _class_variances(X, variances, K):
    """S[i, k] = Σ_j variances[k, j] X[i, j]², the variance of u_ik."""
    return (X * X) @ variances.reshape(K, -1).T


def expected_score_second_softmax(X, y, theta, variances):
    """E[t_i] for zero-mean δ with covariance diag(variances); shape (n, K·d).

    E[D²r_k] = {expected_second_text}
    with mean_s = Σ_a p_a s_a and sum_p_sq_s = Σ_a p_a² s_a.
    """
    X, y, theta, K, P = _softmax_parts(X, y, theta)
    variances = _as_variances(variances, theta)
    S = _class_variances(X, variances, K)
    mean_s = np.sum(P * S, axis=1, keepdims=True)
    sum_p_sq_s = np.sum(P * P * S, axis=1, keepdims=True)
    expected_d2r = {expected_second}
    return _outer_with_inputs(expected_d2r, X)


def expected_fim_second_order_softmax(X, y, theta, variances):
    """E[½D²F[δ, δ]] for zero-mean δ with covariance diag(variances); shape (K·d, K·d).

    E[Dr_k Dr_l] = {expected_outer_text}
    """
    X, y, theta, K, P = _softmax_parts(X, y, theta)
    variances = _as_variances(variances, theta)
    n, d = X.shape
    S = _class_variances(X, variances, K)
    sum_p_sq_s = np.sum(P * P * S, axis=1)[:, None, None]
    P_k, P_l = P[:, :, None], P[:, None, :]
    S_k, S_l = S[:, :, None], S[:, None, :]
    identity = np.eye(K)[None, :, :]
    expected_dr_outer = {expected_outer}  # (n, K, K)
    expected_hh = np.einsum("ikl,ia,ib->kalb", expected_dr_outer, X, X).reshape(K * d, K * d) / n
    G = scores_softmax(X, y, theta)
    expected_T = expected_score_second_softmax(X, y, theta, variances)
    cross = G.T @ expected_T / n
    return expected_hh + 0.5 * (cross + cross.T)
'''
