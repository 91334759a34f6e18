"""Second-order expansion of the empirical FIM in the parameters (docs/theory.md §3(d)).

All three models share a *link form*. With x ∈ R^d, W ∈ R^{K×d} (θ = W.reshape(-1),
row-major; K = 1 and W = θᵀ for the scalar models) and z = W x ∈ R^K, the score is

    g = vec(r(z) xᵀ),   r(z) = y − μ(z)   (y one-hot for softmax),

with μ the mean function: z (linear-Gaussian, unit noise), σ(z) (logistic), softmax(z).
A parameter step δ = vec(Δ) moves z by u = Δ x, so by the chain rule

    h = Dg[δ] = vec(Dr[u] xᵀ),        t = D²g[δ, δ] = vec(D²r[u, u] xᵀ).

For δ with zero mean and diagonal covariance diag(V) (V shaped like W) the u_k are
uncorrelated with E[u_k u_l] = δ_kl s_k, s_k = Σ_j V_kj x_j² (derived below), so

    E[t] = vec(E[D²r[u,u]] xᵀ),       E[h hᵀ] = J Σ Jᵀ = E[Dr Drᵀ] ⊗ x xᵀ.

This module derives, per model and with sympy: Dr, D²r and their expectations in terms
of the probabilities p = μ(z); for softmax with a *symbolic* number of classes K (sums
over classes are kept as sympy Sums), for the scalar models with a symbolic scalar z.
It also proves, for a symbolic dimension d, that the link form is the true derivative
of the score and that D²g = 0 for the linear-Gaussian model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

MODELS = ("linear", "logistic", "softmax")

# ---- scalar-link models ------------------------------------------------------------------

z = sp.Symbol("z", real=True)
y = sp.Symbol("y", real=True)
p = sp.Symbol("p", positive=True)  # μ(z) written as a symbol once derivatives are taken
u = sp.Symbol("u", real=True)  # u = xᵀδ
s = sp.Symbol("s", nonnegative=True)  # s = E[u²] = xᵀ Σ x

SCALAR_MEANS = {
    "linear": z,
    "logistic": 1 / (1 + sp.exp(-z)),
}
#: overflow-free form of the mean used in code; checked equal to SCALAR_MEANS
SCALAR_MEANS_STABLE = {
    "linear": z,
    "logistic": (1 + sp.tanh(z / 2)) / 2,
}


@dataclass(frozen=True)
class ScalarLink:
    """Derived quantities of a scalar-link model, as functions of p = μ(z) (and u, s)."""

    model: str
    mean: sp.Expr  # μ(z), overflow-free form
    residual: sp.Expr  # r = y − p
    dr: sp.Expr  # r'(z) in terms of p
    d2r: sp.Expr  # r''(z) in terms of p
    jvp_factor: sp.Expr  # Dr[u] = r'(z) u
    second_factor: sp.Expr  # D²r[u, u] = r''(z) u²
    expected_second_factor: sp.Expr  # E[D²r[u,u]]
    expected_outer_factor: sp.Expr  # E[(Dr[u])²]


def _in_terms_of_p(expr: sp.Expr, mean: sp.Expr) -> sp.Expr:
    """Rewrite a function of z as a function of p = μ(z) (μ = identity or σ)."""
    if mean == z:
        return sp.simplify(expr.subs(z, p))
    # logistic: exp(−z) = (1 − p)/p
    rewritten = sp.simplify(expr.rewrite(sp.exp).subs(sp.exp(-z), (1 - p) / p))
    rewritten = sp.factor(sp.simplify(rewritten.subs(sp.exp(z), p / (1 - p))))
    if rewritten.has(z):
        raise ArithmeticError(f"could not write {expr} in terms of p")
    return rewritten


def _expect_scalar(expr: sp.Expr) -> sp.Expr:
    """E over u with E[u] = 0, E[u²] = s (polynomial of degree ≤ 2 in u)."""
    poly = sp.Poly(sp.expand(expr), u)
    if poly.degree() > 2:
        raise ValueError("only second moments are known")
    moments = {0: sp.Integer(1), 1: sp.Integer(0), 2: s}
    return sp.factor(sum(c * moments[m[0]] for m, c in zip(poly.monoms(), poly.coeffs())))


@cache
def scalar_link(model: str) -> ScalarLink:
    """Derive the scalar-link quantities of ``model`` ('linear' or 'logistic')."""
    mean = SCALAR_MEANS[model]
    stable = SCALAR_MEANS_STABLE[model]
    if sp.simplify((mean - stable).rewrite(sp.exp)) != 0:
        raise ArithmeticError(f"stable mean of {model} differs from the mean")
    residual_z = y - mean
    # directional derivatives of r(z + s·u) in s at 0
    step = sp.Symbol("step")
    along = residual_z.subs(z, z + step * u)
    jvp_z = sp.diff(along, step).subs(step, 0)
    second_z = sp.diff(along, step, 2).subs(step, 0)
    dr = _in_terms_of_p(sp.diff(residual_z, z), mean)
    d2r = _in_terms_of_p(sp.diff(residual_z, z, 2), mean)
    jvp = sp.factor(_in_terms_of_p(jvp_z, mean))
    second = sp.factor(_in_terms_of_p(second_z, mean))
    return ScalarLink(
        model=model,
        mean=stable,
        residual=y - p,
        dr=dr,
        d2r=d2r,
        jvp_factor=jvp,
        second_factor=second,
        expected_second_factor=_expect_scalar(second),
        expected_outer_factor=_expect_scalar(jvp**2),
    )


# ---- softmax with a symbolic number of classes ---------------------------------------------

K = sp.Symbol("K", integer=True, positive=True)
cls = sp.Idx("k", K)  # the class index of the output
cls2 = sp.Idx("l", K)  # a second free class index (for E[Dr Drᵀ])
dummy = sp.Symbol("a", integer=True)  # summation index over classes
z_i = sp.IndexedBase("z", real=True)
u_i = sp.IndexedBase("u", real=True)
p_i = sp.IndexedBase("p", positive=True)
s_i = sp.IndexedBase("s", nonnegative=True)

#: class moments under p, named as in the generated code
mean_u = sp.Symbol("mean_u")  # Σ_a p_a u_a
mean_u_sq = sp.Symbol("mean_u_sq")  # Σ_a p_a u_a²
mean_s = sp.Symbol("mean_s")  # Σ_a p_a s_a
sum_p_sq_s = sp.Symbol("sum_p_sq_s")  # Σ_a p_a² s_a


@dataclass(frozen=True)
class SoftmaxLink:
    """Derived quantities of the softmax model in terms of p_k, u_k, s_k and class moments."""

    dp: sp.Expr  # Dp_k[u]
    d2p: sp.Expr  # D²p_k[u, u]
    jvp_factor: sp.Expr  # Dr_k[u] = −Dp_k[u]
    second_factor: sp.Expr  # D²r_k[u, u]
    expected_second_factor: sp.Expr  # E[D²r_k]
    expected_outer_factor: sp.Expr  # E[Dr_k Dr_l]  (free indices k, l)


def _moments_of_exponentials(expr: sp.Expr, partition: sp.Symbol) -> sp.Expr:
    """Replace Σ_a exp(z_a) u_a^m by partition·Σ_a p_a u_a^m and exp(z_k) by partition·p_k."""

    def replace_sum(sum_expr: sp.Sum) -> sp.Expr:
        index = sum_expr.limits[0][0]
        body = sum_expr.function.subs(sp.exp(z_i[index]), 1)
        power = sp.degree(body, u_i[index]) if body.has(u_i[index]) else 0
        if sp.simplify(body - u_i[index] ** power) != 0:
            raise ArithmeticError(f"unexpected class sum {sum_expr}")
        moment = {0: sp.Integer(1), 1: mean_u, 2: mean_u_sq}[power]
        return partition * moment

    expr = expr.replace(lambda e: isinstance(e, sp.Sum), replace_sum)
    return expr.subs(sp.exp(z_i[cls]), partition * p_i[cls])


def _linear_forms() -> dict:
    """The quantities linear in u, as coefficient vectors c_a in  Σ_a c_a u_a."""
    return {
        u_i[cls]: sp.KroneckerDelta(dummy, cls),
        u_i[cls2]: sp.KroneckerDelta(dummy, cls2),
        mean_u: p_i[dummy],
    }


def _covariance(c1: sp.Expr, c2: sp.Expr) -> sp.Expr:
    """E[(Σ c1_a u_a)(Σ c2_a u_a)] = Σ_a c1_a c2_a s_a  (uncorrelated u, E[u_a²] = s_a)."""
    total = sp.Sum(c1 * c2 * s_i[dummy], (dummy, 0, K - 1)).doit()
    if isinstance(total, sp.Piecewise):
        # the only condition sympy adds is that the free class index lies in 0..K−1
        value, condition = total.args[0]
        if not all(str(a).startswith("K >= ") for a in sp.Or.make_args(condition)):
            raise ArithmeticError(f"unexpected condition {condition}")
        total = value
    return total.subs(sp.Sum(p_i[dummy] ** 2 * s_i[dummy], (dummy, 0, K - 1)), sum_p_sq_s)


def _expect_softmax(expr: sp.Expr) -> sp.Expr:
    """E over u of a polynomial of degree ≤ 2 in u_k, u_l, mean_u and linear in mean_u_sq."""
    forms = _linear_forms()
    generators = [*forms, mean_u_sq]
    poly = sp.Poly(sp.expand(expr), *generators)
    names = list(forms)
    total = sp.Integer(0)
    for monomial, coeff in zip(poly.monoms(), poly.coeffs()):
        degree_linear = sum(monomial[:3])
        if monomial[3] == 1 and degree_linear == 0:
            total += coeff * mean_s  # E[Σ p_a u_a²] = Σ p_a s_a
        elif monomial[3] == 0 and degree_linear == 0:
            total += coeff
        elif monomial[3] == 0 and degree_linear == 2:
            factors = [names[i] for i, power in enumerate(monomial[:3]) for _ in range(power)]
            total += coeff * _covariance(forms[factors[0]], forms[factors[1]])
        elif monomial[3] == 0 and degree_linear == 1:
            continue  # zero mean
        else:
            raise ValueError(f"moment of degree > 2 in {expr}")
    total = total.subs(sp.Sum(p_i[dummy] * s_i[dummy], (dummy, 0, K - 1)), mean_s)
    return sp.factor(sp.expand(total))


@cache
def softmax_link() -> SoftmaxLink:
    """Derive Dp, D²p and the expectations for softmax with symbolic K."""
    step = sp.Symbol("step")
    partition = sp.Symbol("partition", positive=True)
    moved = lambda index: sp.exp(z_i[index] + step * u_i[index])  # noqa: E731
    p_moved = moved(cls) / sp.Sum(moved(dummy), (dummy, 0, K - 1))
    derivatives = []
    for order in (1, 2):
        raw = sp.diff(p_moved, step, order).subs(step, 0)
        in_p = _moments_of_exponentials(raw, partition)
        derivatives.append(sp.factor(sp.cancel(in_p)))
    dp, d2p = derivatives
    jvp = -dp  # r = onehot(y) − p does not depend on z through y
    second = -d2p
    outer = jvp * jvp.subs({u_i[cls]: u_i[cls2], p_i[cls]: p_i[cls2]})
    return SoftmaxLink(
        dp=dp,
        d2p=d2p,
        jvp_factor=jvp,
        second_factor=second,
        expected_second_factor=_expect_softmax(second),
        expected_outer_factor=_expect_softmax(outer),
    )


# ---- proofs for a symbolic dimension d -----------------------------------------------------

d_sym = sp.Symbol("d", integer=True, positive=True)
x_i = sp.IndexedBase("x", real=True)
theta_i = sp.IndexedBase("theta", real=True)
V_i = sp.IndexedBase("V", nonnegative=True)


def _score_component(model: str, component: sp.Idx) -> sp.Expr:
    j = sp.Symbol("j", integer=True)
    logit = sp.Sum(x_i[j] * theta_i[j], (j, 0, d_sym - 1))
    return (y - SCALAR_MEANS[model].subs(z, logit)) * x_i[component]


def scalar_score_hessian(model: str) -> sp.Expr:
    """∂²g_a/∂θ_b∂θ_c for the scalar-link model, symbolic d (a, b, c free indices)."""
    a, b, c = sp.Idx("a", d_sym), sp.Idx("b", d_sym), sp.Idx("c", d_sym)
    g = _score_component(model, a)
    hess = sp.diff(g, theta_i[b], theta_i[c])
    return sp.simplify(hess.doit())


def linear_score_second_derivative_is_zero() -> bool:
    """Proof (symbolic d) that D²g = 0 for the linear-Gaussian model, so t_i = 0."""
    return scalar_score_hessian("linear") == 0 and scalar_link("linear").d2r == 0


def class_variance() -> sp.Expr:
    """E[u_k u_l] for u = Δx with E[Δ_kj Δ_lj'] = δ_kl δ_jj' V_kj: symbolic d and K."""
    j, j2 = sp.symbols("j j2", integer=True)
    k, l = cls, cls2
    covariance = sp.Sum(
        x_i[j] * x_i[j2] * sp.KroneckerDelta(k, l) * sp.KroneckerDelta(j, j2) * V_i[k, j],
        (j, 0, d_sym - 1),
        (j2, 0, d_sym - 1),
    )
    result = covariance.doit()
    # sympy guards the delta-summed index with "j2 <= d − 1", true on the summation range
    result = result.replace(
        lambda e: isinstance(e, sp.Piecewise) and e.args[0][1] == (j2 <= d_sym - 1),
        lambda e: e.args[0][0],
    )
    return result


def derivation_objects() -> list:
    """Everything the generated module depends on."""
    objs = []
    for model in ("linear", "logistic"):
        link = scalar_link(model)
        objs += [
            link.mean,
            link.residual,
            link.dr,
            link.d2r,
            link.jvp_factor,
            link.second_factor,
            link.expected_second_factor,
            link.expected_outer_factor,
        ]
    sm = softmax_link()
    objs += [sm.dp, sm.d2p, sm.expected_second_factor, sm.expected_outer_factor]
    return objs
