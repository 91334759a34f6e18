"""Throughput of ``fimtheory verify --profile thorough``: CPU seconds per claim and per shard.

Two modes (``python -m benchmarks.verify_throughput MODE --help``):

``tasks``
    One seed-task per claim (task ``j`` of the ``--seeds-per-claim K`` split, i.e. ⌈10⁴/K⌉
    examples with the same seed the sharded run gives it), each run in this process with
    :func:`properties.verify.check_property`. Records per claim the CPU seconds
    (``time.process_time``, threads pinned to 1), the wall seconds, the load average around the
    task, the report, and an *outcome digest*: SHA-256 over every example's float outcome fed to
    Hypothesis' ``target`` and every adjudication (instance, float margin, verdict, mp margin,
    enclosure, dps, reason, ladder) in call order. Equal digests before and after a speed change
    mean the same examples were drawn and decided the same way. ``--cprofile DIR`` writes a
    cProfile of each task (then CPU seconds include the profiler's overhead). The projection
    of the full run multiplies each claim's CPU seconds by K (its K tasks cost about the same).

``full``
    The measurement itself: N shard processes ``fimtheory verify --profile thorough --shard I/N
    --seeds-per-claim K`` under GNU time (``/usr/bin/time -v``), threads 1, the load average sampled
    every 30 s, then ``fimtheory verify --merge``. Records wall seconds, CPU seconds (user + sys)
    per shard, CPU seconds per task and per claim (from the shard reports' ``cpu_seconds``), GNU
    time's fields, and the merged status. A wall time taken at a load average above the number of
    shards is marked as contended.

The record (``--out``, default ``benchmarks/verify-thorough-throughput.json``) states the command,
the machine and whether the target (``--target-seconds``, 900) was met as measured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "verify-thorough-throughput.json"
TARGET_SECONDS = 900


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - platforms without getloadavg
        return []


def _pin_threads() -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - the env variables above still apply
        pass


def _plain(x):
    """A stable text form of a float / mpf / tuple for the digest."""
    if isinstance(x, tuple | list):
        return [_plain(v) for v in x]
    if isinstance(x, float):
        return repr(x)
    if x is None or isinstance(x, bool | int | str):
        return x
    return repr(x)  # mpf: repr carries every bit at its precision


class OutcomeRecorder:
    """Records, in call order, what a property run fed Hypothesis and what each adjudication
    decided (see the module docstring); :meth:`digest` hashes the record."""

    def __init__(self, keep: bool = False):
        self._hash = hashlib.sha256()
        self.count = {"targets": 0, "adjudications": 0}
        self.keep = keep
        self.rows: list = []

    def _add(self, row) -> None:
        text = json.dumps(row, sort_keys=True, default=str)
        self._hash.update(text.encode())
        self._hash.update(b"\n")
        if self.keep:
            self.rows.append(row)

    def digest(self) -> str:
        return self._hash.hexdigest()

    @contextmanager
    def hooked(self):
        """Wrap ``properties.verify.target`` and ``properties.verify.decide`` for the block."""
        from properties import verify as V
        from properties.serialize import instance_to_json

        orig_target, orig_decide = V.target, V.decide

        def target(value, label=""):
            self.count["targets"] += 1
            self._add(["t", label, _plain(value)])
            return orig_target(value, label=label)

        def decide(subject, instance, out, dps):
            try:
                inst = instance_to_json(instance)
            except Exception:  # noqa: BLE001 - a record, not a check
                inst = repr(instance)
            key = hashlib.sha256(json.dumps(inst, sort_keys=True, default=str).encode()).hexdigest()[:16]
            try:
                d = orig_decide(subject, instance, out, dps)
            except Exception as exc:
                self._add(["a", subject.id, key, _plain(out.margin), "raised", type(exc).__name__, str(exc)])
                raise
            self.count["adjudications"] += 1
            self._add(
                [
                    "a",
                    subject.id,
                    key,
                    _plain(out.margin),
                    bool(out.needs_adjudication),
                    d.verdict,
                    d.holds,
                    _plain(d.margin),
                    _plain(d.enclosure),
                    d.dps,
                    d.reason,
                    d.hypotheses_met,
                ]
            )
            return d

        V.target, V.decide = target, decide
        try:
            yield self
        finally:
            V.target, V.decide = orig_target, orig_decide


def run_task(claim_id: str, *, seed: int, max_examples: int, profile: str = "thorough", dps: int = 50, cprofile=None):
    """One verify task of one claim in this process; the measurements and the outcome digest."""
    from fimtheory.claims import get_claim
    from properties.claim_strategies import strategy_for
    from properties.verify import check_property

    try:  # what `fimtheory verify --shard` installs (absent in older trees)
        from properties import hypothesis_speed

        hypothesis_speed.install()
    except ImportError:
        pass
    claim = get_claim(claim_id)
    rec = OutcomeRecorder()
    load0 = _loadavg()
    c0, w0 = time.process_time(), time.perf_counter()
    with rec.hooked():
        if cprofile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        rep = check_property(
            claim, strategy_for(claim.strategy), profile=profile, seed=seed, dps=dps, max_examples=max_examples
        )
        if cprofile:
            prof.disable()
            Path(cprofile).mkdir(parents=True, exist_ok=True)
            prof.dump_stats(str(Path(cprofile) / f"{claim_id}-seed{seed}.prof"))
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    report = rep.to_json()
    report.pop("seconds")
    return {
        "claim": claim_id,
        "seed": seed,
        "max_examples": max_examples,
        "cpu_seconds": round(cpu, 2),
        "wall_seconds": round(wall, 2),
        "load_average_start": load0,
        "load_average_end": _loadavg(),
        "status": report["status"],
        "examples": report["examples"],
        "adjudicated": report["adjudicated"],
        "ties": report["ties"],
        "report_digest": hashlib.sha256(json.dumps(report, sort_keys=True, default=str).encode()).hexdigest(),
        "outcome_digest": rec.digest(),
        "recorded": dict(rec.count),
        "profiled": bool(cprofile),
    }


def outcome_fingerprints(claim_ids=None, *, seed: int = 20261201, max_examples: int = 40) -> dict:
    """Per claim: the outcome digest and the report (timings dropped) of one quick-profile run of
    ``max_examples`` examples at ``seed`` — what a speed change must leave as it was."""
    from fimtheory.claims import REGISTRY
    from properties.claim_strategies import strategy_for
    from properties.verify import check_property

    out = {}
    for cid in claim_ids or list(REGISTRY):
        claim = REGISTRY[cid]
        rec = OutcomeRecorder()
        with rec.hooked():
            rep = check_property(
                claim, strategy_for(claim.strategy), profile="quick", seed=seed, max_examples=max_examples
            ).to_json()
        rep.pop("seconds")
        out[cid] = {"outcome_digest": rec.digest(), "recorded": dict(rec.count), "report": rep}
    return out


def library_versions() -> dict:
    import hypothesis
    import mpmath
    import numpy

    return {"hypothesis": hypothesis.__version__, "numpy": numpy.__version__, "mpmath": mpmath.__version__}


def compare_mode(args) -> dict:
    """Before / after records of ``tasks`` (same task of every claim): CPU seconds per claim, whether
    each claim's outcome digest and report are unchanged, and the projected CPU seconds per shard
    of the full run (each claim's K tasks costing its measured task, dealt as ``--shard`` deals)."""
    from properties import shard as S

    docs = {}
    for name, path in (
        ("before", args.before),
        ("after", args.after),
        *((("after_gmpy2", args.after_gmpy2),) if args.after_gmpy2 else ()),
    ):
        with open(path, encoding="utf-8") as fh:
            docs[name] = {r["claim"]: r for r in json.load(fh)["tasks"]}
    k = args.seeds_per_claim
    claims = list(docs["before"])
    rows = []
    for cid in claims:
        row = {"claim": cid, "examples_per_task": docs["before"][cid]["max_examples"]}
        for name, d in docs.items():
            r = d.get(cid)
            row[f"cpu_seconds_{name}"] = None if r is None else r["cpu_seconds"]
            if name != "before" and r is not None:
                row[f"identical_{name}"] = (r["outcome_digest"], r["report_digest"]) == (
                    docs["before"][cid]["outcome_digest"],
                    docs["before"][cid]["report_digest"],
                )
        rows.append(row)
    projection = {}
    for name, d in docs.items():
        tasks = [{"claim": c, "j": j, "max_examples": d[c]["max_examples"]} for c in claims if c in d for j in range(k)]
        cost = {c: d[c]["cpu_seconds"] for c in claims if c in d}
        shards = S.assign_shards(tasks, args.shards)
        per_shard = [0.0] * args.shards
        for t, sh in zip(tasks, shards):
            per_shard[sh - 1] += cost[t["claim"]]
        projection[name] = {
            "claims": len(cost),
            "cpu_seconds_total": round(sum(cost.values()) * k, 1),
            "cpu_seconds_per_shard": [round(x, 1) for x in per_shard],
            "load_average_highest_seen": max((d[c]["load_average_end"] for c in cost), default=None),
        }
    return {
        "mode": "compare",
        "what": f"one task per claim (j = {docs['before'][claims[0]].get('j', 0)} of --seeds-per-claim {k}) measured "
        "before and after the speed-ups; the full-run figures are a PROJECTION (each claim's K tasks cost "
        "its measured task; shards dealt by properties.shard.assign_shards), not a measurement",
        "records": {"before": args.before, "after": args.after, "after_gmpy2": args.after_gmpy2},
        "per_claim": rows,
        "projection": projection,
    }


def _mpmath_backend() -> str:
    """'gmpy' when the optional gmpy2 accelerator is used by mpmath, else 'python'."""
    import mpmath.libmp

    return str(mpmath.libmp.BACKEND)


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def tasks_mode(args) -> dict:
    from fimtheory.claims import REGISTRY
    from properties.shard import plan_tasks

    _pin_threads()
    ids = args.claim or list(REGISTRY)
    plan = plan_tasks(ids, profile=args.profile, run_seed=args.seed, seeds_per_claim=args.seeds_per_claim)
    mine = [t for t in plan if t["j"] == args.task]
    rows = []
    for t in mine:
        row = run_task(
            t["claim"], seed=t["seed"], max_examples=t["max_examples"], profile=args.profile, cprofile=args.cprofile
        )
        row["j"] = t["j"]
        rows.append(row)
        print(
            f"{row['claim']:<14} seed {row['seed']:>10}  {row['cpu_seconds']:8.2f} CPU s  {row['wall_seconds']:8.2f} "
            f"wall s  {row['status']}  adjud. {row['adjudicated']}  digest {row['outcome_digest'][:12]}  "
            f"load {row['load_average_end']}",
            flush=True,
        )
    k = args.seeds_per_claim
    per_claim = {r["claim"]: round(r["cpu_seconds"] * k, 1) for r in rows}
    return {
        "mode": "tasks",
        "mpmath_backend": _mpmath_backend(),
        "libraries": library_versions(),
        "command": "python -m benchmarks.verify_throughput " + " ".join(sys.argv[2:]),
        "git_head": _git_head(),
        "python": platform.python_version(),
        "task_index": args.task,
        "seeds_per_claim": k,
        "tasks": rows,
        "cpu_seconds_total": round(sum(r["cpu_seconds"] for r in rows), 1),
        "projected_cpu_seconds_per_claim": per_claim,
        "projection_note": f"NOT measured: each claim's CPU seconds on task {args.task} times {k} (its {k} tasks)",
    }


def _parse_gnu_time(text: str) -> dict:
    fields = {
        "user_s": r"User time \(seconds\): ([\d.]+)",
        "system_s": r"System time \(seconds\): ([\d.]+)",
        "wall": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)",
        "max_rss_kb": r"Maximum resident set size \(kbytes\): (\d+)",
        "cpu_percent": r"Percent of CPU this job got: (\d+)%",
        "exit_status": r"Exit status: (\d+)",
    }
    out = {}
    for key, pattern in fields.items():
        m = re.search(pattern, text)
        out[key] = m.group(1) if m else None
    return out


