"""Probe (issue 18): would a shard serve better by averaging all its full-length sequences?

Today each live shard serves one checkpoint: its longest clean prefix, ties broken by validation
accuracy. With B sequences a shard has up to B clean checkpoints of that length, each trained on
the same records in another order; averaging their logits is exact too (every lineage is clean).
This script measures, on a fitted workspace with no deletions, the ensemble's accuracy on the
validation records stored in the workspace (the decision) and optionally on a built-in dataset's
test split (for the record), for: the served checkpoint per shard, the mean of the first b
sequences per shard (b = 1..B), and the mean of all of them.

    python scripts/probe_sequence_ensemble.py WORKSPACE [--test-dataset movie_reviews] --out probe.json

Open a copy of a workspace another process is writing (``sqlite3 ledger.sqlite ".backup ..."``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import numpy as np
import torch

from s3t.estimator import S3T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace")
    ap.add_argument("--test-dataset", default=None, help="built-in dataset whose test split (seed 0, 80/10/10) to score")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    est = S3T.load(args.workspace)
    ens = est._build_ensemble()
    ledger, full = est.ws_.ledger, est.config.plan.slices
    newest = {}
    for c in ledger.checkpoints():  # ordinal order: the newest of a prefix wins
        if not c.purged and c.stage == full:
            newest[(c.shard, c.prefix)] = c
    per_shard: dict[int, list] = defaultdict(list)
    for (shard, _), c in sorted(newest.items()):
        per_shard[shard].append(c)
    served = {int(k): v["checkpoint"] for k, v in ledger.latest_manifest()[1]["shards"].items() if v}
    members, owner = {}, {}
    for shard, cps in per_shard.items():
        for c in cps:
            key = len(members)
            members[key] = ens.build_member(shard, c.id, c.stage, est._load_state(c.id))
            owner[key] = (shard, c.id)
    ens.members = members  # keyed by member, not by shard: shard_logits then gives one row block per member
    keys = {shard: [k for k in members if owner[k][0] == shard] for shard in per_shard}
    served_keys = [[k for k in v if owner[k][1] == served.get(shard)] for shard, v in keys.items()]

    def score(texts: list[str], y: np.ndarray, subsets: dict[str, np.ndarray] | None = None) -> dict:
        start = time.perf_counter()
        every = ens.shard_logits(texts)
        seconds = time.perf_counter() - start
        out = {name: scored(every, y, rows, seconds) for name, rows in (subsets or {}).items()}
        return {**scored(every, y, np.arange(len(y)), seconds), **out}

    def scored(every: dict, y_all: np.ndarray, rows: np.ndarray, seconds: float) -> dict:
        logits, y = {k: v[rows] for k, v in every.items()}, y_all[rows]

        def acc(groups) -> float:  # mean of logits within each group (a shard), then across groups
            per = [torch.stack([logits[k] for k in g]).mean(0) for g in groups if g]
            return float((torch.stack(per).mean(0).argmax(-1).numpy() == y).mean())

        most = max(len(v) for v in keys.values())
        return {"n": len(y), "seconds": seconds,
                "served": acc(served_keys), "mean_of_all_sequences": acc(list(keys.values())),
                **{f"mean_of_first_{b}": acc([v[:b] for v in keys.values()]) for b in range(1, most + 1)},
                "per_shard": {str(shard): {"served": acc([g]) if g else None, "mean_of_all": acc([v]),
                                           "singles": [acc([[k]]) for k in v]}
                              for shard, v, g in zip(keys, keys.values(), served_keys)}}

    val = [r for r in ledger.records("validation") if r.text is not None]
    # the records that scored every checkpoint chose the served one: judge it on the others too
    from s3t.estimator import scoring_subset

    scoring = set(scoring_subset([r.id for r in val], est.config.train.val_limit))
    unscored = np.array([i for i, r in enumerate(val) if r.id not in scoring], dtype=int)
    out = {"workspace": args.workspace, "members_per_shard": {str(s): len(v) for s, v in keys.items()},
           "validation": score([r.text for r in val], np.array([int(r.label) for r in val]),
                               {"not_scoring_checkpoints": unscored})}
    if args.test_dataset:
        from s3t.data import load_builtin

        test = load_builtin(args.test_dataset, seed=0, fractions=(0.8, 0.1, 0.1)).test
        out["test"] = score(list(test.texts), np.array(test.labels))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "per_shard"} if isinstance(v, dict) else v
                      for k, v in out.items()}, indent=1))


if __name__ == "__main__":
    main()
