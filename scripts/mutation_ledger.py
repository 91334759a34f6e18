"""The mutation ledger: per-module mutation scores as committed results.

A mutation run (``scripts/mutation.sh``) leaves in its work directory the mutants' ``.meta``
files (mutmut's exit code per mutant), ``run-info.txt`` (group, HEAD, start/end, wall seconds)
and ``kill-checks.jsonl`` (every ``scripts/mutation.sh check``: mutant, pytest selection,
result, digests of the killer files). ``collect`` turns the runs of one module into
``results/mutation/<module>.json`` (e.g. ``properties.certify.json``):

* every mutant's status in the run (killed, timeout, survived, no tests, not checked, …);
* for each survivor, its disposition: **killed** by a recorded kill check (the selection passed
  on the original and failed with the mutant active, in the same ``check`` invocation),
  **equivalent** (the argument, from a committed equivalents file), or **open**;
* the counts and the score: killed (by the run or by a recorded check) / checked, and the same
  with the equivalent mutants counted out.

A survivor counts as killed only through a recorded check: nothing is entered by hand. The
README region ``mutation`` and ``tests/test_mutation_ledger.py`` read these files.

Usage::

    python scripts/mutation_ledger.py collect properties/certify.py RUN_DIR [RUN_DIR ...] \\
        [--equivalent results/mutation/equivalent/properties.certify.json] \\
        [--out results/mutation/properties.certify.json]
    python scripts/mutation_ledger.py table            # per-module table of the committed ledger
    python scripts/mutation_ledger.py recheck results/mutation/properties.certify.json  # re-run its kill checks
"""

from __future__ import annotations

import argparse
import collections
import glob
import hashlib
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEDGER_DIR = os.path.join(ROOT, "results", "mutation")

#: mutmut 3's exit codes in the ``.meta`` files (as ``scripts/mutation.sh score`` reads them)
STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    -11: "segfault",
    -9: "segfault",
    None: "not checked",
}
#: statuses that need a disposition (a recorded kill check, an equivalence argument, or open). A
#: segfault (SIGSEGV, or SIGKILL from a loaded machine's OOM killer) is not taken as a kill by itself.
SURVIVING = ("survived", "no tests", "segfault", "not reached by the run; checked")


class LedgerError(Exception):
    """A run directory or an equivalents file cannot back a ledger entry."""


def module_name(path: str) -> str:
    """``properties/certify.py`` -> ``properties.certify`` (mutmut's prefix of its mutant names)."""
    if not path.endswith(".py"):
        raise LedgerError(f"{path!r} is not a Python module path")
    return path[: -len(".py")].replace("/", ".")


def _sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def read_run_info(run_dir: str) -> dict:
    path = os.path.join(run_dir, "run-info.txt")
    if not os.path.exists(path):
        if os.path.isdir(os.path.join(run_dir, "mutants")):  # stopped before it wrote run-info.txt
            return {"group": "unknown", "head": "", "filter": "run stopped before it wrote run-info.txt"}
        raise LedgerError(f"{run_dir}: no run-info.txt and no mutants/ (not a run of scripts/mutation.sh)")
    with open(path, encoding="utf-8") as fh:
        text = fh.read().strip()
    info = dict(re.findall(r"(\w+)=(\S+)", text.split(" filter=")[0]))
    info["filter"] = text.split(" filter=", 1)[1] if " filter=" in text else "all"
    return info


def run_statuses(run_dir: str, module: str) -> dict[str, str]:
    """Mutant name -> status, for the mutants of ``module`` in the run's ``.meta`` files."""
    out = {}
    prefix = module + ".x"
    for meta in glob.glob(os.path.join(run_dir, "mutants", "**", "*.py.meta"), recursive=True):
        with open(meta, encoding="utf-8") as fh:
            codes = json.load(fh)["exit_code_by_key"]
        for key, code in codes.items():
            if key.startswith(prefix):
                out[key] = STATUS.get(code, "suspicious")
    if not out:  # a run stopped before mutmut wrote its status files: the mutants, none checked
        src = os.path.join(run_dir, "mutants", *module.split(".")) + ".py"
        if os.path.exists(src):
            with open(src, encoding="utf-8") as fh:
                names = re.findall(r"^\s*def (x[_ǁ]\S+?__mutmut_\d+)\(", fh.read(), flags=re.M)
            out = {f"{module}.{n}": "not checked" for n in names}
    return out


