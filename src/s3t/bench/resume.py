"""A benchmark run that survives interruption: what is finished is kept in ``OUT/work``.

The full benchmark takes hours. Every finished part (its results), every fitted S3T
workspace and every fitted baseline is written to ``OUT/work`` as soon as it is done, so a
run that stops (a crash, Ctrl-C, a machine taken away) continues where it stopped when the
same command is run again; an S3T fit cut off half-way is finished from the stages it had
already trained (``S3T.retrain`` trains exactly the missing ones). ``OUT/work`` is removed
when the run completes, unless it is asked to be kept.

Example
-------
>>> state = RunState(Path("out"), {"mode": "quick"})                  # doctest: +SKIP
>>> p2 = state.part("P2", p2_deletion_rate, cfg)                     # computed once, then read back
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import S3TError
from ..store.atomic import atomic_write_bytes


class BenchStateError(S3TError, RuntimeError):
    """``OUT/work`` holds an interrupted run made with other settings."""


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=_json_default) + "\n"


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


class RunState:
    """The finished pieces of one benchmark run, kept under ``out/work``.

    ``settings`` (the run's configuration) is written on the first run; a later run with
    other settings is refused (``restart=True`` discards the old pieces instead).
    """

    def __init__(self, out: Path, settings: dict[str, Any], restart: bool = False,
                 say: Callable[[str], None] = print) -> None:
        self.root = Path(out) / "work"
        self.say = say
        if restart and self.root.exists():
            shutil.rmtree(self.root)
        marker = self.root / "settings.json"
        settings = json.loads(to_json(settings))  # as it reads back from disk
        self.resumed = marker.exists()
        if self.resumed:
            old = json.loads(marker.read_text())
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            if changed:
                raise BenchStateError(
                    f"{self.root} holds an interrupted run with other settings ({', '.join(changed)}); run the "
                    "same command again to continue it, or add --restart to discard it")
            say(f"continuing the interrupted run kept in {self.root}")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(marker, to_json(settings).encode())

    def _path(self, name: str) -> Path:
        return self.root / "parts" / f"{name}.json"

    def has(self, name: str) -> bool:
        return self._path(name).exists()

    def load(self, name: str) -> Any:
        return json.loads(self._path(name).read_text())

    def save(self, name: str, value: Any) -> Any:
        """Write ``value`` durably; return it as it reads back (plain JSON types)."""
        text = to_json(value)
        atomic_write_bytes(self._path(name), text.encode())
        return json.loads(text)

    def part(self, name: str, fn: Callable[..., Any], *args: Any, timings: dict[str, float] | None = None) -> Any:
        """``fn(*args)`` once: its result is kept, and read back by a re-run instead of recomputed.
        ``timings[name]`` gets the seconds it took (in the run that computed it)."""
        if self.has(name):
            kept = self.load(name)
            self.say(f"{name}: kept from the interrupted run")
            if timings is not None:
                timings[name] = kept["seconds"]
            return kept["value"]
        start = time.perf_counter()
        value = fn(*args)
        seconds = time.perf_counter() - start
        if timings is not None:
            timings[name] = seconds
        return self.save(name, {"value": value, "seconds": seconds})["value"]

    def file(self, name: str) -> Path:
        """A path for a kept artefact (a fitted baseline, a workspace)."""
        return self.root / name

    def finish(self, keep: bool = False) -> None:
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)
