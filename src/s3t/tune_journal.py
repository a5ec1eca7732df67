"""The finished grid points of a running ``s3t tune``, on disk, so an interrupted tune continues.

A full-size tune trains dozens of points of minutes each; a crash, a session cut off or a
``kill`` should cost the point in progress, not the hours before it. :class:`TuneJournal`
appends one JSON line per finished point (flushed and fsynced) and gives it back to a later run
of the same tune. A point is reused only under the same *context*: the method, the base
settings (every config field the grid does not set) and what identifies the data read (the
shard's record ids, the validation ids, the label names, the excluded count), so a journal from
another split, model or plan is never mixed in; its lines are simply not matched.

Every point is trained from seeds derived from its own settings, shard and slices, so a point
trained in a resumed run gives the bits it would have given in one uninterrupted run
(``tests/test_tune_journal.py`` checks this).

Example
-------
>>> import tempfile, pathlib
>>> j = TuneJournal(pathlib.Path(tempfile.mkdtemp()) / "t.points.jsonl")
>>> ctx = TuneJournal.context("s3t", {"plan": {"shards": 5}}, {"train_ids_sha256": "ab"})
>>> j.get(ctx, {"lr": 0.01, "rank": 8}) is None
True
>>> j.add(ctx, {"lr": 0.01, "rank": 8}, {"val_accuracy": 0.8})
>>> TuneJournal(j.path).get(ctx, {"rank": 8, "lr": 0.01})
{'val_accuracy': 0.8}
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


class TuneJournal:
    """Finished tune points, one JSON line each: ``{"context": ..., "point": ..., "row": ...}``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._rows: dict[tuple[str, str], dict[str, Any]] = {}
        self._load()

    @staticmethod
    def context(method: str, base_config: Mapping[str, Any], data: Mapping[str, Any]) -> str:
        """What a point's result depends on besides the point itself, as one digest."""
        return hashlib.sha256(_canonical({"method": method, "base": base_config, "data": data}).encode()).hexdigest()

    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        end = raw.rfind(b"\n") + 1
        if end < len(raw):  # a line torn by a crash mid-write: drop it, so the next line starts clean
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        for n, line in enumerate(raw[:end].splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key = (entry["context"], _canonical(entry["point"]))
                row = entry["row"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{self.path}: line {n} is not a tune journal entry ({exc}); "
                                 "remove the file to tune from the start") from exc
            self._rows[key] = row

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, context: str, point: Mapping[str, Any]) -> dict[str, Any] | None:
        """The finished row of ``point`` under ``context``, or None."""
        row = self._rows.get((context, _canonical(point)))
        return None if row is None else dict(row)

    def add(self, context: str, point: Mapping[str, Any], row: Mapping[str, Any]) -> None:
        """Record a finished point durably (appended, flushed, fsynced) before the tune goes on."""
        line = _canonical({"context": context, "point": dict(point), "row": dict(row)}) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._rows[(context, _canonical(point))] = dict(row)

    def remove(self) -> None:
        """Delete the journal (the tune it served has written its result)."""
        self.path.unlink(missing_ok=True)
