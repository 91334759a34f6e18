"""The sharp third-order constant of the remainder λ' − λ1 − a1 − a2 (docs/theory.md §2, S2 and S3).

Notation: A symmetric with a simple top eigenvalue λ1 and gap γ, E symmetric with η = ‖E‖₂,
λ' = λ_max(A + E), K = 4/(3√3) ≈ 0.7698.

1. **The extremal family.** For A = diag(0, −γ) (all lower eigenvalues may be clustered at
   λ1 − γ: E then acts on span(v, w) only) and E = η[[c, s], [s, −c]], s = √(1 − c²),
   the remainder is −2c(1 − c²)·η³/γ² + O(η⁴) (:func:`leading_coefficient`), whose largest
   modulus over c is K, at c = ∓1/√3 (:func:`sharp_constant`). Its ratio to S2's bound
   4η³/(γ(γ − 2η)) tends to K/4 = 1/(3√3) (:func:`ratio_limit`).
2. **K is the sharp constant for every n.** a3 = zᵀ(D − aI)z with z = Rw, R the reduced
   resolvent (0 ⪯ R ⪯ 1/γ on v⊥), w = P⊥Ev, D the block of E on v⊥, a = E_11. With ẑ = z/‖z‖,
   b = ẑᵀw and d = ẑᵀDẑ: b = wᵀRw/‖z‖ ≥ γ‖Rw‖²/‖z‖ = γ‖z‖ (because R ⪰ γR²), so
   |a3| = ‖z‖²|d − a| ≤ b²|d − a|/γ², and [[a, b], [b, d]] is a compression of E (norm ≤ η).
   Writing it as mI + ρ[[c, s], [s, −c]] (ρ ≤ η) gives b²|d − a| = 2ρ³s²|c| ≤ Kη³
   (:func:`compression_step`). Hence |a3| ≤ Kη³/γ², with equality on the family above, and
   with the Cauchy tail Σ_{k≥4} η(2η/γ)^{k−1} = 8η⁴/(γ²(γ − 2η)):
   |λ' − λ1 − a1 − a2| ≤ Kη³/γ² + 8η⁴/(γ²(γ − 2η)) for all n and 2η < γ (claim S3).
3. **The non-asymptotic conjecture** |λ' − λ1 − a1 − a2| ≤ Kη³/(γ(γ − 2η)) for 2η < γ.
   For n = 2 it is proved here (:func:`prove_two_by_two`): the remainder does not depend on
   the multiple of I in E, so (scaling γ = 1, u = ρ ≤ η) it is R(u, c) = u³P(u, c) with
   P = [c(c + u)/H − 1][c + (c + u)/H]/H, H = ½ + √(¼ + uc + u²) (:func:`reduction_identity`),
   and the claim is |Q| ≤ K for Q = (1 − 2u)P on [0, ½] × [−1, 1], which an interval
   branch-and-bound certifies: boxes where the interval value of Q lies inside (−K, K), and
   boxes on u = 0 by the mean-value form Q(u, c) = Q(0, c) + u·∂_uQ with the exact
   factorisations K ∓ Q(0, c) = 2(c ± 1/√3)²(2/√3 ∓ c) ≥ 0 and a certified sign of ∂_uQ
   (the two points (0, ∓1/√3) are where sup |Q| = K is approached). For n ≥ 3 it is a
   conjecture with numerical evidence (docs/theory.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import mpmath
import sympy as sp

eta = sp.Symbol("eta", positive=True)
gap = sp.Symbol("gap", positive=True)
c = sp.Symbol("c", real=True)
u = sp.Symbol("u", nonnegative=True)
m, rho = sp.symbols("m rho", real=True)

#: K = 4/(3√3), the sharp third-order constant.
K = sp.Rational(4, 3) / sp.sqrt(3)


def _top_two_by_two(a11, a12, a22):
    return (a11 + a22) / 2 + sp.sqrt(((a11 - a22) / 2) ** 2 + a12**2)


@cache
def extremal_remainder() -> sp.Expr:
    """λ' − λ1 − a1 − a2 for A = diag(0, −γ), E = η[[c, s], [s, −c]] (exact, closed form)."""
    s = sp.sqrt(1 - c**2)
    top = _top_two_by_two(eta * c, eta * s, -gap - eta * c)
    a1 = eta * c
    a2 = (eta * s) ** 2 / gap
    return top - a1 - a2


