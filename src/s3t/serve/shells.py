"""Spare member shells: the adapted encoders of retired members, reused once nothing holds them.

Building a member copies its stage's template model (``AdaptedEncoder.spare``: the structural copy
and peft's LoRA injection are paid once, by the template): about 10 ms of CPU on MiniLM, still most
of a swap's CPU in a storm. A member leaves service when a swap replaces it or the standby drops
it; its model has the same modules as any new member of the same stage, so loading another
checkpoint's adapters and head into it (every one of its adapted layers and the head are
overwritten: ``AdaptedEncoder.load_state`` is strict) gives the same member as a fresh build, at
the cost of copying the weights.

A retired member may still be answering: a prediction that took its snapshot of the member table
before the swap runs on the old members until it ends, and other readers (generation, evaluation)
may hold members or their models for longer. Overwriting such a model would change an answer in
flight. So a shell is reused only when **nothing but this pool refers to the retired member or
to its model**: CPython's reference counts say so exactly (a snapshot dict, a list, a local
variable, a frame running ``forward`` all hold references). The count a pool entry has when
nothing else holds it is measured once, on a probe, by the very function that checks entries
(:func:`_refs`), so it does not depend on the interpreter version. An entry still held is simply
not taken; a held entry is never reused, whatever else happens. Other interpreters (no reference
counts) never reuse.

Example
-------
>>> pool = ShellPool(capacity=4)
>>> pool.take(stage=1) is None  # nothing retired yet: the caller builds
True
"""

from __future__ import annotations

import platform
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ensemble import Member

__all__ = ["ShellPool"]


def _refs(entries: list, index: int) -> tuple[int, int]:
    """References to ``entries[index]`` (a retired member) and to its model, seen from here."""
    member = entries[index]
    return sys.getrefcount(member), sys.getrefcount(member.model)


class _Probe:
    def __init__(self) -> None:
        self.model = object()
        self.stage = 0


# what _refs gives for an entry that nothing but the pool's list holds
_UNSHARED = _refs([_Probe()], 0)
_COUNTED = platform.python_implementation() == "CPython"


class ShellPool:
    """Retired members, newest last; ``take(stage)`` returns the model of one nothing else holds."""

    def __init__(self, capacity: int):
        self.capacity = max(0, int(capacity))
        self._entries: list[Any] = []
        self._lock = threading.Lock()
        self.reused = 0  # models handed out again
        self.held = 0  # retired entries skipped because something still held them (at take time)

    def __len__(self) -> int:
        return len(self._entries)

    def retire(self, members: Iterable["Member"]) -> None:
        """Keep ``members`` (out of service now) for reuse; the oldest go beyond ``capacity``."""
        if not _COUNTED or not self.capacity:
            return
        with self._lock:
            self._entries.extend(members)
            del self._entries[:-self.capacity]

    def take(self, stage: int):
        """The model of a retired member of ``stage`` that nothing else refers to (removed from the
        pool), or None. The caller must load a checkpoint into it before serving it."""
        with self._lock:
            for i in range(len(self._entries) - 1, -1, -1):
                if self._entries[i].stage != stage:
                    continue
                if _refs(self._entries, i) != _UNSHARED:
                    self.held += 1
                    continue
                model = self._entries.pop(i).model
                self.reused += 1
                return model
        return None

    def clear(self) -> None:
        with self._lock:
            self._entries = []
