"""The ledger on a real PostgreSQL server (throwaway cluster on a loopback port)."""

from __future__ import annotations

import pytest

from s3t import S3T
from tests.conftest import tiny_config, toy_rows
from tests.pg import pg, require_pg  # noqa: F401  (pg: fixture)

require_pg()


def test_full_cycle_on_postgres(tmp_path, tiny_model, pg):
    from sqlalchemy import create_engine, text

    model = S3T(tiny_config(tiny_model, epochs=1), workspace=tmp_path / "ws", db=pg.url)
    model.fit(toy_rows(60, seed=3, subjects=5), validation=toy_rows(10, seed=4))
    assert model.ws_.ledger.engine.dialect.name == "postgresql"
    receipt = model.forget(subject="user1")
    again = model.forget(subject="user1")
    assert again.hash == receipt.hash and not again.created

    reopened = S3T.load(tmp_path / "ws")  # the URL is remembered in workspace.json
    assert reopened.ws_.ledger.engine.dialect.name == "postgresql"
    assert reopened.status()["deleted_records"] == 12
    assert reopened.audit().ok
    report = reopened.retrain()
    assert report.served_after == {"0": 3, "1": 3}
    assert reopened.verify(receipt.request_id).ok

    with create_engine(pg.url).connect() as conn:  # the rows really live in PostgreSQL
        assert conn.execute(text("select count(*) from deletions")).scalar() == 12
        assert conn.execute(text("select count(*) from receipts")).scalar() == 1
        assert conn.execute(text("select count(*) from records where text is null")).scalar() == 12
