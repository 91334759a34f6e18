"""The verification split across processes: claims × seeds as tasks, shards, one merged report.

A run is ``(claims, profile, run seed, seeds per claim k, dps)``. Each claim is checked by k
independent Hypothesis runs (tasks) whose example counts add up to the profile's request
(N//k, the first N mod k getting one more) and whose seeds are derived from the run seed alone:
task 0 uses the run seed itself (so k = 1 is exactly ``fimtheory verify --seed S``), task j ≥ 1
the first 8 bytes of SHA-256("fimtheory-verify:<run seed>:<claim>:<j>") mod 2³¹. Tasks are dealt
to N shards by longest-processing-time-first on a fixed table of measured CPU cost per example
(:data:`CLAIM_COST`, :func:`shard_of`): the costliest task goes to the least-loaded shard, so the
shards finish together. The assignment is a function of the task list and N alone; what a task
computes never depends on N or on the shard that runs it, and the merge of the shards' reports
equals the merge of the same tasks run serially (:func:`serial_document`), field for field except
the timings (``seconds``, ``cpu_seconds``).

Merging the k runs of one claim: counts add up; worst margin and dps take min / max; kept
adjudications and undecided instances are concatenated in task order (20 kept); the verdict is
``falsified`` if any run falsified (its counterexample kept: the first in task order), else
``error`` if any errored, else ``verified`` only if every run was verified, else ``hypotheses not
met`` if no run met the hypotheses, else ``inconclusive`` with each unsettled run's reason.

Hypothesis also draws some values from the numeric constants of the local modules loaded in
``sys.modules``, so a task reproduces exactly only under the same imports: run every shard, and
the serial reference, through the ``fimtheory`` CLI (which loads every command plugin), not from
a long-lived interpreter that imported other project modules in between.

Under the ``ci`` profile Hypothesis is derandomized (the seed is ignored), so k > 1 would repeat
the same examples: refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time

from fimtheory.errors import InputError

KIND_SHARD = "fimtheory-verify-shard"
KIND_MERGED = "fimtheory-verify-merged"
KEEP = 20
_STATUS_ORDER = ("falsified", "error")


def task_seed(run_seed: int, claim_id: str, j: int) -> int:
    """Seed of task ``j`` of ``claim_id`` (see the module docstring)."""
    if j == 0:
        return int(run_seed)
    digest = hashlib.sha256(f"fimtheory-verify:{int(run_seed)}:{claim_id}:{int(j)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**31


def _split(total: int, k: int) -> list[int]:
    return [total // k + (j < total % k) for j in range(k)]


def plan_tasks(claim_ids, *, profile: str, run_seed: int, seeds_per_claim: int = 1, max_examples=None) -> list[dict]:
    """Every task of the run, in (claim, j) order: ``{"claim", "j", "seed", "max_examples"}``."""
    from properties.verify import PROFILES

    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    if isinstance(seeds_per_claim, bool) or not isinstance(seeds_per_claim, int) or seeds_per_claim < 1:
        raise InputError(f"seeds per claim must be a positive integer, got {seeds_per_claim!r}")
    if seeds_per_claim > 1 and PROFILES[profile]["derandomize"]:
        raise InputError(
            f"profile {profile!r} is derandomized (Hypothesis ignores the seed): more than one seed per claim "
            "would repeat the same examples; use --seeds-per-claim 1 or another profile"
        )
    total = max_examples or PROFILES[profile]["max_examples"]
    if total < seeds_per_claim:
        raise InputError(f"{total} examples per claim cannot be split into {seeds_per_claim} runs")
    tasks = []
    for cid in claim_ids:
        for j, m in enumerate(_split(total, seeds_per_claim)):
            tasks.append({"claim": cid, "j": j, "seed": task_seed(run_seed, cid, j), "max_examples": m})
    return tasks


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` with 1 ≤ I ≤ N → ``(I, N)``."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise InputError(f"--shard must be I/N (e.g. 1/2), got {text!r}") from None
    if not 1 <= i <= n:
        raise InputError(f"--shard I/N needs 1 <= I <= N, got {text!r}")
    return i, n


#: CPU seconds per 1,000 examples of each claim (task 0 of ``--seeds-per-claim 4`` of the thorough
#: profile, seed 0, threads 1, python mpmath backend, measured on the shared machine at load ~13 by
#: ``python -m benchmarks.verify_throughput tasks``; T4.3b-S, T4.3c-S and the EQ1 claims scaled from
#: their measurement before the speed-ups): the weights with which :func:`shard_of` balances the
#: shards. Only the assignment depends on them, never a result; a claim not listed weighs the median.
CLAIM_COST = {
    "W": 5.3,
    "R": 3.9,
    "S": 11.3,
    "S2": 7.3,
    "SIGN": 5.4,
    "T4.3a": 4.8,
    "T4.3b": 11.5,
    "T4.3c": 6.0,
    "T4.3d": 5.2,
    "P3.2": 8.8,
    "AH": 3.8,
    "AB": 6.7,
    "C": 5.4,
    "KT": 5.2,
    "LL": 5.3,
    "S3": 6.4,
    "S3L": 3.8,
    "T4.3b-S": 9.2,
    "T4.3c-S": 4.4,
    "EQ1-M-BOUNDS": 3.3,
    "EQ1-RATIO": 1.5,
    "KL-SORTED": 1.4,
}


def task_cost(task: dict) -> float:
    """The balancing weight of a task: its examples times its claim's :data:`CLAIM_COST`."""
    known = sorted(CLAIM_COST.values())
    per_example = CLAIM_COST.get(task["claim"], known[len(known) // 2])
    return per_example * task["max_examples"]


def assign_shards(tasks: list[dict], count: int) -> list[int]:
    """The shard (1-based) of each task: longest processing time first — tasks by decreasing
    :func:`task_cost` (ties in list order), each to the least-loaded shard so far (ties to the
    lowest index). Deterministic in ``tasks`` and ``count``."""
    order = sorted(range(len(tasks)), key=lambda i: (-task_cost(tasks[i]), i))
    load = [0.0] * count
    shard = [0] * len(tasks)
    for i in order:
        s = min(range(count), key=lambda k: (load[k], k))
        shard[i] = s + 1
        load[s] += task_cost(tasks[i])
    return shard


def shard_of(tasks: list[dict], index: int, count: int) -> list[dict]:
    """Shard ``index`` (1-based) of ``count``: its tasks under :func:`assign_shards`, in list order."""
    return [t for t, s in zip(tasks, assign_shards(tasks, count)) if s == index]


def run_tasks(tasks, *, profile: str, dps: int, on_task=None) -> list[dict]:
    """Run each task with :func:`properties.verify.check_property`; ``[task + {"report": json}]``."""
    from fimtheory.claims import get_claim
    from properties import hypothesis_speed
    from properties.claim_strategies import strategy_for
    from properties.verify import check_property

    hypothesis_speed.install()  # a speed-up only: the same draws, labels and reports
    out = []
    for t in tasks:
        claim = get_claim(t["claim"])
        cpu0 = time.process_time()
        rep = check_property(
            claim,
            strategy_for(claim.strategy),
            profile=profile,
            seed=t["seed"],
            dps=dps,
            max_examples=t["max_examples"],
        )
        done = {**t, "cpu_seconds": round(time.process_time() - cpu0, 3), "report": rep.to_json()}
        out.append(done)
        if on_task:
            on_task(done)
    return out


def _header(claim_ids, profile, run_seed, seeds_per_claim, dps) -> dict:
    return {
        "profile": profile,
        "seed": int(run_seed),
        "dps": int(dps),
        "seeds_per_claim": int(seeds_per_claim),
        "claim_ids": list(claim_ids),
    }


def shard_document(claim_ids, *, profile, run_seed, seeds_per_claim, dps, index, count, results) -> dict:
    return {
        "kind": KIND_SHARD,
        **_header(claim_ids, profile, run_seed, seeds_per_claim, dps),
        "shard": [int(index), int(count)],
        "tasks": results,
    }


def _merge_claim(cid: str, runs: list[dict]) -> dict:
    reps = [r["report"] for r in runs]
    margins = [r["worst_margin"] for r in reps if r["worst_margin"] is not None]
    statuses = [r["status"] for r in reps]
    reasons: dict = {}
    for r in reps:
        for k, v in r["not_met_reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
    merged = {
        "id": cid,
        "status": "verified",
        "examples_requested": sum(r["examples_requested"] for r in reps),
        "examples": sum(r["examples"] for r in reps),
        "rejected": sum(r["rejected"] for r in reps),
        "worst_margin": min(margins) if margins else None,
        "adjudicated": sum(r["adjudicated"] for r in reps),
        "ties": sum(r["ties"] for r in reps),
        "undecided": sum(r["undecided"] for r in reps),
        "max_dps": max(r["max_dps"] for r in reps),
        "adjudications": [a for r in reps for a in r["adjudications"]][:KEEP],
        "undecided_instances": [a for r in reps for a in r["undecided_instances"]][:KEEP],
        "counterexample": None,
        "seconds": round(sum(r["seconds"] for r in reps), 3),
        "cpu_seconds": round(sum(t.get("cpu_seconds") or 0.0 for t in runs), 3),
        "not_met_reasons": dict(sorted(reasons.items())),
        "targeting": all(r["targeting"] for r in reps),
        "stop_reason": "",
        "hypothesis_statistics": {"runs": [r["hypothesis_statistics"] for r in reps]},
        "error": "; ".join(f"seed {t['seed']}: {r['error']}" for t, r in zip(runs, reps) if r["error"]),
        "runs": [
            {"seed": t["seed"], "max_examples": t["max_examples"], "status": r["status"]} for t, r in zip(runs, reps)
        ],
    }
    for status in _STATUS_ORDER:
        hit = [r for r in reps if r["status"] == status]
        if hit:
            merged["status"] = status
            merged["counterexample"] = hit[0]["counterexample"]
            return merged
    if all(s == "verified" for s in statuses):
        return merged
    merged["status"] = "hypotheses not met" if all(s == "hypotheses not met" for s in statuses) else "inconclusive"
    merged["stop_reason"] = "; ".join(
        f"seed {t['seed']} ({r['status']}): {r['stop_reason']}" for t, r in zip(runs, reps) if r["status"] != "verified"
    )
    return merged


def merge_results(header: dict, results: list[dict]) -> dict:
    """The merged report of a run from all its task results (any order, each task once)."""
    from properties.verify import STRICT_PROFILES

    expected = plan_tasks(
        header["claim_ids"],
        profile=header["profile"],
        run_seed=header["seed"],
        seeds_per_claim=header["seeds_per_claim"],
    )
    key = {(t["claim"], t["j"]): t for t in expected}
    got: dict = {}
    for r in results:
        k = (r.get("claim"), r.get("j"))
        if k not in key:
            raise InputError(f"task {k} is not part of this run")
        if k in got:
            raise InputError(f"task {k} appears twice")
        if (r["seed"], r["max_examples"]) != (key[k]["seed"], key[k]["max_examples"]):
            raise InputError(f"task {k} ran with seed {r['seed']} / {r['max_examples']} examples, not as planned")
        got[k] = r
    missing = [k for k in key if k not in got]
    if missing:
        raise InputError(f"{len(missing)} task(s) missing from the shard reports, e.g. {missing[0]}")
    claims = []
    for cid in header["claim_ids"]:
        runs = [got[(t["claim"], t["j"])] for t in expected if t["claim"] == cid]
        claims.append(_merge_claim(cid, runs))
    statuses: dict = {}
    for c in claims:
        statuses[c["status"]] = statuses.get(c["status"], 0) + 1
    st = set(statuses)
    exit_status = (
        1 if "falsified" in st else 3 if header["profile"] in STRICT_PROFILES and st & {"inconclusive", "error"} else 0
    )
    return {
        "kind": KIND_MERGED,
        **header,
        "examples_requested": sum(t["max_examples"] for t in expected) // max(1, len(header["claim_ids"])),
        "complete": True,
        "claims": claims,
        "statuses": statuses,
        "all_verified": bool(claims) and all(c["status"] == "verified" for c in claims),
        "exit_status": exit_status,
    }


def merge_documents(docs: list[dict]) -> dict:
    """Merge the shard documents of one run (every shard exactly once)."""
    if not docs:
        raise InputError("no shard reports to merge")
    for d in docs:
        if not isinstance(d, dict) or d.get("kind") != KIND_SHARD:
            raise InputError("not a shard report of `fimtheory verify --shard` (missing kind)")
    header = {k: docs[0][k] for k in ("profile", "seed", "dps", "seeds_per_claim", "claim_ids")}
    count = docs[0]["shard"][1]
    for d in docs:
        other = {k: d[k] for k in header}
        if other != header or d["shard"][1] != count:
            raise InputError(f"shard {d['shard']} belongs to another run ({other} vs {header})")
    indices = sorted(d["shard"][0] for d in docs)
    if indices != list(range(1, count + 1)):
        raise InputError(f"need each of the shards 1..{count} exactly once, got {indices}")
    return merge_results(header, [t for d in docs for t in d["tasks"]])


def serial_document(claim_ids, *, profile, run_seed, seeds_per_claim=1, dps=50) -> dict:
    """The same run in one process: every task, then the merge (the reference of the shards)."""
    tasks = plan_tasks(claim_ids, profile=profile, run_seed=run_seed, seeds_per_claim=seeds_per_claim)
    header = _header(claim_ids, profile, run_seed, seeds_per_claim, dps)
    return merge_results(header, run_tasks(tasks, profile=profile, dps=dps))


TIMING_KEYS = frozenset({"seconds", "cpu_seconds"})


def without_timings(doc):
    """``doc`` without its timings (``seconds``, ``cpu_seconds``: what equal runs may differ in)."""
    if isinstance(doc, dict):
        return {k: without_timings(v) for k, v in doc.items() if k not in TIMING_KEYS}
    if isinstance(doc, list):
        return [without_timings(v) for v in doc]
    return doc


# --------------------------------------------------------------------------------------- CLI


def add_shard_arguments(p) -> None:
    """``--shard``, ``--seeds-per-claim`` and ``--merge`` of ``fimtheory verify``."""
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="run only shard I of N (1 <= I <= N) of the claims × seeds tasks and write its report with --json; "
        "merge the N reports with --merge",
    )
    p.add_argument(
        "--seeds-per-claim",
        type=int,
        default=1,
        metavar="K",
        help="with --shard: split each claim's examples into K runs with seeds derived from --seed (default 1)",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="SHARD_JSON",
        help="merge the shard reports of one run into one report (printed; written with --json); the run's "
        "claims, profile and seeds come from the reports",
    )


def _write(path: str, doc: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def _table(doc: dict) -> str:
    from properties.verify import ClaimReport, format_table

    reps = []
    for c in doc["claims"]:
        fields = {k: v for k, v in c.items() if k in ClaimReport.__dataclass_fields__}
        fields["worst_margin"] = math.inf if fields["worst_margin"] is None else fields["worst_margin"]
        reps.append(ClaimReport(**fields))
    return format_table(reps)


def shard_command(args) -> int:
    """``fimtheory verify --shard I/N`` or ``--merge FILES`` (validated before any work)."""
    from fimtheory.claims import REGISTRY, get_claim

    if args.shard and args.merge:
        raise InputError("--shard and --merge exclude each other")
    if not args.shard and args.seeds_per_claim != 1:
        raise InputError("--seeds-per-claim needs --shard I/N (use --shard 1/1 for one process)")
    if args.merge:
        docs = []
        for path in args.merge:
            try:
                with open(path, encoding="utf-8") as fh:
                    docs.append(json.load(fh))
            except (OSError, json.JSONDecodeError) as exc:
                raise InputError(f"cannot read shard report {path}: {exc}") from None
        doc = merge_documents(docs)
        if args.json:
            _write(args.json, doc)
        print(_table(doc))
        return doc["exit_status"]
    index, count = parse_shard(args.shard)
    if not args.json:
        raise InputError("--shard needs --json PATH for the shard report")
    if args.dps < 40:
        raise InputError(f"--dps must be >= 40 for adjudication, got {args.dps}")
    ids = [get_claim(c).id for c in args.claim] if args.claim else list(REGISTRY)
    tasks = plan_tasks(ids, profile=args.profile, run_seed=args.seed, seeds_per_claim=args.seeds_per_claim)
    mine = shard_of(tasks, index, count)
    results: list = []

    def save(done=None):
        if done is not None:
            results.append(done)
            print(f"shard {index}/{count}: {done['claim']} seed {done['seed']}: {done['report']['status']}", flush=True)
        doc = shard_document(
            ids,
            profile=args.profile,
            run_seed=args.seed,
            seeds_per_claim=args.seeds_per_claim,
            dps=args.dps,
            index=index,
            count=count,
            results=results,
        )
        _write(args.json, doc)

    run_tasks(mine, profile=args.profile, dps=args.dps, on_task=save)
    save()
    statuses = {t["report"]["status"] for t in results}
    return 1 if "falsified" in statuses else 0
