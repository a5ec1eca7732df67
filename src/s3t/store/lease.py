"""Named leases in the ledger: one holder at a time, taken over when the holder stops renewing.

Several ``s3t serve`` replicas share one ledger; exactly one of them may run the background
retrain at a time. That replica holds the ``retrain`` lease: a row in ``leases`` with its holder,
an expiry and an **epoch** that grows by one on every acquisition (a fencing token).

* :meth:`Lease.acquire` takes the lease when it is free, released or expired; otherwise it says
  who holds it until when. Every lease operation is one write transaction under the ledger's
  database lock (:meth:`Ledger.write <s3t.store.ledger.Ledger.write>`), and the expiry is on the
  **database's clock** (PostgreSQL ``clock_timestamp()``; SQLite, one machine: the local clock),
  so replicas on machines whose clocks disagree still agree on who holds it.
* The holder renews it (:meth:`Lease.renew`, or the heartbeat thread of :meth:`Lease.hold`) well
  within the TTL. A holder that dies (``kill -9``, a lost machine) stops renewing: once the
  expiry passes, the next replica that asks takes it over with the next epoch.
* **Fencing.** The process doing the leased work (the retrain child) sets
  ``ledger.guard = LeaseGuard(name, holder, epoch)``: every write transaction it makes first
  checks, under the database lock, that the lease row still names that holder and epoch, and
  raises :class:`LeaseLostError` (nothing written) otherwise. A holder that was paused past its
  expiry and taken over can therefore never write after its successor: its next transaction fails.

A lease expiry is not a lock release on its own: while nobody else has taken it over, a late
renewal by the old holder succeeds (the epoch is unchanged, so nobody else can have written).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from sqlalchemy import select, text

from ..errors import WorkspaceError
from .schema import LeaseRow

log = logging.getLogger("s3t")

RETRAIN = "retrain"  # the lease of the fleet's background retrain
DEFAULT_TTL = 20.0  # seconds; the holder renews every ttl/4
LEASE_CHANNEL = "s3t_lease"  # PostgreSQL NOTIFY channel: a lease was released (waiters may take it now)
_NOW_PG = text("SELECT extract(epoch from clock_timestamp())")
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


LEASE_TTL_ENV = "S3T_LEASE_TTL"  # seconds; default TTL of `s3t serve` and of a hand-run `s3t retrain`


class LeaseLostError(WorkspaceError):
    """The lease this process worked under was taken over (or released): nothing was written."""


class LeaseHeldError(WorkspaceError):
    """Another process holds the lease this work needs: nothing was done."""


def db_now(s: Any, dialect: str) -> float:
    """Seconds since 1970 on the database's clock (PostgreSQL), else on this machine's."""
    if dialect == "postgresql":
        return float(s.execute(_NOW_PG).scalar())
    return time.time()


def default_holder() -> str:
    """``host:pid:random``: unique per process start, readable in ``/status``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class LeaseState:
    name: str
    holder: Optional[str]
    epoch: int
    expires_in: float  # seconds on the database clock; <= 0: expired (or released)

    @property
    def held(self) -> bool:
        return self.holder is not None and self.expires_in > 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "holder": self.holder, "epoch": self.epoch,
                "expires_in": round(self.expires_in, 3), "held": self.held}


class LeaseGuard:
    """``ledger.guard``: every write transaction of this process checks it still holds the lease."""

    def __init__(self, name: str, holder: str, epoch: int):
        self.name, self.holder, self.epoch = name, holder, int(epoch)

    def __call__(self, s: Any) -> None:
        row = s.execute(select(LeaseRow.holder, LeaseRow.epoch).where(LeaseRow.name == self.name)).first()
        if row is None or row.holder != self.holder or row.epoch != self.epoch:
            now = "free" if row is None or row.holder is None else f"{row.holder} (epoch {row.epoch})"
            raise LeaseLostError(f"the {self.name!r} lease of epoch {self.epoch} was taken over (now {now}); "
                                 "this process must stop: nothing was written")

    def token(self) -> str:
        return f"{self.name}:{self.epoch}:{self.holder}"

    @classmethod
    def parse(cls, token: str) -> "LeaseGuard":
        name, epoch, holder = token.split(":", 2)
        return cls(name, holder, int(epoch))


