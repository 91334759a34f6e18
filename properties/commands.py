"""CLI plugins of the properties package: verify, counterexamples, replay."""

from __future__ import annotations

import argparse
import json
import sys

from fimtheory.cli import EXIT_FAILED, EXIT_OK, Command


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--claim", action="append", metavar="ID", help="claim id (repeatable); default all")
    p.add_argument("--profile", choices=["quick", "ci", "thorough"], default="quick")
    p.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default 0)")
    p.add_argument("--dps", type=int, default=50, help="mpmath digits for adjudication (default 50)")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")


def _progress(i, n, cid):
    if sys.stderr.isatty():
        msg = f"\r[{i}/{n}] {cid:<10}" if cid else f"\r[{n}/{n}] done{' ' * 8}\n"
        print(msg, end="", file=sys.stderr, flush=True)


def _verify_run(args) -> int:
    from fimtheory.claims import get_claim
    from properties.verify import format_table, verify

    for cid in args.claim or []:
        get_claim(cid)  # unknown ids fail before any work
    if args.dps < 40:
        from fimtheory.errors import InputError

        raise InputError(f"--dps must be >= 40 for adjudication, got {args.dps}")
    reports = verify(args.claim, profile=args.profile, seed=args.seed, dps=args.dps, progress=_progress)
    print(format_table(reports))
    all_ok = all(r.status in ("verified",) for r in reports)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "profile": args.profile,
                    "seed": args.seed,
                    "dps": args.dps,
                    "claims": [r.to_json() for r in reports],
                    "all_verified": all_ok,
                },
                fh,
                indent=2,
            )
    falsified = [r.id for r in reports if r.status in ("falsified", "error")]
    if falsified:
        print(f"falsified or errored: {', '.join(falsified)}")
    return EXIT_OK if not falsified else EXIT_FAILED


VERIFY = Command("verify", "check every claim as a Hypothesis property", _verify_args, _verify_run)


def _cx_args(p):
    p.add_argument("--claim", action="append", metavar="ID")
    p.add_argument("--profile", choices=["quick", "ci", "thorough"], default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="counterexamples", metavar="DIR")
    p.add_argument("--readings", action="store_true",
                   help="also test stronger readings of the abstract (RTN never lowers λ_max; σ ≥ 1)")


def _cx_run(args) -> int:
    from properties.counterexamples import hunt_command

    return hunt_command(args)


COUNTEREXAMPLES = Command(
    "counterexamples", "falsify every weakening and store certified counterexamples", _cx_args, _cx_run
)


def _replay_args(p):
    p.add_argument("files", nargs="+", metavar="FILE")


def _replay_run(args) -> int:
    from properties.counterexamples import replay_command

    return replay_command(args)


REPLAY = Command("replay", "re-check stored counterexamples bit-exactly", _replay_args, _replay_run)
