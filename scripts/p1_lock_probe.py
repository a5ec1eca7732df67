"""P1 probe: what the database-level write lock costs a forget, side by side with the code before it.

The medium preset's plan shape (m=5, L=6, B=6 on the 1,600 training snippets of
``load_builtin("movie_reviews", limit=2000)``) fitted once, on a tiny random encoder so the
fit takes a minute: the forget path (ledger transaction, served-ensemble swap, standby) sees
the same ledger size as the medium bench; only the member weights it loads are smaller. The
template is fitted by the OLD code (a ``git worktree`` of ``--base``), so both codes open the
same workspace. Then rounds alternate OLD / NEW, each in a fresh process on a fresh copy,
timing ``forget`` of ``--deletions`` random single records exactly as the bench's P1 does
(one request at a time, after the previous one's background work). Writes OUT/p1_lock.json.

    python scripts/p1_lock_probe.py --out results/p1-lock --base a91b763 [--rounds 3] [--deletions 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FIT = """
import sys
from s3t import S3T
from s3t.config import LoraSettings, PlanConfig, S3TConfig, TrainConfig
from s3t.data import load_builtin
sys.path.insert(0, {root!r})
from tests.conftest import make_tiny_model
model = make_tiny_model({tmp!r} + '/tiny', 6)
splits = load_builtin('movie_reviews', limit=2000)
cfg = S3TConfig(plan=PlanConfig(shards=5, slices=6, budget=6),
                train=TrainConfig(model=model, epochs=1, batch_size=32, threads=1, workers=1, lora=LoraSettings(rank=4, alpha=8)))
S3T(cfg, workspace={ws!r}).fit(splits.train, validation=splits.validation)
"""

TIME = """
import json, shutil, time, numpy as np
from s3t import S3T
template, dest, n, seed = {template!r}, {dest!r}, {n}, {seed}
import sqlite3  # read-only: opening the template with S3T would migrate it for one code only
ids = [r[0] for r in sqlite3.connect(f'file:{{template}}/ledger.sqlite?mode=ro', uri=True).execute(
    "SELECT id FROM records WHERE split = 'train' ORDER BY position")]
rng = np.random.default_rng(seed)
lat, copies = [], 0
while len(lat) < n:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(template, dest)
    est = S3T.load(dest)
    est.predict_proba(['warm up'])
    copies += 1
    standby = est.ensemble_.standby
    for rid in rng.permutation(ids).tolist():
        if standby is not None:
            standby.wait(120)
        start = time.perf_counter()
        receipt = est.forget(record_ids=[rid])
        lat.append(1000 * (time.perf_counter() - start))
        est.flush()
        if len(lat) >= n or not any(receipt.after.values()):
            break
    if standby is not None:
        standby.close()
    est.ws_.ledger.close()
print(json.dumps({{'ms': lat, 'copies': copies}}))
"""


def run(src: Path, code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"probe step failed under {src}:\n{out.stderr[-3000:]}")
    return out.stdout


def summary(ms: list[float]) -> dict:
    import numpy as np

    a = np.array(ms)
    return {"n": len(ms), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--base", required=True, help="git revision of the code before the lock")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--deletions", type=int, default=200)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="s3t-p1-lock-"))
    old = tmp / "old"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.base], check=True,
                   capture_output=True)
    try:
        start = time.perf_counter()
        run(old / "src", FIT.format(root=str(ROOT), tmp=str(tmp), ws=str(tmp / "template")))
        fit_s = time.perf_counter() - start
        rounds = []
        for r in range(args.rounds):
            for name, src in (("old", old / "src"), ("new", ROOT / "src")):
                got = json.loads(run(src, TIME.format(template=str(tmp / "template"), dest=str(tmp / f"copy-{name}"),
                                                      n=args.deletions, seed=r)).strip().splitlines()[-1])
                rounds.append({"round": r, "code": name, **summary(got["ms"]), "copies": got["copies"]})
                print(json.dumps(rounds[-1]), flush=True)
        both = {name: [x for x in rounds if x["code"] == name] for name in ("old", "new")}
        result = {
            "base": args.base, "fit_seconds": fit_s, "rounds": rounds,
            "median_p50": {k: sorted(x["p50"] for x in v)[len(v) // 2] for k, v in both.items()},
            "median_p99": {k: sorted(x["p99"] for x in v)[len(v) // 2] for k, v in both.items()},
            "load_average": os.getloadavg(),
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "p1_lock.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: result[k] for k in ("median_p50", "median_p99")}))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
