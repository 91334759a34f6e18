"""Explicit remainder constants (docs/theory.md §2, S2) and the sign bounds on a2 (SIGN).

S2. f(t) = λ_max(A + tE) is analytic on the disc |t| < ρ* = γ/(2η) and |f(t) − λ1| ≤ |t|η
there. Cauchy's estimate on the circle |t| = ρ < ρ* gives |a_k| ≤ (ρη)/ρ^k, and letting
ρ → ρ* gives |a_k| ≤ η (2η/γ)^{k−1}. At t = 1 (which needs 1 < ρ*, i.e. 2η < γ) the tails
Σ_{k≥2} and Σ_{k≥3} of these bounds are geometric series; sympy sums them in closed form.

SIGN. a2 = Σ_{j≥2} e_j² / d_j with d_j = λ1 − λj and e = P⊥Ev in the eigenbasis, so
‖e‖² = ‖P⊥Ev‖². Every d_j lies in [γ, λ1 − λ_min]; since 1/d is decreasing there, each term
is squeezed between e_j²/(λ1 − λ_min) and e_j²/γ, and summing gives the bounds.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

eta = sp.Symbol("eta", positive=True)
gap = sp.Symbol("gap", positive=True)
k = sp.Symbol("k", integer=True, positive=True)
radius = sp.Symbol("rho", positive=True)

# sign bounds
lam_top, lam_second, lam_min = sp.symbols("lam_top lam_second lam_min", real=True)
residual_norm_sq = sp.Symbol("residual_norm_sq", nonnegative=True)


@cache
def coefficient_bound() -> sp.Expr:
    """|a_k| ≤ η(2η/γ)^{k−1}: Cauchy's estimate on |t| = ρ, with ρ → γ/(2η)."""
    cauchy = (radius * eta) / radius**k  # sup_{|t|=ρ} |f(t) − λ1| / ρ^k
    bound = sp.limit(cauchy, radius, gap / (2 * eta))
    readable = eta * (2 * eta / gap) ** (k - 1)
    if sp.simplify(sp.powsimp(bound / readable, force=True)) != 1:
        raise ArithmeticError(f"Cauchy estimate {bound} differs from {readable}")
    return readable


def _tail(start: int) -> sp.Expr:
    """Closed form of Σ_{k ≥ start} η(2η/γ)^{k−1} for 2η < γ."""
    ratio = sp.Symbol("q", positive=True)  # q = 2η/γ ∈ (0, 1)
    term = coefficient_bound().xreplace({gap: 2 * eta / ratio})
    total = sp.piecewise_fold(sp.summation(sp.simplify(term), (k, start, sp.oo)))
    # sympy returns Piecewise((closed form, |q| < 1), (Sum, True)); the hypothesis 2η < γ
    # is exactly q < 1, so keep the convergent branch.
    if isinstance(total, sp.Piecewise):
        condition = total.args[0][1]
        if condition.subs(ratio, sp.Rational(1, 2)) is not sp.true:
            raise ArithmeticError(f"unexpected convergence condition {condition}")
        total = total.args[0][0]
    if total.has(sp.Sum):
        raise ArithmeticError(f"tail sum not in closed form: {total}")
    return sp.factor(sp.simplify(total.subs(ratio, 2 * eta / gap)))


@cache
def remainder_bound_first() -> sp.Expr:
    """|λ_max(A+E) − λ1 − a1| ≤ Σ_{k≥2} |a_k| in closed form."""
    return _tail(2)


@cache
def remainder_bound_second() -> sp.Expr:
    """|λ_max(A+E) − λ1 − a1 − a2| ≤ Σ_{k≥3} |a_k| in closed form."""
    return _tail(3)


@cache
def sign_bounds() -> tuple[sp.Expr, sp.Expr]:
    """(lower, upper) bounds on a2 from d_j ∈ [λ1 − λ2, λ1 − λ_min].

    Derived by bounding one term e_j²/d_j at the two ends of the interval for d_j (1/d is
    decreasing on d > 0, checked symbolically) and summing: Σ e_j² = ‖P⊥Ev‖².
    """
    d = sp.Symbol("d", positive=True)
    ej_sq = sp.Symbol("ej_sq", nonnegative=True)
    term = ej_sq / d
    if not sp.diff(term, d).is_nonpositive:
        raise ArithmeticError("e_j²/d_j is not non-increasing in d_j")
    lower = term.subs(d, lam_top - lam_min).subs(ej_sq, residual_norm_sq)
    upper = term.subs(d, lam_top - lam_second).subs(ej_sq, residual_norm_sq)
    return lower, upper