@cache
def leading_coefficient() -> sp.Expr:
    """The η³ coefficient of the extremal remainder, checked to be −2c(1 − c²)/γ² (and the η²
    coefficient to vanish)."""
    ser = sp.series(extremal_remainder(), eta, 0, 4).removeO()
    ser = sp.expand(ser)
    if sp.simplify(ser.coeff(eta, 2)) != 0 or sp.simplify(ser.coeff(eta, 1)) != 0:
        raise ArithmeticError(f"the remainder is not O(η³): {ser}")
    lead = sp.factor(sp.simplify(ser.coeff(eta, 3)))
    if sp.simplify(lead - (-2 * c * (1 - c**2) / gap**2)) != 0:
        raise ArithmeticError(f"unexpected leading coefficient {lead}")
    return lead


@cache
def sharp_constant() -> tuple:
    """(K, c*) : max over c ∈ [−1, 1] of |γ²·leading coefficient| = 2|c|(1 − c²), and the
    maximisers c = ±1/√3 (interior critical points; the ends give 0)."""
    g = 2 * c * (1 - c**2)
    crit = sp.solve(sp.diff(g, c), c)
    values = {cc: sp.simplify(abs(g.subs(c, cc))) for cc in crit}
    best = max(values.values(), key=lambda x: float(x))
    if sp.simplify(best - K) != 0 or any(abs(g.subs(c, e)) != 0 for e in (-1, 1)):
        raise ArithmeticError(f"max 2|c|(1 − c²) = {best}, expected {K}")
    return best, tuple(sorted(cc for cc, v in values.items() if sp.simplify(v - K) == 0))


@cache
def ratio_limit() -> sp.Expr:
    """lim_{η→0} (Kη³/γ²) / (4η³/(γ(γ − 2η))) = 1/(3√3): how loose S2's constant 4 is."""
    lim = sp.limit((K * eta**3 / gap**2) / (4 * eta**3 / (gap * (gap - 2 * eta))), eta, 0)
    if sp.simplify(lim - 1 / (3 * sp.sqrt(3))) != 0:
        raise ArithmeticError(f"ratio limit {lim}")
    return sp.nsimplify(lim)


@cache
def extremal_ratio_limit() -> sp.Expr:
    """On the extremal family at c = −1/√3 the remainder over S2's bound tends to 1/(3√3) too."""
    r = extremal_remainder().subs(c, -1 / sp.sqrt(3))
    lim = sp.limit(r / (4 * eta**3 / (gap * (gap - 2 * eta))), eta, 0)
    if sp.simplify(lim - 1 / (3 * sp.sqrt(3))) != 0:
        raise ArithmeticError(f"extremal ratio limit {lim}")
    return lim


@cache
def compression_step() -> sp.Expr:
    """For [[a, b], [b, d]] = mI + ρ[[c, s], [s, −c]]: b²(d − a) = −2ρ³cs² (so |b²(d − a)| ≤ Kρ³,
    by :func:`sharp_constant`); the norm of the compression is |m| + |ρ| ≥ |ρ|."""
    s = sp.sqrt(1 - c**2)
    a, b, d = m + rho * c, rho * s, m - rho * c
    expr = sp.expand(b**2 * (d - a))
    if sp.simplify(expr - (-2 * rho**3 * c * (1 - c**2))) != 0:
        raise ArithmeticError(f"b²(d − a) = {expr}")
    return expr


@cache
def reduction_identity() -> sp.Expr:
    """n = 2 with γ = 1: the remainder of A = diag(0, −1), E = mI + u[[c, s], [s, −c]] does not
    depend on m and equals u³P(u, c); returns P."""
    s = sp.sqrt(1 - c**2)
    top = _top_two_by_two(m + u * c, u * s, m - 1 - u * c)
    rem = top - (m + u * c) - (u * s) ** 2
    if sp.simplify(sp.diff(rem, m)) != 0:
        raise ArithmeticError("the remainder depends on the multiple of I")
    H = sp.Rational(1, 2) + sp.sqrt(sp.Rational(1, 4) + u * c + u**2)
    P = (c * (c + u) / H - 1) * (c + (c + u) / H) / H
    rem0 = rem.subs(m, 0)
    # check rem = u³P: both are (uc)² − δ², δ = √(¼ + uc + u²) − ½; verify numerically at many
    # rational points to 40 digits (sympy's simplify of nested radicals is unreliable) and
    # symbolically through the factorisation (uc − δ)(uc + δ).
    delta = H - 1
    if sp.simplify(sp.expand(rem0 - ((u * c) ** 2 - delta**2))) != 0:
        raise ArithmeticError("remainder ≠ (uc)² − δ²")
    for uu in (sp.Rational(1, 7), sp.Rational(2, 5), sp.Rational(1, 100)):
        for cc in (sp.Rational(-9, 10), sp.Rational(-1, 3), sp.Rational(1, 2), sp.Rational(1, 1)):
            diff = (rem0 - u**3 * P).subs({u: uu, c: cc})
            if abs(sp.N(diff, 50)) > sp.Float(10) ** -40:
                raise ArithmeticError(f"remainder ≠ u³P at u = {uu}, c = {cc}")
    return P