class Lease:
    """One process's handle on the lease ``name`` (see the module docstring)."""

    def __init__(self, ledger: Any, name: str = RETRAIN, holder: Optional[str] = None, ttl: float = DEFAULT_TTL):
        if ttl <= 0:
            raise ValueError(f"lease ttl must be > 0 seconds; got {ttl}")
        self.ledger, self.name, self.ttl = ledger, name, float(ttl)
        self.holder = holder or default_holder()
        self.epoch: Optional[int] = None  # while held: the epoch this handle acquired
        self.takeovers = 0  # acquisitions of a lease another holder had let expire (not released)

    # -- transactions --------------------------------------------------------------------
    def _row(self, s: Any) -> LeaseRow:
        row = s.get(LeaseRow, self.name)
        if row is None:
            row = LeaseRow(name=self.name, holder=None, epoch=0, acquired_at=0.0, renewed_at=0.0, expires_at=0.0)
            s.add(row)
        return row

    def try_acquire(self) -> Optional[int]:
        """Take the lease if it is free, released, expired or already ours; the epoch, else None."""
        with self.ledger.write(guarded=False) as s:
            now = db_now(s, self.ledger.dialect)
            row = self._row(s)
            mine = self.epoch is not None and row.holder == self.holder and row.epoch == self.epoch
            if not mine and row.holder is not None and row.expires_at > now:
                return None
            if not mine:
                if row.holder is not None:  # expired without a release: its holder died or stalled
                    self.takeovers += 1
                    log.warning("lease %r: taking over from %s (epoch %d, expired %.1f s ago)", self.name, row.holder,
                                row.epoch, now - row.expires_at)
                row.epoch, row.holder, row.acquired_at = row.epoch + 1, self.holder, now
            row.renewed_at, row.expires_at = now, now + self.ttl
            self.epoch = row.epoch
            return self.epoch

    def acquire(self, wait: float = 0.0, poll: float = 0.2) -> Optional[int]:
        """:meth:`try_acquire`, retried every ``poll`` s for up to ``wait`` s."""
        deadline = time.monotonic() + wait
        while True:
            epoch = self.try_acquire()
            if epoch is not None or time.monotonic() >= deadline:
                return epoch
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))

    def renew(self) -> bool:
        """Push the expiry ``ttl`` s ahead. False: the lease is no longer ours (taken over or released)."""
        if self.epoch is None:
            return False
        with self.ledger.write(guarded=False) as s:
            now = db_now(s, self.ledger.dialect)
            row = s.get(LeaseRow, self.name)
            if row is None or row.holder != self.holder or row.epoch != self.epoch:
                self.epoch = None
                return False
            row.renewed_at, row.expires_at = now, now + self.ttl
            return True

    def release(self) -> None:
        """Give the lease up now (a waiter can take it at once); a no-op if it is not ours any more."""
        if self.epoch is None:
            return
        epoch, self.epoch = self.epoch, None
        with self.ledger.write(guarded=False) as s:
            now = db_now(s, self.ledger.dialect)
            row = s.get(LeaseRow, self.name)
            if row is not None and row.holder == self.holder and row.epoch == epoch:
                row.holder, row.expires_at = None, now
                if self.ledger.dialect == "postgresql":  # delivered at commit
                    s.execute(_NOTIFY, {"channel": LEASE_CHANNEL, "payload": self.name})

    def state(self) -> LeaseState:
        """Who holds the lease now (read only)."""
        with self.ledger.Session() as s:
            now = db_now(s, self.ledger.dialect)
            row = s.get(LeaseRow, self.name)
        if row is None:
            return LeaseState(self.name, None, 0, 0.0)
        return LeaseState(self.name, row.holder, row.epoch, (row.expires_at - now) if row.holder else 0.0)

    def guard(self) -> LeaseGuard:
        if self.epoch is None:
            raise LeaseLostError(f"the {self.name!r} lease is not held by this process")
        return LeaseGuard(self.name, self.holder, self.epoch)

    # -- holding it for a while ------------------------------------------------------------
    @contextmanager
    def hold(self, wait: float = 0.0, on_lost: Optional[Callable[[], None]] = None) -> Iterator[Optional[int]]:
        """Acquire (waiting up to ``wait`` s), renew every ttl/4 on a thread while the block runs,
        release at the end. Yields the epoch, or None if it could not be acquired (the block
        still runs: check). ``on_lost()`` is called (on the heartbeat thread) if the lease is lost."""
        epoch = self.acquire(wait)
        if epoch is None:
            yield None
            return
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(stop, on_lost), name=f"s3t-lease-{self.name}", daemon=True)
        beat.start()
        try:
            yield epoch
        finally:
            stop.set()
            beat.join()
            try:
                self.release()
            except Exception:  # it expires by itself
                log.warning("lease %r: release failed; it expires in at most %.0f s", self.name, self.ttl, exc_info=True)

    def _heartbeat(self, stop: threading.Event, on_lost: Optional[Callable[[], None]]) -> None:
        while not stop.wait(self.ttl / 4):
            try:
                if self.renew():
                    continue
            except Exception as exc:  # a busy or unreachable ledger: try again at the next beat
                log.warning("lease %r: renewal failed (%s); retrying", self.name, exc)
                continue
            log.error("lease %r: lost (taken over after it expired); stopping the work done under it", self.name)
            if on_lost is not None:
                on_lost()
            return


@contextmanager
def fleet_retrain(ledger: Any, wait: float = 0.0, ttl: Optional[float] = None) -> Iterator[int]:
    """Hold the fleet's ``retrain`` lease around a retrain run outside ``s3t serve`` (``s3t retrain``):
    it never runs beside a replica's background retrain on the same ledger, and every write it makes
    is fenced by the lease (``ledger.guard``), renewed on a heartbeat and released at the end.
    Waits up to ``wait`` s for a holder to finish; then raises :class:`LeaseHeldError`, having done
    nothing. ``ttl``: else ``S3T_LEASE_TTL``, else 20 s."""
    lease = Lease(ledger, RETRAIN, ttl=ttl or float(os.environ.get(LEASE_TTL_ENV) or DEFAULT_TTL))
    with lease.hold(wait=wait) as epoch:
        if epoch is None:
            st = lease.state()
            raise LeaseHeldError(
                f"another process holds the fleet's retrain lease ({st.holder}, epoch {st.epoch}, "
                f"{max(0.0, st.expires_in):.0f} s left): a serving replica is retraining this ledger. Nothing was "
                "changed; run again when it is done, or pass --wait SECONDS")
        previous, ledger.guard = ledger.guard, lease.guard()
        try:
            yield epoch
        finally:
            ledger.guard = previous
