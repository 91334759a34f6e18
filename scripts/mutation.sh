#!/usr/bin/env bash
# Mutation testing (mutmut 3); results in docs/mutation.md.
#
# Never mutates the working tree: the repository at HEAD (plus the working-tree copies of
# setup.cfg and tests/test_mutation_killers*.py, so uncommitted killers are included) is
# exported to $MUT_WORKDIR and mutmut runs there. Config: setup.cfg — [mutmut] is the numeric
# core; each [mutmut:GROUP] section is one more run, selected with --group GROUP.
#
#   scripts/mutation.sh                            # numeric core (7 modules)
#   scripts/mutation.sh --group certify            # properties/certify.py, serialize.py, counterexamples.py
#   scripts/mutation.sh --group verify             # properties/verify.py
#   scripts/mutation.sh --group adjudication       # fimtheory/adjudication.py, highprec.py, enclosures.py
#   scripts/mutation.sh --group torch              # torch_checks/engines.py, monitor.py, quantizers.py, scores.py
#   scripts/mutation.sh --group certify 'properties.serialize*'   # only mutants matching a glob
#   MUT_CHILDREN=1 scripts/mutation.sh ...         # parallel workers (default 2)
#   scripts/mutation.sh s2-ratio ci 0              # worst S2 second-order ratio search (see below)
#
# Output in $MUT_WORKDIR (default /tmp/fimtheory-mut-GROUP, /tmp/fimtheory-mut for the core):
# mutmut-results.txt (mutmut results --all true), summary.txt (per-module counts and scores),
# run-info.txt (group, HEAD commit, start/end UTC, wall seconds, workers).
set -euo pipefail
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WORK=${MUT_WORKDIR:-/tmp/fimtheory-mut}
CHILDREN=${MUT_CHILDREN:-2}
PY=${PYTHON:-/work/venv/bin/python}
MUTMUT=${MUTMUT:-$(dirname "$PY")/mutmut}

# scripts/mutation.sh s2-ratio [profile] [seed] [max_examples]
# Not a mutation run: a Hypothesis search (S2's own strategy, hypothesis.target steering) for the
# largest |λ'−λ1−a1−a2| / (4η³/(γ(γ−2η))) on the working tree; ratios float64 cannot resolve are
# taken at 50 digits. Prints the maximum second- and first-order ratios found.
if [ "${1:-}" = "s2-ratio" ]; then
    shift
    cd "$REPO"
    exec "$PY" - "$@" <<'PY'
import dataclasses, sys, time
from fimtheory import claims as C
from fimtheory.claims import get_claim, Outcome
from fimtheory.highprec import mp_eigh, mp_matrix, working_precision
from fimtheory._generated import series as _series
from properties.claim_strategies import strategy_for
from properties.verify import check_property
profile = sys.argv[1] if len(sys.argv) > 1 else "ci"
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
max_examples = int(sys.argv[3]) if len(sys.argv) > 3 else None
s2 = get_claim("S2")
best = {"second_ratio": 0.0, "first_ratio": 0.0, "mp": 0}
def mp_ratios(inst, dps=50):
    with working_precision(dps):
        A, E = mp_matrix(inst.A), mp_matrix(inst.E)
        eig = mp_eigh(A, dps); eta = C._mp_sym_norm(E)
        a1, a2 = C._mp_coefficients(eig, E, 2)
        top = mp_eigh(A + E, dps).lambda_max
        b1 = _series.remainder_bound_first(eta, eig.gap); b2 = _series.remainder_bound_second(eta, eig.gap)
        return float(abs(top - eig.lambda_max - a1) / b1), float(abs(top - eig.lambda_max - a1 - a2) / b2)
def ev(inst):
    out = s2.evaluate(inst)
    if not out.hypotheses_met:
        return out
    r1, r2 = out.details["first_ratio"], out.details["second_ratio"]
    if out.needs_adjudication:  # float cannot resolve the remainder: take the ratios at 50 digits
        r1, r2 = mp_ratios(inst); best["mp"] += 1
    best["first_ratio"] = max(best["first_ratio"], r1)
    best["second_ratio"] = max(best["second_ratio"], r2)
    return Outcome(True, 1.0 - r2, False, "", out.details)  # target() steers toward large second ratios
probe = dataclasses.replace(s2, id="S2-second-ratio", evaluate=ev)
t = time.perf_counter()
rep = check_property(probe, strategy_for(s2.strategy), profile=profile, seed=seed, max_examples=max_examples)
print(f"profile={profile} seed={seed} examples={rep.examples} status={rep.status} "
      f"max second_ratio={best['second_ratio']:.4f} max first_ratio={best['first_ratio']:.4f} "
      f"mp-evaluated={best['mp']} ({time.perf_counter()-t:.0f}s)")
PY
fi

