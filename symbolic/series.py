"""Rayleigh–Schrödinger derivation of the coefficients of λ_max(A + tE) (docs/theory.md §2, S).

Work in the eigenbasis of A: A = diag(λ1, λ2, ..., λn) with λ1 simple, and M = VᵀEV. Split
every vector as (top component, complement of length m = n − 1) and write

* ``M11`` = M[0, 0], ``e`` = M[0, 1:] (an m-vector), ``B`` = M[1:, 1:] (m×m, symmetric);
* ``R`` = diag(1/(λ1 − λj))_{j≥2}, the reduced resolvent of A at λ1 (m×m, symmetric).

The eigen-equation (A + tM) ψ(t) = λ(t) ψ(t), with ψ(t) = e1 + Σ_k t^k ψ_k (ψ_k ⊥ e1,
"intermediate normalisation") and λ(t) = λ1 + Σ_k t^k a_k, read at order t^k gives

* top row:        a_k = M11·[k = 1] + eᵀ ψ_{k−1}         (ψ_0 has no complement part),
* complement:     ψ_k = R (B ψ_{k−1} − Σ_{j=1}^{k−1} a_j ψ_{k−j})   with ψ_1 = R e.

The recursion is run with sympy *matrix symbols of symbolic size m*, so the result holds
for every n. Each a_k comes out as a polynomial in M11 and in scalar "brackets"
eᵀ R^{p0} B R^{p1} ... B R^{pq} e; since R and B are symmetric a bracket equals its
reversal, which is how they are canonicalised.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

import sympy as sp

MAX_ORDER = 4

#: size of the complement block (n − 1), symbolic so the derivation holds for every n
m = sp.Symbol("m", integer=True, positive=True)
e_vec = sp.MatrixSymbol("e", m, 1)
R_mat = sp.MatrixSymbol("R", m, m)
B_mat = sp.MatrixSymbol("B", m, m)
M11 = sp.Symbol("M11", real=True)


@cache
def rs_block_coefficients(order: int = MAX_ORDER) -> tuple:
    """Run the Rayleigh–Schrödinger recursion in block form.

    Parameters
    ----------
    order : int
        Highest coefficient to derive.

    Returns
    -------
    tuple
        ``(a_1, ..., a_order)``; a_1 is the scalar ``M11``, the others are 1×1 sympy matrix
        expressions in ``e``, ``R``, ``B`` and ``M11``.
    """
    coefficients, _ = _rs_with_corrections(order)
    return tuple(coefficients[k] for k in range(1, order + 1))


# --------------------------------------------------------------------------------------
# Brackets: eᵀ W e for a word W over {R, B}; canonical form and scalar symbols
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Bracket:
    """The scalar eᵀ W e, W a word over the letters ``R`` and ``B`` (R, B symmetric)."""

    word: str

    @staticmethod
    def canonical(word: str) -> Bracket:
        """Bracket of ``word``, identified with that of the reversed word."""
        return Bracket(min(word, word[::-1]))

    @property
    def symbol(self) -> sp.Symbol:
        """A commutative sympy symbol standing for the bracket, e.g. ``e_R_B_R_e``."""
        return sp.Symbol("e_" + "_".join(self.word) + "_e", real=True)

    def resolvent_powers(self) -> list[int]:
        """Exponents p0, ..., pq of R between the B's: W = R^p0 B R^p1 ... B R^pq."""
        return [len(run) for run in self.word.split("B")]


def _factor_word(factor) -> str:
    if factor == R_mat:
        return "R"
    if factor == B_mat:
        return "B"
    if isinstance(factor, sp.MatPow) and factor.base in (R_mat, B_mat):
        return _factor_word(factor.base) * int(factor.exp)
    raise ValueError(f"unexpected factor {factor!r}")


def _term_to_scalar(term) -> sp.Expr:
    """Convert one MatMul term c·(eᵀW1e)(eᵀW2e)... to c·b_W1·b_W2·... (commutative)."""
    if not isinstance(term, sp.MatMul):
        raise ValueError(f"unexpected term {term!r}")
    scalar = sp.Integer(1)
    word: str | None = None
    result = sp.Integer(1)
    for factor in term.args:
        if not isinstance(factor, sp.MatrixExpr):
            scalar *= factor
        elif factor == e_vec.T:
            word = ""
        elif factor == e_vec:
            result *= Bracket.canonical(word).symbol
            word = None
        else:
            word += _factor_word(factor)
    return scalar * result


def to_bracket_form(expr) -> sp.Expr:
    """Rewrite a 1×1 block expression as a commutative polynomial in brackets and M11."""
    if not isinstance(expr, sp.MatrixExpr):
        return sp.sympify(expr)
    return sp.expand(sp.Add(*[_term_to_scalar(t) for t in sp.Add.make_args(expr)]))


