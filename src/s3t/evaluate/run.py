"""``run_evaluate``: exact vs approximate unlearning on one model and data set.

Order: fit the full model (FullRetrain: LoRA on every layer), SISA and s3t once; choose
the forget sets (:mod:`s3t.evaluate.scenarios`); then per scenario run every method from
those fits — Retrain = ``FullRetrain.forget`` on a copy (retrains from scratch), SISA =
``SISA.forget`` on a copy, s3t = ``S3T.forget`` on a byte copy of the fitted workspace
(serving the surviving prefixes; RTE = forget latency), s3t_retrain = that copy after
``S3T.retrain`` (the cut suffixes retrained and swapped in), retrain_seed1 = Retrain with the
next training seed (how much Retrain moves by itself), approximate methods =
``unlearn(full model, forget, retain)`` — and score each on the forget set, a retained
sample and a test sample. The sequential scenario sends the requests one by one. The
Zipf-subject scenarios (:mod:`s3t.evaluate.zipf`) use a second SISA and s3t fit on the training
records with synthetic subjects given before the fit (placed by subject); s3t forgets by subject.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .config import EXACT, SUBJECT_PLACED, EvaluateConfig
from .metrics import PER_RECORD, gaps, noise_check
from .report import markdown, plots


def bench_config(cfg: EvaluateConfig):
    """The same sizes as a :class:`~s3t.bench.BenchConfig`, to reuse bench's fit helpers."""
    from ..bench import BenchConfig

    return BenchConfig(mode=cfg.mode, model=cfg.model, dataset=cfg.dataset, limit=cfg.limit, fractions=cfg.fractions,
                       shards=cfg.shards, slices=cfg.slices, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                       rank=cfg.rank, alpha=cfg.alpha, threads=cfg.threads, validation=False, seed=cfg.seed)


FIT_TAG = {"record": "", "subject": "_subject"}  # suffix of the fits' names per placement kind


def clone_baseline(obj):
    """Deep copy of a fitted SISA / FullRetrain sharing the (frozen) backbone, so a forget on
    the copy leaves the original fitted."""
    bb = obj.backbone
    shared = [bb, bb.model, bb.tokenizer, *bb.model.parameters(), *bb.model.buffers()]
    return copy.deepcopy(obj, {id(x): x for x in shared})