def _valid_checks(run_dir: str):
    """The records of ``run_dir/kill-checks.jsonl`` for mutants, each after its original passed."""
    path = os.path.join(run_dir, "kill-checks.jsonl")
    if not os.path.exists(path):
        return
    original_ok = False
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec["mutant"] == "":
                original_ok = rec["result"] == "original-passes"
            elif original_ok:
                yield rec


def recorded_checks(run_dir: str) -> set[str]:
    """The mutants a recorded check ran (killed or survived) after its original passed."""
    return {r["mutant"] for r in _valid_checks(run_dir) if r["result"] in ("killed", "survived")}


def recorded_kills(run_dir: str) -> dict[str, dict]:
    """Mutant -> the first recorded check that killed it (after its original passed)."""
    kills: dict[str, dict] = {}
    for rec in _valid_checks(run_dir):
        if rec["result"] == "killed" and rec["mutant"] not in kills:
            kills[rec["mutant"]] = {
                "selection": rec["selection"],
                "utc": rec["utc"],
                "fresh": rec["fresh"],
                "check_dir": os.path.basename(os.path.normpath(run_dir)),
            }
    return kills


def _selection_files(selection: str) -> list[str]:
    return [t.split("::")[0] for t in selection.split() if t.startswith("tests/") and ".py" in t]


def function_sources(path: str) -> dict[str, str]:
    """mutmut's function key (``x_f``, ``xǁClassǁmethod``) -> the source text of that function."""
    import ast

    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[f"x_{node.name}"] = ast.get_source_segment(text, node)
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[f"xǁ{node.name}ǁ{sub.name}"] = ast.get_source_segment(text, sub)
    return out


def _function_key(module: str, mutant: str) -> str:
    return re.sub(r"__mutmut_\d+$", "", mutant[len(module) + 1 :])


