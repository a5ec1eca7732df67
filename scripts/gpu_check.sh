#!/usr/bin/env bash
# GPU check (needs a CUDA GPU and a CUDA build of torch in .venv): trains a small plan on cuda twice and
# checks the checkpoints are bit-equal, measures the speed-up over the CPU, then forgets, retrains and
# verifies on cuda, and checks that verify on the CPU refuses to compare GPU-made bits. See README.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CUBLAS_WORKSPACE_CONFIG=:4096:8
PY=${PYTHON:-.venv/bin/python}  # PYTHON=python3 where torch is installed system-wide
exec "$PY" scripts/gpu_check.py "${1:-gpu-check}" ${2:+"$2"}