@cache
def series_coefficients_bracket_form(order: int = MAX_ORDER) -> tuple[sp.Expr, ...]:
    """The coefficients a_1..a_order as polynomials in ``M11`` and bracket symbols."""
    return tuple(to_bracket_form(a) for a in rs_block_coefficients(order))


def brackets_in(expr: sp.Expr) -> list[Bracket]:
    """The brackets occurring in ``expr``, sorted."""
    found = []
    for s in expr.free_symbols:
        if s.name.startswith("e_") and s.name.endswith("_e"):
            found.append(Bracket(s.name[2:-2].replace("_", "")))
    return sorted(found, key=lambda b: (len(b.word), b.word))


# --------------------------------------------------------------------------------------
# Index form (the familiar sums) and explicit evaluation for a fixed n
# --------------------------------------------------------------------------------------

lam_base = sp.IndexedBase("lam", real=True)
M_base = sp.IndexedBase("M", real=True)
n_sym = sp.Symbol("n", integer=True, positive=True)
_INDEX_NAMES = "jklpqrsuvw"


def _bracket_index_form(bracket: Bracket, indices: list[sp.Symbol]) -> sp.Expr:
    powers = bracket.resolvent_powers()
    body = M_base[0, indices[0]] * M_base[0, indices[-1]]
    for idx, p in zip(indices, powers):
        body = body / (lam_base[0] - lam_base[idx]) ** p
    for a, b in itertools.pairwise(indices):
        body = body * M_base[a, b]
    return sp.Sum(body, *[(i, 1, n_sym - 1) for i in indices])


def index_form(expr: sp.Expr) -> sp.Expr:
    """Rewrite a bracket polynomial as sums over 0-based indices of ``lam`` and ``M``.

    ``lam[0]`` is the top eigenvalue λ1, ``M[0, 0]`` is M11, sums run over 1..n−1.
    Each product of brackets gets fresh summation indices.
    """
    expr = sp.expand(expr)
    terms = []
    for term in sp.Add.make_args(expr):
        coeff, factors = sp.Integer(1), []
        for f in sp.Mul.make_args(term):
            base, exp = f.as_base_exp()
            if base.is_Symbol and base.name.startswith("e_"):
                factors += [Bracket(base.name[2:-2].replace("_", ""))] * int(exp)
            else:
                coeff *= f
        names = iter(_INDEX_NAMES)
        rendered = coeff.subs(M11, M_base[0, 0])
        for b in factors:
            q = len(b.resolvent_powers())
            idx = [sp.Symbol(next(names), integer=True) for _ in range(q)]
            rendered *= _bracket_index_form(b, idx)
        terms.append(rendered)
    return sp.Add(*terms)


def explicit_bracket_values(lam: list, M: sp.Matrix, brackets: list[Bracket]) -> dict:
    """Values of the brackets for explicit (symbolic or numeric) ``lam`` and ``M``."""
    n = len(lam)
    R = sp.diag(*[1 / (lam[0] - lam[j]) for j in range(1, n)])
    B = M[1:, 1:]
    e = M[1:, 0]
    letters = {"R": R, "B": B}
    values = {}
    for b in brackets:
        vec = e
        for letter in reversed(b.word):
            vec = letters[letter] * vec
        values[b.symbol] = (e.T * vec)[0, 0]
    return values


def evaluate_explicit(expr: sp.Expr, lam: list, M: sp.Matrix) -> sp.Expr:
    """Substitute explicit ``lam`` (descending, lam[0] simple) and ``M`` into a coefficient."""
    values = explicit_bracket_values(lam, M, brackets_in(expr))
    values[M11] = M[0, 0]
    return expr.xreplace(values)


# --------------------------------------------------------------------------------------
# Independent confirmations: exact eigenvalues for n = 2 and n = 3
# --------------------------------------------------------------------------------------


def _symbolic_instance(n: int):
    lam = list(sp.symbols(f"l1:{n + 1}", real=True))
    M = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"m{min(i, j) + 1}{max(i, j) + 1}", real=True))
    return lam, M


def closed_form_series_n2(order: int = MAX_ORDER) -> tuple[list[sp.Expr], list[sp.Expr]]:
    """Taylor coefficients of the closed-form top eigenvalue of a 2×2 instance.

    Returns ``(from_closed_form, from_derivation)`` for A = diag(l1, l2), l1 > l2, and a
    symbolic symmetric M; both lists hold a_1..a_order.
    """
    (l1, l2), M = _symbolic_instance(2)
    t = sp.Symbol("t", real=True)
    gap = sp.Symbol("gap", positive=True)
    m11, m12, m22 = M[0, 0], M[0, 1], M[1, 1]
    # λ_max = mean + sqrt(half-difference² + off²); the branch with λ(0) = l1 (gap > 0)
    top = (2 * l2 + gap + t * (m11 + m22)) / 2 + sp.sqrt((gap + t * (m11 - m22)) ** 2 / 4 + t**2 * m12**2)
    series = sp.series(top, t, 0, order + 1).removeO()
    closed = [sp.simplify(series.coeff(t, k).subs(gap, l1 - l2)) for k in range(1, order + 1)]
    derived = [sp.simplify(evaluate_explicit(a, [l1, l2], M)) for a in series_coefficients_bracket_form(order)]
    return closed, derived