def full_mode(args) -> dict:
    exe = shutil.which("fimtheory")
    base = [exe] if exe else [sys.executable, "-m", "fimtheory"]
    gnu_time = shutil.which("time") or "/usr/bin/time"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    work = Path(tempfile.mkdtemp(prefix="verify-throughput-"))
    n, k = args.shards, args.seeds_per_claim
    claims = [a for c in (args.claim or []) for a in ("--claim", c)]
    samples: list = []
    stop = threading.Event()

    def sample():
        while not stop.wait(30.0):
            samples.append(_loadavg()[0] if _loadavg() else None)

    load0 = _loadavg()
    if load0 and load0[0] >= args.quiet_load:
        print(
            f"warning: load average {load0[0]} >= {args.quiet_load} at the start: the wall time will be contended",
            file=sys.stderr,
        )
    t0 = time.perf_counter()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    procs = []
    for i in range(1, n + 1):
        cmd = [gnu_time, "-v", *base, "verify", "--profile", "thorough", "--seed", str(args.seed), *claims,
               "--shard", f"{i}/{n}", "--seeds-per-claim", str(k), "--json", str(work / f"s{i}.json")]  # fmt: skip
        err = open(work / f"s{i}.time", "w")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err), err))
    codes = []
    for p, err in procs:
        codes.append(p.wait())
        err.close()
    wall = time.perf_counter() - t0
    stop.set()
    load1 = _loadavg()
    merged_path = work / "merged.json"
    merge = subprocess.run(
        [*base, "verify", "--merge", *(str(work / f"s{i}.json") for i in range(1, n + 1)), "--json", str(merged_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    shards = {f"shard {i}": _parse_gnu_time((work / f"s{i}.time").read_text()) for i in range(1, n + 1)}
    cpu = {
        name: round(float(g["user_s"] or 0) + float(g["system_s"] or 0), 2) if g["user_s"] else None
        for name, g in shards.items()
    }
    per_task, per_claim = [], {}
    for i in range(1, n + 1):
        doc = json.loads((work / f"s{i}.json").read_text())
        for t in doc["tasks"]:
            row = {
                "shard": i,
                "claim": t["claim"],
                "j": t["j"],
                "seed": t["seed"],
                "examples": t["report"]["examples"],
                "status": t["report"]["status"],
                "wall_seconds": t["report"]["seconds"],
                "cpu_seconds": t.get("cpu_seconds"),
            }
            per_task.append(row)
            c = per_claim.setdefault(
                t["claim"], {"claim": t["claim"], "cpu_seconds": 0.0, "examples": 0, "statuses": []}
            )
            c["cpu_seconds"] = round(c["cpu_seconds"] + (row["cpu_seconds"] or 0.0), 2)
            c["examples"] += row["examples"]
            c["statuses"].append(row["status"])
    merged = json.loads(merged_path.read_text()) if merged_path.exists() else None
    valid = [s for s in samples if s is not None]
    contended = bool(valid) and max(valid) > n + 0.5
    return {
        "mode": "full",
        "command": f"{n} processes: fimtheory verify --profile thorough --seed {args.seed} --shard I/{n} "
        f"--seeds-per-claim {k} --json sI.json (I = 1..{n}, OMP/MKL/OpenBLAS threads 1) under /usr/bin/time -v, "
        "then fimtheory verify --merge; recorded by python -m benchmarks.verify_throughput full",
        "git_head": _git_head(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "mpmath_backend": _mpmath_backend(),
        "machine": f"{os.cpu_count()} logical cores ({platform.machine()})",
        "complete": all(c == 0 for c in codes) and merge.returncode == 0,
        "shard_exit_codes": codes,
        "wall_seconds": round(wall, 1),
        "target_seconds": args.target_seconds,
        "target_met_measured": (not contended) and wall <= args.target_seconds,
        "wall_contended": contended,
        "cpu_seconds_per_shard": cpu,
        "gnu_time": shards,
        "load_average_start": load0,
        "load_average_end": load1,
        "load_average_1min_samples_every_30s": {
            "min": min(valid) if valid else None,
            "median": sorted(valid)[len(valid) // 2] if valid else None,
            "max": max(valid) if valid else None,
            "count": len(valid),
        },
        "per_claim": sorted(per_claim.values(), key=lambda c: -c["cpu_seconds"]),
        "per_task": per_task,
        "merged_status": (
            f"{sum(c['status'] == 'verified' for c in merged['claims'])} of {len(merged['claims'])} claims verified "
            f"(merge exit status {merge.returncode})"
            if merged
            else f"merge failed: {merge.stderr.strip()}"
        ),
        "merged_table": merge.stdout,
        "note": "cpu_seconds are user + system CPU seconds; per-task CPU seconds come from the shard reports "
        "(time.process_time around each task); a wall time measured at a load average above the number of shards "
        "is contended and not the unloaded wall time",
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.verify_throughput", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("tasks", help="one seed-task per claim in this process: CPU seconds and outcome digests")
    t.add_argument("--claim", action="append", help="claim id (repeatable; default: every claim)")
    t.add_argument("--task", type=int, default=0, help="which task j of each claim (default 0)")
    t.add_argument("--cprofile", metavar="DIR", help="write a cProfile of each task into DIR")
    f = sub.add_parser("full", help="the sharded thorough run under GNU time")
    f.add_argument("--claim", action="append", help="claim id (repeatable; default: every claim)")
    f.add_argument("--shards", type=int, default=2)
    f.add_argument("--target-seconds", type=int, default=TARGET_SECONDS)
    f.add_argument("--quiet-load", type=float, default=2.5, help="warn when the start load average is above this")
    for q in (t, f):
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--seeds-per-claim", type=int, default=4)
        q.add_argument("--profile", default="thorough")
        q.add_argument("--out", help=f"record JSON (default for full: {DEFAULT_OUT.relative_to(ROOT)})")
    c = sub.add_parser("compare", help="before / after tasks records: per claim and projected per shard")
    c.add_argument("--before", required=True)
    c.add_argument("--after", required=True)
    c.add_argument("--after-gmpy2")
    c.add_argument("--seeds-per-claim", type=int, default=4)
    c.add_argument("--shards", type=int, default=2)
    c.add_argument("--out")
    g = sub.add_parser("fingerprints", help="outcome digests of a short run of every claim (a regression record)")
    g.add_argument("--seed", type=int, default=20261201)
    g.add_argument("--max-examples", type=int, default=40)
    g.add_argument("--out", required=True)
    args = p.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if args.mode == "fingerprints":
        doc = {
            "what": "outcome digests of check_property per claim (quick profile): "
            "the record of tests/test_verify_outcomes_unchanged.py",
            "command": "python -m benchmarks.verify_throughput " + " ".join(sys.argv[2:] if argv is None else argv[1:]),
            "git_head": _git_head(),
            "seed": args.seed,
            "max_examples": args.max_examples,
            "versions": library_versions(),
            "claims": outcome_fingerprints(seed=args.seed, max_examples=args.max_examples),
        }
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.write("\n")
        print(f"wrote {args.out}")
        return 0
    if args.mode == "compare":
        pass
    elif args.mode == "tasks" and args.task not in range(args.seeds_per_claim):
        p.error(f"--task must be in 0..{args.seeds_per_claim - 1}")
    if args.mode == "full" and args.profile != "thorough":
        p.error("full measures the thorough profile only")
    modes = {"tasks": tasks_mode, "full": full_mode, "compare": compare_mode}
    doc = modes[args.mode](args)
    out = args.out or (str(DEFAULT_OUT) if args.mode == "full" else None)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
            fh.write("\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
