"""Standby members: what a next deletion could switch to, built before it arrives.

Building a member (structural copy of the encoder, peft wrapping, loading adapters) takes
tens of milliseconds; a forget that cuts a served checkpoint would pay that on the request
path. After every swap a background thread asks the ledger for each live shard's
fallbacks (:meth:`Ledger.fallbacks`: the rule's choice if one more slice of the served
lineage were hit), builds those members and keeps them here. ``Ensemble.sync`` takes a
standby member when one matches, so the swap is a dictionary lookup. A member is built
only from a checkpoint that passed its sha256 check; failures are logged and left to the
synchronous path, which takes the shard out of service.

Memory: members share the frozen base tensors, so each standby member costs its adapters,
head and module objects; there are at most (slices of the served lineage) per shard.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from .ensemble import Ensemble, Member

log = logging.getLogger("s3t")

_LIVE: "weakref.WeakSet[Standby]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # a daemon thread inside torch at interpreter exit can abort the process
    for standby in list(_LIVE):
        standby.close()


# A swap after a quiet spell refreshes at once (the next forget finds its member ready). A swap that
# comes within BURST_S of the last refresh is part of a burst: the refresh waits until swaps have
# paused for SETTLE_S (at most MAX_SETTLE_S); otherwise each swap of a burst of forgets would re-read
# every shard's fallbacks from the ledger and rebuild members that the next swap discards. A storm
# that outlasts the bound doubles it for the next settle (up to LONGEST_SETTLE_S): members built
# during a storm are mostly discarded by its next swaps, and their builds take CPU from the forgets.
# A pause of SETTLE_S or a quiet spell of BURST_S sets it back.
BURST_S, SETTLE_S, MAX_SETTLE_S, LONGEST_SETTLE_S = 0.2, 0.02, 0.2, 1.6
Candidates = Callable[[], dict[str, tuple[int, int]]]  # checkpoint id -> (shard, stage)
StateLoader = Callable[[str], dict[str, torch.Tensor]]


class Standby:
    """Pre-built members keyed by checkpoint id, refreshed by one daemon thread on request."""

    def __init__(self, ensemble: "Ensemble", candidates: Candidates, load_state: StateLoader):
        self.ensemble = ensemble
        self.candidates = candidates
        self.load_state = load_state
        self._members: dict[str, "Member"] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self.builds = 0
        self.hits = 0
        self.last_error: str | None = None
        self._closed = False
        self._last_refresh = float("-inf")  # monotonic time the last refresh ended
        self._settle_max = MAX_SETTLE_S  # the bound of the next settle (grows in a storm)
        _LIVE.add(self)

    # -- used by Ensemble.sync ----------------------------------------------------------
    def take(self, checkpoint_id: str) -> "Member | None":
        """The pre-built member of ``checkpoint_id`` (removed from standby), or None."""
        with self._lock:
            member = self._members.pop(checkpoint_id, None)
        if member is not None:
            self.hits += 1
        return member

    def ready(self) -> set[str]:
        with self._lock:
            return set(self._members)

    # -- refresh ------------------------------------------------------------------------
    def request(self) -> None:
        """Schedule a refresh (after a swap); returns at once."""
        if self._closed:
            return
        self._idle.clear()
        self._wake.set()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="s3t-standby", daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no refresh is pending (True) or ``timeout`` seconds passed (False)."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread (after the member it is building, if any); standby members are dropped."""
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._lock:
            self._members = {}
        self._idle.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if time.monotonic() - self._last_refresh < BURST_S:  # in a burst: one refresh once it pauses
                settle_until = time.monotonic() + self._settle_max
                paused = False
                while not self._closed and time.monotonic() < settle_until:
                    if not self._wake.wait(SETTLE_S):
                        paused = True
                        break
                    self._wake.clear()
                # still swapping at the bound: a storm, settle longer next time; a pause ends it
                self._settle_max = MAX_SETTLE_S if paused else min(2 * self._settle_max, LONGEST_SETTLE_S)
            else:
                self._settle_max = MAX_SETTLE_S
            if self._closed:
                return
            try:
                self.refresh()
            except Exception as exc:  # never let the thread die silently; the sync path still works
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("standby members not refreshed: %s", self.last_error)
            self._last_refresh = time.monotonic()
            if not self._wake.is_set():
                self._idle.set()

    def refresh(self) -> list[str]:
        """Build the missing fallback members and drop the ones no longer wanted; returns ids built."""
        wanted = self.candidates()
        serving = {m.checkpoint_id for m in self.ensemble.members.values()}
        with self._lock:
            dropped = [m for cid, m in self._members.items() if cid not in wanted]
            self._members = {cid: m for cid, m in self._members.items() if cid in wanted}
            have = set(self._members)
        self.ensemble.shells.retire(dropped)  # never served: their models are free for reuse at once
        del dropped
        built = []
        for cid, (shard, stage) in sorted(wanted.items()):
            if cid in have or cid in serving:
                continue
            if self._wake.is_set():  # a newer swap happened: start over with fresh candidates
                break
            try:
                state = self.load_state(cid)
            except Exception as exc:  # e.g. IntegrityError: the sync path will take the shard out of service
                log.warning("standby: checkpoint %s not pre-built (%s)", cid, exc)
                continue
            member = self.ensemble.build_member(shard, cid, stage, state)
            with self._lock:
                self._members[cid] = member
            self.builds += 1
            built.append(cid)
        return built