def charpoly_root_series(n: int = 3, order: int = MAX_ORDER, entries: dict | None = None) -> tuple[list, list, tuple]:
    """Taylor coefficients of the characteristic-polynomial root through l1, solved order by order.

    For A = diag(l1..ln) with symbolic distinct l's and symbolic symmetric M, substitute
    λ = l1 + Σ c_k t^k into det(A + tM − λI) = 0 and solve each order for c_k (linear in c_k
    because l1 is a simple root). ``entries`` optionally fixes some symbols (e.g. the m's
    to rationals, which keeps order 4 fast). Returns ``(from_charpoly, from_derivation,
    (lam, M))``.
    """
    lam, M = _symbolic_instance(n)
    if entries:
        M = M.subs(entries)
    t = sp.Symbol("t")
    c = sp.symbols(f"c1:{order + 1}")
    lam_t = lam[0] + sum(ck * t ** (k + 1) for k, ck in enumerate(c))
    A = sp.diag(*lam)
    poly = (A + t * M - lam_t * sp.eye(n)).det(method="berkowitz")
    poly = sp.expand(poly)
    solved = {}
    for k in range(1, order + 1):
        eq = sp.expand(poly.coeff(t, k)).xreplace(solved)
        ck = c[k - 1]
        sol = sp.solve(eq, ck)
        if len(sol) != 1:
            raise ArithmeticError(f"order {k}: expected one linear solution, got {sol}")
        solved[ck] = sp.factor(sol[0])
    from_charpoly = [solved[ck] for ck in c]
    derived = [evaluate_explicit(a, lam, M) for a in series_coefficients_bracket_form(order)]
    return from_charpoly, derived, (lam, M)


def eigen_equation_residuals(order: int = MAX_ORDER) -> list:
    """Complement rows of (A + tM − λ(t)) ψ(t) at orders t^1..t^order; all must be zero.

    In block form the complement block of A is λ1·I − R⁻¹ (as R = diag(1/(λ1 − λj))), so
    the t^k rows read (λ1 − R⁻¹) ψ_k + e·[k = 1] + B ψ_{k−1} − Σ_{j=0}^{k−1} a_{k−j} ψ_j
    with a_0 = λ1 and ψ_0 = 0 on the complement. (The top row at t^k is
    M11·[k = 1] + eᵀψ_{k−1} − a_k, which is how a_k is defined.) This checks that the
    recursion solves the eigen-equation, with sympy simplifying R⁻¹R = I.
    """
    coefficients, corrections = _rs_with_corrections(order)
    lam1 = sp.Symbol("lam1", real=True)
    residuals = []
    for k in range(1, order + 1):
        rows = (lam1 * sp.Identity(m) - sp.Inverse(R_mat)) * corrections[k]
        rows = rows + (e_vec if k == 1 else B_mat * corrections[k - 1])
        rows = rows - lam1 * corrections[k]
        for j in range(1, k):
            a = coefficients[k - j]
            rows = rows - (a * corrections[j] if k - j == 1 else corrections[j] * a)
        residuals.append(_simplify_block(rows))
    return residuals


def _simplify_block(expr):
    expr = sp.expand(expr).doit()
    return sp.expand(expr.doit()) if isinstance(expr, sp.MatrixExpr) else expr


def _rs_with_corrections(order: int):
    """The RS recursion: coefficients a_1..a_order and corrections ψ_1..ψ_order."""
    coefficients = {1: M11}
    corrections = {1: R_mat * e_vec}  # ψ_1 = R e
    for k in range(2, order + 1):
        coefficients[k] = (e_vec.T * corrections[k - 1]).expand()  # top row at t^k
        # complement rows: ψ_k = R (B ψ_{k-1} − a_1 ψ_{k-1} − Σ_{j=2}^{k-1} ψ_{k-j} a_j)
        # (a_j is a 1×1 matrix for j ≥ 2, so it multiplies from the right)
        rhs = B_mat * corrections[k - 1] - M11 * corrections[k - 1]
        for j in range(2, k):
            rhs = rhs - corrections[k - j] * coefficients[j]
        corrections[k] = (R_mat * rhs).expand()
    return coefficients, corrections
