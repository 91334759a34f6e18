"""``fimtheory derive``: print the symbolic derivations (plugin of the fimtheory CLI).

``fimtheory derive [--what series|remainder|fim-expansion] [--model linear|logistic|softmax]
[--format text|latex|json]``. JSON gives every expression as a string that
``sympy.sympify(s, locals={name: sympy.IndexedBase(name) for name in doc["indexed_bases"]})``
parses back, plus its LaTeX.
"""

from __future__ import annotations

import argparse

from fimtheory.cli import EXIT_OK, Command
from fimtheory.errors import InputError

WHATS = ("series", "remainder", "fim-expansion")
MODELS = ("linear", "logistic", "softmax")
FORMATS = ("text", "latex", "json")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--what", default="series", help=f"one of {', '.join(WHATS)}")
    parser.add_argument(
        "--model",
        default="logistic",
        help=f"for --what fim-expansion: one of {', '.join(MODELS)}",
    )
    parser.add_argument("--format", default="text", help=f"one of {', '.join(FORMATS)}")


def _check_choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise InputError(f"{option} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _series_document() -> dict:
    from symbolic import series

    entries = []
    for k, a in enumerate(series.series_coefficients_bracket_form(series.MAX_ORDER), start=1):
        entries.append((f"a{k}", series.index_form(a), a))
    return {
        "what": "series",
        "statement": "lambda_max(A + t E) = lam[0] + sum_k a_k t^k",
        "conventions": (
            "lam = eigenvalues of A, descending, lam[0] simple; M = V^T E V; indices are "
            "0-based (lam[0] = lambda_1, M[0, 0] = E_11); sums run over 1..n-1. "
            "block_form: e = M[0,1:], B = M[1:,1:], R = diag(1/(lam[0]-lam[1:])), "
            "e_W_e = e^T W e."
        ),
        "indexed_bases": ["lam", "M"],
        "entries": entries,
    }


def _remainder_document() -> dict:
    from symbolic import remainders

    lower, upper = remainders.sign_bounds()
    return {
        "what": "remainder",
        "statement": "S2 (needs 2 eta < gap) and SIGN bounds",
        "conventions": ("eta = ||E||_2, gap = lambda_1 - lambda_2, k >= 1; residual_norm_sq = ||P_perp E v||^2"),
        "indexed_bases": [],
        "entries": [
            ("coefficient_bound", remainders.coefficient_bound(), None),
            ("remainder_bound_first", remainders.remainder_bound_first(), None),
            ("remainder_bound_second", remainders.remainder_bound_second(), None),
            ("sign_lower", lower, None),
            ("sign_upper", upper, None),
        ],
    }


def _fim_document(model: str) -> dict:
    import sympy as sp

    from symbolic import fim

    conventions = (
        "g = vec(r(z) x^T), z = W x, u = Delta x for the step delta = vec(Delta); "
        "h = vec(Dr[u] x^T), t = vec(D2r[u,u] x^T); for zero-mean delta with covariance "
        "diag(V): s_k = sum_j V[k, j] x_j^2 = Var(u_k), E[t] = vec(E[D2r] x^T), "
        "E[h h^T] = E[Dr Dr^T] kron x x^T."
    )
    if model == "softmax":
        link = fim.softmax_link()
        a = fim.dummy
        classes = (a, 0, fim.K - 1)
        sums = {
            fim.mean_u: sp.Sum(fim.p_i[a] * fim.u_i[a], classes),
            fim.mean_u_sq: sp.Sum(fim.p_i[a] * fim.u_i[a] ** 2, classes),
            fim.mean_s: sp.Sum(fim.p_i[a] * fim.s_i[a], classes),
            fim.sum_p_sq_s: sp.Sum(fim.p_i[a] ** 2 * fim.s_i[a], classes),
        }
        k, l = sp.Symbol("k", integer=True), sp.Symbol("l", integer=True)
        plain = {fim.cls: k, fim.cls2: l}

        def expand(e):
            return e.xreplace(sums).xreplace(plain)

        entries = [
            ("residual_k", sp.KroneckerDelta(sp.Symbol("y", integer=True), k) - fim.p_i[k], None),
            ("jvp_factor_k", expand(link.jvp_factor), None),
            ("second_factor_k", expand(link.second_factor), None),
            ("expected_second_factor_k", expand(link.expected_second_factor), None),
            ("expected_outer_factor_kl", expand(link.expected_outer_factor), None),
        ]
        return {
            "what": "fim-expansion",
            "model": model,
            "conventions": conventions + " Softmax: p = softmax(z), r_k = [y = k] - p_k, classes 0..K-1 (0-based).",
            "indexed_bases": ["p", "u", "s"],
            "entries": entries,
        }
    link = fim.scalar_link(model)
    return {
        "what": "fim-expansion",
        "model": model,
        "conventions": conventions + f" Scalar link: p = mu(z) = {sp.sstr(fim.SCALAR_MEANS[model])}, r = y - p, "
        "u = x^T delta, s = x^T Sigma x.",
        "indexed_bases": [],
        "entries": [
            ("mean", fim.SCALAR_MEANS[model], None),
            ("residual", link.residual, None),
            ("dr_dz", link.dr, None),
            ("d2r_dz2", link.d2r, None),
            ("jvp_factor", link.jvp_factor, None),
            ("second_factor", link.second_factor, None),
            ("expected_second_factor", link.expected_second_factor, None),
            ("expected_outer_factor", link.expected_outer_factor, None),
        ],
    }


def build_document(what: str, model: str) -> dict:
    """The derivation for ``what`` (and ``model``) as a JSON-ready dict."""
    import sympy as sp

    _check_choice(what, WHATS, "--what")
    _check_choice(model, MODELS, "--model")
    if what == "series":
        doc = _series_document()
    elif what == "remainder":
        doc = _remainder_document()
    else:
        doc = _fim_document(model)
    rendered = []
    for name, expr, block in doc.pop("entries"):
        item = {"name": name, "expression": sp.sstr(expr), "latex": sp.latex(expr)}
        if block is not None:
            item["block_form"] = sp.sstr(block)
        rendered.append(item)
    doc["entries"] = rendered
    return doc


def _run(args: argparse.Namespace) -> int:
    what = _check_choice(args.what, WHATS, "--what")
    model = _check_choice(args.model, MODELS, "--model")
    fmt = _check_choice(args.format, FORMATS, "--format")
    doc = build_document(what, model)
    if fmt == "json":
        import json

        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return EXIT_OK
    title = doc["what"] + (f" ({doc['model']})" if "model" in doc else "")
    print(f"# {title}: {doc.get('statement', '')}".rstrip(": "))
    print(f"# {doc['conventions']}")
    for item in doc["entries"]:
        if fmt == "latex":
            print(f"{item['name']} = {item['latex']}")
        else:
            print(f"{item['name']} = {item['expression']}")
            if "block_form" in item:
                print(f"    (block form: {item['block_form']})")
    return EXIT_OK


DERIVE = Command(
    name="derive",
    help="print the symbolic derivations (series, remainder, fim-expansion)",
    add_arguments=_add_arguments,
    run=_run,
)
