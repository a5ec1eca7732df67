#!/usr/bin/env bash
# Issue 18's full re-run, P3 and P4, with validation-chosen settings, on a machine with room for
# several jobs at once (a CUDA GPU, or many cores):
#   1. tune every method on each P3 dataset, one `s3t tune --bench full` process per (dataset, method),
#      all at once, then unite them (`s3t tune --merge`);
#   2. at once: P3 + P4 on movie_reviews (`--only P4`) and P3 on trec (`--only P3`), S3T fits trained
#      by WORKERS shard processes (bit-identical to one).
# Everything is resumable: run it again with the same OUT and it continues (finished tune parts are
# kept; the bench keeps its fits and parts in OUT/<dataset>/work until it completes).
#   usage: scripts/bench_full_tuned.sh OUT
#   env: PYTHON (default .venv/bin/python), WORKERS (5), PRESET (full; quick for a smoke run),
#        ARGS (options for both tune and bench, e.g. "--model DIR --limit 300")
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/bench_full_tuned.sh OUT}
PY=${PYTHON:-.venv/bin/python}
WORKERS=${WORKERS:-5}
PRESET=${PRESET:-full}
read -r -a ARGS <<< "${ARGS:-}"
QUICK=(); [ "$PRESET" = quick ] && QUICK=(--quick)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CUBLAS_WORKSPACE_CONFIG=:4096:8 PYTHONUNBUFFERED=1
mkdir -p "$OUT/tune"
s3t() { "$PY" -m s3t.cli "$@"; }
stamp() { echo "[$(date +%T)] $*"; }

stamp "tuning: 2 datasets x 3 methods at once"
pids=()
for d in movie_reviews trec; do
  for m in s3t sisa full; do
    part="$OUT/tune/$d-$m.json"
    [ -s "$part" ] && { stamp "  $d $m: kept"; continue; }
    s3t tune --bench "$PRESET" "${ARGS[@]}" --dataset "$d" --method "$m" --out "$part.tmp" > "$OUT/tune/$d-$m.log" 2>&1 \
      && mv "$part.tmp" "$part" && stamp "  $d $m: done" &
    pids+=($!)
  done
done
for p in "${pids[@]}"; do wait "$p"; done
for d in movie_reviews trec; do for m in s3t sisa full; do
  [ -s "$OUT/tune/$d-$m.json" ] || { stamp "tune $d $m failed:"; tail -20 "$OUT/tune/$d-$m.log"; exit 1; }
done; done
merge=(); for d in movie_reviews trec; do for m in s3t sisa full; do merge+=(--merge "$OUT/tune/$d-$m.json"); done; done
s3t tune "${merge[@]}" --out "$OUT/tune.json" || exit 1
stamp "tuned: $OUT/tune.json"

stamp "P3 + P4 on movie_reviews and P3 on trec, at once ($WORKERS S3T workers each)"
s3t bench "${QUICK[@]}" "${ARGS[@]}" --out "$OUT/movie_reviews" --only P4 --p3-dataset movie_reviews --tuned "$OUT/tune.json" \
  --workers "$WORKERS" > "$OUT/movie_reviews.log" 2>&1 &
a=$!
s3t bench "${QUICK[@]}" "${ARGS[@]}" --out "$OUT/trec" --only P3 --p3-dataset trec --tuned "$OUT/tune.json" \
  --workers "$WORKERS" > "$OUT/trec.log" 2>&1 &
b=$!
wait $a; ra=$?
wait $b; rb=$?
stamp "movie_reviews rc=$ra, trec rc=$rb"
[ $ra -eq 0 ] && [ $rb -eq 0 ] || { tail -30 "$OUT/movie_reviews.log" "$OUT/trec.log"; exit 1; }
cat "$OUT/movie_reviews/summary.md" "$OUT/trec/summary.md"