class Env:
    """Everything the scenarios share: config, fits, pool of records, scratch dir, progress."""

    def __init__(self, cfg: EvaluateConfig, say: Callable[[str], None]):
        self.cfg, self.say = cfg, say
        self.fits: dict[str, Any] = {}
        self.exact: dict[str, dict[str, Any]] = {}  # placement kind -> {"sisa": fitted SISA, "s3t": workspace template}
        self.where: dict[str, dict[str, tuple[int, int]]] = {}  # placement kind -> (shard, slice) per training record

    def fit(self, splits, tmp: Path) -> None:
        from ..baselines import FullRetrain
        from ..bench.train_parts import Context, s3t_config
        from ..train.backbone import load_backbone
        from .pool import Pool

        cfg, bcfg = self.cfg, bench_config(self.cfg)
        train, self.splits = splits.train, splits
        self.backbone = load_backbone(cfg.model)
        self.ctx = Context(bcfg, self.backbone, splits, tmp, 0.0, 0.0, self.say)
        self.base = s3t_config(bcfg, 1, cache=False)  # the baselines train every layer: a level-0 cache saves little
        self.say(f"training the full model (LoRA on every layer) on {len(train)} records ...")
        start = time.perf_counter()
        self.full = FullRetrain(self.base, backbone=self.backbone).fit(train)
        self.fits["full"] = {"seconds": time.perf_counter() - start}
        if cfg.sequential_requests or any(s not in SUBJECT_PLACED for s in cfg.scenarios):
            self.fit_exact(train, "record")
        if any(s in SUBJECT_PLACED for s in cfg.scenarios):
            from .zipf import owned_train

            self.owned, self.subject_model = owned_train(cfg, train)
            self.say(f"Zipf subjects: K={self.subject_model['subjects']} a={cfg.zipf_exponent:g} (largest "
                     f"{self.subject_model['largest']}, median {self.subject_model['median']} records), given before the fit")
            self.fit_exact(self.owned, "subject")
        self.pool = Pool.build(self.full, splits, cfg.eval_limit, cfg.seed)
        self.before_deletions()
        for k, v in self.fits.items():
            self.say(f"  {k}: {v['seconds']:.1f}s, test accuracy before any deletion {v['test_accuracy']:.3f}")

    def fit_exact(self, train, kind: str) -> None:
        """SISA and s3t (those among the methods) on ``train`` with the default placement ("auto"):
        ``kind`` "record" = the data as loaded (no subjects: placed record by record, fits "sisa" and
        "s3t"), "subject" = with the Zipf subjects (placed by subject, fits "sisa_subject" and "s3t_subject")."""
        from ..baselines import SISA
        from ..bench.train_parts import fit_s3t
        from ..plan.placement import place, resolve_placement
        from .zipf import placement_report

        cfg, tag = self.cfg, FIT_TAG[kind]
        fitted = self.exact.setdefault(kind, {})
        subject_of = dict(zip(train.ids, train.subjects))
        # without SISA and s3t: where they would have placed the records (the same call both make)
        self.where[kind] = dict(zip(train.ids, place(list(train.ids), list(train.subjects), cfg.shards, cfg.slices,
                                                     self.base.plan.seed, self.base.plan.placement).pairs))
        if "sisa" in cfg.methods:
            self.say(f"training SISA m={cfg.shards} L={cfg.slices} ({kind} placement) ...")
            start = time.perf_counter()
            sisa = fitted["sisa"] = SISA(self.base, backbone=self.backbone).fit(train)
            self.where[kind] = dict(sisa.where_)
            self.fits["sisa" + tag] = {"seconds": time.perf_counter() - start, "placement": placement_report(
                resolve_placement(sisa.config.plan.placement, train.subjects), sisa.where_, subject_of, cfg.shards,
                cfg.slices)}
        if "s3t" in cfg.methods:
            self.say(f"training s3t m={cfg.shards} L={cfg.slices} B={cfg.plan_budget} ({kind} placement) ...")
            fit = fit_s3t(self.ctx, cfg.plan_budget, train, "s3t-fit" + tag)
            est = fit["est"]
            fitted["s3t"] = est.ws_.path
            self.where[kind] = {r.id: (r.shard, r.slice) for r in est.ws_.ledger.records()}
            est.ws_.ledger.close()
            self.fits["s3t" + tag] = {"seconds": fit["seconds"], "checkpoints": fit["checkpoints"], "placement": {
                **placement_report(est.placement_["placement"], self.where[kind], subject_of, cfg.shards, cfg.slices),
                **est.placement_}}

    def before_deletions(self) -> None:
        """Test accuracy (on the scored test sample) of every fit before any deletion."""
        import numpy as np

        from ..bench.serve_parts import close_copy, open_copy
        from .metrics import accuracy

        pool = self.pool
        y = pool.label_array(pool.test_eval)
        self.fits["full"]["test_accuracy"] = accuracy(pool.model_predictor(self.full.model_)(pool.test_eval), y)
        for kind, fitted in self.exact.items():
            tag = FIT_TAG[kind]
            if "sisa" in fitted:
                self.fits["sisa" + tag]["test_accuracy"] = accuracy(pool.estimator_predictor(fitted["sisa"])(pool.test_eval), y)
            if "s3t" in fitted:
                est = open_copy(self.ctx, fitted["s3t"], f"s3t-before{tag}")
                self.fits["s3t" + tag]["test_accuracy"] = accuracy(np.asarray(pool.estimator_predictor(est)(pool.test_eval)), y)
                quiesce(est)
                close_copy(est)

    # -- one scenario ---------------------------------------------------------------------
    def scenario(self, name: str, requests: list[list[str]], detail: dict[str, Any], placed: str = "record",
                 subjects: list[str] | None = None) -> dict[str, Any]:
        """Every method on one forget set. ``placed``: which s3t / SISA fits serve it ("record" or
        "subject"); ``subjects``: the subject each request names (s3t then forgets by subject)."""
        from ..bench.serve_parts import close_copy, open_copy
        from .methods import get_method

        cfg, pool = self.cfg, self.pool
        fitted = self.exact.get(placed, {})
        forget = sorted({i for r in requests for i in r})
        gone = set(forget)
        seq = len(requests) > 1
        self.say(f"scenario {name}: forget {len(forget)} of {len(pool.train_ids)} records"
                 + (f" in {len(requests)} requests" if seq else "") + " ...")
        rows: dict[str, dict[str, Any]] = {}
        vectors: dict[str, Any] = {}  # per-forget-record outcomes, for the noise test
        original = {**pool.score(pool.model_predictor(self.full.model_), forget, gone), "RTE": 0.0}
        original.pop(PER_RECORD, None)

        def done(method: str, row: dict[str, Any]) -> None:
            vectors[method] = row.pop(PER_RECORD, None)
            rows[method] = row
            self.say(f"  {method:<10} UA {row['UA']:.3f} RA {row['RA']:.3f} TA {row['TA']:.3f} "
                     f"MIA {row['MIA']:.3f} RTE {row['RTE']:.2f}s" + (f" ({row['note']})" if row.get("note") else ""))

        retrain = clone_baseline(self.full)
        rep = retrain.forget(forget)
        note = "retrained once on the final retained set" if seq else ""
        done("retrain", {**pool.score(pool.estimator_predictor(retrain), forget, gone), "RTE": rep.seconds, "note": note})
        del retrain
        if "retrain_seed1" in cfg.methods:  # Retrain's own seed-to-seed spread: the training-noise yardstick
            other = self.retrain_other_seed(forgotten=gone)
            done("retrain_seed1", {**pool.score(pool.estimator_predictor(other), forget, gone), "RTE": other.fit_seconds_,
                                   "note": f"Retrain with training seed {cfg.seed + 1}"})
            del other
        if "sisa" in cfg.methods:
            sisa, rte, hit = clone_baseline(fitted["sisa"]), 0.0, set()
            for req in requests:
                rep = sisa.forget(req)
                rte += rep.seconds
                hit |= set(rep.retrained)
            row = pool.score(pool.estimator_predictor(sisa), forget, gone)
            done("sisa", {**row, "RTE": rte, "shards_retrained": len(hit)})
            del sisa
        if "s3t" in cfg.methods:
            est = open_copy(self.ctx, fitted["s3t"], f"s3t-{name}")
            rte, live_after = 0.0, []
            for n, req in enumerate(requests):
                quiesce(est)
                start = time.perf_counter()
                if subjects is not None:
                    est.forget(subject=subjects[n])
                else:
                    est.forget(record_ids=req)
                rte += time.perf_counter() - start
                live_after.append(est.status()["live_shards"])
            done("s3t", self.served_row(est, forget, gone, RTE=rte, **({"live_after": live_after} if seq else {})))
            if "s3t_retrain" in cfg.methods:  # then the background retrain of the cut suffixes, run to the end
                rep = est.retrain()
                done("s3t_retrain", self.served_row(
                    est, forget, gone, RTE=rte + rep.seconds,
                    note=f"s3t after its background retrain ({len(rep.checkpoints)} checkpoints, {rep.seconds:.1f} s); "
                         f"served exactly from {1000 * rte:.0f} ms"))
            quiesce(est)
            est.flush()  # the forgets' background file steps, before the copy is removed
            close_copy(est)
        for method in [m for m in cfg.methods if m not in EXACT]:
            spec = get_method(method)
            conf = spec.configure(**{"seed": cfg.seed, **cfg.method_overrides.get(method, {})})
            model, rte, forgotten = self.full.model_, 0.0, set()
            for req in requests:
                forgotten |= set(req)
                retain = pool.examples(pool.retained(forgotten))
                start = time.perf_counter()
                model = spec.unlearn(model, pool.examples(req), retain, conf)
                rte += time.perf_counter() - start
            done(method, {**pool.score(pool.model_predictor(model), forget, gone), "RTE": rte})
        return {"forget_size": len(forget), "requests": len(requests), "detail": detail, "rows": rows,
                "gaps": gaps(rows), "noise": noise_check(vectors, seed=cfg.seed), "original": original,
                "original_gaps": gaps({**rows, "original": original})["original"]}

    def served_row(self, est, forget: list[str], gone: set[str], **extra: Any) -> dict[str, Any]:
        """Scores of what an S3T estimator serves now, with its live shards and served stages."""
        quiesce(est)  # the standby refresh after a swap must not race the scoring
        status = est.status()
        row = self.pool.score(self.pool.estimator_predictor(est), forget, gone)
        return {**row, "live_shards": status["live_shards"], "served": status["served"], **extra}

    def retrain_other_seed(self, forgotten: set[str]):
        """Retrain from scratch on the retained records with the next training seed."""
        from dataclasses import replace

        from ..baselines import FullRetrain

        train = self.splits.train
        keep = [i for i, rid in enumerate(train.ids) if rid not in forgotten]
        config = replace(self.full.config, plan=replace(self.full.config.plan, seed=self.cfg.seed + 1))
        return FullRetrain(config, backbone=self.backbone).fit(train.subset(keep))


