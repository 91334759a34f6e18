"""``fimtheory eq1-study``: Eq. 1 and the KL statistic on real language models (a CLI plugin)."""

from __future__ import annotations

import argparse
import json

from fimtheory.cli import EXIT_OK, Command, add_seed_argument, output_file
from fimtheory.errors import InputError


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="byte-lm", help="byte-lm (trained here) or smollm2 (needs the [lm] extra)")
    p.add_argument("--profile", default="quick", help="quick (≈ 10 s on 2 cores) or full")
    add_seed_argument(p, "sampling seed")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    p.add_argument(
        "--json", metavar="PATH", type=output_file, help="write the report (summaries; records with --records) as JSON"
    )
    p.add_argument("--records", action="store_true", help="include every per-step record in the JSON")


def _run(args: argparse.Namespace) -> int:
    from fimtheory.paper_data import _writable_file
    from torch_checks import eq1_study as E

    if args.model not in ("byte-lm", "smollm2"):
        raise InputError(f"--model must be byte-lm or smollm2, got {args.model!r}")
    cfg = E.StudyConfig(model=args.model, profile=args.profile, seed=args.seed, temperature=args.temperature)
    out = _writable_file(args.json, "--json") if args.json else None
    rep = E.run_study(cfg, progress=E.stderr_progress())
    print(E.format_report(rep))
    if out is not None:
        doc = rep if args.records else {k: v for k, v in rep.items() if k != "records"}
        out.write_text(json.dumps(doc, indent=1) + "\n")
    return EXIT_OK


COMMAND = Command(
    "eq1-study", "Eq. 1 λ̂ and the KL statistic against full-vocabulary references on real LMs", _add_arguments, _run
)
