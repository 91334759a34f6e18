"""CLI plugins of the properties package: verify, counterexamples, replay.

``fimtheory verify`` exits 0 when nothing was falsified (and, under ``--profile ci`` or
``thorough``, nothing was inconclusive or an error), 1 on a certified falsification, 2 on
bad input (before any work), 3 when a ci/thorough run was inconclusive or errored.
"""

from __future__ import annotations

import argparse
import json
import os

from fimtheory.cli import (
    Command,
    ProgressLines,
    add_seed_argument,
    output_dir,
    output_file,
)

PROFILE_HELP = "quick (100 examples per claim), ci (150, derandomized) or thorough (10,000); default quick"


VERIFY_EPILOG = (
    "A claim is 'verified' only when every requested example ran, met the hypotheses and held; a run "
    "that stopped early or met an undecided instance is 'inconclusive' with its stop reason. Exit "
    "status: 0 nothing falsified (under ci/thorough also nothing inconclusive or error), 1 a certified "
    "falsification, 2 bad input (before any work), 3 inconclusive or error under ci/thorough."
)


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.epilog = VERIFY_EPILOG
    p.add_argument(
        "--claim", action="append", metavar="ID", help="claim id (repeatable; default all; see `fimtheory claims`)"
    )
    p.add_argument("--profile", choices=["quick", "ci", "thorough"], default="quick", help=PROFILE_HELP)
    add_seed_argument(p, "Hypothesis seed")
    p.add_argument("--dps", type=int, default=50, help="starting mpmath digits of the adjudicator (>= 40; default 50)")
    p.add_argument(
        "--json",
        metavar="PATH",
        type=output_file,
        help="write the report as JSON to PATH (its directory must exist); rewritten after each claim",
    )
    p.add_argument(
        "--subject",
        metavar="MODULE:CALLABLE",
        help="check the --claim ids on your implementation: a λ_max engine (W, R, AB), a rounding rule "
        "(T4.3a, T4.3b), a score function (EF, W) or a torch model (T4.3a, ENGINE); see properties.subjects. "
        "A certified counterexample is written to .fimtheory/counterexamples/",
    )
    p.add_argument(
        "--subject-kind",
        choices=["lambda_max", "quantizer", "score", "torch_model"],
        help="what --subject is (default: its fimtheory_subject_kind attribute, else the claim's first kind: "
        "lambda_max for W/R/AB, quantizer for T4.3a/T4.3b)",
    )
    p.add_argument(
        "--score-model",
        choices=["logistic", "softmax"],
        help="the model a score subject computes the scores of (default: its fimtheory_model attribute)",
    )
    p.add_argument(
        "--progress-interval",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds between progress lines on stderr within a claim when stderr is not a terminal (default 30)",
    )
    from properties.shard import add_shard_arguments

    add_shard_arguments(p)  # --shard I/N, --seeds-per-claim K, --merge FILES (properties.shard)


