"""The file steps of a forget, run after it returns: one ordered background worker.

A forget is decided by its ledger commit: the deletion, the record's erased text and the
new served manifest are durable (fsynced) before the receipt is returned, and the served
ensemble is swapped in memory before ``forget`` returns. What follows only brings files in
line with the ledger — rewrite the ``served.json`` mirror, unlink the files of the
checkpoints the request cut — and costs disk latency (an fsync, unlinks) that, on a busy
disk, can be tens of milliseconds. Those steps run here, in request order, on one thread.

Nothing is lost if the process dies first: the cut checkpoints are already marked purged
(and tainted) in the ledger, so :meth:`Workspace.recover` erases their files and rewrites
the mirror on the next load. ``flush()`` waits for the steps queued so far; it runs at
interpreter exit too.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Sequence

log = logging.getLogger("s3t")

_LIVE: "weakref.WeakSet[FileSteps]" = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for steps in list(_LIVE):
        steps.flush(timeout=60)


class FileSteps:
    """Callables run in submission order on one worker thread; failures are logged and kept."""

    def __init__(self, name: str = "s3t-files") -> None:
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._waiting: dict[Any, list] = {}  # fn -> items of its queued, not yet started merged call
        self._lock = threading.Lock()
        self.last_error: str | None = None
        _LIVE.add(self)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._pool.submit(self._run, fn, *args))

    def submit_merged(self, fn: Callable[[list], Any], items: Sequence[Any]) -> None:
        """Queue ``fn(items)``. Items submitted while an earlier merged call of ``fn`` waits (not yet
        started) join that call instead: one call for all of them, no later than each would have
        run alone. A burst of forgets then rewrites the mirror and cleans the database once."""
        with self._lock:
            bucket = self._waiting.get(fn)
            if bucket is not None:
                bucket.extend(items)
                return
            bucket = self._waiting[fn] = list(items)
        self.submit(self._run_merged, fn, bucket)

    def _run_merged(self, fn: Callable[[list], Any], bucket: list) -> None:
        with self._lock:  # started: later items start a new call
            if self._waiting.get(fn) is bucket:
                del self._waiting[fn]
        fn(bucket)

    def _run(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # recovery redoes every file step from the ledger
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("background file step %s failed (recovery will redo it): %s",
                        getattr(fn, "__name__", fn), self.last_error)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for every step submitted so far; True when all are done."""
        with self._lock:
            pending = list(self._pending)
        done, not_done = wait(pending, timeout=timeout)
        return not not_done

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
