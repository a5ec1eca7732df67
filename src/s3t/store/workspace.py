"""A workspace directory: config, ledger, checkpoint files and the served manifest mirror.

Layout::

    WORKSPACE/
      s3t.json                 the S3TConfig (JSON)
      workspace.json           ledger URL (SQLite file in the workspace by default)
      ledger.sqlite            the ledger (source of truth)
      served.json              mirror of the latest served manifest (atomic rename)
      checkpoints/shard-S/ID.safetensors
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..config import S3TConfig
from ..errors import WorkspaceError
from .atomic import atomic_write_bytes
from .ledger import Ledger

log = logging.getLogger("s3t")

CONFIG_FILE = "s3t.json"
WORKSPACE_FILE = "workspace.json"
SERVED_FILE = "served.json"


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
        stored = json.loads(meta_file.read_text()).get("db")
        self.db_url = db_url or stored or f"sqlite:///{self.path / 'ledger.sqlite'}"
        self.ledger = Ledger(self.db_url)

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
    def checkpoint_path(self, shard: int, checkpoint_id: str) -> Path:
        return self.path / "checkpoints" / f"shard-{shard}" / f"{checkpoint_id}.safetensors"

    def resolve(self, relative: str) -> Path:
        return self.path / relative

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.path))

    # -- served manifest mirror -------------------------------------------------------
    def write_served(self, version: int, body: dict[str, Any]) -> None:
        payload = {"version": version, **body}
        atomic_write_bytes(self.path / SERVED_FILE, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())

    def read_served(self) -> dict[str, Any] | None:
        p = self.path / SERVED_FILE
        return json.loads(p.read_text()) if p.exists() else None

    # -- erasure and recovery ---------------------------------------------------------
    def purge_tainted(self) -> list[str]:
        """Erase the files of checkpoints whose lineage holds a deleted record."""
        tainted = self.ledger.tainted_checkpoints()
        todo = [c for c in self.ledger.checkpoints() if c.id in tainted and not c.purged]
        for c in todo:
            self.resolve(c.path).unlink(missing_ok=True)
        self.ledger.mark_purged(c.id for c in todo)
        return [c.id for c in todo]

    def recover(self) -> tuple[int, dict[str, Any]]:
        """Bring the files in line with the ledger after a crash (idempotent).

        The ledger commit is the point of no return: a forget that committed is applied
        (served.json rewritten, cut checkpoints erased); one that did not left no trace.
        Half-written temp files are removed.
        """
        for tmp in self.path.rglob(".*.tmp-*"):
            tmp.unlink(missing_ok=True)
        purged = self.purge_tainted()
        if purged:
            log.info("recovery: erased %d checkpoint file(s) cut by deletions", len(purged))
        version, body = self.ledger.latest_manifest()
        served = self.read_served()
        if version and (served is None or served.get("version") != version):
            log.info("recovery: served.json rewritten to manifest version %d", version)
            self.write_served(version, body)
        return version, body
