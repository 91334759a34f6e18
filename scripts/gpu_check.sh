#!/usr/bin/env bash
# The CUDA check: CUDA tests, the real-model checks and the benchmarks on one GPU, in under
# 10 minutes, with one summary file.
#
#   scripts/gpu_check.sh [OUT_DIR]        # default OUT_DIR: $OUT if set, else results/gpu
#
# Needs a Python with a CUDA build of torch and fimtheory's dependencies importable (the
# repository root is put on PYTHONPATH, so an editable install is not required). Each step
# runs under its own time limit; a step that fails or times out is recorded as such and the
# next step still runs. Without a CUDA device it prints one line and exits 2, having run
# nothing. Exit status: 0 when every step passed, 1 otherwise.
#
# Writes OUT_DIR/gpu-check.json (per step: command, exit status, seconds; torch version,
# device name) and the steps' own outputs beside it (cuda-tests.xml, check-models-cuda.json,
# bench-cuda.json, gpu-check.log).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-results/gpu}}
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check.sh: no CUDA device (torch.cuda.is_available() is False or torch is missing); nothing ran" >&2
    exit 2
fi
mkdir -p "$OUT_DIR" || { echo "gpu_check.sh: cannot create $OUT_DIR" >&2; exit 2; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
LOG="$OUT_DIR/gpu-check.log"
STEPS="$OUT_DIR/.steps.tsv"
: >"$LOG"
: >"$STEPS"

step() {  # step NAME LIMIT_S CMD...
    local name=$1 limit=$2
    shift 2
    local t0 rc
    t0=$EPOCHREALTIME
    echo "== $name ($*)" | tee -a "$LOG"
    timeout "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')" "$*" >>"$STEPS"
    echo "== $name: exit $rc" | tee -a "$LOG"
}

step cuda-tests 240 "$PY" -m pytest -m cuda -q -p no:cacheprovider --junitxml="$OUT_DIR/cuda-tests.xml"
step check-models 180 "$PY" -m fimtheory check-models --device cuda --profile quick \
    --json "$OUT_DIR/check-models-cuda.json"
step benchmarks 150 "$PY" -m benchmarks.run --device cuda --sizes 512,2048 --no-profiles \
    --out "$OUT_DIR/bench-cuda.json"

"$PY" - "$STEPS" "$OUT_DIR/gpu-check.json" <<'PY'
import json, platform, sys
import torch
steps = []
for line in open(sys.argv[1]):
    name, rc, seconds, cmd = line.rstrip("\n").split("\t", 3)
    steps.append({"step": name, "exit": int(rc), "seconds": round(float(seconds), 1), "command": cmd,
                  "status": "passed" if rc == "0" else ("timed out" if rc in ("124", "137") else "failed")})
report = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0),
          "python": platform.python_version(), "steps": steps,
          "all_passed": all(s["exit"] == 0 for s in steps)}
json.dump(report, open(sys.argv[2], "w"), indent=2)
print(json.dumps(report, indent=2))
sys.exit(0 if report["all_passed"] else 1)
PY
rc=$?
rm -f "$STEPS"
exit $rc
