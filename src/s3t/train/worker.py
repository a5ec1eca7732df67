"""Worker processes for shard jobs: ``python -m s3t.train.worker`` reads one pickled job.

Protocol (stdout, one line each): ``step N`` for progress, then ``result <base64 pickle>``.
A worker that dies yields an error naming the shard; nothing it wrote is registered.
"""

from __future__ import annotations

import base64
import os
import pickle
import selectors
import subprocess
import sys
from typing import Callable, Iterator, Sequence

from ..errors import S3TError


class WorkerError(S3TError, RuntimeError):
    """A training worker process failed."""


class WorkerPool:
    """At most ``size`` worker processes at a time, one job each."""

    def __init__(self, size: int):
        self.size = size

    def _start(self, job) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": str(job.config["train"]["threads"])}
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3t.train.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env,
        )
        proc.stdin.write(pickle.dumps(job))
        proc.stdin.close()
        proc.job = job  # type: ignore[attr-defined]
        return proc

    def run(self, jobs: Sequence, on_step: Callable[[int], None] | None) -> Iterator[list]:
        todo = list(jobs)
        sel = selectors.DefaultSelector()
        running: dict[int, subprocess.Popen] = {}
        results: dict[int, list] = {}
        try:
            while todo or running:
                while todo and len(running) < self.size:
                    proc = self._start(todo.pop(0))
                    running[proc.pid] = proc
                    sel.register(proc.stdout, selectors.EVENT_READ, proc)
                for key, _ in sel.select(timeout=1.0):
                    proc = key.data
                    line = proc.stdout.readline()
                    if line.startswith(b"step "):
                        if on_step is not None:
                            on_step(int(line.split()[1]))
                    elif line.startswith(b"result "):
                        results[proc.pid] = pickle.loads(base64.b64decode(line.split()[1]))
                    elif not line:  # EOF: the worker ended
                        sel.unregister(proc.stdout)
                        rc = proc.wait()
                        del running[proc.pid]
                        if rc != 0 or proc.pid not in results:
                            err = proc.stderr.read().decode(errors="replace").strip().splitlines()[-5:]
                            raise WorkerError(f"training worker for shard {proc.job.shard} failed (exit {rc}): " + " | ".join(err))
                        yield results.pop(proc.pid)
        finally:
            for proc in running.values():
                proc.kill()
                proc.wait()


def main() -> None:
    from .jobs import run_shard_job

    job = pickle.loads(sys.stdin.buffer.read())
    out = sys.stdout.buffer

    def step(n: int) -> None:
        out.write(f"step {n}\n".encode())
        out.flush()

    result = run_shard_job(job, on_step=step)
    out.write(b"result " + base64.b64encode(pickle.dumps(result)) + b"\n")
    out.flush()


if __name__ == "__main__":
    main()
