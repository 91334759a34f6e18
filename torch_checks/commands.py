"""CLI plugins of torch_checks: ``fimtheory check-models`` and ``fimtheory inflation``.

``add_arguments`` never imports torch (the CLI builds its parser for every command); ``run``
does, lazily.

``fimtheory check-models [--model NAME ...] [--scheme SPEC ...] [--bits B ...]
[--device cpu|cuda|auto] [--profile quick|full] [--json PATH] [--seed N] [--byte-lm tiny|default]``
prints a results table (header first, with the byte LM's held-out bits/byte), optionally
writes JSON (:mod:`torch_checks.report`), shows progress on stderr (a bar on a terminal,
plain lines otherwise), and exits 0 iff no check is falsified (2 on bad input, with one
line, before any work: ``--json`` and ``--seed`` are checked by :mod:`fimtheory.cli`).
"""

from __future__ import annotations

import argparse
import os
import time

from fimtheory.cli import Command, add_seed_argument, check_output_dir, output_dir, output_file
from fimtheory.errors import UnknownIdError

MODEL_CHOICES = ("logistic", "mlp-digits", "byte-lm", "smollm2", "smollm2-block", "gemma3", "textgenrnn")


def _check_models_add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help=f"model to check (repeatable; one of {', '.join(MODEL_CHOICES)}, or your own: a Hugging Face "
        "directory, a .gguf file or module:callable; default: the profile's models)",
    )
    p.add_argument(
        "--scheme",
        action="append",
        metavar="SPEC",
        help="quantization scheme spec, e.g. rtn-int4-sym-channel, rtn-int4-asym-g32, "
        "nf4-b64, fp4-b32, sr-int4-sym-channel, or a template with {b} "
        "(repeatable; default: the profile's schemes)",
    )
    p.add_argument(
        "--bits",
        action="append",
        type=int,
        metavar="B",
        help="bit width for the integer schemes (repeatable; default 4 in quick, "
        "4 8 3 2 in full); 4-bit formats (nf4, fp4, gguf) run only with 4",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument(
        "--params",
        metavar="SPEC",
        default=None,
        help="score this parameter group instead of each model's default: glob patterns over parameter "
        "names, comma-separated, or @default/@last-block/@attention/@mlp/@embeddings-norms/@all",
    )
    p.add_argument("--profile", default="quick", help="quick (default) or full")
    p.add_argument(
        "--json", metavar="PATH", type=output_file, help="write the results as JSON to PATH (its directory must exist)"
    )
    add_seed_argument(p, "seed of SR draws, contexts, directions")
    p.add_argument(
        "--byte-lm",
        dest="byte_lm",
        default=None,
        choices=("tiny", "default"),
        help="byte LM config (default: the profile's, 'default')",
    )


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def _check_models_run(args: argparse.Namespace) -> int:
    from fimtheory.errors import require

    require("torch", "check-models", "torch")
    from . import checks as C
    from . import report as R
    from .device import resolve_device

    profile = C.get_profile(args.profile)
    if args.byte_lm:
        profile = C.with_overrides(profile, byte_lm=args.byte_lm)
    models = list(args.model or profile.models)
    from .user_model import check_model_spec, is_model_spec

    for m in models:  # a model the user brings: InputError (exit 2) for a bad path, before any work
        if m not in MODEL_CHOICES and is_model_spec(m):
            check_model_spec(m)
    bad = [m for m in models if m not in MODEL_CHOICES and not is_model_spec(m)]
    if bad:
        raise UnknownIdError(f"unknown model {bad[0]!r}; known: {', '.join(MODEL_CHOICES)}")
    device = resolve_device(args.device)  # InputError (exit 2) for cuda without CUDA
    if args.bits:
        bad_bits = [b for b in args.bits if not 2 <= b <= 8]
        if bad_bits:
            raise UnknownIdError(f"bits must be in 2..8, got {bad_bits[0]}")
    bits = tuple(args.bits or profile.bits)
    schemes = C.expand_schemes(args.scheme or profile.scheme_templates, bits, substitute_bits=bool(args.bits))
    if not schemes:
        raise UnknownIdError("no scheme left to run (a 4-bit-only format without 4 in --bits?)")
    t0, c0 = time.perf_counter(), time.process_time()
    # a tqdm bar on a terminal, one plain line per step otherwise (logs, CI)
    bar = R.Progress(total=len(models) * (len(schemes) + 2))
    try:
        result = C.run_checks(
            models,
            schemes,
            profile,
            device=device,
            seed=args.seed,
            progress=bar,
            model_schemes=not args.scheme,
            params=args.params,
        )
    finally:
        bar.close()
    rows = [r.to_json() for r in result.rows]
    header = C._jsonable(
        {
            **result.header,
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "cpu_seconds": round(time.process_time() - c0, 2),
            "load_average": _load_average(),
        }
    )
    print(R.format_header(header))
    print(R.format_table(rows))
    summ = R.summary(rows, header.get("profile"))
    print(
        f"wall {header['wall_seconds']:.1f} s (CPU {header['cpu_seconds']:.1f} s), "
        f"load average {header['load_average']}, "
        f"statuses {summ['statuses']}"
    )
    if args.json:
        R.write_json(args.json, header, rows)
    return summ["exit_status"]


CHECK_MODELS = Command(
    "check-models",
    "check R/S2/T4.3/Prop 3.2/C on real models' FIMs under real quantization (torch)",
    _check_models_add_arguments,
    _check_models_run,
)


def _inflation_add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="quick", choices=("quick", "paper"), help="quick (default) or paper")
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        type=output_dir,
        help="output directory, created if its parent exists "
        "(default results/inflation-<profile>, created with its parents)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    add_seed_argument(p, "seed of the model draws, quantizer draws and bootstrap")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoints in DIR/shards of the same settings instead of recomputing",
    )
    p.add_argument(
        "--model",
        action="append",
        metavar="LABEL",
        help="run only this model of the profile (repeatable); the report lists the models not run; "
        "gemma3 and textgenrnn (pretrained, their extras installed) join any profile, and when only "
        "they are named the report covers just them",
    )
    p.add_argument(
        "--report-only",
        dest="report_only",
        action="store_true",
        help="compute nothing: build the report from the checkpoints in DIR/shards (partial if some are missing)",
    )
    p.add_argument(
        "--ci-pilot",
        dest="ci_pilot",
        metavar="PILOT_DIR",
        default=None,
        help="next stage of the two-stage CI design: size each model's n from PILOT_DIR/report.json's "
        "half-widths at the target bits and run only those cells (rho_fixed and the first-order prediction) "
        "on a fresh sample of trajectories (default --out results/inflation-<profile>-ci4-s<stream>)",
    )
    p.add_argument(
        "--ci-margin",
        dest="ci_margin",
        type=float,
        default=1.5,
        metavar="M",
        help="with --ci-pilot: n = ceil(M * n_pilot * (hw_pilot/target)^2) (default 1.5)",
    )
    p.add_argument(
        "--ci-stream",
        dest="ci_stream",
        type=int,
        default=None,
        metavar="K",
        help="with --ci-pilot: the fresh sample's stream (default: the pilot's + 1)",
    )
    p.add_argument(
        "--ci-no-first-order",
        dest="ci_first_order",
        action="store_false",
        help="with --ci-pilot: measure rho_fixed only (a sizing stage)",
    )


def _inflation_run(args: argparse.Namespace) -> int:
    from fimtheory.errors import require

    if args.out is None:  # the default may create results/ too: check its nearest existing ancestor
        ancestor = os.path.join("results", f"inflation-{args.profile}")
        while ancestor and not os.path.exists(ancestor):
            ancestor = os.path.dirname(ancestor)
        check_output_dir(ancestor or ".", "--out")
    require("torch", "inflation", "torch")
    from .monitor_study import inflation_command

    return int(inflation_command(args))


INFLATION = Command(
    "inflation",
    "measure the calibration-threshold inflation ratio ρ of quantized models (docs/theory.md §7)",
    _inflation_add_arguments,
    _inflation_run,
)
