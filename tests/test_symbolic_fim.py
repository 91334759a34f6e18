"""The link-form derivation in symbolic/fim.py against brute-force sympy calculus."""

from __future__ import annotations

import itertools

import pytest

sp = pytest.importorskip("sympy", reason="the symbolic derivations need sympy (the [symbolic] extra)")

from symbolic import fim  # noqa: E402


def test_linear_gaussian_score_has_zero_second_derivative_for_every_dimension():
    assert fim.scalar_score_hessian("linear") == 0
    assert fim.linear_score_second_derivative_is_zero()
    link = fim.scalar_link("linear")
    assert link.second_factor == 0 and link.expected_second_factor == 0


def test_logistic_link_derivatives():
    link = fim.scalar_link("logistic")
    p = fim.p
    assert sp.expand(link.dr + p * (1 - p)) == 0
    assert sp.expand(link.d2r + p * (1 - p) * (1 - 2 * p)) == 0
    assert sp.expand(link.expected_second_factor - link.d2r * fim.s) == 0
    assert sp.expand(link.expected_outer_factor - link.dr**2 * fim.s) == 0


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_scalar_link_form_equals_full_jacobian_and_hessian_for_d_3(model):
    d = 3
    x = sp.symbols("x0:3", real=True)
    th = sp.symbols("th0:3", real=True)
    delta = sp.symbols("de0:3", real=True)
    z = sum(a * b for a, b in zip(x, th))
    g = [(fim.y - fim.SCALAR_MEANS[model].subs(fim.z, z)) * xa for xa in x]
    link = fim.scalar_link(model)
    p_value = fim.SCALAR_MEANS[model].subs(fim.z, z)
    u_value = sum(a * b for a, b in zip(x, delta))
    point = {
        x[0]: sp.Rational(1, 2),
        x[1]: -1,
        x[2]: sp.Rational(3, 4),
        th[0]: sp.Rational(1, 3),
        th[1]: sp.Rational(-1, 5),
        th[2]: 1,
        fim.y: 1,
        delta[0]: sp.Rational(2, 7),
        delta[1]: 1,
        delta[2]: sp.Rational(-1, 2),
    }
    for a in range(d):
        h_a = sum(sp.diff(g[a], th[b]) * delta[b] for b in range(d))
        t_a = sum(sp.diff(g[a], th[b], th[c]) * delta[b] * delta[c] for b in range(d) for c in range(d))
        jvp = link.jvp_factor.subs({fim.u: u_value, fim.p: p_value}) * x[a]
        second = link.second_factor.subs({fim.u: u_value, fim.p: p_value}) * x[a]
        assert sp.N((h_a - jvp).subs(point), 30) == pytest.approx(0, abs=1e-25)
        assert sp.N((t_a - second).subs(point), 30) == pytest.approx(0, abs=1e-25)


def _explicit_softmax_values(K: int):
    z = sp.symbols(f"z0:{K}", real=True)
    u = sp.symbols(f"u0:{K}", real=True)
    step = sp.Symbol("step")
    partition = sum(sp.exp(zk + step * uk) for zk, uk in zip(z, u))
    probs = [sp.exp(zk + step * uk) / partition for zk, uk in zip(z, u)]
    return z, u, step, probs


def _substitute_link(expr, K, z, u, k, l=None, s=None):
    """Evaluate a link expression (indexed p, u, s and class moments) for explicit K."""
    p_vals = [sp.exp(zk) / sum(sp.exp(zz) for zz in z) for zk in z]
    moments = {
        fim.mean_u: sum(p_vals[a] * u[a] for a in range(K)),
        fim.mean_u_sq: sum(p_vals[a] * u[a] ** 2 for a in range(K)),
    }
    if s is not None:
        moments[fim.mean_s] = sum(p_vals[a] * s[a] for a in range(K))
        moments[fim.sum_p_sq_s] = sum(p_vals[a] ** 2 * s[a] for a in range(K))
    expr = expr.xreplace(moments)
    repl = {fim.p_i[fim.cls]: p_vals[k], fim.u_i[fim.cls]: u[k]}
    if s is not None:
        repl[fim.s_i[fim.cls]] = s[k]
    if l is not None:
        repl.update(
            {fim.p_i[fim.cls2]: p_vals[l], fim.s_i[fim.cls2]: s[l], sp.KroneckerDelta(fim.cls, fim.cls2): int(k == l)}
        )
    return expr.xreplace(repl)


def test_softmax_directional_derivatives_match_explicit_k_3():
    K = 3
    z, u, step, probs = _explicit_softmax_values(K)
    link = fim.softmax_link()
    point = {
        z[0]: sp.Rational(1, 2),
        z[1]: -1,
        z[2]: sp.Rational(1, 3),
        u[0]: sp.Rational(2, 3),
        u[1]: -sp.Rational(1, 4),
        u[2]: 1,
    }
    for k in range(K):
        d1 = sp.diff(probs[k], step).subs(step, 0)
        d2 = sp.diff(probs[k], step, 2).subs(step, 0)
        ours1 = _substitute_link(link.dp, K, z, u, k)
        ours2 = _substitute_link(link.d2p, K, z, u, k)
        assert abs(sp.N((d1 - ours1).subs(point), 30)) < 1e-25
        assert abs(sp.N((d2 - ours2).subs(point), 30)) < 1e-25


def test_softmax_expectations_match_explicit_k_3():
    """E over uncorrelated u with E[u_k²] = s_k, computed by brute force for K = 3."""
    K = 3
    z, u, step, probs = _explicit_softmax_values(K)
    s = sp.symbols("s0:3", positive=True)
    link = fim.softmax_link()

    def expect(expr):
        poly = sp.Poly(sp.expand(expr), *u)
        total = 0
        for monomial, coeff in zip(poly.monoms(), poly.coeffs()):
            if sum(monomial) == 2 and max(monomial) == 2:
                total += coeff * s[monomial.index(2)]
            elif sum(monomial) == 0:
                total += coeff
        return total

    point = {
        z[0]: sp.Rational(1, 2),
        z[1]: -1,
        z[2]: sp.Rational(1, 3),
        s[0]: sp.Rational(1, 5),
        s[1]: 2,
        s[2]: sp.Rational(3, 7),
    }
    dr = [-sp.diff(pk, step).subs(step, 0) for pk in probs]
    d2r = [-sp.diff(pk, step, 2).subs(step, 0) for pk in probs]
    for k in range(K):
        ours = _substitute_link(link.expected_second_factor, K, z, u, k, s=s)
        assert abs(sp.N((expect(d2r[k]) - ours).subs(point), 30)) < 1e-25
    for k, l in itertools.product(range(K), repeat=2):
        ours = _substitute_link(link.expected_outer_factor, K, z, u, k, l=l, s=s)
        assert abs(sp.N((expect(dr[k] * dr[l]) - ours).subs(point), 30)) < 1e-25


def test_class_variance_is_diagonal_in_classes():
    expected = sp.KroneckerDelta(fim.cls, fim.cls2) * fim.V_i[fim.cls, sp.Symbol("j2", integer=True)]
    result = fim.class_variance()
    assert isinstance(result, sp.Sum)
    assert sp.simplify(result.function - expected * fim.x_i[result.limits[0][0]] ** 2) == 0