def quiesce(est, timeout: float = 120.0) -> None:
    """Wait until the estimator's background standby refresh (if any) is idle, so it neither
    competes with a timed forget nor reads a workspace copy being removed."""
    standby = getattr(getattr(est, "_ensemble", None), "standby", None)
    if standby is not None:
        standby.wait(timeout)


def forget_sets(env: Env, splits) -> dict[str, dict[str, Any]]:
    """Per scenario: the list of requests (lists of ids) and how they were chosen."""
    import numpy as np

    from . import scenarios as sc
    from .metrics import loss

    cfg, pool, train = env.cfg, env.pool, splits.train
    ids = list(train.ids)
    out: dict[str, dict[str, Any]] = {}
    owned = {}
    if any(s in SUBJECT_PLACED for s in cfg.scenarios):
        from .zipf import forget_sets as zipf_sets

        owned = zipf_sets(cfg, env.owned, env.subject_model, env.where["subject"])
    for name in cfg.scenarios:
        if name in SUBJECT_PLACED:
            out[name] = owned[name]
        elif name.startswith("random_"):
            frac = {"random_1pct": 0.01, "random_10pct": 0.10}[name]
            out[name] = {"requests": [sc.random_ids(ids, frac, cfg.seed + 1)], "detail": {"fraction": frac}}
        elif name == "class":
            c = sc.pick_class(train.labels, train.label_names, cfg.forget_class)
            out[name] = {"requests": [sc.class_ids(ids, train.labels, c)], "detail": {"class": train.label_names[c]}}
        elif name == "subject":
            subjects = sc.subjects_of(ids, train.subjects, cfg.subjects)
            synthetic = not all(s is not None for s in train.subjects)
            who, members = sc.subject_ids(ids, subjects, cfg.seed + 2)
            out[name] = {"requests": [members], "detail": {"subject": who, "synthetic": synthetic, "K": cfg.subjects}}
        elif name == "worst_case":
            scores, rule = worst_case_scores(env, splits)
            k = sc.n_of(cfg.worst_fraction, len(ids))
            chosen = sc.worst_case_ids(ids, scores, k)
            out[name] = {"requests": [chosen], "detail": {"k": k, "rule": rule, "min_score": float(
                np.min(scores[[ids.index(i) for i in chosen]])), "median_score": float(np.median(scores))}}
    if cfg.sequential_requests:
        reqs = sc.sequential_ids(ids, cfg.sequential_requests, cfg.sequential_fraction, cfg.seed + 3)
        out["sequential"] = {"requests": reqs, "detail": {"requests": len(reqs), "per_request": len(reqs[0])}}
    return out


