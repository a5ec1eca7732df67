"""A workspace directory: config, ledger, checkpoint files and the served manifest mirror.

Layout::

    WORKSPACE/
      s3t.json                 the S3TConfig (JSON)
      workspace.json           ledger URL (SQLite file in the workspace by default)
      ledger.sqlite            the ledger (source of truth)
      served.json              mirror of the latest served manifest (atomic rename)
      erasure.json             the last receipt whose erased content was physically removed from the ledger files
      secret                   the key of the ledger's text fingerprints (mode 0600; s3t.store.secret), also
                               for a PostgreSQL ledger: never in the database
      checkpoints/shard-S/ID.safetensors
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

from ..config import S3TConfig
from ..errors import WorkspaceError
from .atomic import atomic_write_bytes, fsync_dir
from .ledger import Ledger
from .secret import load_secret, resolve as resolve_secret

log = logging.getLogger("s3t")

CONFIG_FILE = "s3t.json"
WORKSPACE_FILE = "workspace.json"
SERVED_FILE = "served.json"
ERASURE_FILE = "erasure.json"
_SERVED_THREAD_LOCK = threading.Lock()  # flock is per open file; this orders the threads of one process
STAGING_DIR = "checkpoints/.staging"


def checkpoint_relpath(shard: int, checkpoint_id: str) -> str:
    return f"checkpoints/shard-{shard}/{checkpoint_id}.safetensors"


def staging_relpath(checkpoint_id: str) -> str:
    return f"{STAGING_DIR}/{checkpoint_id}.safetensors"


class Workspace:
    """Paths and durable files of one S3T deployment."""

    def __init__(self, path: str | Path, db_url: str | None = None, create: bool = False):
        self.path = Path(path).expanduser().resolve()
        meta_file = self.path / WORKSPACE_FILE
        if not self.path.exists() or not meta_file.exists():
            if not create:
                raise WorkspaceError(f"{self.path} is not an s3t workspace (no {WORKSPACE_FILE}); run `s3t train` first")
            self.path.mkdir(parents=True, exist_ok=True)
            # null = the SQLite ledger inside the workspace (so the directory can be moved or copied)
            atomic_write_bytes(meta_file, json.dumps({"db": db_url}, indent=2).encode())
            load_secret(self.path, create=True)  # O_EXCL, 0600; kept if it exists (or S3T_SECRET is set)
        stored = json.loads(meta_file.read_text()).get("db")
        self.db_url = db_url or stored or f"sqlite:///{self.path / 'ledger.sqlite'}"
        # the secret is read only to write fingerprints: a fit's records, a schema-1 ledger's migration
        self.ledger = Ledger(self.db_url, secret=lambda: load_secret(self.path, create=True))
        self._erased_at = float("-inf")  # monotonic time of this object's last erase_residue run (pacing)
        self._clock, self._sleep = time.monotonic, time.sleep  # the pacing's clock (tests replace it)

    def secret(self) -> bytes:
        """The workspace secret (:mod:`.secret`), after finishing a rotation a crash cut short."""
        return resolve_secret(self.path, self.ledger)

    # -- config -----------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    def save_config(self, config: S3TConfig) -> None:
        atomic_write_bytes(self.config_path, (config.to_json() + "\n").encode())

    def load_config(self) -> S3TConfig:
        if not self.config_path.exists():
            raise WorkspaceError(f"{self.path} holds no trained plan ({CONFIG_FILE} missing); run `s3t train` first")
        return S3TConfig.load(self.config_path)

    # -- checkpoints ------------------------------------------------------------------
    def resolve(self, relative: str) -> Path:
        return self.path / relative

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.path))

    # -- served manifest mirror -------------------------------------------------------
    def write_served(self, version: int, body: dict[str, Any]) -> None:
        payload = {"version": version, **body}
        atomic_write_bytes(self.path / SERVED_FILE, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())

    def sync_served(self) -> tuple[int, dict[str, Any]]:
        """Make ``served.json`` mirror the ledger's latest manifest (written only if it differs).

        Every writer of the mirror goes through here, one at a time (a file lock, so threads
        and processes alike), and writes what the ledger holds *now*: a slow writer can never
        put an older version back over a newer one. Returns the latest (version, body).
        """
        with _SERVED_THREAD_LOCK, open(self.path / "served.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                version, body = self.ledger.latest_manifest()
                try:
                    served = self.read_served()
                except ValueError:  # a damaged mirror is rewritten
                    served = None
                if version and (served is None or served != {"version": version, **body}):
                    self.write_served(version, body)
                return version, body
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def read_served(self) -> dict[str, Any] | None:
        p = self.path / SERVED_FILE
        return json.loads(p.read_text()) if p.exists() else None

    # -- training artefacts -----------------------------------------------------------
    @contextmanager
    def training_lock(self):
        """Exclusive lock held while checkpoints are trained and registered (one trainer at a time)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "train.lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WorkspaceError(f"another process is training in {self.path}; wait for it to finish") from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def publish(self, staging: str, final: str) -> None:
        """Move a registered checkpoint from staging into place (atomic rename, fsynced)."""
        src, dst = self.resolve(staging), self.resolve(final)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        fsync_dir(dst.parent)

    def sweep_staging(self) -> int:
        """Finish moves of registered checkpoints; erase unregistered staged files (dead or
        retried jobs). Call with the training lock held."""
        staging = self.path / STAGING_DIR
        if not staging.exists():
            return 0
        registered = {c.id: c for c in self.ledger.checkpoints()}
        n = 0
        for f in staging.glob("*.safetensors"):
            c = registered.get(f.stem)
            if c is not None and not c.purged and not self.resolve(c.path).exists():
                self.publish(self.relative(f), c.path)
            else:
                f.unlink()
            n += 1
        return n

    def _finish_staging(self) -> int:
        try:
            with self.training_lock():
                return self.sweep_staging()
        except WorkspaceError:
            return 0  # a trainer is running: its staged files are live

    # -- erasure and recovery ---------------------------------------------------------
    def purge_tainted(self) -> list[str]:
        """Erase the files of checkpoints whose lineage holds a deleted record (or marked purged).

        Returns the ids whose file was still present. A forget marks the checkpoints it cuts
        purged in its own transaction and erases their files right after the commit
        (:meth:`erase_files`); this sweep finishes that after a crash in between.
        """
        tainted = self.ledger.tainted_checkpoints()
        todo = [c for c in self.ledger.checkpoints() if c.id in tainted or c.purged]
        erased = [c.id for c in todo if self.resolve(c.path).exists()]
        self.erase_files(c.path for c in todo)
        self.ledger.mark_purged(c.id for c in todo if not c.purged)
        return erased

    def last_receipt_seq(self) -> int:
        from sqlalchemy import func, select

        from .schema import Receipt

        with self.ledger.Session() as s:
            return s.scalar(select(func.max(Receipt.seq))) or 0

    def erase_residue(self, min_interval: float = 0.0) -> bool:
        """Remove erased content from the ledger's own files (SQLite WAL truncate, PostgreSQL VACUUM FULL)
        and record in ``erasure.json`` the last receipt this covered (kept monotone across processes).

        ``min_interval``: seconds this workspace object leaves between two runs. A call that comes
        sooner waits for its turn, then covers every forget committed by then: a storm of forgets
        costs one run per interval instead of one per burst (each VACUUM FULL rewrites the tables)."""
        seq = self.last_receipt_seq()
        if seq and self.erased_through() >= seq:
            return True  # an earlier run already covered every committed forget: a burst costs one VACUUM FULL
        wait = self._erased_at + min_interval - self._clock()
        if wait > 0:
            self._sleep(wait)
            seq = self.last_receipt_seq()  # what committed while waiting is covered by this run too
            if self.erased_through() >= seq:
                return True  # another process covered it meanwhile
        ok = self.ledger.erase_residue()
        self._erased_at = self._clock()
        if not ok:
            log.warning("could not remove erased rows from the ledger's files (a reader held an old snapshot or a "
                        "table lock); retried on the next forget and at recovery")
            return False
        with open(self.path / "erasure.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                done = self.erased_through()
                if seq > done:
                    atomic_write_bytes(self.path / ERASURE_FILE, json.dumps({"receipt_seq": seq}).encode() + b"\n")
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return True

    def erased_through(self) -> int:
        """The receipt sequence number up to which erased content was removed from the ledger files."""
        try:
            return int(json.loads((self.path / ERASURE_FILE).read_text())["receipt_seq"])
        except (OSError, ValueError, KeyError):
            return 0

    def erase_files(self, paths: Iterable[str]) -> None:
        """Unlink checkpoint files (workspace-relative paths); missing files are fine."""
        for path in paths:
            self.resolve(path).unlink(missing_ok=True)

    def recover(self) -> tuple[int, dict[str, Any]]:
        """Bring the files in line with the ledger after a crash (idempotent).

        The ledger commit is the point of no return: a forget that committed is applied
        (served.json rewritten, cut checkpoints erased); one that did not left no trace.
        Half-written temp files are removed.
        """
        for tmp in self.path.rglob(".*.tmp-*"):
            tmp.unlink(missing_ok=True)
        if self._finish_staging():
            log.info("recovery: finished or erased staged checkpoint files of interrupted training")
        purged = self.purge_tainted()
        if purged:
            log.info("recovery: erased %d checkpoint file(s) cut by deletions", len(purged))
        if self.ledger.initialised and self.erased_through() < self.last_receipt_seq():
            self.erase_residue()  # a forget whose step never ran (not on every load: VACUUM FULL on PostgreSQL)
        if self.ledger.initialised and self.ledger.latest_manifest()[0]:
            # stages registered by an interrupted retrain are swapped in (the rule decides)
            self.ledger.refresh_manifest("recovery")
        try:
            before = (self.read_served() or {}).get("version")
        except ValueError:
            before = None
        version, body = self.sync_served()
        if version and before != version:
            log.info("recovery: served.json rewritten to manifest version %d", version)
        return version, body
