"""P8, deletion traffic: a stream of subject deletions with the background retrain running.

Every method sees the same stream (:mod:`s3t.bench.traffic_stream`) on the same data with the
same synthetic Zipf subjects. A virtual clock advances by the CPU seconds of each retrain job
that is really run (one torch thread, in this process); a deletion is applied at its arrival
time. One background worker per method takes all queued deletions into its next job:

* ``s3t`` (placement ``subject`` | ``record``; restore ``progressive`` | ``naive``): the real
  estimator, :meth:`S3T.forget` per subject and :func:`s3t.retrain.iter_retrain` one shard job
  at a time. A deletion that arrives while a job runs is committed at once; what is served
  until the job ends is the ledger's serving rule over the checkpoints that existed before the
  job (the job's own stages appear at its end).
* ``sisa`` (same placements): serves, per shard, the stage before its first hit slice until the
  shard's suffix is retrained (:class:`s3t.baselines.SISA`).
* ``full``: one model; dark from a deletion until a retrain from scratch without it ends.

Accuracy is measured on a fixed test subset whenever what is served changes (member logits are
cached per checkpoint); measuring is not counted on the clock.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from typing import Any

import numpy as np

from .traffic_stream import Event, deletion_stream, timeline_metrics


class _S3TEngine:
    def __init__(self, est, restore: str, texts, labels):
        from ..serve.ensemble import Ensemble

        self.est, self.restore, self.texts, self.labels = est, restore, texts, labels
        self.ens = Ensemble(est._backbone, est.config, len(est.classes_))
        self.logits: dict[str, Any] = {}
        self.gen = None
        self.report = None
        self.new: set[str] = set()

    def forget(self, subjects) -> None:
        for s in subjects:
            self.est.forget(subject=s)
        self.est.flush()

    def has_work(self) -> bool:
        return self.gen is not None or bool(self.est.ws_.ledger.requests_in_state("served-exact", "retraining"))

    def run_job(self) -> None:
        from ..retrain import RetrainReport, iter_retrain

        before = {c.id for c in self.est.ws_.ledger.checkpoints()}
        if self.gen is None:
            self.report = RetrainReport()
            self.gen = iter_retrain(self.est, self.report, restore=self.restore)
        try:
            next(self.gen)
        except StopIteration:
            self.gen = None
        self.new = {c.id for c in self.est.ws_.ledger.checkpoints()} - before

    def state(self, before_job: bool = False) -> tuple[int, float | None]:
        led = self.est.ws_.ledger
        _, body = led.latest_manifest()
        if before_job and self.new:  # the job's stages are not there yet: serve without them
            with led.Session() as s:
                tainted = led.tainted_checkpoints(s) | self.new
                redo = [int(k) for k, v in body["shards"].items() if v is not None and v["checkpoint"] in tainted]
                if redo:
                    body = led.compute_manifest(s, tainted=tainted, shards=redo, base=body)
        live = {int(k): v for k, v in body["shards"].items() if v is not None}
        if not live:
            return 0, None
        per = [self._member(shard, v["checkpoint"], int(v["stage"])) for shard, v in sorted(live.items())]
        return len(live), _accuracy(per, self.labels)

    def _member(self, shard: int, checkpoint_id: str, stage: int):
        if checkpoint_id not in self.logits:
            state = self.est._load_state(checkpoint_id)
            self.ens.members = {shard: self.ens.build_member(shard, checkpoint_id, stage, state)}
            self.logits[checkpoint_id] = self.ens.shard_logits(self.texts)[shard]
            self.ens.members = {}
        return self.logits[checkpoint_id]


class _Queued:
    """A baseline whose forget IS its retrain: deletions queue up, a job retrains for all queued."""

    def __init__(self, members: dict[str, list[str]], texts, labels):
        self.members, self.texts, self.labels = members, texts, labels
        self.queued: list[str] = []

    def forget(self, subjects) -> None:
        for s in subjects:
            self.queued += self.members[s]

    def has_work(self) -> bool:
        return bool(self.queued)


class _SISAEngine(_Queued):
    def __init__(self, sisa, members: dict[str, list[str]], texts, labels):
        super().__init__(members, texts, labels)
        self.sisa = sisa
        self.inflight: list[str] = []
        self.epoch: dict[tuple[int, int], int] = {}
        self.logits: dict[tuple[int, int, int], Any] = {}

    def run_job(self) -> None:
        self.inflight, self.queued = self.queued, []
        report = self.sisa.forget(self.inflight)
        for shard, stages in report.retrained.items():
            for k in stages:
                self.epoch[(shard, k)] = self.epoch.get((shard, k), 0) + 1

    def state(self, before_job: bool = False) -> tuple[int, float | None]:
        pending = self.queued + (self.inflight if before_job else [])
        if not before_job:
            self.inflight = []
        stages = self.sisa.served_stages(pending)
        live = {s: k for s, k in stages.items() if k > 0}
        if not live:
            return 0, None
        per = []
        for s, k in sorted(live.items()):
            key = (s, k, self.epoch.get((s, k), 0))
            if key not in self.logits:
                self.logits[key] = self.sisa.checkpoint_logits(self.texts, {s: k})[(s, k)]
            per.append(self.logits[key])
        return len(live), _accuracy(per, self.labels)


class _FullEngine(_Queued):
    def __init__(self, full, members: dict[str, list[str]], texts, labels):
        super().__init__(members, texts, labels)
        self.full = full
        self.version, self.acc = 0, None

    def run_job(self) -> None:
        ids, self.queued = self.queued, []
        self.full.forget(ids)
        self.version += 1
        self.acc = None

    def state(self, before_job: bool = False) -> tuple[int, float | None]:
        if before_job or self.queued:
            return 0, None  # the served model saw a deleted record: nothing exact to serve
        if self.acc is None:
            self.acc = _accuracy([self.full.logits(self.texts)], self.labels)
        return 1, self.acc


def _accuracy(per_member, labels) -> float:
    import torch

    stacked = torch.stack([torch.as_tensor(x) for x in per_member]).mean(0)
    return float((stacked.argmax(-1).numpy() == np.asarray(labels)).mean())


_MAX_ROUNDS = 100_000  # a bound, never reached: every round applies a deletion or runs a job


def drive(engine, events: list[Event]) -> dict[str, Any]:
    """Run one method through the stream on the virtual clock; its timeline and CPU seconds."""
    clock, cpu, i, jobs = 0.0, 0.0, 0, 0
    live, acc = engine.state()
    timeline = [(0.0, live, acc)]
    for _ in range(_MAX_ROUNDS):
        if not engine.has_work():
            if i == len(events):
                break
            clock = max(clock, events[i].t)
            engine.forget(events[i].subjects)
            timeline.append((clock, *engine.state()))
            i += 1
            continue
        c0 = time.process_time()
        engine.run_job()
        spent = time.process_time() - c0
        cpu, jobs, end = cpu + spent, jobs + 1, clock + spent
        while i < len(events) and events[i].t <= end:  # arrived while the job ran: served at once
            engine.forget(events[i].subjects)
            timeline.append((events[i].t, *engine.state(before_job=True)))
            i += 1
        clock = end
        timeline.append((clock, *engine.state()))
    else:
        raise RuntimeError(f"P8: {type(engine).__name__} did not finish within {_MAX_ROUNDS} rounds")
    return {"timeline": [(round(t, 3), n, a) for t, n, a in timeline], "cpu_seconds": cpu, "jobs": jobs,
            "end": clock}


def p8_traffic(ctx) -> dict[str, Any]:
    """P8 (see the module docstring): every method through one deletion stream."""
    from ..baselines import SISA, FullRetrain
    from ..data.subjects import describe, with_subjects
    from ..estimator import S3T
    from ..plan import place
    from .train_parts import Clock, Ticker, s3t_config

    cfg = ctx.cfg
    x = cfg.traffic
    train = with_subjects(ctx.splits.train, x["subjects"], x["zipf"], cfg.seed)
    members: dict[str, list[str]] = {}
    for rid, s in zip(train.ids, train.subjects):
        members.setdefault(s, []).append(rid)
    test = ctx.splits.test
    n_eval = min(len(test), x["eval_texts"])
    texts, labels = list(test.texts[:n_eval]), list(test.labels[:n_eval])
    base = s3t_config(cfg, cfg.slices)
    out: dict[str, Any] = {"subjects": describe(x["subjects"], len(train), x["zipf"], cfg.seed),
                           "n_eval": n_eval, "methods": {}}
    ctx.say("P8: full fine-tune (sets the time scale) ...")
    clock = Clock()
    full = FullRetrain(base, backbone=ctx.backbone).fit(train)
    full_cpu = clock.cpu()
    gap = x["gap"] * full_cpu
    events = deletion_stream(sorted(members), x["singles"], x["burst"], gap, cfg.seed)
    out.update(full_fit_cpu=full_cpu, gap_seconds=gap, burst_at=next((e.t for e in events if e.burst), None),
               events=[{"t": round(e.t, 3), "subjects": len(e.subjects), "records": sum(len(members[s]) for s in e.subjects),
                        "burst": e.burst} for e in events])
    runs: dict[str, Any] = {}
    for placement in ("subject", "record"):
        config = replace(base, plan=replace(base.plan, placement=placement))
        fitted = ctx.tmp / f"p8-s3t-{placement}"
        if fitted.exists():
            shutil.rmtree(fitted)
        ctx.say(f"P8: fitting S3T with {placement} placement ...")
        fit = S3T(config, workspace=fitted).fit(train, progress=Ticker(ctx.say, f"s3t-{placement}"))
        stage1 = [c.seconds for c in fit.ws_.ledger.checkpoints() if c.stage == 1]
        out.setdefault("stage1_cpu", float(np.median(stage1)))  # subject placement's, the first fitted
        out.setdefault("placement", {})[placement] = fit.placement_
        fit.ws_.ledger.close()
        for restore in ("progressive", "naive"):
            name = f"s3t-{placement}-{restore}"
            copy = ctx.tmp / f"p8-{name}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(fitted, copy)
            est = S3T.load(copy)
            est._backbone = ctx.backbone
            ctx.say(f"P8: {name} through {len(events)} deletion events ...")
            runs[name] = drive(_S3TEngine(est, restore, texts, labels), events)
            est.flush()
            runs[name]["final"] = {k: v and {"sequence": v["sequence"], "stage": v["stage"]}
                                   for k, v in est.ws_.ledger.latest_manifest()[1]["shards"].items()}
            est.ws_.ledger.close()
            shutil.rmtree(copy, ignore_errors=True)
        shutil.rmtree(fitted, ignore_errors=True)
        ctx.say(f"P8: SISA with {placement} placement ...")
        assignment = place(list(train.ids), list(train.subjects), cfg.shards, cfg.slices, cfg.seed, placement).pairs
        sisa = SISA(base, backbone=ctx.backbone).fit(train, assignment=assignment)
        runs[f"sisa-{placement}"] = drive(_SISAEngine(sisa, members, texts, labels), events)
    ctx.say("P8: full retrain ...")
    runs["full"] = drive(_FullEngine(full, members, texts, labels), events)
    horizon = max(r["end"] for r in runs.values()) * 1.05 + 1e-9
    deleted = sum(len(e.subjects) for e in events)
    for name, r in runs.items():
        m = timeline_metrics(r["timeline"], horizon, out["burst_at"])
        out["methods"][name] = {**m, "cpu_seconds": r["cpu_seconds"], "cpu_per_deletion": r["cpu_seconds"] / deleted,
                                "jobs": r["jobs"], "timeline": r["timeline"], "final": r.get("final")}
    out["horizon"] = horizon
    out["deleted_subjects"] = deleted
    return out


def plot_p8(p8: dict, path) -> str:
    """Served accuracy over time per method (dark = gap), the burst marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    styles = {"s3t-subject-progressive": ("tab:green", "-"), "s3t-subject-naive": ("tab:green", ":"),
              "s3t-record-progressive": ("tab:blue", "-"), "s3t-record-naive": ("tab:blue", ":"),
              "sisa-subject": ("tab:orange", "-"), "sisa-record": ("tab:orange", ":"), "full": ("tab:gray", "-")}
    H = p8["horizon"]
    for name, m in p8["methods"].items():
        color, ls = styles.get(name, ("black", "-"))
        xs, ys = [], []
        for k, (t, live, acc) in enumerate(m["timeline"]):
            end = m["timeline"][k + 1][0] if k + 1 < len(m["timeline"]) else H
            xs += [t, end]
            ys += [np.nan if acc is None else acc] * 2
        ax.plot(xs, ys, color=color, linestyle=ls, lw=1.6,
                label=f"{name} (avail {100 * m['availability']:.0f}%, area {m['accuracy_area']:.3f})")
    for e in p8["events"]:
        ax.axvline(e["t"], color="red" if e["burst"] else "0.8", lw=1.2 if e["burst"] else 0.6, zorder=0)
    ax.set_xlabel("time (CPU seconds of retraining work; grey: one subject deleted, red: burst of "
                  f"{max((e['subjects'] for e in p8['events']), default=0)} subjects)")
    ax.set_ylabel(f"served test accuracy (n={p8['n_eval']}; gap = no live model)")
    sub = p8["subjects"]
    ax.set_title(f"P8 deletion traffic: {sub['subjects']} synthetic subjects, Zipf a={sub['exponent']} "
                 f"(largest {sub['largest']}, median {sub['median']} records)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def p8_rows(p8: dict) -> list[dict[str, Any]]:
    """Summary rows of P8 with the issue's targets."""
    m = p8["methods"]
    rows = []
    for name, v in m.items():
        rows.append({"part": "P8", "metric": f"{name}: availability / outside bursts / longest dark / accuracy area / "
                                          "CPU s per deleted subject",
                     "value": f"{100 * v['availability']:.1f}% / {100 * v['availability_outside_bursts']:.1f}% / "
                              f"{v['longest_dark']:.1f} s / {v['accuracy_area']:.3f} / {v['cpu_per_deletion']:.1f}",
                     "target": "", "met": None})
    best = m.get("s3t-subject-progressive")
    if best:
        rows.append({"part": "P8", "metric": "s3t subject placement: availability outside bursts",
                     "value": f"{100 * best['availability_outside_bursts']:.1f}%", "target": "100%",
                     "met": best["availability_outside_bursts"] >= 1.0})
        stage1 = p8.get("stage1_cpu")
        if stage1:
            rows.append({"part": "P8", "metric": "s3t subject progressive: longest dark period vs one stage-1 training",
                         "value": f"{best['longest_dark']:.1f} s vs {stage1:.1f} s", "target": "≤ one stage-1 training",
                         "met": best["longest_dark"] <= stage1 * 1.25})
        for placement in ("subject", "record"):
            sisa = m.get(f"sisa-{placement}")
            if sisa:
                rows.append({"part": "P8", "metric": f"s3t subject progressive vs sisa-{placement}: accuracy area; CPU s per deletion",
                             "value": f"{best['accuracy_area']:.3f} vs {sisa['accuracy_area']:.3f}; "
                                      f"{best['cpu_per_deletion']:.1f} vs {sisa['cpu_per_deletion']:.1f}",
                             "target": "area ≥ SISA's at ≤ SISA's CPU",
                             "met": best["accuracy_area"] >= sisa["accuracy_area"]
                             and best["cpu_per_deletion"] <= sisa["cpu_per_deletion"]})
    return rows