# --------------------------------------------------------------------------------------
# the n = 2 proof: interval branch-and-bound (mpmath.iv) with a mean-value form at u = 0
# --------------------------------------------------------------------------------------


class _Dual:
    """Forward-mode derivative in u over intervals: (value, ∂u)."""

    __slots__ = ("v", "d")

    def __init__(self, v, d):
        self.v, self.d = v, d

    def __add__(self, o):
        o = _lift(o)
        return _Dual(self.v + o.v, self.d + o.d)

    __radd__ = __add__

    def __sub__(self, o):
        o = _lift(o)
        return _Dual(self.v - o.v, self.d - o.d)

    def __rsub__(self, o):
        return _lift(o) - self

    def __neg__(self):
        return _Dual(-self.v, -self.d)

    def __mul__(self, o):
        o = _lift(o)
        return _Dual(self.v * o.v, self.d * o.v + self.v * o.d)

    __rmul__ = __mul__

    def __truediv__(self, o):
        o = _lift(o)
        q = self.v / o.v
        return _Dual(q, (self.d - q * o.d) / o.v)

    def __rtruediv__(self, o):
        return _lift(o) / self


def _lift(x):
    return x if isinstance(x, _Dual) else _Dual(mpmath.iv.mpf(x), mpmath.iv.mpf(0))


def _sqrt(x):
    if isinstance(x, _Dual):
        r = mpmath.iv.sqrt(x.v)
        return _Dual(r, x.d / (2 * r))
    return mpmath.iv.sqrt(x)


def _sq(x):
    if isinstance(x, _Dual):
        return _Dual(x.v**2, 2 * x.v * x.d)
    return x**2


def q_function(uu, cc):
    """Q(u, c) = (1 − 2u)·P(u, c) on intervals (or duals); |Q| ≤ K is the n = 2 conjecture."""
    # ¼ + uc + u² = (½ − u)² + u(1 + c): a sum of two terms ≥ 0 on the domain (no interval
    # over-estimation below 0 under the square root)
    h = _sqrt(_sq(0.5 - uu) + uu * (1 + cc))
    H = h + mpmath.iv.mpf("0.5")
    P = (cc * (cc + uu) / H - 1) * (cc + (cc + uu) / H) / H
    return (1 - 2 * uu) * P


def _lo(x) -> mpmath.mpf:
    return mpmath.mpf(x.a)


def _hi(x) -> mpmath.mpf:
    return mpmath.mpf(x.b)


@dataclass(frozen=True)
class TwoByTwoProof:
    """Result of :func:`prove_two_by_two`."""

    proved: bool
    boxes: int
    mean_value_boxes: int
    max_depth: int
    worst_upper: float
    worst_lower: float
    dps: int
    reason: str = ""


