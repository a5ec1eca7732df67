#!/usr/bin/env bash
# Issue 18's full re-run, P3 and P4, with validation-chosen settings, on a machine with room for
# several jobs at once (a CUDA GPU, or many cores):
#   1. tune every method on each P3 dataset, one `s3t tune --bench full` process per (dataset, method),
#      all at once, then unite them (`s3t tune --merge`);
#   2. at once: P3 + P4 on movie_reviews (`--only P4`) and P3 on trec (`--only P3`), S3T fits trained
#      by WORKERS shard processes (bit-identical to one).
# Everything is resumable: run it again with the same OUT and it continues (finished tune parts are
# kept; the bench keeps its fits and parts in OUT/<dataset>/work until it completes).
# A tune cut off mid-grid continues from its finished points (OUT/tune/D-M.json.tmp.points.jsonl).
#   usage: scripts/bench_full_tuned.sh OUT
#   env: PYTHON (default .venv/bin/python), WORKERS (5), PRESET (full; quick for a smoke run),
#        ARGS (options for both tune and bench, e.g. "--model DIR --limit 300"),
#        DATASETS ("movie_reviews trec"; one of them alone on a small machine),
#        SERIAL (1: one process at a time, for a machine with few cores, e.g. the 2-core VM:
#                SERIAL=1 WORKERS=1 DATASETS=movie_reviews nice -n 19 scripts/bench_full_tuned.sh OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/bench_full_tuned.sh OUT}
PY=${PYTHON:-.venv/bin/python}
WORKERS=${WORKERS:-5}
PRESET=${PRESET:-full}
read -r -a ARGS <<< "${ARGS:-}"
read -r -a DATASETS <<< "${DATASETS:-movie_reviews trec}"
SERIAL=${SERIAL:-0}
QUICK=(); [ "$PRESET" = quick ] && QUICK=(--quick)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CUBLAS_WORKSPACE_CONFIG=:4096:8 PYTHONUNBUFFERED=1
mkdir -p "$OUT/tune"
s3t() { "$PY" -m s3t.cli "$@"; }
stamp() { echo "[$(date +%T)] $*"; }

stamp "tuning: ${DATASETS[*]} x 3 methods ($([ "$SERIAL" = 1 ] && echo 'one at a time' || echo 'at once'))"
tune_part() {  # dataset method
  local part="$OUT/tune/$1-$2.json"
  [ -s "$part" ] && { stamp "  $1 $2: kept"; return 0; }
  s3t tune --bench "$PRESET" "${ARGS[@]}" --dataset "$1" --method "$2" --out "$part.tmp" >> "$OUT/tune/$1-$2.log" 2>&1 \
    && mv "$part.tmp" "$part" && stamp "  $1 $2: done"
}
pids=()
for d in "${DATASETS[@]}"; do
  for m in s3t sisa full; do
    if [ "$SERIAL" = 1 ]; then tune_part "$d" "$m"; else tune_part "$d" "$m" & pids+=($!); fi
  done
done
for p in "${pids[@]}"; do wait "$p"; done
for d in "${DATASETS[@]}"; do for m in s3t sisa full; do
  [ -s "$OUT/tune/$d-$m.json" ] || { stamp "tune $d $m failed:"; tail -20 "$OUT/tune/$d-$m.log"; exit 1; }
done; done
merge=(); for d in "${DATASETS[@]}"; do for m in s3t sisa full; do merge+=(--merge "$OUT/tune/$d-$m.json"); done; done
s3t tune "${merge[@]}" --out "$OUT/tune.json" || exit 1
stamp "tuned: $OUT/tune.json"

stamp "P3 + P4 on movie_reviews, P3 on trec: ${DATASETS[*]} ($WORKERS S3T workers each)"
bench_part() {  # dataset: movie_reviews also measures P4 (after P3's fits), trec P3 only
  local only=P3; [ "$1" = movie_reviews ] && only=P4
  s3t bench "${QUICK[@]}" "${ARGS[@]}" --out "$OUT/$1" --only "$only" --p3-dataset "$1" --tuned "$OUT/tune.json" \
    --workers "$WORKERS" >> "$OUT/$1.log" 2>&1
  local rc=$?; stamp "$1 rc=$rc"; return $rc
}
failed=0; pids=()
for d in "${DATASETS[@]}"; do
  if [ "$SERIAL" = 1 ]; then bench_part "$d" || failed=1; else bench_part "$d" & pids+=($!); fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
for d in "${DATASETS[@]}"; do
  [ $failed -eq 0 ] || tail -30 "$OUT/$d.log"
  [ -s "$OUT/$d/summary.md" ] && cat "$OUT/$d/summary.md"
done
exit $failed
