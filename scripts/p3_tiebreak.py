"""How much S3T's full-size P3 on movie reviews lost to the biased validation sample (issue 18).

Before e8cfa3a, each checkpoint's validation score (what breaks ties among a shard's B
full-length sequences) came from the first ``train.val_limit`` validation rows in file order; the
movie reviews file is sorted by label, so the full bench's 300 rows were 288 of one class. This
script fits S3T exactly as the full bench's P3 does (m=5, L=6, B=6, 2 epochs, lr 2e-3, r=8,
batch 32, 2 threads: the same seeds, so the same checkpoints) but scores every checkpoint on the
whole validation split (``val_limit=0``; the per-record scores are in the ledger). Then, for the
B full-length checkpoints of each shard, it chooses as the serving rule does (best score, then
the lowest sequence) with three samples: the first 300 rows (the old rule), 300 rows by the id
hash (the new rule) and all rows, and scores each resulting ensemble on the test split. Weights do
not depend on the scoring, so the three differ only in which checkpoints serve.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/p3_tiebreak.py --out results/p3-tiebreak

Resumable: an interrupted fit is finished (``S3T.retrain``), test logits are cached per checkpoint.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workspace", type=Path, default=None, help="Where the fit lives (default OUT/ws; not committed)")
    ap.add_argument("--dataset", default="movie_reviews")
    ap.add_argument("--limit", type=int, default=None, help="Rows before splitting (default: all, as the full bench)")
    ap.add_argument("--sample", type=int, default=300, help="Validation rows per checkpoint score (the full bench's val_limit)")
    args = ap.parse_args()

    from dataclasses import replace

    from sqlalchemy import select

    from s3t import S3T
    from s3t.bench.config import BenchConfig
    from s3t.bench.train_parts import Ticker, s3t_config
    from s3t.data import load_builtin
    from s3t.errors import NotFittedError, WorkspaceError
    from s3t.estimator import scoring_subset
    from s3t.store.schema import ValidationScore

    cfg = BenchConfig.full(dataset=args.dataset, limit=args.limit)
    splits = load_builtin(cfg.dataset, seed=cfg.seed, limit=cfg.limit, fractions=cfg.fractions)
    config = s3t_config(cfg, budget=cfg.slices)
    config = replace(config, train=replace(config.train, val_limit=0))
    ws = args.workspace or args.out / "ws"
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        est = S3T.load(ws)
        est.retrain()  # finishes an interrupted fit; nothing to do for a finished one
    except (NotFittedError, WorkspaceError, FileNotFoundError):
        est = S3T(config, workspace=ws).fit(splits.train, validation=splits.validation,
                                            progress=Ticker(print, "s3t-B6"))
    fit_seconds = time.perf_counter() - start

    val_ids = list(splits.validation.ids)
    val_labels = dict(zip(splits.validation.ids, splits.validation.labels))
    samples = {"first rows (old rule)": val_ids[:args.sample], "id hash (new rule)": list(scoring_subset(val_ids, args.sample)),
               "whole split": val_ids}
    with est.ws_.ledger.Session() as s:
        rows = s.execute(select(ValidationScore.checkpoint_id, ValidationScore.record_id, ValidationScore.correct)).all()
    correct: dict[str, dict[str, bool]] = {}
    for cid, rid, ok in rows:
        correct.setdefault(cid, {})[rid] = bool(ok)
    seqs = est.ws_.ledger.sequences()
    full = {}  # shard -> [(sequence index, checkpoint id)] of the full-length checkpoints
    for c in est.ws_.ledger.checkpoints():
        if c.stage == cfg.slices:
            order = [tuple(p) for p in seqs[c.shard]]
            prefix = tuple(int(x) for x in c.prefix.split(","))
            full.setdefault(c.shard, []).append((order.index(prefix), c.id))

    cache = args.out / "test_logits.npz"
    logits = dict(np.load(cache)) if cache.exists() else {}
    ens = est.ensemble_
    test = list(splits.test.texts)
    for shard, members in sorted(full.items()):
        for _, cid in members:
            if cid in logits:
                continue
            member = ens.build_member(shard, cid, cfg.slices, est._load_state(cid))
            saved, ens.members = ens.members, {shard: member}
            try:
                logits[cid] = ens.shard_logits(test)[shard].numpy()
            finally:
                ens.members = saved
            np.savez(cache, **logits)
            print(f"test logits of {cid}", flush=True)
    y = np.asarray(splits.test.labels)

    def acc(lg: np.ndarray) -> float:
        return float((lg.argmax(1) == y).mean())

    out = {"dataset": cfg.dataset, "n_train": len(splits.train), "n_validation": len(val_ids), "n_test": len(y),
           "plan": {"shards": cfg.shards, "slices": cfg.slices, "budget": cfg.slices}, "epochs": cfg.epochs, "lr": cfg.lr,
           "rank": cfg.rank, "threads": cfg.threads, "fit_seconds": fit_seconds, "sample": args.sample,
           "sample_labels": {k: {str(lab): sum(val_labels[i] == lab for i in ids) for lab in sorted(set(val_labels.values()))}
                             for k, ids in samples.items()},
           "checkpoints": {}, "choices": {}}
    for shard, members in sorted(full.items()):
        for j, cid in sorted(members):
            out["checkpoints"][cid] = {"shard": shard, "sequence": j, "test": acc(logits[cid]),
                                       "test_predicted_share": [float((logits[cid].argmax(1) == k).mean()) for k in sorted(set(y.tolist()))],
                                       **{name: float(np.mean([correct[cid][i] for i in ids])) for name, ids in samples.items()}}
    for name in samples:
        chosen = {}
        for shard, members in sorted(full.items()):
            best = max(sorted(members), key=lambda m: (out["checkpoints"][m[1]][name], -m[0]))
            chosen[shard] = best[1]
        mean = np.mean([logits[c] for c in chosen.values()], axis=0)
        out["choices"][name] = {"served": chosen, "test_accuracy": acc(mean),
                                "predicted_share": [float((mean.argmax(1) == k).mean()) for k in sorted(set(y.tolist()))]}
        print(f"{name:24s} test accuracy {acc(mean):.4f}  served {chosen}", flush=True)
    out["mean_single_checkpoint_test"] = float(np.mean([v["test"] for v in out["checkpoints"].values()]))
    (args.out / "tiebreak.json").write_text(json.dumps(out, indent=2))
    est.ws_.ledger.close()


if __name__ == "__main__":
    main()
