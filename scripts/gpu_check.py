"""GPU check: train a small plan on CUDA twice (bit-equal?), once on the CPU (speed-up?), then
forget, retrain and verify on CUDA, and show that verify refuses to compare across devices.

Run on a machine with a CUDA GPU and a CUDA build of torch: ``bash scripts/gpu_check.sh [OUT] [MODEL]``
(MODEL: a built-in model name or a local encoder directory; default all-MiniLM-L6-v2).
Prints one JSON summary (also written to OUT/gpu_check.json) and exits 0 when every check passes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def main(out: Path, model: str = "all-MiniLM-L6-v2") -> int:
    import torch

    if torch.version.cuda is None or not torch.cuda.is_available():
        why = ("this torch is a CPU build (torch.version.cuda is None): install a CUDA build of the same version, e.g. "
               f"pip install torch=={torch.__version__.split('+')[0]} --index-url https://download.pytorch.org/whl/cu128"
               if torch.version.cuda is None else "torch sees no CUDA GPU (driver missing or no device)")
        print(f"gpu_check: {why}", file=sys.stderr)
        return 2
    from s3t import S3T
    from s3t.config import LoraSettings, PlanConfig, S3TConfig, ServeConfig, TrainConfig
    from s3t.data import load_builtin
    from s3t.store.checkpoints import load_checkpoint, state_digest

    splits = load_builtin("movie_reviews", seed=0, limit=1200)
    threads = min(4, len(os.sched_getaffinity(0)))

    def config(device: str) -> S3TConfig:
        return S3TConfig(plan=PlanConfig(shards=2, slices=3, budget=2),
                         train=TrainConfig(model=model, epochs=1, batch_size=32, threads=threads, workers=1,
                                           device=device,
                                           lora=LoraSettings(rank=8, alpha=16)),
                         serve=ServeConfig(device=device))

    def fit(device: str, root: Path):
        start = time.perf_counter()
        est = S3T(config(device), workspace=root / f"ws-{device}-{time.monotonic_ns()}").fit(
            splits.train, validation=splits.validation)
        seconds = time.perf_counter() - start
        digests = {(c.shard, c.prefix): state_digest(load_checkpoint(est.ws_.resolve(c.path))[0])
                   for c in est.ws_.ledger.checkpoints()}
        return est, seconds, digests

    with tempfile.TemporaryDirectory(prefix="s3t-gpu-check-") as tmp:
        root = Path(tmp)
        a, cuda_1, dig_a = fit("cuda", root)
        _, cuda_2, dig_b = fit("cuda", root)
        _, cpu_s, dig_cpu = fit("cpu", root)
        meta = load_checkpoint(a.ws_.resolve(a.ws_.ledger.checkpoints()[0].path))[1]
        rid = splits.train.ids[0]
        receipt = a.forget(record_ids=[rid])
        a.retrain()
        verified = a.verify(receipt.request_id)
        accuracy = a.score(splits.test)
        a.config = replace(a.config, train=replace(a.config.train, device="cpu"))  # verify on the "wrong" machine
        cross = a.verify(receipt.request_id)
    summary = {
        "model": model, "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cpu_threads": threads, "checkpoints": len(dig_a),
        "cuda_runs_bit_equal": dig_a == dig_b,
        "cuda_vs_cpu_bits_equal": dig_a == dig_cpu,  # expected False: other kernels, other (correct) bits
        "fit_seconds": {"cuda_first": cuda_1, "cuda_second": cuda_2, "cpu": cpu_s},
        "speedup_vs_cpu": cpu_s / min(cuda_1, cuda_2),
        "recorded_identity": {k: meta.get(k) for k in ("device", "device_name", "torch", "cuda")},
        "verify_on_cuda_ok": verified.ok, "verify_compared": verified.compared,
        "verify_on_cpu_refused": (not cross.ok) and bool(cross.incomparable) and not cross.mismatches,
        "test_accuracy_after_forget": accuracy,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    ok = summary["cuda_runs_bit_equal"] and summary["verify_on_cuda_ok"] and summary["verify_on_cpu_refused"]
    print(f"gpu_check: {'PASS' if ok else 'FAIL'} — CUDA bit-equal twice: {summary['cuda_runs_bit_equal']}, verify on "
          f"CUDA: {verified.ok}, CPU verify refused: {summary['verify_on_cpu_refused']}, speed-up over "
          f"{threads} CPU thread(s): {summary['speedup_vs_cpu']:.1f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(Path(args[0] if args else "gpu-check"), *args[1:2]))
