"""Several processes open a ledger on a brand-new database at the same moment: each creates the
tables it does not see yet. Table creation runs inside the database's write lock (PostgreSQL: the
advisory lock of every s3t write transaction; SQLite: BEGIN IMMEDIATE), so the first creates them
and the others find them; none fails with "relation already exists".

Each opener is a thread with its own :class:`Ledger` (its own engine and connections), as a
second process would have; a barrier releases them together. Several rounds, each on a fresh
database, so an unlocked creation races in at least one of them.
"""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import create_engine, inspect, text

from s3t.store.ledger import Ledger
from s3t.store.schema import SCHEMA_VERSION, Base
from tests.pg import Cluster, pg_bin

OPENERS = 8
ROUNDS = 4
JOIN_S = 120


def open_at_once(url: str) -> list[BaseException]:
    barrier = threading.Barrier(OPENERS)
    errors: list[BaseException] = []
    ledgers: list[Ledger] = []
    lock = threading.Lock()

    def opener():
        try:
            barrier.wait(JOIN_S)
            led = Ledger(url)
            with lock:
                ledgers.append(led)
        except BaseException as e:  # surfaced by the test
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=opener, daemon=True) for _ in range(OPENERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
    assert not any(t.is_alive() for t in threads), "an opener hung"
    for led in ledgers:
        assert led.meta("schema_version") == str(SCHEMA_VERSION)
        led.close()
    return errors


def assert_complete(url: str) -> None:
    engine = create_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) == set(Base.metadata.tables)
        with engine.connect() as conn:  # one schema_version row, whoever created the tables
            assert conn.execute(text("SELECT count(*) FROM meta WHERE key = 'schema_version'")).scalar() == 1
    finally:
        engine.dispose()


def test_sqlite_ledger_opened_by_several_processes_at_once(tmp_path):
    for i in range(ROUNDS):
        url = f"sqlite:///{tmp_path / f'ledger{i}.sqlite'}"
        errors = open_at_once(url)
        assert errors == [], [f"{type(e).__name__}: {e}" for e in errors][:3]
        assert_complete(url)


@pytest.fixture(scope="module")
def pg():
    if pg_bin() is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("PostgreSQL binaries are missing in CI: .ci/run must install postgresql")
        pytest.skip("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed on this machine")
    cluster = Cluster().start()
    yield cluster
    cluster.stop()


def test_postgres_ledger_opened_by_several_processes_at_once(pg):
    admin = create_engine(pg.url, isolation_level="AUTOCOMMIT")
    try:
        for i in range(ROUNDS):
            name = f"fresh{os.getpid()}_{i}"
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name}"))
            url = pg.url.rsplit("/", 1)[0] + "/" + name
            errors = open_at_once(url)
            assert errors == [], [f"{type(e).__name__}: {str(e).splitlines()[0]}" for e in errors][:3]
            assert_complete(url)
    finally:
        admin.dispose()