def prove_two_by_two(
    *, factor: float = 1.0, dps: int = 30, max_boxes: int = 200_000, min_width: float = 1e-7
) -> TwoByTwoProof:
    """Certify |Q(u, c)| ≤ factor·K on [0, ½] × [−1, 1] in interval arithmetic (module docstring, 3).

    ``factor`` < 1 states a false inequality (sup |Q| = K): the search must then fail, which
    is how the tests check that this proof can fail.

    Returns a :class:`TwoByTwoProof` with ``proved`` True when every box was certified;
    False (with the reason) when a box narrower than ``min_width`` or the box budget was
    reached — a failure to prove, never a disproof.
    """
    iv = mpmath.iv
    old = iv.dps
    iv.dps = dps
    try:
        K0 = iv.mpf(4) / (3 * iv.sqrt(3))
        Kiv = K0 * iv.mpf(factor)
        # (factor − 1)·K added to the exact factorisations below; exactly 0 for factor = 1
        shift = iv.mpf(0) if factor == 1 else Kiv - K0
        r3 = 1 / iv.sqrt(3)
        stack = [(mpmath.mpf(0), mpmath.mpf("0.5"), mpmath.mpf(-1), mpmath.mpf(1), 0)]
        boxes = mv = depth = 0
        worst_up = worst_lo = mpmath.inf
        while stack:
            u0, u1, c0, c1, dep = stack.pop()
            boxes += 1
            depth = max(depth, dep)
            if boxes > max_boxes:
                return TwoByTwoProof(False, boxes, mv, depth, float(worst_up), float(worst_lo), dps, "box budget")
            U, C = iv.mpf([u0, u1]), iv.mpf([c0, c1])
            Q = q_function(U, C)
            up = Kiv - Q  # must be ≥ 0
            lo_ = Q + Kiv  # must be ≥ 0
            ok_up, ok_lo = _lo(up) >= 0, _lo(lo_) >= 0
            if u0 == 0 and not (ok_up and ok_lo):
                # Mean-value form from the edge u = 0: Q(u, c) = Q(0, c) + u·∂_uQ(ξ, c).
                dQ = q_function(_Dual(U, iv.mpf(1)), _Dual(C, iv.mpf(0))).d
                width = iv.mpf(u1)
                up0 = shift + 2 * (C + r3) ** 2 * (2 * r3 - C)  # factor·K − Q(0, c), exact factorisation
                lo0 = shift + 2 * (C - r3) ** 2 * (C + 2 * r3)  # Q(0, c) + factor·K
                mv_up = _lo(up0) - _hi(width * dQ) if _hi(dQ) > 0 else _lo(up0)
                mv_lo = _lo(lo0) + _lo(width * dQ) if _lo(dQ) < 0 else _lo(lo0)
                ok_up = ok_up or mv_up >= 0
                ok_lo = ok_lo or mv_lo >= 0
                mv += 1
            worst_up, worst_lo = min(worst_up, _lo(up)), min(worst_lo, _lo(lo_))
            if ok_up and ok_lo:
                continue
            wu, wc = u1 - u0, (c1 - c0) / 4  # c ranges over 2, u over ½: compare relative widths
            if max(wu, c1 - c0) < min_width:
                return TwoByTwoProof(
                    False,
                    boxes,
                    mv,
                    depth,
                    float(worst_up),
                    float(worst_lo),
                    dps,
                    f"box [{u0}, {u1}] × [{c0}, {c1}] not certified",
                )
            if wu >= wc:
                um = (u0 + u1) / 2
                stack += [(u0, um, c0, c1, dep + 1), (um, u1, c0, c1, dep + 1)]
            else:
                cm = (c0 + c1) / 2
                stack += [(u0, u1, c0, cm, dep + 1), (u0, u1, cm, c1, dep + 1)]
        return TwoByTwoProof(True, boxes, mv, depth, float(worst_up), float(worst_lo), dps)
    finally:
        iv.dps = old


def extremal_ratio(eta_over_gap: float, cc: float, dps: int = 50) -> mpmath.mpf:
    """|λ' − λ1 − a1 − a2| / (Kη³/(γ(γ − 2η))) on the 2 × 2 family at γ = 1, in mp (a number
    for reports; the proof is :func:`prove_two_by_two`)."""
    with mpmath.workdps(dps):
        x, cc = mpmath.mpf(eta_over_gap), mpmath.mpf(cc)  # exact for float or mpf inputs
        Kmp = mpmath.mpf(4) / (3 * mpmath.sqrt(3))
        H = mpmath.mpf(1) / 2 + mpmath.sqrt(mpmath.mpf(1) / 4 + x * cc + x * x)
        P = (cc * (cc + x) / H - 1) * (cc + (cc + x) / H) / H
        return abs((1 - 2 * x) * P) / Kmp


def summary() -> dict:
    """Every step above, as printable strings (``python -m symbolic.sharp_third_order``)."""
    K_, cstar = sharp_constant()
    proof = prove_two_by_two()
    return {
        "leading coefficient (η³)": str(leading_coefficient()),
        "sharp constant K": f"{K_} ≈ {float(K_):.6f} at c = {cstar}",
        "ratio to 4η³/(γ(γ−2η)) as η→0": f"{ratio_limit()} ≈ {float(ratio_limit()):.6f}",
        "extremal family ratio limit": str(extremal_ratio_limit()),
        "compression step b²(d−a)": str(compression_step()),
        "n = 2 reduction P(u, c)": str(reduction_identity()),
        "n = 2 proof of |R| ≤ Kη³/(γ(γ−2η))": (
            f"{'PROVED' if proof.proved else 'NOT PROVED: ' + proof.reason} "
            f"({proof.boxes} boxes, {proof.mean_value_boxes} by the mean-value form, depth {proof.max_depth}, "
            f"{proof.dps} digits)"
        ),
    }


if __name__ == "__main__":
    for key, value in summary().items():
        print(f"{key}: {value}")
