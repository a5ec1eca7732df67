"""Forget throughput with and without group commit, side by side (issue 19, item 3).

The medium preset's plan shape (m=5, L=6, B=6 on the 1,600 training snippets of
``load_builtin("movie_reviews", limit=2000)``), fitted once on a tiny random encoder (the forget
path sees the medium ledger; only the member weights are smaller). Then rounds alternate
``single`` (every forget its own transaction: ``record_forget``, the code before group commit)
and ``group`` (``S3T.forget``: concurrent forgets share a commit), each on a fresh copy:
``--clients`` threads send ``--deletions`` single-record forgets as fast as they can (forgets per
second, per-request p50/p99), then one client sends ``--lone`` forgets one at a time (the lone
forget's latency must not grow). Writes OUT/forget_throughput.json.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/forget_throughput.py --out results/group-commit
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def fit(tmp: Path) -> Path:
    from s3t import S3T
    from s3t.config import LoraSettings, PlanConfig, S3TConfig, TrainConfig
    from s3t.data import load_builtin
    from tests.conftest import make_tiny_model

    model = make_tiny_model(tmp / "tiny", 6)
    splits = load_builtin("movie_reviews", limit=2000)
    cfg = S3TConfig(plan=PlanConfig(shards=5, slices=6, budget=6),
                    train=TrainConfig(model=model, epochs=1, batch_size=32, threads=1, workers=1,
                                      lora=LoraSettings(rank=4, alpha=8)))
    S3T(cfg, workspace=tmp / "template").fit(splits.train, validation=splits.validation).ws_.ledger.close()
    return tmp / "template"


def one_round(template: Path, dest: Path, mode: str, clients: int, n: int, lone: int, seed: int) -> dict:
    from s3t import S3T
    from s3t.forget import record_forget

    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(template, dest)
    est = S3T.load(dest)
    est.predict_proba(["warm up"])
    ids = np.random.default_rng(seed).permutation([r.id for r in est.ws_.ledger.records("train")]).tolist()
    todo, lock, lat = list(ids[:n]), threading.Lock(), []

    def send(rid: str) -> None:
        start = time.perf_counter()
        if mode == "group":
            est.forget(record_ids=[rid])
        else:  # one transaction per request, then the same in-memory swap and file steps
            receipt = record_forget(est.ws_.ledger, record_ids=[rid])
            est._sync(receipt.body["manifest_version"], receipt.manifest)
            est._file_steps().submit(est._apply_files, receipt.cut_paths)
        with lock:
            lat.append(1000 * (time.perf_counter() - start))

    def client() -> None:
        while True:
            with lock:
                if not todo:
                    return
                rid = todo.pop()
            send(rid)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    loaded = list(lat)
    est.flush()
    lat.clear()
    for rid in ids[n:n + lone]:
        send(rid)
        est.flush()
    alone = list(lat)
    batches = getattr(getattr(est, "_group", None), "batches", None)
    est.ws_.ledger.close()
    return {"mode": mode, "forgets": n, "clients": clients, "seconds": wall, "per_second": n / wall,
            "p50": float(np.percentile(loaded, 50)), "p99": float(np.percentile(loaded, 99)),
            "lone_p50": float(np.percentile(alone, 50)), "lone_p99": float(np.percentile(alone, 99)),
            "commits": batches}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--deletions", type=int, default=400)
    ap.add_argument("--lone", type=int, default=100)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="s3t-group-"))
    try:
        template = fit(tmp)
        rounds = []
        for r in range(args.rounds):
            for mode in ("single", "group"):
                rounds.append({"round": r, **one_round(template, tmp / f"copy-{mode}", mode, args.clients,
                                                       args.deletions, args.lone, seed=r)})
                print(json.dumps(rounds[-1]), flush=True)
        med = {m: {k: float(np.median([x[k] for x in rounds if x["mode"] == m]))
                   for k in ("per_second", "p50", "p99", "lone_p50", "lone_p99")} for m in ("single", "group")}
        result = {"rounds": rounds, "median": med, "speedup": med["group"]["per_second"] / med["single"]["per_second"],
                  "load_average": os.getloadavg()}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "forget_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({"median": med, "speedup": result["speedup"]}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