# scripts/mutation.sh score [WORKDIR] [FUNCTION-SUBSTRING...]
# Per-module counts from the mutants' .meta files of a run (also while it is still running:
# "not checked" counts the mutants not reached yet); with substrings, per-function rows too.
if [ "${1:-}" = "score" ]; then
    shift
    DIR=${1:-$WORK}
    shift || true
    exec "$PY" - "$DIR" "$@" <<'PY'
import collections, glob, json, os, re, sys
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}
cols = ["killed", "survived", "timeout", "no tests", "not checked", "suspicious"]
by_mod, by_fn = collections.defaultdict(collections.Counter), collections.defaultdict(collections.Counter)
for meta in sorted(glob.glob(os.path.join(sys.argv[1], "mutants", "**", "*.py.meta"), recursive=True)):
    for key, code in json.load(open(meta))["exit_code_by_key"].items():
        st = STATUS.get(code, "suspicious")
        mod = re.sub(r"\.x[_ǁ].*", "", key)
        by_mod[mod][st] += 1
        by_fn[re.sub(r"__mutmut_\d+$", "", key)][st] += 1
def row(name, c):
    n = sum(c.values()); done = n - c["not checked"]; k = c["killed"] + c["timeout"]
    score = f"{k / done:.1%}" if done else "—"
    return f"| {name} | " + " | ".join(str(c[x]) for x in cols) + f" | {n} | {score} |"
head = "| {} | " + " | ".join(cols) + " | total | score (of checked) |"
print(head.format("module")); print("|---" * (len(cols) + 3) + "|")
for mod in sorted(by_mod):
    print(row(mod, by_mod[mod]))
subs = sys.argv[2:]
if subs:
    print(); print(head.format("function")); print("|---" * (len(cols) + 3) + "|")
    for fn in sorted(by_fn):
        if any(s in fn for s in subs):
            print(row(fn, by_fn[fn]))
PY
fi

# scripts/mutation.sh check WORKDIR 'PYTEST-SELECTION' MUTANT...
# Kill check of new tests against a finished run's mutated copy: copies the working-tree
# tests/test_mutation_killers*.py into WORKDIR/mutants/tests/, runs the selection (pytest
# arguments, e.g. 'tests/test_mutation_killers_core.py -k golden') on the original code
# (MUTANT_UNDER_TEST empty: must pass) and then once per mutant (must fail), all in one Python
# process (mutmut's trampolines read MUTANT_UNDER_TEST at every call). A mutant of a function
# that runs only at import (a factory building an evaluator) is active only when set before
# the import: MUT_FRESH=1 runs every mutant in a fresh process instead. Prints one line per
# mutant, "killed" or "SURVIVED"; exits 1 if the original fails or a mutant survives. Each
# result is appended to WORKDIR/kill-checks.jsonl (read by scripts/mutation_ledger.py).
# A selection 'auto [FILES]' runs, per mutant, the tests the run's stats pass recorded for the
# mutated function (what mutmut itself runs) plus FILES.
if [ "${1:-}" = "check" ]; then
    DIR=${2:?check needs the run directory}
    SEL=${3:?check needs a pytest selection}
    shift 3
    for f in "$REPO"/tests/test_mutation_killers*.py; do
        [ -f "$f" ] && cp "$f" "$DIR/mutants/tests/"
    done
    cd "$DIR/mutants"
    exec "$PY" - "$SEL" "$@" <<'PY'
import os, shlex, subprocess, sys
sel, mutants = shlex.split(sys.argv[1]), sys.argv[2:]
args = [*sel, "-q", "-x", "-p", "no:cacheprovider", "--no-header"]
fresh = os.environ.get("MUT_FRESH") == "1"
auto = sel and sel[0].startswith("auto")
if auto:  # the tests mutmut's stats pass saw reaching the mutated function, plus the files named
    import json, re
    stats = json.load(open("mutmut-stats.json"))["tests_by_mangled_function_name"]
    extra = sel[1:]
def selection(name):
    if not auto:
        return args
    tests = sorted(stats.get(re.sub(r"__mutmut_\d+$", "", name), [])) if name else []
    return [*tests, *extra, "-q", "-x", "-p", "no:cacheprovider", "--no-header"]
def passes(name):
    if auto and not name:  # the original: every test any of the mutants will run
        union = sorted({t for m in mutants for t in selection(m)[: -5 - len(extra)]})
        args = [*union, *extra, "-q", "-p", "no:cacheprovider", "--no-header"]
    else:
        args = selection(name)
    env = dict(os.environ, MUTANT_UNDER_TEST=name)
    if fresh:
        r = subprocess.run([sys.executable, "-m", "pytest", *args], env=env, capture_output=True)
        return r.returncode == 0
    import contextlib, io, pytest
    os.environ["MUTANT_UNDER_TEST"] = name
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return pytest.main(args) == 0
import datetime, glob, hashlib, json as _json
# Every kill check is appended to ../kill-checks.jsonl (the run directory): the mutant, the
# selection, the result and the digests of the killer files used, so that
# scripts/mutation_ledger.py can count a survivor as killed only by a recorded check.
killers = {os.path.relpath(f, "."): hashlib.sha256(open(f, "rb").read()).hexdigest()
           for f in sorted(glob.glob("tests/test_mutation_killers*.py"))}
