"""Render ``fimtheory/_generated/series.py`` from the derivations in series.py / remainders.py."""

from __future__ import annotations

import sympy as sp

from symbolic import remainders
from symbolic.series import (
    MAX_ORDER,
    Bracket,
    brackets_in,
    index_form,
    series_coefficients_bracket_form,
)


def _vector_name(word: str) -> str:
    return "_".join(word) + "_e" if word else "e"


def _split(word: str) -> tuple[str, str]:
    """eᵀ P S e = (reversed(P) e) · (S e), using that R and B are symmetric."""
    h = (len(word) + 1) // 2
    return word[:h][::-1], word[h:]


def _vector_lines(words: set[str]) -> list[str]:
    needed = {w[i:] for w in words for i in range(len(w))}
    lines = []
    for w in sorted(needed, key=lambda s: (len(s), s)):
        rest = _vector_name(w[1:])
        rhs = f"{rest} / d" if w[0] == "R" else f"B @ {rest}"
        lines.append(f"{_vector_name(w)} = {rhs}")
    return lines


def _indent(lines: list[str], spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in lines)


def _comment_terms(name: str, expr: sp.Expr) -> list[str]:
    """Comment lines showing ``name = expr`` with one additive term per line."""
    terms = sorted(sp.Add.make_args(expr), key=lambda t: (len(sp.sstr(t)), sp.sstr(t)))
    lines = []
    for i, term in enumerate(terms):
        negative = term.could_extract_minus_sign()
        body = sp.sstr(-term if negative else term)
        sign = "- " if negative else ("+ " if i else "  ")
        lines.append(f"# {name if i == 0 else ' ' * len(name)} {'=' if i == 0 else ' '} {sign}{body}")
    return lines


def series_body() -> str:
    """The body of ``series_coefficients`` after r, e, B, M11 are defined."""
    coefficients = series_coefficients_bracket_form(MAX_ORDER)
    lines: list[str] = []
    defined: set[str] = set()

    def define(line: str) -> None:
        name = line.split(" = ")[0]
        if name not in defined:
            defined.add(name)
            lines.append(line)

    for k, a in enumerate(coefficients, start=1):
        brackets = brackets_in(a)
        words = {half for b in brackets for half in _split(b.word)}
        lines += _comment_terms(f"a{k}", index_form(a))
        for vector_line in _vector_lines(words):
            define(vector_line)
        for b in brackets:
            left, right = _split(b.word)
            define(f"{b.symbol.name} = np.sum({_vector_name(left)} * {_vector_name(right)})")
        lines.append(f"coefficients.append({sp.pycode(a)})")
        if k < MAX_ORDER:
            lines += [f"if order == {k}:", "    return np.array(coefficients)"]
    lines.append("return np.array(coefficients)")
    return _indent(lines, 4)


def _ratio(expr: sp.Expr, grows: sp.Symbol | None = None, positive_at=None) -> str:
    """Code for a ratio whose denominator factors are signed to read like the paper.

    sympy factors 2η²/(γ − 2η) as −2η²/(2η − γ). A factor is negated when it decreases in
    ``grows`` or, with ``positive_at = {symbol: value}``, when it is negative there.
    """
    numerator, denominator = sp.fraction(sp.factor(expr))
    factors = []
    for f in sp.Mul.make_args(denominator):
        if grows is not None:
            flip = sp.diff(f, grows).is_negative
        else:
            flip = f.subs(positive_at).is_negative
        if flip:
            numerator, f = -numerator, sp.expand(-f)
        factors.append(f)
    den = "*".join(f"({sp.pycode(f)})" if f.is_Add else sp.pycode(f) for f in factors)
    if len(factors) > 1:
        den = f"({den})"
    return f"{sp.pycode(numerator)} / {den}"


def _scale_safe(expr: sp.Expr) -> str:
    """Code for a bound homogeneous of degree 1 in (η, γ), as η·f(q) with q = η/γ.

    2η²/(γ−2η) evaluated as written overflows (η² near 1e154) or underflows to 0 (η³ near
    1e-103) long before the bound itself does; η·f(η/γ) stays in range. The rewrite is
    checked symbolically here.
    """
    eta, gap = remainders.eta, remainders.gap
    q = sp.Symbol("q", positive=True)
    f = sp.factor(sp.simplify(expr.subs(eta, q * gap) / (q * gap)))
    assert sp.simplify(eta * f.subs(q, eta / gap) - expr) == 0, "scale-safe form must equal the bound"
    numerator, denominator = sp.fraction(f)
    if sp.diff(denominator, q).is_positive:
        numerator, denominator = -numerator, sp.expand(-denominator)
    return f"eta * ({sp.pycode(numerator)}) / ({sp.pycode(sp.expand(denominator))})"


