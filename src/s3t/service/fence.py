"""The version fence: no prediction is answered from a manifest older than the latest one
committed before the request arrived, in any replica sharing the ledger.

Several ``s3t serve`` replicas share one ledger. A forget through replica A commits a new
manifest version ``v`` (the deletion and the cut are one transaction) before A acknowledges it.
Replica B must then not answer from a version ``< v``. Two mechanisms:

* **The fence** (:class:`ManifestFence`, the guarantee). Before answering, the prediction
  handler reads the ledger's latest manifest version with one query that *starts after the
  request arrived* (``SELECT max(version) FROM manifests``, an index lookup, on a dedicated
  autocommit connection). A committed transaction is visible to every statement that starts
  after its commit returned (PostgreSQL makes it visible before it acknowledges the commit;
  SQLite WAL likewise), and a forget is acknowledged only after its commit returned, so the
  fence sees every version acknowledged before the request arrived. If the replica's ensemble is
  behind the fence, it swaps to the latest manifest first, then answers. Concurrent requests
  share one fence query when it started after all of them arrived (a read group commit), so under
  load there is at most one fence query in flight per replica. If the ledger cannot be reached,
  the prediction fails (503): a replica never answers from a model it cannot prove current.
* **The listener** (:class:`ManifestListener`, the speed-up; PostgreSQL only). Every manifest
  commit ``NOTIFY``s its version on ``s3t_manifest`` (:meth:`s3t.store.ledger.Ledger.add_manifest`);
  each replica ``LISTEN``s on a dedicated connection and swaps as soon as it is told, so the fence
  normally finds the replica current and the swap is not paid on the request path. Notifications
  are asynchronous: the listener alone guarantees nothing, which is why the fence exists.

:func:`snapshot` reads the (manifest version, members) pair the answer is computed from, so the
response can say which version and which checkpoints answered.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any, Callable, Optional

from ..errors import LedgerBusyError

log = logging.getLogger("s3t")

_Q = "SELECT max(version) FROM manifests"


class LedgerUnreachableError(LedgerBusyError):
    """The fence could not read the ledger's manifest version: the prediction is refused (503)."""


class ManifestFence:
    """The latest committed manifest version, read by a query that started after the caller
    called :meth:`latest` (one query shared by concurrent callers; see the module docstring)."""

    def __init__(self, ledger: Any):
        self.ledger = ledger
        self._cv = threading.Condition()
        self._started = 0  # fence queries started (generation numbers)
        self._done = 0  # generation of the last finished query
        self._result: tuple[int, Optional[BaseException]] = (0, None)
        self._running = False
        self._conn: Any = None
        self.queries = 0  # fence queries run (callers / queries = how many each shared)
        self.calls = 0

    def latest(self) -> int:
        """The latest manifest version committed before this call began (or later)."""
        with self._cv:
            self.calls += 1
            need = self._started + 1  # the next query to start starts after this call began
            while self._done < need:
                if not self._running:
                    self._running, self._started = True, self._started + 1
                    gen = self._started
                    break
                self._cv.wait()
            else:
                version, error = self._result
                if error is not None:
                    raise LedgerUnreachableError(f"cannot read the ledger's manifest version: {error}") from error
                return version
        version, error = 0, None
        try:
            version = self._query()
        except Exception as exc:  # the callers that share this query all fail with it
            error = exc
        with self._cv:
            self._running, self._done, self._result = False, gen, (version, error)
            self.queries += 1
            self._cv.notify_all()
        if error is not None:
            raise LedgerUnreachableError(f"cannot read the ledger's manifest version: {error}") from error
        return version

    # -- the dedicated connection (only the one running query uses it) ---------------------------
    def _connect(self) -> Any:
        url = self.ledger.engine.url
        if self.ledger.dialect == "sqlite":
            conn = sqlite3.connect(url.database, isolation_level=None, check_same_thread=False,
                                   timeout=self.ledger.lock_timeout)  # autocommit: each SELECT sees the latest commit
            return conn
        return _own_connection(self.ledger)

    def _query(self) -> int:
        for attempt in (0, 1):  # a dropped connection is replaced once
            try:
                if self._conn is None:
                    self._conn = self._connect()
                cur = self._conn.execute(_Q)
                row = cur.fetchone()
                return int(row[0] or 0)
            except Exception:
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass


def _own_connection(ledger: Any) -> Any:
    """A driver connection of the ledger's engine (its connect settings), taken out of the pool:
    ours alone, in autocommit, never reset by the pool (a reset costs a round trip)."""
    raw = ledger.engine.raw_connection()
    conn = raw.driver_connection
    raw.detach()
    conn.autocommit = True
    return conn


def snapshot(model: Any) -> tuple[int, dict]:
    """(manifest version, member table) of the served ensemble, read together: every swap
    replaces both under the estimator's sync lock, so this pair is one manifest's."""
    from ..estimator import _SYNC_LOCK

    ens = model._ensemble
    with _SYNC_LOCK:
        return ens.manifest_version, ens.members


def catch_up(model: Any, floor: int) -> None:
    """Swap the served ensemble to the ledger's latest manifest if it is older than ``floor``."""
    if model._ensemble.manifest_version < floor:
        model._sync()  # reads the latest manifest (>= floor) and swaps; never goes back


def pass_fence(fence: Optional["ManifestFence"], model: Any) -> None:
    """Before answering a request: with a fence (replicas), swap to at least the latest manifest
    committed before the request arrived; a ledger that cannot be read is a 503, never a stale answer."""
    if fence is None:
        return
    from ..errors import S3TError

    floor = fence.latest()
    try:
        catch_up(model, floor)
    except S3TError:
        raise
    except Exception as exc:  # the ledger went away between the fence and the swap
        raise LedgerUnreachableError(f"cannot swap to manifest version {floor}: {exc}") from exc


class ManifestListener:
    """PostgreSQL ``LISTEN`` on the manifest and lease channels, on a dedicated connection and
    thread: ``on_manifest(version)`` / ``on_lease(name)`` run on that thread. Reconnects with
    back-off; after every (re)connect ``on_manifest(None)`` catches up with what it may have missed."""

    def __init__(self, ledger: Any, on_manifest: Callable[[Optional[int]], None],
                 on_lease: Optional[Callable[[str], None]] = None, poll: float = 1.0):
        from ..store.lease import LEASE_CHANNEL
        from ..store.ledger import MANIFEST_CHANNEL

        self.ledger, self.on_manifest, self.on_lease, self.poll = ledger, on_manifest, on_lease, poll
        self.channels = {MANIFEST_CHANNEL: "manifest", LEASE_CHANNEL: "lease"}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._conn: Any = None
        self.notifications = 0
        self.connected = False

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "ManifestListener":
        self._thread = threading.Thread(target=self._run, name="s3t-listen", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        self.connected = False
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _connect(self) -> None:
        conn = _own_connection(self.ledger)
        for channel in self.channels:
            conn.execute(f"LISTEN {channel}")
        self._conn, self.connected = conn, True

    def _dispatch(self, channel: str, payload: str) -> None:
        self.notifications += 1
        try:
            if self.channels.get(channel) == "manifest":
                self.on_manifest(int(payload) if payload.isdigit() else None)
            elif self.channels.get(channel) == "lease" and self.on_lease is not None:
                self.on_lease(payload)
        except Exception:  # a failed swap is retried by the fence on the next prediction
            log.warning("listener: handling a %s notification failed", channel, exc_info=True)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if self._conn is None:
                    self._connect()
                    backoff = 0.5
                    self._dispatch(next(iter(self.channels)), "")  # catch up with anything missed
                for n in self._conn.notifies(timeout=self.poll):
                    self._dispatch(n.channel, n.payload)
                    if self._stop.is_set():
                        break
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.warning("listener: connection lost (%s); reconnecting in %.1f s", exc, backoff)
                self._close()
                self._stop.wait(backoff)
                backoff = min(10.0, backoff * 2)
        self._close()