def record(mutant, result):
    line = {"mutant": mutant, "result": result, "selection": sys.argv[1], "fresh": fresh,
            "utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "killers_sha256": killers}
    with open(os.path.join("..", "kill-checks.jsonl"), "a") as fh:
        fh.write(_json.dumps(line, ensure_ascii=False) + "\n")
if not passes(""):
    record("", "original-fails")
    print(f"original: FAILS ({' '.join(sel)})"); sys.exit(1)
record("", "original-passes")
print("original: passes")
rc = 0
for m in mutants:
    ok = passes(m)
    record(m, "survived" if ok else "killed")
    print(f"{m}: {'SURVIVED' if ok else 'killed'}", flush=True)
    rc |= ok
sys.exit(rc)
PY
fi

GROUP=""
if [ "${1:-}" = "--group" ]; then
    GROUP=${2:?--group needs a name (a [mutmut:NAME] section of setup.cfg)}
    shift 2
    WORK=${MUT_WORKDIR:-/tmp/fimtheory-mut-$GROUP}
fi

rm -rf "$WORK"
mkdir -p "$WORK"
HEAD_COMMIT=$(git -C "$REPO" rev-parse --short HEAD)
git -C "$REPO" archive HEAD | tar -x -C "$WORK"
cp "$REPO/setup.cfg" "$WORK/setup.cfg"
for f in "$REPO"/tests/test_mutation_killers*.py; do
    [ -f "$f" ] && cp "$f" "$WORK/tests/"
done
cd "$WORK"
# The group's section becomes [mutmut] in the copy (keys it lacks come from [mutmut]); test
# files named in the selection that do not exist (a killers file not written yet) are dropped.
"$PY" - "$GROUP" <<'PY'
import configparser, os, sys
group = sys.argv[1]
cp = configparser.ConfigParser(interpolation=None)
cp.read("setup.cfg")
if group:
    name = f"mutmut:{group}"
    if not cp.has_section(name):
        groups = [s.split(":", 1)[1] for s in cp.sections() if s.startswith("mutmut:")]
        sys.exit(f"mutation.sh: no [{name}] section in setup.cfg (groups: {', '.join(groups)})")
    for key, value in cp.items(name):
        cp.set("mutmut", key, value)
key = "pytest_add_cli_args_test_selection"
tests = [t for t in cp.get("mutmut", key).split("\n") if t.strip()]
cp.set("mutmut", key, "\n" + "\n".join(t for t in tests if t.startswith("-") or os.path.exists(t)))  # "-…": pytest options (--deselect=…)
for s in [s for s in cp.sections() if s != "mutmut"]:
    cp.remove_section(s)
with open("setup.cfg", "w") as fh:
    cp.write(fh)
print(open("setup.cfg").read())
PY
# mutmut puts $WORK/mutants first on sys.path, ahead of the editable install of /work/main.
"$MUTMUT" --version
START=$(date -u +%FT%TZ); T0=$(date +%s)
"$MUTMUT" run --max-children "$CHILDREN" "$@" || true
T1=$(date +%s); END=$(date -u +%FT%TZ)
printf 'group=%s head=%s start=%s end=%s wall_s=%s children=%s filter=%s\n' \
    "${GROUP:-core}" "$HEAD_COMMIT" "$START" "$END" "$((T1 - T0))" "$CHILDREN" "${*:-all}" | tee run-info.txt
"$MUTMUT" results --all true > mutmut-results.txt || true
"$MUTMUT" export-cicd-stats || true
"$PY" - <<'PY' | tee summary.txt
import collections, re
rows = [l.strip() for l in open("mutmut-results.txt") if ":" in l]
by = collections.defaultdict(collections.Counter)
for r in rows:
    name, status = r.rsplit(":", 1)
    mod = re.sub(r"\.x[_ǁ].*", "", name.strip())
    by[mod][status.strip()] += 1
tot = collections.Counter()
print(f"{'module':40s} {'killed':>7s} {'surv':>5s} {'tmo':>4s} {'susp':>5s} {'other':>6s} {'total':>6s} score")
for mod in sorted(by):
    c = by[mod]; tot.update(c)
    n = sum(c.values()); k = c["killed"] + c["timeout"]
    other = n - c["killed"] - c["survived"] - c["timeout"] - c["suspicious"]
    print(f"{mod:40s} {c['killed']:7d} {c['survived']:5d} {c['timeout']:4d} {c['suspicious']:5d} {other:6d} {n:6d} {k/n:.1%}")
n = sum(tot.values()); k = tot["killed"] + tot["timeout"]
print(f"{'TOTAL':40s} {tot['killed']:7d} {tot['survived']:5d} {tot['timeout']:4d} {tot['suspicious']:5d} {n-k-tot['survived']-tot['suspicious']:6d} {n:6d} {k/max(n,1):.1%}")
PY