def collect(
    module_path: str, run_dirs: list[str], equivalent_path: str | None = None, check_dirs: list[str] = ()
) -> dict:
    """The ledger entry of ``module_path`` from ``run_dirs`` (later runs take precedence per mutant).

    The version scored is the last run's copy of the module. mutmut numbers the mutants of each
    function from that function's code alone, so an earlier run's result (and a check recorded on
    its copy) is used for a function only where that function's source is the same in both copies;
    the other functions' mutants must come from a run of the scored version.

    ``check_dirs``: copies of a run directory where kill checks were made (a run still going, or
    stopped before it wrote ``run-info.txt``); each counts for the run whose mutated module
    (``mutants/<module>``) is byte for byte the same.
    """
    if not run_dirs:
        raise LedgerError("collect needs at least one run directory")
    module = module_name(module_path)
    sources = []
    for d in run_dirs:
        src = os.path.join(d, module_path)
        if not os.path.exists(src):
            raise LedgerError(f"{d}: the run's copy has no {module_path}")
        sources.append(function_sources(src))
    final = sources[-1]
    statuses: dict[str, str] = {}
    kills: dict[str, dict] = {}
    checked_by_check: set[str] = set()
    runs, shas = [], []
    mutated = {}
    for d in run_dirs:
        path = os.path.join(d, "mutants", module_path)
        mutated.setdefault(_sha256(path) if os.path.exists(path) else None, []).append(d)
    extra_checks = collections.defaultdict(list)
    for c in check_dirs:
        path = os.path.join(c, "mutants", module_path)
        owners = mutated.get(_sha256(path) if os.path.exists(path) else None) or []
        if not owners or not os.path.exists(path):
            raise LedgerError(f"{c}: its mutated {module_path} is not that of any of the runs given")
        extra_checks[owners[-1]].append(c)
    for d, fns in zip(run_dirs, sources):
        info = read_run_info(d)
        shas.append(_sha256(os.path.join(d, module_path)))
        st = run_statuses(d, module)
        if not st:
            raise LedgerError(f"{d}: no mutants of {module} in this run")

        def same(mutant, fns=fns):
            key = _function_key(module, mutant)
            return key in final and fns.get(key) == final[key]

        stale = sorted({_function_key(module, k) for k in st if not same(k)})
        for k, v in st.items():
            if same(k) and (v != "not checked" or k not in statuses):
                statuses[k] = v
        for c in [d, *extra_checks[d]]:
            for k, v in recorded_kills(c).items():
                if same(k):
                    kills.setdefault(k, v)
            checked_by_check |= {k for k in recorded_checks(c) if same(k)}
        runs.append(
            {
                "dir": os.path.basename(os.path.normpath(d)),
                **info,
                "mutants_of_module": len(st),
                "source_sha256": shas[-1],
                "functions_not_used": stale,
            }
        )
    missing = sorted({_function_key(module, k) for k in statuses} ^ {_function_key(module, k) for k in st})
    if missing:
        raise LedgerError(f"the last run's mutants and the collected ones differ in {', '.join(missing[:5])}")
    # A mutant the run did not reach but a recorded check ran is checked: killed or surviving.
    for m in checked_by_check & {k for k, v in statuses.items() if v == "not checked"}:
        statuses[m] = "not reached by the run; checked"
    equivalent = {}
    if equivalent_path:
        with open(equivalent_path, encoding="utf-8") as fh:
            equivalent = json.load(fh)
        unknown = sorted(set(equivalent) - set(statuses))
        if unknown:
            raise LedgerError(f"{equivalent_path}: not mutants of {module}: {', '.join(unknown[:5])}")
        for m, arg in equivalent.items():
            if statuses[m] not in SURVIVING:
                raise LedgerError(f"{equivalent_path}: {m} is {statuses[m]!r} in the run, not a survivor")
            if not (isinstance(arg, str) and arg.strip()):
                raise LedgerError(f"{equivalent_path}: {m} has no argument")
    survivors = {}
    for m in sorted(statuses, key=_natural):
        st = statuses[m]
        if st not in SURVIVING:
            continue
        if m in kills:
            survivors[m] = {"run": st, "disposition": "killed", **kills[m]}
        elif m in equivalent:
            survivors[m] = {"run": st, "disposition": "equivalent", "argument": equivalent[m]}
        else:
            survivors[m] = {"run": st, "disposition": "open"}
    current = os.path.join(ROOT, module_path)
    changed = _sha256(current) != shas[-1] if os.path.exists(current) else None
    entry = {
        "module": module_path,
        "source_sha256": shas[-1],
        "changed_since_run": changed,
        "runs": runs,
        "check_dirs": [os.path.basename(os.path.normpath(c)) for c in check_dirs],
        "run_status_counts": dict(collections.Counter(statuses.values())),
        "survivors": survivors,
    }
    entry["counts"] = counts(entry)
    return entry


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def counts(entry: dict) -> dict:
    """Mutants, checked, killed (run / checks), equivalent, open, not reached and the two scores."""
    rs = collections.Counter(entry["run_status_counts"])
    disp = collections.Counter(s["disposition"] for s in entry["survivors"].values())
    total = sum(rs.values())
    not_reached = rs["not checked"] + rs["skipped"]
    checked = total - not_reached
    killed_run = rs["killed"] + rs["timeout"]
    killed = killed_run + disp["killed"]
    eq = disp["equivalent"]
    return {
        "mutants": total,
        "checked": checked,
        "killed_by_run": killed_run,
        "killed_by_checked_tests": disp["killed"],
        "equivalent": eq,
        "open": disp["open"],
        "suspicious": rs["suspicious"],
        "not_reached": not_reached,
        "score": killed / checked if checked else None,
        "score_excluding_equivalent": killed / (checked - eq) if checked - eq else None,
    }


