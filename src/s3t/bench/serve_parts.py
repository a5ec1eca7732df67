"""Serving side of the benchmark: P1 (forget latency), P4 (accuracy under deletions), P6 (predict speed).

Forgets are real ``S3T.forget`` calls on byte copies of the fitted workspace, with the
served ensemble loaded, so each latency is request → durable ledger commit → served
ensemble swapped. When every shard of a copy is dead the next deletions go to a fresh
copy (a dead copy has nothing left to serve).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..baselines.cost import latency_summary, ratio, sisa_retrain_seconds
from ..errors import NoLiveModelError
from ..plan import deletion_rate
from .plan_parts import random_batches
from .train_parts import Context, sisa_accuracy


def open_copy(ctx: Context, template: Path, name: str):
    """A loaded S3T on a byte copy of ``template`` with its served ensemble built (shared backbone)."""
    from ..estimator import S3T

    dest = ctx.tmp / name
    shutil.rmtree(dest, ignore_errors=True)  # left by an interrupted run
    shutil.copytree(template, dest)
    est = S3T.load(dest)
    est._backbone = ctx.backbone  # share the loaded encoder instead of loading one per copy
    est.predict_proba(["warm up"])
    return est


def close_copy(est) -> None:
    path = est.ws_.path
    ens = getattr(est, "_ensemble", None)
    if ens is not None and ens.standby is not None:
        ens.standby.close()  # stop its ledger reads before the copy is deleted
    est.ws_.ledger.close()
    shutil.rmtree(path, ignore_errors=True)


def p1_forget(ctx: Context) -> dict:
    cfg = ctx.cfg
    s3t = ctx.fits[f"s3t_B{cfg.slices}"]["est"]
    sisa = ctx.fits["sisa"]["model"]
    template = s3t.ws_.path
    ids = list(ctx.splits.train.ids)
    rng = np.random.default_rng(cfg.seed + 1)
    lat, with_files, changed, deleted, copies, standby_hits = [], [], [], [], 0, 0
    while len(lat) < cfg.deletions:
        est = open_copy(ctx, template, f"p1-{copies}")
        copies += 1
        standby = est.ensemble_.standby
        for rid in rng.permutation(ids).tolist():
            if standby is not None:
                standby.wait(120)  # requests arrive one at a time, after the previous one's background work
            start = time.perf_counter()
            receipt = est.forget(record_ids=[rid])
            lat.append(1000 * (time.perf_counter() - start))
            est.flush()  # the background file steps (mirror, cut files), timed apart
            with_files.append(1000 * (time.perf_counter() - start))
            changed.append(receipt.before != receipt.after)
            deleted.append(rid)
            if len(lat) >= cfg.deletions or not any(receipt.after.values()):
                break
        if standby is not None:
            standby_hits += standby.hits
        close_copy(est)
    hits = [list(sisa.locate(rid)) for rid in deleted]
    sisa_ms = [1000 * sisa_retrain_seconds(sisa.stage_seconds_[sh], sl) for sh, sl in hits]
    full_ms = [1000 * ctx.fits["full"]["stage_sum"]] * len(deleted)
    s, b, f = latency_summary(lat), latency_summary(sisa_ms), latency_summary(full_ms)
    swap = [x for x, c in zip(lat, changed) if c]
    same = [x for x, c in zip(lat, changed) if not c]
    return {
        "s3t_ms": s, "sisa_ms": b, "full_ms": f,
        "s3t_ms_with_file_steps": latency_summary(with_files),
        "s3t_ms_served_changed": latency_summary(swap) if swap else None,
        "s3t_ms_served_unchanged": latency_summary(same) if same else None,
        "ratio_sisa_p50": ratio(b["p50"], s["p50"]), "ratio_sisa_p99": ratio(b["p99"], s["p99"]),
        "ratio_full_p50": ratio(f["p50"], s["p50"]), "ratio_full_p99": ratio(f["p99"], s["p99"]),
        "median_per_deletion_ratio_sisa": float(np.median(np.array(sisa_ms) / np.array(lat))),
        "workspace_copies": copies, "deletions_per_copy": len(lat) / copies,
        "standby_hits": standby_hits, "member_swaps": sum(changed),
        "hits": hits, "sisa_stage_seconds": {str(k): list(v) for k, v in sisa.stage_seconds_.items()},  # copy: a later real forget updates them
        "note": "s3t: measured forget calls (durable ledger commit + served-ensemble swap); with_file_steps adds "
                "the background erasure of cut checkpoint files and the served.json rewrite. SISA: sum of the measured "
                "training times of the hit shard's stages from the hit slice to the end; full: the measured full "
                "training time — the retraining each deletion requires before the model is exact again.",
    }


def sisa_real_forget(ctx: Context) -> dict:
    """One real SISA forget (a record of the last slice of shard 0) vs its estimate from stage times."""
    sisa = ctx.fits["sisa"]["model"]
    L = ctx.cfg.slices
    rid = next(r for r in ctx.splits.train.ids if sisa.locate(r) == (0, L - 1))
    estimate = sisa_retrain_seconds(sisa.stage_seconds_[0], L - 1)
    report = sisa.forget([rid])
    return {"record": rid, "retrained": report.retrained, "estimate_seconds": estimate,
            "measured_seconds": report.seconds, "measured_over_estimate": ratio(report.seconds, estimate)}


def p4_accuracy(ctx: Context) -> tuple[dict, Any]:
    """Test accuracy while uniform single-record deletions accumulate (no retraining).

    Returns the results and the S3T copy of the last stream in its final state (short
    prefixes), which P6 measures; the caller closes it.
    """
    cfg, test = ctx.cfg, ctx.splits.test
    sisa = ctx.fits["sisa"]["model"]
    template = ctx.fits[f"s3t_B{cfg.slices}"]["est"].ws_.path
    rate = deletion_rate(cfg.shards, cfg.slices, cfg.slices)
    n_max = max(1, round(0.5 * rate))
    points = sorted({int(round(x)) for x in np.linspace(0, n_max, cfg.accuracy_points)})
    rng = np.random.default_rng(cfg.seed + 2)
    streams, orders, est = [], [], None
    for k in range(cfg.accuracy_streams):
        if est is not None:
            close_copy(est)
        est = open_copy(ctx, template, f"p4-{k}")
        order = rng.choice(list(ctx.splits.train.ids), n_max, replace=False).tolist()
        orders.append(order)
        rows, done = [], 0
        for n in points:
            for rid in order[done:n]:
                est.forget(record_ids=[rid])
            done = n
            if n == 0 and streams:  # no deletion yet: the same fitted ensemble as in stream 0
                acc = streams[0][0]["s3t"]
            else:
                try:
                    acc = est.score(test)
                except NoLiveModelError:
                    acc = None
            served = est.status()["served"]
            stages = sisa.served_stages(order[:n])
            rows.append({"deletions": n, "s3t": acc, "sisa": sisa_accuracy(ctx, stages), "s3t_served": served,
                         "sisa_served": {str(s): v for s, v in stages.items()}})
        streams.append(rows)
    mean = []
    for i, n in enumerate(points):
        row: dict[str, Any] = {"deletions": n}
        for key in ("s3t", "sisa"):
            vals = [s[i][key] for s in streams if s[i][key] is not None]
            row[key] = float(np.mean(vals)) if vals else None  # mean over the streams with a live shard
            row[f"{key}_dead_streams"] = len(streams) - len(vals)
        mean.append(row)
    last = mean[-1]
    gap = None if last["s3t"] is None or last["sisa"] is None else 100 * (last["s3t"] - last["sisa"])
    return {"deletion_rate": rate, "max_deletions": n_max, "points": mean, "streams": streams, "orders": orders,
            "gap_at_50pct_pts": gap, "note": "accuracy = mean over the deletion streams in which the method still "
            "has a live shard; *_dead_streams counts the others (no model can answer there)"}, est


def replay_stream(ctx: Context, order: list[str]):
    """A fresh copy of the fitted B=L workspace after forgetting ``order`` (one record at a time):
    the state a P4 stream ends in, for P6 when P4's results were kept from an interrupted run."""
    est = open_copy(ctx, ctx.fits[f"s3t_B{ctx.cfg.slices}"]["est"].ws_.path, "p4-replay")
    for rid in order:
        est.forget(record_ids=[rid])
    return est


