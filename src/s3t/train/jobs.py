"""Shard jobs: the unit of training work, runnable in-process or in a worker process.

A job trains a set of prefixes of one shard (parents first) and writes each checkpoint
file atomically into ``checkpoints/.staging/``. It never touches the ledger: the driver
checks each returned file's sha256, registers it, then moves it into place, so a job that
dies leaves nothing
registered (and its temp files are swept by workspace recovery).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..config import S3TConfig, TrainConfig
from ..errors import ConfigError
from ..store.workspace import checkpoint_relpath, staging_relpath
from .seeds import prefix_key
from .trainer import SliceData


@dataclass(frozen=True)
class ShardJob:
    workspace: str
    config: dict
    shard: int
    prefixes: tuple[tuple[int, ...], ...]
    slices: dict[int, SliceData]
    records: dict[str, tuple[str, int]]  # id -> (text, label): this job's slices + validation
    validation_ids: tuple[str, ...]
    n_labels: int
    parents: dict[tuple[int, ...], tuple[str, str, str]] = field(default_factory=dict)  # prefix -> (id, rel path, sha256)

    def work(self) -> int:
        """Examples × epochs, for progress bars."""
        sizes = {s: len(sd.record_ids) for s, sd in self.slices.items()}
        return S3TConfig.from_dict(self.config).train.work(self.prefixes, sizes)


@dataclass(frozen=True)
class TrainedCheckpoint:
    id: str
    shard: int
    prefix: str
    stage: int
    parent_id: str | None
    path: str  # final location, relative to the workspace
    staging: str  # where the job wrote it
    sha256: str
    seed: str
    threads: int
    n_examples: int
    val_accuracy: float | None
    seconds: float
    lineage: tuple[int, ...]
    val_seconds: float = 0.0  # part of ``seconds`` spent scoring validation records (not in the ledger)
    val_scores: tuple[tuple[str, bool], ...] = ()  # (validation record id, prediction correct)




def run_shard_job(job: ShardJob, on_step: Callable[[int], None] | None = None, backbone=None) -> list[TrainedCheckpoint]:
    """Train the job's prefixes; write checkpoint files; return their descriptions."""
    from ..store.checkpoints import load_checkpoint, save_checkpoint
    from .backbone import backbone_for
    from .device import device_identity
    from .trainer import StageRunner

    config = S3TConfig.from_dict(job.config)
    backbone = backbone_for(config.train, backbone)
    identity = device_identity(backbone.device)  # what computed these bits (verify compares like with like)
    runner = StageRunner(backbone, config, job.n_labels)
    ids = list(job.records)
    runner.add_records(ids, [job.records[i][0] for i in ids], [job.records[i][1] for i in ids])
    runner.set_validation(job.validation_ids)
    root = Path(job.workspace)
    parent_states = {}
    ids_by_prefix: dict[tuple[int, ...], str] = {}
    for prefix, (cid, rel, sha) in job.parents.items():
        parent_states[prefix], _ = load_checkpoint(root / rel, sha256=sha)
        ids_by_prefix[prefix] = cid
    out: list[TrainedCheckpoint] = []

    def on_checkpoint(spec, result, lineage) -> None:
        cid = f"s{job.shard}-{prefix_key(spec.prefix).replace(',', '.')}-{uuid.uuid4().hex[:8]}"
        rel = staging_relpath(cid)
        meta = {"shard": job.shard, "prefix": prefix_key(spec.prefix), "stage": spec.stage, "seed": spec.seed,
                "threads": config.train.threads,
                # where the job ran (executor, workers, Ray address) and serving settings are left out,
                # so local and Ray runs of the same plan write byte-identical files
                "training_config_sha256": config.training_digest(), **identity}
        digest = save_checkpoint(root / rel, result.state, meta)
        ids_by_prefix[spec.prefix] = cid
        _fault_injection()
        out.append(TrainedCheckpoint(
            id=cid, shard=job.shard, prefix=prefix_key(spec.prefix), stage=spec.stage,
            parent_id=ids_by_prefix[spec.prefix[:-1]] if spec.stage > 1 else None, path=checkpoint_relpath(job.shard, cid), staging=rel, sha256=digest,
            seed=str(spec.seed), threads=config.train.threads, n_examples=result.n_examples,
            val_accuracy=result.val_accuracy, seconds=result.seconds, lineage=tuple(lineage),
            val_seconds=result.val_seconds,
            val_scores=tuple(zip(job.validation_ids, result.val_correct)) if result.val_correct is not None else (),
        ))

    runner.train_prefixes(job.shard, job.prefixes, job.slices, on_checkpoint, parent_states=parent_states, on_step=on_step)
    return out


def _fault_injection() -> None:
    """Fault harness hook: with ``S3T_FAULT_KILL_ONCE=<path>`` set, the first job process to
    write a checkpoint creates ``<path>`` and dies at once (as if killed); later ones run."""
    marker = os.environ.get("S3T_FAULT_KILL_ONCE")
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(137)


# -- executors ----------------------------------------------------------------------------
def resolve_workers(workers: int, n_jobs: int) -> int:
    """0 = auto: one worker process per core, at most one per job."""
    if workers <= 0:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(workers, n_jobs))


def run_jobs(
    jobs: Sequence[ShardJob], train: "TrainConfig", on_step: Callable[[int], None] | None = None, backbone=None
) -> Iterator[list[TrainedCheckpoint]]:
    """Run jobs on the configured executor; yield each job's checkpoints as it finishes.

    Executors never change a bit: every job pins ``train.threads`` and derives its seeds
    from (shard, prefix), wherever it runs.
    """
    if train.executor not in EXECUTORS:
        raise ConfigError(f"train.executor must be one of {sorted(EXECUTORS)}; got {train.executor!r}")
    yield from EXECUTORS[train.executor](jobs, train, on_step, backbone)


def _run_local(jobs, train, on_step, backbone):
    """In-process for one worker; else fresh interpreters (``python -m s3t.train.worker``,
    job pickled on stdin, progress and result on stdout), so the caller's script is never
    re-imported and no forked OpenMP state is inherited."""
    n = resolve_workers(train.workers, len(jobs))
    if n == 1:
        for job in jobs:
            yield run_shard_job(job, on_step=on_step, backbone=backbone)
        return
    from .worker import WorkerPool

    yield from WorkerPool(n).run(jobs, on_step)


def _run_ray(jobs, train, on_step, backbone):
    from .ray_executor import run_on_ray

    yield from run_on_ray(jobs, train, on_step)


EXECUTORS: dict[str, Callable] = {"local": _run_local, "ray": _run_ray}
