"""Stage jobs on a Ray cluster, bit-identical to local training.

Each shard job is one Ray task (``num_cpus`` = the pinned thread count). Tasks read
parents from and write checkpoints to the workspace path, which must be the same shared
filesystem on every node (NFS or similar); the driver alone registers checkpoints in the
ledger, after re-hashing each file. A task whose worker dies is retried by Ray
(``max_retries``); its half-written files stay in staging and are never registered.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, Sequence

from ..config import TrainConfig

MAX_RETRIES = 3


def _task(job):
    from .jobs import run_shard_job

    return run_shard_job(job)


def ensure_ray(address: str | None, num_cpus: int | None = None):
    import ray

    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address is None:
            kwargs.update(num_cpus=num_cpus or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()))
            os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
            ray.init(address="local", **kwargs)  # a private cluster on this host (Ray binds its node address)
        else:
            ray.init(address=address, **kwargs)
    return ray


def run_on_ray(jobs: Sequence, train: TrainConfig, on_step: Callable[[int], None] | None) -> Iterator[list]:
    """Submit one task per job; yield results as tasks finish (progress per finished job)."""
    ray = ensure_ray(train.ray_address)
    remote = ray.remote(num_cpus=train.threads, max_retries=MAX_RETRIES, retry_exceptions=False)(_task)
    pending = {remote.remote(job): job for job in jobs}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            result = ray.get(done[0])
            if on_step is not None:
                on_step(job.work())
            yield result
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