def single_predict(model, tokenizer, texts, max_length: int, batch_size: int, random_order: bool = False, seed: int = 0):
    """One model's plain predict path: tokenise, batch (bucketed or random), pad per batch, forward."""
    import torch

    from ..train.batches import bucket_batches, pad_ids, tokenize

    toks = tokenize(tokenizer, list(texts), max_length)
    batches = random_batches(len(toks), batch_size, seed) if random_order else bucket_batches([len(t) for t in toks], batch_size)
    pad = int(tokenizer.pad_token_id or 0)
    with torch.no_grad():
        return [model(*pad_ids([toks[i] for i in b], pad)) for b in batches]


def _best_throughput(fns: dict[str, Any], n: int, repeats: int) -> dict[str, float]:
    """Texts/s of each function, best of ``repeats`` runs, the functions interleaved."""
    best = {k: 0.0 for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[k] = max(best[k], n / (time.perf_counter() - start))
    return best


def p6_throughput(ctx: Context, short) -> dict:
    cfg = ctx.cfg
    est = ctx.fits[f"s3t_B{cfg.slices}"]["est"]
    full = ctx.fits["full"]["model"]
    texts = (list(ctx.splits.test.texts) * 4)[: cfg.throughput_texts]
    max_length, bs = est.config.train.max_length, est.config.serve.batch_size
    tok = ctx.backbone.tokenizer
    small = cfg.batch_size  # the bucketed-vs-random comparison needs several batches
    fns = {
        "single": lambda: single_predict(full.model_, tok, texts, max_length, bs),
        "ensemble_full_prefixes": lambda: est.predict_proba(texts),
        "single_bucketed_small_batches": lambda: single_predict(full.model_, tok, texts, max_length, small),
        "single_random_small_batches": lambda: single_predict(full.model_, tok, texts, max_length, small, True, cfg.seed),
    }
    short_status = None
    if short is not None and short.status()["live_shards"] > 0:
        fns["ensemble_short_prefixes"] = lambda: short.predict_proba(texts)
        short_status = short.status()
    thr = _best_throughput(fns, len(texts), cfg.throughput_repeats)
    limit = thr["single"] / cfg.shards
    lat = []
    for t in texts[: cfg.latency_requests]:
        start = time.perf_counter()
        est.predict_proba([t])
        lat.append(1000 * (time.perf_counter() - start))
    out = {
        "texts": len(texts), "throughput": thr, "m_forward_limit": limit,
        "ratio_full_prefixes": thr["ensemble_full_prefixes"] / limit,
        "full_prefixes": est.status()["served"],
        "single_request_ms": latency_summary(lat),
        "bucketed_over_random": thr["single_bucketed_small_batches"] / thr["single_random_small_batches"],
        "batch_size": bs, "small_batch_size": small,
    }
    if short_status is not None:
        live = short_status["live_shards"]
        out.update({"short_prefixes": short_status["served"], "short_live_shards": live,
                    "ratio_short_prefixes": thr["ensemble_short_prefixes"] / limit,
                    "ratio_short_vs_live_limit": thr["ensemble_short_prefixes"] / (thr["single"] / live)})
    return out