def _write_json_atomically(path: str, doc: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def _verify_document(args, reports, *, complete: bool) -> dict:
    from properties.verify import PROFILES, exit_status

    statuses = {}
    for r in reports:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    return {
        "profile": args.profile,
        "seed": args.seed,
        "dps": args.dps,
        "examples_requested": PROFILES[args.profile]["max_examples"],
        "complete": complete,
        "claims": [r.to_json() for r in reports],
        "statuses": statuses,
        "all_verified": bool(reports) and all(r.status == "verified" for r in reports),
        "exit_status": exit_status(reports, args.profile),
    }


def _verify_run(args) -> int:
    from fimtheory.claims import get_claim
    from fimtheory.errors import InputError
    from properties.verify import exit_status, format_table, verify

    if not getattr(args, "subject", None) and (
        getattr(args, "subject_kind", None) or getattr(args, "score_model", None)
    ):
        raise InputError("--subject-kind and --score-model apply only with --subject")
    if getattr(args, "subject", None):
        from properties.subjects import verify_subject_command

        return verify_subject_command(args)
    if getattr(args, "shard", None) or getattr(args, "merge", None) or getattr(args, "seeds_per_claim", 1) != 1:
        from properties.shard import shard_command

        return shard_command(args)
    for cid in args.claim or []:
        get_claim(cid)  # unknown ids fail before any work
    if args.dps < 40:
        raise InputError(f"--dps must be >= 40 for adjudication, got {args.dps}")
    if not args.progress_interval > 0:
        raise InputError(f"--progress-interval must be > 0, got {args.progress_interval}")
    bar = ProgressLines("verify", interval=args.progress_interval)
    done: list = []

    def progress(i, n, cid):
        if cid:
            bar.step(f"[{i + 1}/{n}] {cid} ({args.profile})")

    def heartbeat(rep):
        bar.tick(
            f"{rep.id}: {rep.examples}/{rep.examples_requested} examples, "
            f"{rep.rejected} not met, {rep.adjudicated} adjudicated"
        )

    def on_report(rep):
        done.append(rep)
        bar.step(f"{rep.id}: {rep.status}, {rep.examples}/{rep.examples_requested} examples in {rep.seconds:.1f} s")
        if args.json:  # partial results survive an interrupted long run
            _write_json_atomically(args.json, _verify_document(args, done, complete=False))

    reports = verify(
        args.claim,
        profile=args.profile,
        seed=args.seed,
        dps=args.dps,
        progress=progress,
        heartbeat=heartbeat,
        on_report=on_report,
        progress_interval=min(args.progress_interval, 5.0),
    )
    bar.close("done")
    if args.json:  # before printing: a closed stdout must not lose the report
        _write_json_atomically(args.json, _verify_document(args, reports, complete=True))
    status = exit_status(reports, args.profile)
    print(format_table(reports))
    falsified = [r.id for r in reports if r.status == "falsified"]
    unsettled = [r.id for r in reports if r.status in ("inconclusive", "error")]
    if falsified:
        print(f"falsified (certified): {', '.join(falsified)}")
    if unsettled:
        print(
            f"inconclusive or error: {', '.join(unsettled)}"
            + (" (exit 3 under this profile)" if status == 3 else " (not a failure under the quick profile)")
        )
    return status


VERIFY = Command("verify", "check every claim as a Hypothesis property", _verify_args, _verify_run)


def _cx_args(p):
    p.add_argument(
        "--claim", action="append", metavar="ID", help="only the weakenings of this claim (repeatable; default all)"
    )
    p.add_argument(
        "--profile",
        choices=["quick", "ci", "thorough"],
        default="quick",
        help="search effort per weakening: quick, ci (derandomized) or thorough; default quick",
    )
    add_seed_argument(p, "Hypothesis seed")
    p.add_argument(
        "--out",
        default="counterexamples",
        metavar="DIR",
        type=output_dir,
        help="directory for the certified counterexample files (created if its parent "
        "exists; default ./counterexamples)",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        type=output_file,
        help="write the hunt report (status and reason per weakening) as JSON to PATH (its directory must exist)",
    )
    p.add_argument(
        "--readings",
        action="store_true",
        help="also test stronger readings of the abstract (RTN never lowers λ_max; σ ≥ 1)",
    )


def _cx_run(args) -> int:
    from properties.counterexamples import hunt_command

    return hunt_command(args)


COUNTEREXAMPLES = Command(
    "counterexamples", "falsify every weakening and store certified counterexamples", _cx_args, _cx_run
)


def _replay_args(p):
    p.add_argument("files", nargs="+", metavar="FILE", help="stored counterexample JSON files to replay")


def _replay_run(args) -> int:
    from properties.counterexamples import replay_command

    return replay_command(args)


REPLAY = Command("replay", "re-check stored counterexamples bit-exactly", _replay_args, _replay_run)