def load_ledger(directory: str = LEDGER_DIR) -> list[dict]:
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path, encoding="utf-8") as fh:
            out.append(json.load(fh))
    return out


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def table(directory: str = LEDGER_DIR) -> list[str]:
    """The README region's table (``scripts/render_readme.py``) of the ledger in ``directory``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_readme", os.path.join(ROOT, "scripts", "render_readme.py"))
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    return render.render_mutation(directory, "python scripts/mutation_ledger.py collect …")


def recheck(entry: dict, runs_root: str = "/tmp") -> int:
    """Re-run every recorded kill check of ``entry`` (``scripts/mutation.sh check``, grouped by
    selection); 0 when the originals pass and every mutant is killed again."""
    groups = collections.defaultdict(list)
    for m, s in entry["survivors"].items():
        if s["disposition"] == "killed":
            groups[(s["check_dir"], s["selection"], s["fresh"])].append(m)
    rc = 0
    for (d, sel, fresh), mutants in sorted(groups.items()):
        run_dir = os.path.join(runs_root, d)
        if not os.path.isdir(os.path.join(run_dir, "mutants")):
            raise LedgerError(f"{run_dir}: no such run directory (re-run the module's runs first)")
        env = dict(os.environ, MUT_FRESH="1" if fresh else "0")
        cmd = [os.path.join(ROOT, "scripts", "mutation.sh"), "check", run_dir, sel, *mutants]
        print(f"check {d} {sel!r}: {len(mutants)} mutant(s)", flush=True)
        rc |= subprocess.run(cmd, env=env).returncode
    return rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mutation_ledger", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="write results/mutation/<name>.json from run directories")
    c.add_argument("module", help="the mutated module, e.g. properties/certify.py")
    c.add_argument("runs", nargs="+", help="run directories of scripts/mutation.sh")
    c.add_argument("--equivalent", help="JSON object: mutant -> the argument that it is equivalent")
    c.add_argument(
        "--checks-from",
        action="append",
        default=[],
        metavar="DIR",
        help="a copy of a run directory whose recorded kill checks count for that run (repeatable)",
    )
    c.add_argument("--out", help="output path (default results/mutation/<dotted module>.json)")
    sub.add_parser("table", help="print the per-module table of the committed ledger")
    r = sub.add_parser("recheck", help="re-run the recorded kill checks of a ledger file")
    r.add_argument("ledger", help="results/mutation/<module>.json")
    r.add_argument("--runs-root", default="/tmp", help="where the run directories are (default /tmp)")
    a = p.parse_args(argv)
    try:
        if a.cmd == "collect":
            out = a.out or os.path.join(LEDGER_DIR, module_name(a.module) + ".json")
            outdir = os.path.dirname(os.path.abspath(out))
            if not os.path.isdir(outdir) or not os.access(outdir, os.W_OK):
                raise LedgerError(f"cannot write {out}: {outdir} is not a writable directory")
            entry = collect(a.module, a.runs, a.equivalent, a.checks_from)
            with open(out, "w", encoding="utf-8") as fh:
                json.dump(entry, fh, indent=1, ensure_ascii=False)
                fh.write("\n")
            c = entry["counts"]
            print(f"{out}: {c['checked']}/{c['mutants']} checked, score {_pct(c['score'])}, {c['open']} open")
        elif a.cmd == "recheck":
            with open(a.ledger, encoding="utf-8") as fh:
                return recheck(json.load(fh), a.runs_root)
        else:
            print("\n".join(table()))
    except (LedgerError, OSError, json.JSONDecodeError) as exc:
        print(f"mutation_ledger: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