def worst_case_scores(env: Env, splits):
    """Memorisation score per training record (see :mod:`s3t.evaluate.scenarios`) and the rule used."""
    import numpy as np

    from . import scenarios as sc
    from .metrics import loss, true_label_prob

    pool, ids = env.pool, list(splits.train.ids)
    y = pool.label_array(ids)
    full = pool.model_predictor(env.full.model_)
    p_full = full(ids)
    sisa = env.exact.get("record", {}).get("sisa")
    if sisa is not None and env.cfg.shards >= 2:
        env.say("  worst case: leave-out memorisation with the SISA shard models ...")
        L = env.cfg.slices
        per = sisa.checkpoint_logits([pool.texts[i] for i in ids], {s: L for s in range(env.cfg.shards)})
        p_shards = np.stack([true_label_prob(np.asarray(per[(s, L)].softmax(-1)), y) for s in range(env.cfg.shards)])
        shard_of = [sisa.locate(i)[0] for i in ids]
        return sc.leave_out_scores(true_label_prob(p_full, y), p_shards, shard_of), "leave-out (SISA shards)"
    held = list(splits.validation.ids)
    return sc.memorisation_scores(loss(p_full, y), y, loss(full(held), pool.label_array(held)),
                                  pool.label_array(held)), "held-out class z-score"


