"""Physical erasure on a real PostgreSQL server: after a forget (and ``flush``), no file of the
cluster's data directory holds a forgotten text. ``pg_wal`` is left out: the server's own WAL is
outside the guarantee (README, "Guarantees and threat model").

Each text carries a unique marker word (as in tests/test_erasure_on_disk.py), so a hit can only be
the forgotten record itself. A ``CHECKPOINT`` before and after the forget puts the heap pages on
disk, so the grep sees what the server really keeps in its files, not what is in shared buffers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from s3t import S3T
from tests.conftest import tiny_config, toy_rows
from tests.pg import Cluster, pg, require_pg  # noqa: F401  (pg: fixture)
from tests.test_erasure_on_disk import marked

require_pg()


def fresh_database(pg: Cluster, name: str) -> str:
    admin = create_engine(pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return pg.url.rsplit("/", 1)[0] + "/" + name


def checkpoint(pg: Cluster) -> None:
    """Write every dirty buffer to the data files (the s3t role is the cluster's superuser)."""
    admin = create_engine(pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CHECKPOINT"))
    admin.dispose()


def data_files(root: Path) -> dict[str, bytes]:
    """Every file under the data directory except pg_wal (files the server removes meanwhile are skipped)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] == "pg_wal" or not p.is_file():
            continue
        try:
            out[str(rel)] = p.read_bytes()
        except FileNotFoundError:
            continue
    return out


def test_forgotten_texts_leave_no_byte_in_the_postgres_data_directory(tmp_path, tiny_model, pg):
    url = fresh_database(pg, f"erase{os.getpid()}")
    train, val = marked(toy_rows(120, seed=21, subjects=10)), marked(toy_rows(40, seed=22, subjects=10))
    est = S3T(tiny_config(tiny_model, epochs=1), workspace=tmp_path / "ws", db=url).fit(train, validation=val)
    try:
        assert est.ws_.ledger.dialect == "postgresql" and est._erasure_interval() == 1.0  # paced: VACUUM FULL
        checkpoint(pg)  # the texts are in the heap files now
        est.forget(subject="user4")  # training and validation rows of one person
        singles = [r["id"] for r in train if r.get("subject") != "user4"][:3]
        est.forget(record_ids=singles)
        assert est.flush(60)
        assert est.ws_.erased_through() == 2  # the forgets' erasure step ran and covered both receipts
        checkpoint(pg)
        gone = [r["text"] for r in train + val if r.get("subject") == "user4" or r["id"] in singles]
        kept = [r["text"] for r in train + val if r.get("subject") != "user4" and r["id"] not in singles]
        assert len(gone) > 10
        files = data_files(pg.dir / "data")
        assert len(files) > 100  # the whole cluster: every database, the catalogs, the stats
        found = sorted({text_.rsplit(" ", 1)[1] for text_ in gone for data in files.values() if text_.encode() in data})
        assert found == [], f"{len(found)} of {len(gone)} forgotten texts are still in the data files: {found[:5]}"
        # the grep can find a text: every kept one is still in the heap files
        missing = [t for t in kept if not any(t.encode() in data for data in files.values())]
        assert missing == []
        assert est.audit().ok
    finally:
        est.ws_.ledger.close()


# -- the erasure step never hangs a forget, and never claims an erasure it could not do -----------


@pytest.fixture
def small_ledger(pg, request):
    """A Ledger on a fresh database holding 20 marked training records (no model: the erasure step
    needs only the rows)."""
    from s3t.store.ledger import Ledger

    url = fresh_database(pg, f"small{os.getpid()}_{abs(hash(request.node.name)) % 10**6}")
    ledger = Ledger(url)
    rows = [dict(r, label=int(r["label"] == "pos"), position=i, shard=0, slice=0)
            for i, r in enumerate(marked(toy_rows(20, seed=5, subjects=4)))]
    ledger.initialise("{}", ["neg", "pos"], rows, [], {0: [(0,)]}, key=b"k" * 32)
    yield ledger, rows
    ledger.close()


def grep_data(pg: Cluster, texts: list[str]) -> list[str]:
    checkpoint(pg)
    files = data_files(pg.dir / "data")
    return [t for t in texts if any(t.encode() in data for data in files.values())]


def test_a_snapshot_from_before_the_forget_makes_the_step_wait_then_report_not_done(small_ledger, pg, monkeypatch):
    """VACUUM FULL copies a row version an older snapshot can still see: the step must not claim it."""
    from s3t.forget import record_forget
    from s3t.store import erasure

    ledger, rows = small_ledger
    monkeypatch.setattr(erasure, "PG_SNAPSHOT_WAIT_S", 0.5)
    checkpoint(pg)
    old = create_engine(ledger.url, isolation_level="REPEATABLE READ").connect()
    try:
        # a snapshot that still sees every text, holding no lock on the ledger's tables
        old.execute(text("SELECT count(*) FROM pg_class"))
        record_forget(ledger, [rows[3]["id"]])
        assert ledger.erase_residue() is False
        old.rollback()
        assert grep_data(pg, [rows[3]["text"]]) == [rows[3]["text"]]  # the grep finds what was kept
        assert ledger.erase_residue() is True
        assert grep_data(pg, [rows[3]["text"]]) == []
        assert grep_data(pg, [rows[4]["text"]]) == [rows[4]["text"]]
    finally:
        old.close()
        old.engine.dispose()


def test_a_held_table_lock_makes_the_step_give_up_not_hang(small_ledger, pg, monkeypatch):
    import time

    from s3t.forget import record_forget
    from s3t.store import erasure

    ledger, rows = small_ledger
    monkeypatch.setattr(erasure, "PG_LOCK_TIMEOUT_S", 0.3)
    record_forget(ledger, [rows[5]["id"]])
    holder = create_engine(ledger.url).connect()
    try:
        holder.execute(text("LOCK TABLE validation_scores IN ACCESS SHARE MODE"))  # a reader mid-transaction
        start = time.monotonic()
        assert ledger.erase_residue() is False
        assert time.monotonic() - start < 3
        with ledger.engine.connect() as conn:  # the pooled connection's lock_timeout was reset
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "0"
        holder.rollback()
        assert ledger.erase_residue() is True
        assert grep_data(pg, [rows[5]["text"]]) == []
    finally:
        holder.close()
        holder.engine.dispose()
