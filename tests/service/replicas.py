"""Helpers of the replica tests (and of scripts/replicas_bench.py): a fitted workspace whose ledger
lives in a real PostgreSQL database, cheap clones of it (``CREATE DATABASE ... TEMPLATE``), `s3t
serve` replicas as real processes on 127.0.0.1, and the checker of prediction answers.

The checker is independent of the serving rule and of the fence: it reads which records every
checkpoint was trained on from the raw ledger rows (checkpoint_lineage x slice_members) and
flags an answer that

* came from a manifest version older than the forget acknowledged before it was sent (the fence),
* names checkpoints that are not the ones of the manifest version it names (honest responses),
* came from a checkpoint trained on a record whose deletion was acknowledged before it was sent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import create_engine, select, text

from tests.fault.harness import Server, free_port  # noqa: F401  (free_port: scripts/replicas_bench.py takes it from here)

TOKEN = "replica-forget-token-0123456789"
READ_TOKEN = "replica-read-token-9876543210"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


def db_url(cluster: Any, name: str) -> str:
    return f"postgresql+psycopg://s3t@127.0.0.1:{cluster.port}/{name}"


def _admin(cluster: Any, sql: str) -> None:
    engine = create_engine(db_url(cluster, "postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@dataclass
class PgTemplate:
    cluster: Any
    ws: Path
    db: str
    train: list[dict]
    val: list[dict]
    clones: int = field(default=0)

    def clone(self, dest: Path) -> tuple[Path, str]:
        """A private copy: the workspace directory and its own database (copied from the template's)."""
        self.clones += 1
        name = f"{self.db}_c{self.clones}"
        _admin(self.cluster, f'CREATE DATABASE "{name}" TEMPLATE "{self.db}"')
        shutil.copytree(self.ws, dest)
        url = db_url(self.cluster, name)
        (dest / "workspace.json").write_text(json.dumps({"db": url}, indent=2))
        return dest, url


def fit_pg_template(cluster: Any, root: Path, model: str, name: str = "tmpl", n_train: int = 120,
                    shards: int = 2, epochs: int = 2) -> PgTemplate:
    """Fit the tiny S3T (m=shards, L=3, B=3) with its ledger in database ``name`` of ``cluster``."""
    from s3t import S3T
    from tests.conftest import tiny_config, toy_rows

    _admin(cluster, f'CREATE DATABASE "{name}"')
    train, val = toy_rows(n_train, seed=1, subjects=10), toy_rows(40, seed=2, subjects=10)
    est = S3T(tiny_config(model, shards=shards, epochs=epochs), workspace=root / name, db=db_url(cluster, name))
    est.fit(train, validation=val)
    est.ws_.ledger.close()
    return PgTemplate(cluster, root / name, name, train, val)


class Replica(Server):
    """`s3t serve` as a subprocess on 127.0.0.1 over a shared ledger, with the replica tests' tokens."""

    def __init__(self, workspace: Path, db: str, log_dir: Path, env: Optional[dict[str, str]] = None,
                 background: bool = True, args: tuple[str, ...] = ()):
        super().__init__(workspace, background=background, db=db, log_dir=log_dir, args=args, name="replica",
                         env={"S3T_TOKEN": TOKEN, "S3T_READ_TOKEN": READ_TOKEN, **(env or {})})

    def wait_ready(self, timeout: float = 180.0) -> "Replica":
        return super().wait_ready(timeout)


# -- the checker ------------------------------------------------------------------------------------
def trained_on(ledger: Any) -> dict[str, set[str]]:
    """checkpoint id -> every record id it was trained on, from the raw lineage and membership rows."""
    from s3t.store.schema import CheckpointLineage, SliceMember

    out: dict[str, set[str]] = {}
    with ledger.Session() as s:
        q = select(CheckpointLineage.checkpoint_id, SliceMember.record_id).join(
            SliceMember, SliceMember.slice_version_id == CheckpointLineage.slice_version_id)
        for cid, rid in s.execute(q):
            out.setdefault(cid, set()).add(rid)
    return out


def manifests(ledger: Any) -> dict[int, dict[str, Optional[str]]]:
    """manifest version -> {shard: served checkpoint id (None: dead)}."""
    from s3t.store.schema import Manifest

    with ledger.Session() as s:
        return {v: {k: (e or {}).get("checkpoint") for k, e in json.loads(b)["shards"].items()}
                for v, b in s.execute(select(Manifest.version, Manifest.body))}


def check_answers(ledger: Any, answers: list[dict]) -> list[str]:
    """Problems of prediction answers. Each answer: ``replica``, ``floor`` (the manifest version of
    the last forget acknowledged before the request was sent), ``deleted`` (every record whose
    deletion was acknowledged before it was sent), ``response`` (the /predict JSON)."""
    seen, by_version = trained_on(ledger), manifests(ledger)
    problems = []
    for a in answers:
        r, where = a["response"], f"replica {a['replica']} (after v{a['floor']})"
        version = r.get("manifest_version")
        if version is None or version < a["floor"]:
            problems.append(f"{where}: answered from manifest v{version}, older than the acknowledged v{a['floor']}")
            continue
        served = {k: c for k, c in by_version.get(version, {}).items() if c is not None}
        if r["checkpoints"] != served:
            problems.append(f"{where}: checkpoints {r['checkpoints']} are not manifest v{version}'s {served}")
        for shard, cid in r["checkpoints"].items():
            hit = seen.get(cid, set()) & a["deleted"]
            if hit:
                problems.append(f"{where}: shard {shard} answered from {cid}, trained on deleted {sorted(hit)[:3]}")
    return problems
