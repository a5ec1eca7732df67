"""Several writers on one ledger (server, retrain child, CLI): every read that decides a write
happens under the database's own lock, so no interleaving commits a manifest that serves a
checkpoint whose lineage holds an already-committed deletion.

Each writer gets its own :class:`Ledger` (its own engine and connections), exactly as a second
process would. One writer is paused at a chosen point by a hook; the other runs meanwhile.
On SQLite and on a real PostgreSQL server.
"""

from __future__ import annotations

import os
import threading

import pytest

from s3t.errors import LedgerBusyError
from s3t.forget import record_forget
from s3t.store.ledger import Ledger
from tests.fitted_copy import fitted_template, fitted_ws, record_in  # noqa: F401  (fixtures)
from tests.pg import Cluster, pg_bin

JOIN_S = 60


def history_problems(ledger: Ledger) -> list[str]:
    """Every committed manifest version checked against the deletions committed before it."""
    from s3t.audit import history_violations

    with ledger.Session() as s:
        return history_violations(ledger, s)


def served_tainted(ledger: Ledger) -> list[str]:
    """Shards whose latest manifest serves a checkpoint holding a deleted record."""
    with ledger.Session() as s:
        _, body = ledger.latest_manifest(s)
        bad = ledger.tainted_checkpoints(s)
    return [k for k, v in body["shards"].items() if v is not None and v["checkpoint"] in bad]


class Pause:
    """Wraps ``ledger.<method>``: the first call returns its result, then waits until released."""

    def __init__(self, ledger: Ledger, method: str):
        self.reached, self.release = threading.Event(), threading.Event()
        original = getattr(ledger, method)

        def paused(*args, **kwargs):
            out = original(*args, **kwargs)
            if not self.reached.is_set():
                self.reached.set()
                assert self.release.wait(JOIN_S), "the test never released the paused writer"
            return out

        setattr(ledger, method, paused)


def run(fn, errors: list) -> threading.Thread:
    def target():
        try:
            fn()
        except BaseException as e:  # surfaced by the test
            errors.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


def interleave(paused_fn, pause: Pause, other_fn) -> None:
    """Start ``paused_fn``; once it reaches its pause, run ``other_fn`` (give it 2 s: with the
    database lock it waits for the paused writer, without one it commits in between); release."""
    errors: list = []
    first = run(paused_fn, errors)
    assert pause.reached.wait(JOIN_S), "paused writer never reached its pause"
    second = run(other_fn, errors)
    second.join(2.0)
    pause.release.set()
    first.join(JOIN_S)
    second.join(JOIN_S)
    assert not first.is_alive() and not second.is_alive()
    assert not errors, errors


def _refresh_straddles_a_forget(url: str, victim: str) -> None:
    """(a) the retrain child's manifest refresh computes, a server forget commits, the refresh commits."""
    child, server = Ledger(url), Ledger(url)
    try:
        pause = Pause(child, "compute_manifest")
        interleave(lambda: child.refresh_manifest("retrain"), pause, lambda: record_forget(server, [victim]))
        assert served_tainted(server) == []
        assert history_problems(server) == []
    finally:
        child.close()
        server.close()


def _two_forgets_from_two_processes(url: str, a: str, b: str) -> None:
    """(b) forget A reads the served manifest, forget B (another shard) commits, A commits."""
    one, two = Ledger(url), Ledger(url)
    try:
        pause = Pause(one, "latest_manifest")
        interleave(lambda: record_forget(one, [a]), pause, lambda: record_forget(two, [b]))
        assert served_tainted(one) == []
        assert history_problems(one) == []
        assert len(one.deleted_ids()) == 2
    finally:
        one.close()
        two.close()


def test_refresh_straddling_a_forget_cannot_serve_the_cut_checkpoint(fitted_ws):
    url = fitted_ws.ws_.ledger.url
    _refresh_straddles_a_forget(url, record_in(fitted_ws, 0, 0))


def test_two_forgets_from_two_processes_keep_each_others_cuts(fitted_ws):
    url = fitted_ws.ws_.ledger.url
    _two_forgets_from_two_processes(url, record_in(fitted_ws, 0, 0), record_in(fitted_ws, 1, 0))


def test_a_writer_that_waits_too_long_gets_a_clear_error_and_changes_nothing(fitted_ws):
    url = fitted_ws.ws_.ledger.url
    holder, waiter = Ledger(url), Ledger(url, lock_timeout=0.3)
    try:
        before = waiter.latest_manifest()
        with holder.write():
            with pytest.raises(LedgerBusyError, match="another process held the ledger's write lock"):
                record_forget(waiter, [record_in(fitted_ws, 0, 0)])
        assert waiter.latest_manifest() == before and waiter.deleted_ids() == set()
    finally:
        holder.close()
        waiter.close()


# -- the same interleavings on a real PostgreSQL server -------------------------------------------

needs_pg = pytest.mark.skipif(pg_bin() is None and os.environ.get("CI") != "true",
                              reason="PostgreSQL server binaries are not installed on this machine")


@pytest.fixture(scope="module")
def pg():
    cluster = Cluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_ws(tmp_path, tiny_model, pg):
    """A fitted tiny workspace whose ledger is a fresh PostgreSQL database."""
    from sqlalchemy import create_engine, text

    from s3t import S3T
    from tests.conftest import tiny_config, toy_rows

    name = f"w{os.getpid()}_{abs(hash(str(tmp_path))) % 10**8}"
    admin = create_engine(pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = pg.url.rsplit("/", 1)[0] + "/" + name
    est = S3T(tiny_config(tiny_model, epochs=1), workspace=tmp_path / "ws", db=url)
    est.fit(toy_rows(60, seed=3, subjects=5), validation=toy_rows(10, seed=4))
    yield est
    est.ws_.ledger.close()


@needs_pg
def test_postgres_refresh_straddling_a_forget_cannot_serve_the_cut_checkpoint(pg_ws):
    _refresh_straddles_a_forget(pg_ws.ws_.ledger.url, record_in(pg_ws, 0, 0))


@needs_pg
def test_postgres_two_forgets_from_two_processes_keep_each_others_cuts(pg_ws):
    _two_forgets_from_two_processes(pg_ws.ws_.ledger.url, record_in(pg_ws, 0, 0), record_in(pg_ws, 1, 0))


@needs_pg
def test_postgres_writer_that_waits_too_long_gets_a_clear_error(pg_ws):
    url = pg_ws.ws_.ledger.url
    holder, waiter = Ledger(url), Ledger(url, lock_timeout=0.3)
    try:
        with holder.write():
            with pytest.raises(LedgerBusyError):
                record_forget(waiter, [record_in(pg_ws, 0, 0)])
        assert waiter.deleted_ids() == set()
    finally:
        holder.close()
        waiter.close()
