"""The Rayleigh–Schrödinger derivation in symbolic/series.py and symbolic/remainders.py."""

from __future__ import annotations

import numpy as np
import pytest

sp = pytest.importorskip("sympy", reason="the symbolic derivations need sympy (the [symbolic] extra)")

from symbolic import remainders, series  # noqa: E402


def _brackets(*words):
    return [series.Bracket(w).symbol for w in words]


def test_rs_recursion_gives_the_known_first_three_coefficients():
    a1, a2, a3, a4 = series.series_coefficients_bracket_form(4)
    e_R_e, e_RR_e, e_RBR_e = _brackets("R", "RR", "RBR")
    assert a1 == series.M11
    assert a2 == e_R_e
    assert sp.expand(a3 - (e_RBR_e - series.M11 * e_RR_e)) == 0


def test_a4_in_block_form():
    a4 = series.series_coefficients_bracket_form(4)[3]
    e_R_e, e_RR_e, e_RRR_e, e_RBRR_e, e_RBRBR_e = _brackets("R", "RR", "RRR", "RBRR", "RBRBR")
    M11 = series.M11
    expected = e_RBRBR_e - 2 * M11 * e_RBRR_e + M11**2 * e_RRR_e - e_R_e * e_RR_e
    assert sp.expand(a4 - expected) == 0


def test_brackets_are_canonical_under_reversal():
    assert series.Bracket.canonical("RRBR") == series.Bracket.canonical("RBRR")


def test_index_form_of_a2_and_a3_is_the_textbook_sum():
    lam, M, n = series.lam_base, series.M_base, series.n_sym
    j, k = sp.symbols("j k", integer=True)
    a2 = series.index_form(series.series_coefficients_bracket_form(2)[1])
    assert a2 == sp.Sum(M[0, j] ** 2 / (lam[0] - lam[j]), (j, 1, n - 1))
    a3 = series.index_form(series.series_coefficients_bracket_form(3)[2])
    expected = sp.Sum(
        M[0, j] * M[j, k] * M[0, k] / ((lam[0] - lam[j]) * (lam[0] - lam[k])),
        (j, 1, n - 1),
        (k, 1, n - 1),
    ) - M[0, 0] * sp.Sum(M[0, j] ** 2 / (lam[0] - lam[j]) ** 2, (j, 1, n - 1))
    assert sp.expand(a3 - expected) == 0


def test_n2_closed_form_eigenvalue_series_matches_derivation_to_order_4():
    closed, derived = series.closed_form_series_n2(4)
    for k, (c, d) in enumerate(zip(closed, derived), start=1):
        assert sp.simplify(c - d) == 0, f"a{k}: closed form {c} != derived {d}"


def test_n3_charpoly_root_matches_derivation_fully_symbolic_to_order_3():
    from_charpoly, derived, _ = series.charpoly_root_series(3, 3)
    for k, (c, d) in enumerate(zip(from_charpoly, derived), start=1):
        assert sp.cancel(sp.together(c - d)) == 0, f"a{k} differs"


def test_n3_charpoly_root_matches_derivation_at_order_4_symbolic_eigenvalues():
    lam, M = series._symbolic_instance(3)
    values = {s: sp.Rational(i + 2, 7) * (-1) ** i for i, s in enumerate(sorted(M.free_symbols, key=str))}
    from_charpoly, derived, _ = series.charpoly_root_series(3, 4, values)
    for k, (c, d) in enumerate(zip(from_charpoly, derived), start=1):
        assert sp.cancel(sp.together(c - d)) == 0, f"a{k} differs"


def test_n4_exact_rational_instance_order_4():
    lam = [sp.Integer(5), sp.Integer(3), sp.Rational(1, 2), sp.Integer(-2)]
    rng = np.random.default_rng(4)
    raw = rng.integers(-5, 6, size=(4, 4))
    M = sp.Matrix(4, 4, lambda i, j: sp.Rational(int(raw[min(i, j), max(i, j)]), 3))
    t, c = sp.Symbol("t"), sp.symbols("c1:5")
    lam_t = lam[0] + sum(ck * t ** (k + 1) for k, ck in enumerate(c))
    poly = sp.expand((sp.diag(*lam) + t * M - lam_t * sp.eye(4)).det(method="berkowitz"))
    solved = {}
    for k, ck in enumerate(c, start=1):
        solved[ck] = sp.solve(sp.expand(poly.coeff(t, k)).xreplace(solved), ck)[0]
    for k, a in enumerate(series.series_coefficients_bracket_form(4), start=1):
        assert series.evaluate_explicit(a, lam, M) == solved[c[k - 1]]


def test_cauchy_coefficient_bound_and_geometric_tails():
    eta, gap, k = remainders.eta, remainders.gap, remainders.k
    assert remainders.coefficient_bound() == eta * (2 * eta / gap) ** (k - 1)
    assert sp.simplify(remainders.remainder_bound_first() - 2 * eta**2 / (gap - 2 * eta)) == 0
    assert sp.simplify(remainders.remainder_bound_second() - 4 * eta**3 / (gap * (gap - 2 * eta))) == 0


def test_tails_agree_with_partial_sums_numerically():
    eta, gap, k = remainders.eta, remainders.gap, remainders.k
    values = {eta: sp.Rational(1, 10), gap: sp.Integer(1)}
    bound = remainders.coefficient_bound().subs(values)
    partial2 = sum(bound.subs(k, i) for i in range(2, 80))
    partial3 = sum(bound.subs(k, i) for i in range(3, 80))
    assert abs(partial2 - remainders.remainder_bound_first().subs(values)) < sp.Rational(1, 10**40)
    assert abs(partial3 - remainders.remainder_bound_second().subs(values)) < sp.Rational(1, 10**40)


def test_sign_bounds_expressions():
    lower, upper = remainders.sign_bounds()
    r = remainders.residual_norm_sq
    assert sp.simplify(lower - r / (remainders.lam_top - remainders.lam_min)) == 0
    assert sp.simplify(upper - r / (remainders.lam_top - remainders.lam_second)) == 0


def test_recursion_solves_the_eigen_equation_in_block_form_to_order_4():
    for k, residual in enumerate(series.eigen_equation_residuals(4), start=1):
        assert residual == 0 or isinstance(residual, sp.ZeroMatrix), f"t^{k}: {residual}"