def run_evaluate(out_dir: str | Path, quick: bool = True, say: Callable[[str], None] | None = None,
                 **overrides: Any) -> dict[str, Any]:
    """Run the comparison (``quick`` preset or full), write results.json, summary.md and PNGs to ``out_dir``."""
    import torch

    from ..bench.resume import to_json
    from ..bench.run import machine
    from ..bench.train_parts import cpu_seconds
    from ..data import load_builtin
    from ..train.backbone import set_determinism

    say = say or (lambda msg: print(msg, flush=True))
    cfg = EvaluateConfig.quick(**overrides) if quick else EvaluateConfig.full(**overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    set_determinism(cfg.threads)
    torch.manual_seed(cfg.seed)
    results: dict[str, Any] = {"mode": cfg.mode, "config": cfg.to_dict(), "machine": machine(bench_config(cfg))}
    say(f"s3t evaluate ({cfg.mode}): {cfg.dataset}, model {cfg.model}, m={cfg.shards} L={cfg.slices} "
        f"B={cfg.plan_budget}, {cfg.epochs} epoch(s), {cfg.threads} thread(s)")
    splits = load_builtin(cfg.dataset, seed=cfg.seed, limit=cfg.limit, fractions=cfg.fractions)
    results["data"] = {"dataset": cfg.dataset, "train": len(splits.train), "validation": len(splits.validation),
                       "test": len(splits.test), "classes": list(splits.train.label_names)}
    tmp = Path(tempfile.mkdtemp(prefix="s3t-evaluate-"))
    env = Env(cfg, say)
    try:
        env.fit(splits, tmp)
        results["fits"] = env.fits
        results["method_configs"] = {m: get_config(cfg, m) for m in cfg.methods if m not in EXACT}
        results["scenarios"] = {}
        for name, sel in forget_sets(env, splits).items():
            start = time.perf_counter()
            res = env.scenario(name, sel["requests"], sel["detail"], sel.get("placed", "record"), sel.get("subjects"))
            res["seconds"] = time.perf_counter() - start
            results["scenarios"][name] = res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["total_seconds"] = time.perf_counter() - t0
    results["cpu_seconds"] = cpu_seconds() - cpu0
    results["machine"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["plots"] = plots(results, out)
    (out / "results.json").write_text(to_json(results))
    (out / "summary.md").write_text(markdown(results) + "\n")
    say(f"evaluate finished in {results['total_seconds']:.0f}s wall ({results['cpu_seconds']:.0f}s CPU); results in {out}")
    return results


def get_config(cfg: EvaluateConfig, method: str) -> dict[str, Any]:
    from .methods import get_method

    return get_method(method).configure(**{"seed": cfg.seed, **cfg.method_overrides.get(method, {})}).to_dict()
