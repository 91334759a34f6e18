#!/usr/bin/env bash
# Mutation testing of fimtheory's numeric core (issue 8); results in docs/mutation.md.
#
# Never mutates the working tree: the repository at HEAD (plus the working-tree copies of
# the mutation test files and setup.cfg, so uncommitted killers are included) is exported to
# $MUT_WORKDIR and mutmut runs there. Config: the [mutmut] section of setup.cfg.
#
#   scripts/mutation.sh                      # full run, all 7 modules
#   MUT_CHILDREN=1 scripts/mutation.sh       # parallel workers (default 2)
#   scripts/mutation.sh 'fimtheory.fim*'     # only mutants matching a glob (mutmut names)
#
# Output: $MUT_WORKDIR/mutmut-results.txt (mutmut results --all true) and
# $MUT_WORKDIR/mutants/mutmut-cicd-stats.json (totals), plus a per-module summary on stdout.
set -euo pipefail
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WORK=${MUT_WORKDIR:-/tmp/fimtheory-mut}
CHILDREN=${MUT_CHILDREN:-2}
PY=${PYTHON:-/work/venv/bin/python}
MUTMUT=${MUTMUT:-$(dirname "$PY")/mutmut}

rm -rf "$WORK"
mkdir -p "$WORK"
git -C "$REPO" archive HEAD | tar -x -C "$WORK"
for f in setup.cfg tests/test_mutation_killers.py; do
    [ -f "$REPO/$f" ] && cp "$REPO/$f" "$WORK/$f"
done
cd "$WORK"
# mutmut puts $WORK/mutants first on sys.path, ahead of the editable install of /work/main.
"$MUTMUT" --version
time "$MUTMUT" run --max-children "$CHILDREN" "$@" || true
"$MUTMUT" results --all true > mutmut-results.txt || true
"$MUTMUT" export-cicd-stats || true
"$PY" - <<'PY'
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