def render() -> str:
    """Source text of the generated series module (without the header)."""
    first = remainders.remainder_bound_first()
    second = remainders.remainder_bound_second()
    coeff_bound = remainders.coefficient_bound()
    lower, upper = remainders.sign_bounds()
    gap, top = remainders.gap, remainders.lam_top
    return TEMPLATE.format(
        max_order=MAX_ORDER,
        series_body=series_body(),
        first=_ratio(first, gap),
        second=_ratio(second, gap),
        first_scaled=_scale_safe(first),
        second_scaled=_scale_safe(second),
        coefficient_bound=sp.pycode(coeff_bound),
        lower=_ratio(lower, top),
        upper=_ratio(upper, top),
    )


def derivation_objects() -> list:
    """Everything the rendered text depends on (hashed into the header)."""
    return [
        *series_coefficients_bracket_form(MAX_ORDER),
        remainders.coefficient_bound(),
        remainders.remainder_bound_first(),
        remainders.remainder_bound_second(),
        *remainders.sign_bounds(),
    ]


_ = Bracket  # re-exported for readers of this module

TEMPLATE = '''"""Coefficients of λ_max(A + tE) and the explicit remainder bounds (docs/theory.md §2: S, S2, SIGN).

Notation: lam = eigenvalues of A in descending order with lam[0] simple; M = VᵀEV is the
perturbation in A's eigenbasis (symmetric). In the code, M11 = M[0, 0], e = M[0, 1:],
B = M[1:, 1:] and d = lam[0] − lam[1:], so the reduced resolvent R = diag(1/d).
A variable named like ``e_R_B_R_e`` is the scalar eᵀ R B R e; one named like ``B_R_e`` is
the vector B R e. Sums in the comments use 0-based indices over 1..n−1.
"""

import numpy as np

from fimtheory.errors import InputError

MAX_ORDER = {max_order}


def _as_array(values):
    """float64 array, unless ``values`` is an object array (e.g. of mpmath mpf): kept as is."""
    values = np.asarray(values)
    return values if values.dtype == object else values.astype(np.float64)


def series_coefficients(lam, M, order=3):
    """Coefficients [a1, ..., a_order] of λ_max(A + tE) = lam[0] + Σ_k a_k t^k.

    Parameters
    ----------
    lam : array_like, shape (n,)
        Eigenvalues of A in descending order; lam[0] must be simple (lam[0] > lam[1]).
    M : array_like, shape (n, n)
        The perturbation in A's eigenbasis, VᵀEV (symmetric).
    order : int
        Number of coefficients, 1..{max_order}.

    Returns
    -------
    numpy.ndarray, shape (order,)
    """
    lam = _as_array(lam)
    M = _as_array(M)
    if not 1 <= int(order) <= MAX_ORDER or int(order) != order:
        raise InputError(f"order must be an integer in 1..{{MAX_ORDER}}, got {{order!r}}")
    if lam.ndim != 1 or M.shape != (lam.size, lam.size):
        raise InputError(f"need lam of shape (n,) and M of shape (n, n), got {{lam.shape}}, {{M.shape}}")
    if lam.size > 1 and not lam[0] > lam[1]:
        raise InputError("lam must be descending with lam[0] simple (lam[0] > lam[1])")
    d = lam[0] - lam[1:]
    e = M[0, 1:]
    B = M[1:, 1:]
    M11 = M[0, 0]
    coefficients = []
{series_body}


def coefficient_bound(k, eta, gap):
    """Cauchy bound |a_k| ≤ {coefficient_bound} (k ≥ 1, eta = ‖E‖₂, gap = λ1 − λ2 > 0).

    Plain arithmetic: works on floats, numpy arrays, mpmath mpf and intervals.
    """
    return {coefficient_bound}


def remainder_bound_first(eta, gap):
    """Bound {first} on |λ_max(A+E) − λ1 − a1|.

    Valid only under the hypothesis 2·eta < gap, which the caller checks. Evaluated as
    eta·f(eta/gap), which neither overflows nor underflows where the bound is a normal float.
    Plain arithmetic: works on floats, numpy arrays, mpmath mpf and intervals.
    """
    q = eta / gap
    return {first_scaled}


def remainder_bound_second(eta, gap):
    """Bound {second} on |λ_max(A+E) − λ1 − a1 − a2|.

    Valid only under the hypothesis 2·eta < gap, which the caller checks. Evaluated as
    eta·f(eta/gap), which neither overflows nor underflows where the bound is a normal float.
    Plain arithmetic: works on floats, numpy arrays, mpmath mpf and intervals.
    """
    q = eta / gap
    return {second_scaled}


def sign_bounds(lam_top, lam_second, lam_min, residual_norm_sq):
    """(lower, upper) with lower ≤ a2 ≤ upper, where residual_norm_sq = ‖P⊥Ev‖².

    Needs lam_top > lam_second (γ > 0) and, for lower, lam_top > lam_min.
    Plain arithmetic: works on floats, numpy arrays, mpmath mpf and intervals.
    """
    lower = {lower}
    upper = {upper}
    return lower, upper
'''
