#!/usr/bin/env bash
# device-side (issue 18 item 3): set up once per machine, start scripts/bench_full_tuned.sh detached, poll, collect.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CUBLAS_WORKSPACE_CONFIG=:4096:8
OUT=${OUT:-/tmp/out}; W=/tmp/w; mkdir -p "$OUT"
t0=$(date +%s)
if [ ! -f /tmp/ready ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > /tmp/env.txt 2>&1
  nproc >> /tmp/env.txt
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  PYTHONPATH=/tmp/site python3 - <<'PY' >> /tmp/env.txt 2>&1 || exit 4
import shutil, torch, transformers, peft, sqlalchemy
from safetensors.torch import load_file, save_file
shutil.copytree(".gpu/model", "/tmp/model", dirs_exist_ok=True)
sd = load_file(".gpu/model/model.safetensors")
save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}, "/tmp/model/model.safetensors", metadata={"format": "pt"})
print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "peft", peft.__version__, "sqlalchemy", sqlalchemy.__version__)
PY
  touch /tmp/ready
fi
cat /tmp/env.txt
export PYTHONPATH=/tmp/site:$PWD/src:$PWD:$PWD/.gpu/site
if ! pgrep -f bench_full_tuned.sh >/dev/null && [ ! -f /tmp/started ]; then
  touch /tmp/started
  setsid nohup env PYTHON=python3 WORKERS=${WORKERS:-5} bash scripts/bench_full_tuned.sh "$W" > /tmp/w.log 2>&1 < /dev/null &
  echo "started at $(date +%T)"
fi
( while pgrep -f bench_full_tuned.sh >/dev/null; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> /tmp/gpu_util.txt; sleep 10; done ) &
end=$(( t0 + ${POLL:-540} ))
while [ "$(date +%s)" -lt "$end" ] && pgrep -f bench_full_tuned.sh >/dev/null; do sleep 5; done
pgrep -f bench_full_tuned.sh >/dev/null && echo "STILL RUNNING after $(( $(date +%s) - t0 )) s" || echo "FINISHED"
cp /tmp/w.log /tmp/gpu_util.txt /tmp/env.txt "$OUT/" 2>/dev/null
cd "$W" 2>/dev/null && find . -type f \( -name '*.json' -o -name '*.md' -o -name '*.png' -o -name '*.log' -o -name '*.tmp' \) \
  -not -path '*/checkpoints/*' -print0 | tar czf "$OUT/results.tgz" --null -T - && ls -la "$OUT"
tail -25 /tmp/w.log
