"""Background retraining after forgets, and the from-scratch exactness check.

Retrain: rebuild every slice holding a deleted record (a new slice version without it),
then, for every sequence, retrain the stages from its first cut stage to the end on the
new slice versions, starting from the last clean stage's checkpoint. Seeds come from
(shard, prefix), so the result is bit-identical to training those sequences from scratch
on the data without the deleted records — which :func:`verify` checks.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from .config import RESTORES
from .errors import ConfigError, DataError, IntegrityError, UnknownRecordError
from .plan.restore import next_step
from .serve.rule import valid_prefix

log = logging.getLogger("s3t")

if TYPE_CHECKING:
    from .estimator import S3T


@dataclass
class RetrainReport:
    requests: list[str] = field(default_factory=list)
    rebuilt_slices: list[tuple[int, int]] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    served_before: dict[str, int] = field(default_factory=dict)
    served_after: dict[str, int] = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)  # what each step trained, in order
    swaps: list[dict] = field(default_factory=list)  # progressive restore: each swap's manifest and time
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "rebuilt_slices": [list(x) for x in self.rebuilt_slices]}


def _shard_state(model: "S3T") -> tuple[dict[int, list[tuple[int, ...]]], dict[int, list[int]], dict]:
    """(sequences per shard, clean prefix length per sequence, clean parent checkpoints per shard)."""
    ledger = model.ws_.ledger
    sequences = {k: [tuple(s) for s in v] for k, v in ledger.sequences().items()}
    with ledger.Session() as s:
        chains = ledger.chains(s)
    by_id = {c.id: c for c in ledger.checkpoints()}
    clean: dict[int, list[int]] = {}
    parents: dict[int, dict[tuple[int, ...], tuple[str, str, str]]] = {}
    for shard, seqs in sequences.items():
        clean[shard] = [valid_prefix(chain) for chain in chains[shard]]
        for seq, chain, n in zip(seqs, chains[shard], clean[shard]):
            for k in range(1, n + 1):  # every clean stage can parent a retrained one
                c = by_id[chain[k - 1].checkpoint_id]
                parents.setdefault(shard, {})[seq[:k]] = (c.id, c.path, c.sha256)
    return sequences, clean, parents


def cut_suffixes(model: "S3T") -> dict[int, list[tuple[int, ...]]]:
    """Per shard: the prefixes to retrain (every stage after each sequence's clean prefix)."""
    sequences, clean, _ = _shard_state(model)
    plan: dict[int, list[tuple[int, ...]]] = {}
    for shard, seqs in sequences.items():
        todo = {seq[:k]: None for seq, n in zip(seqs, clean[shard]) for k in range(n + 1, len(seq) + 1)}
        if todo:
            plan[shard] = sorted(todo, key=lambda p: (len(p), p))
    return plan


def retrain(model: "S3T", progress=None, restore: str = "progressive") -> RetrainReport:
    """Retrain every cut suffix without the deleted records; swap the results in.

    ``restore="progressive"`` (see :mod:`s3t.plan.restore`): dead shards first get stage 1 of
    their best sequence, then best sequences grow stage by stage, then the other sequences;
    every step is swapped in as soon as its shard's stages are registered (a manifest commit
    each), and deletions committed meanwhile join the next step. ``"naive"``: every cut stage
    in one pass, swapped in at the end.
    """
    report = RetrainReport()
    for _ in iter_retrain(model, report, progress, restore):
        pass
    return report


def iter_retrain(model: "S3T", report: RetrainReport, progress=None, restore: str = "progressive"
                 ) -> Iterator[dict[str, Any]]:
    """:func:`retrain` one shard job at a time: yields each job's step (kind, shard, stages)
    once it is registered (and, progressive, swapped in); fills ``report``. A caller that
    interleaves forgets between jobs (the deletion-traffic bench) sees exactly what a server
    whose forgets land during the retrain would."""
    if restore not in RESTORES:
        raise ConfigError(f"restore must be one of {list(RESTORES)}; got {restore!r}")
    start = time.perf_counter()
    ledger = model.ws_.ledger
    report.requests = ledger.requests_in_state("served-exact", "retraining")
    report.served_before = _served(model)
    ledger.set_request_state(report.requests, "retraining")
    swap = None if restore == "naive" else (lambda: _swap(model, report, start))
    overall = _OverallProgress(progress) if progress is not None else None
    last = None
    for _ in range(_MAX_STEPS):
        rebuilt = ledger.rebuild_tainted_slices()
        report.rebuilt_slices += rebuilt
        if overall is not None:  # what is left now, deletions that joined included
            overall.plan(_work(model, cut_suffixes(model)))
        joined = [r for r in ledger.requests_in_state("served-exact") if r not in report.requests]
        if joined:  # deletions committed while this retrain ran join it
            ledger.set_request_state(joined, "retraining")
            report.requests += joined
        if restore == "naive":
            kind, work = "all", cut_suffixes(model)
        else:
            sequences, clean, _ = _shard_state(model)
            step = next_step(sequences, clean)
            if step is None:
                break
            kind, work = step
            if (kind, work) == last and not rebuilt:
                raise RuntimeError(f"retrain made no progress: step {kind} {work} again")  # a bug, never a loop
            last = (kind, work)
        for shard, prefixes in sorted(work.items()):
            # parents as they are NOW: a forget committed since the plan (by this process between
            # jobs, or by another at any time) may have cut one and erased its file
            needed = _parents_now(model, shard, prefixes)
            if needed is None:
                continue  # re-planned in the next round
            try:
                report.checkpoints += model._train(prefixes, [shard], overall, parents={shard: needed}, on_job=swap)
            except IntegrityError:
                if _parents_now(model, shard, prefixes) is not None:
                    raise  # a damaged file, not a cut parent
                log.info("shard %d: a parent checkpoint was cut while its job started; re-planning", shard)
                continue
            report.steps.append({"kind": kind, "shard": shard, "stages": len(prefixes)})
            yield report.steps[-1]
        if restore == "naive":
            break
    _crash_point("swap")  # stages registered, not yet swapped in
    ledger.refresh_manifest("retrain")
    _crash_point("served")  # new manifest committed, served.json not yet rewritten
    model.ws_.sync_served()
    if getattr(model, "_ensemble", None) is not None:
        model._sync()
    model.ws_.purge_tainted()
    # a request is done once nothing served or trainable still needs its records' slices rebuilt
    if not cut_suffixes(model):
        ledger.set_request_state(report.requests, "retrained")
    report.served_after = _served(model)
    report.seconds = time.perf_counter() - start


class _OverallProgress:
    """Forwards the jobs' progress with the whole retrain's total (examples × epochs): each job
    reports its own total, and a bar fed those would pass 100 % at the second job."""

    def __init__(self, progress) -> None:
        self.progress, self.done, self.total = progress, 0, 0

    def plan(self, remaining: int) -> None:
        self.total = self.done + remaining

    def __call__(self, desc: str, n: int, _job_total: int) -> None:
        self.done += n
        self.progress(desc, n, max(self.total, self.done))


def _work(model: "S3T", plan: dict[int, list[tuple[int, ...]]]) -> int:
    """Examples × epochs that training ``plan`` (shard -> prefixes) processes, from the current slice versions."""
    ledger, train = model.ws_.ledger, model.config.train
    sizes = {key: len(ledger.slice_member_ids(sv.id)) for key, sv in ledger.current_slice_versions().items()
             if key[0] in plan}
    return sum(train.work(prefixes, {sl: n for (sh, sl), n in sizes.items() if sh == shard})
               for shard, prefixes in plan.items())


def _parents_now(model: "S3T", shard: int, prefixes: list[tuple[int, ...]]) -> dict | None:
    """The clean parent checkpoint of each prefix whose parent the job does not train itself;
    None when one of them is no longer clean."""
    _, _, parents = _shard_state(model)
    mine, todo = parents.get(shard, {}), set(prefixes)
    needed = {p[:-1] for p in prefixes if len(p) > 1 and p[:-1] not in todo}
    if not needed <= set(mine):
        return None
    return {p: mine[p] for p in needed}


_MAX_STEPS = 10_000  # a bound, never reached: each step trains at least one stage


def _swap(model: "S3T", report: RetrainReport, start: float) -> None:
    """Progressive restore: serve what was just registered (an exact manifest commit)."""
    version, _ = model.ws_.ledger.refresh_manifest("retrain")
    model.ws_.sync_served()
    if getattr(model, "_ensemble", None) is not None:
        model._sync()
    report.swaps.append({"manifest_version": version, "seconds": round(time.perf_counter() - start, 3),
                         "served": _served(model)})


def _crash_point(name: str) -> None:
    """Fault harness hook: with ``S3T_FAULT_CRASH_AT=<name>:<marker path>`` set, the first process
    to reach point ``name`` creates the marker and SIGKILLs its whole process group (a server and
    its retrain child die together, as in a power cut). Unset: nothing happens."""
    spec = os.environ.get("S3T_FAULT_CRASH_AT", "")
    point, _, marker = spec.partition(":")
    if point != name or not marker:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _served(model: "S3T") -> dict[str, int]:
    _, body = model.ws_.ledger.latest_manifest()
    return {k: (0 if v is None else v["stage"]) for k, v in body["shards"].items()}


@dataclass
class VerifyReport:
    request_id: str
    shards: list[int]
    compared: int = 0
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0
    incomparable: list[str] = field(default_factory=list)  # checkpoints made on another kind of machine

    @property
    def ok(self) -> bool:
        return self.compared > 0 and not self.mismatches and not self.incomparable

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def verify(model: "S3T", request_id: str, progress=None) -> VerifyReport:
    """Retrain the request's shards from scratch on the data without ANY deleted record
    (slices rebuilt from the original assignment, not from the stored slice versions) and
    compare every current checkpoint's weights with the from-scratch ones, bit for bit."""
    from sqlalchemy import select

    from .store.checkpoints import load_checkpoint, state_digest
    from .estimator import scoring_subset
    from .train.device import incomparable
    from .store.schema import Deletion, Record
    from .train.jobs import ShardJob, run_jobs
    from .train.trainer import SliceData, trie

    start = time.perf_counter()
    ledger = model.ws_.ledger
    with ledger.Session() as s:
        hit = set(s.scalars(
            select(Record.shard).join(Deletion, Deletion.record_id == Record.id).where(Deletion.request_id == request_id)
        ))
        if not hit:
            raise UnknownRecordError(f"unknown request id {request_id!r}")
        shards = sorted(x for x in hit if x is not None)  # validation rows (a subject's) have no shard
        if not shards:
            raise DataError(f"request {request_id!r} deleted validation records only: no checkpoint was trained on "
                            "them, so there is nothing to verify")
        deleted = ledger.deleted_ids(s)
        train = [r for r in s.scalars(select(Record).where(Record.split == "train").order_by(Record.position))]
        validation = [r for r in s.scalars(select(Record).where(Record.split == "validation").order_by(Record.position))]
    report = VerifyReport(request_id, shards)
    current = {(c.shard, c.prefix): c for c in ledger.checkpoints()}  # newest registration wins
    sequences = ledger.sequences()
    with tempfile.TemporaryDirectory(prefix="s3t-verify-") as tmp:
        jobs = []
        for shard in shards:
            # every slice the shard's sequences name, even one whose records were all deleted: an
            # empty slice trains its stages on no records of its own, as training does
            members: dict[int, list[str]] = {sl: [] for seq in sequences[shard] for sl in seq}
            for r in train:
                if r.shard == shard and r.id not in deleted:
                    members.setdefault(r.slice, []).append(r.id)
            slices = {sl: SliceData(-1 - sl, tuple(ids)) for sl, ids in members.items()}
            texts = {r.id: (r.text, r.label) for r in train + validation if r.id not in deleted and (r.shard in (shard, None))}
            jobs.append(ShardJob(
                workspace=tmp, config=model.config.to_dict(), shard=shard, prefixes=tuple(trie(sequences[shard])),
                slices=slices, records=texts, n_labels=len(model.classes_),
                validation_ids=scoring_subset([r.id for r in validation if r.id not in deleted], model.config.train.val_limit),
            ))
        for trained in run_jobs(jobs, model.config.train, on_step=None):
            for c in trained:
                mine = current.get((c.shard, c.prefix))
                scratch, here = load_checkpoint(f"{tmp}/{c.staging}")
                if mine is None or mine.purged:
                    report.compared += 1
                    report.mismatches.append(f"shard {c.shard} prefix {c.prefix}: no live checkpoint (retrain pending?)")
                    continue
                served, meta = load_checkpoint(model.ws_.resolve(mine.path), sha256=mine.sha256)
                why = incomparable(meta, here)  # bits are compared only with bits from a like machine
                if why:
                    report.incomparable.append(f"shard {c.shard} prefix {c.prefix}: {mine.id} was trained on another "
                                               f"kind of machine ({why}); verify it on a like machine")
                    continue
                report.compared += 1
                if state_digest(served) != state_digest(scratch):
                    report.mismatches.append(f"shard {c.shard} prefix {c.prefix}: {mine.id} differs from training from scratch")
    report.seconds = time.perf_counter() - start
    return report
