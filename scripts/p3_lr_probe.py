"""P3 probe: does S3T's accuracy gap to SISA close when each method gets its own learning rate?

One fit of S3T (B=1) or SISA with the bench's full preset (m=5, L=6, 2 epochs, batch 32, LoRA
r=8 / alpha=16, one torch thread) on the medium run's 1,600 training snippets (``load_builtin``
with ``limit=2000``), scored on the full data's 1,057 test snippets (none of them in that
training set). Appends one JSON line to OUT.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/p3_lr_probe.py s3t 0.005 --out probe.jsonl
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/p3_lr_probe.py sisa 0.005 --out probe.jsonl

Each fit takes about 4 CPU minutes. Results: results/p3-probe/probe.jsonl, read in results/README.md ("p3-probe/").
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from s3t import S3T
from s3t.baselines import SISA
from s3t.config import LoraSettings, PlanConfig, S3TConfig, TrainConfig
from s3t.data import load_builtin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("method", choices=["s3t", "sisa"])
    ap.add_argument("lr", type=float)
    ap.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha = 2 x rank)")
    ap.add_argument("--out", type=Path, required=True, help="JSON-lines file the result is appended to")
    args = ap.parse_args()

    train = load_builtin("movie_reviews", seed=0, limit=2000).train
    full_test = load_builtin("movie_reviews", seed=0).test
    seen = set(train.ids)
    test = full_test.subset(np.array([i for i, r in enumerate(full_test.ids) if r not in seen]))
    conf = S3TConfig(
        plan=PlanConfig(shards=5, slices=6, budget=1, selection="cyclic", seed=0),
        train=TrainConfig(model="all-MiniLM-L6-v2", epochs=2, lr=args.lr, batch_size=32, threads=1, workers=1,
                          lora=LoraSettings(rank=args.rank, alpha=2 * args.rank)),
    )
    start = time.process_time()
    if args.method == "s3t":
        ws = Path(tempfile.mkdtemp(prefix="s3t-probe-"))
        try:
            model = S3T(conf, workspace=ws / "ws").fit(train)
            truth = np.array([model.classes_[y] for y in test.labels])
            acc = float((np.asarray(model.predict(list(test.texts))) == truth).mean())
            model.ws_.ledger.close()
        finally:
            shutil.rmtree(ws, ignore_errors=True)
    else:
        model = SISA(conf).fit(train)
        acc = float((model.predict_proba(list(test.texts)).argmax(1) == np.array(test.labels)).mean())
    row = {"method": args.method, "lr": args.lr, "rank": args.rank, "n_train": len(train), "n_test": len(test),
           "accuracy": acc, "cpu_seconds": time.process_time() - start}
    print(json.dumps(row))
    with args.out.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
