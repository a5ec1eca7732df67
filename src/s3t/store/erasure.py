"""Physical erasure: remove what a forget erased from the ledger database's own files.

A forget erases a record's text (and fingerprint) with an UPDATE and deletes a validation
record's per-checkpoint scores, in its transaction. The database keeps the old bytes in its files
until they are rewritten; the forget's background file steps (and a retried forget, and
recovery) call :func:`erase_residue` after the commit.

SQLite: ``secure_delete`` (set on every connection) zeroes what an UPDATE/DELETE frees, but the
WAL keeps the page images written before it; ``wal_checkpoint(TRUNCATE)`` copies the current
pages into the database file and empties the WAL. It needs no reader on an older snapshot, so it
is retried briefly.

PostgreSQL: an UPDATE leaves the old row version in the heap; plain ``VACUUM`` only marks its
space free (the bytes stay until reused). ``VACUUM FULL`` of the tables a forget erases from
(:data:`PG_ERASED_TABLES`) writes each into a new file without the dead versions and drops the
old one. It takes an ACCESS EXCLUSIVE lock on each table in turn (readers wait, so the lock is
waited for only briefly: ``PG_LOCK_TIMEOUT_S``), and it must run outside a transaction. A row
version that some snapshot taken before the forget could still see is copied, not dropped, so
the step first waits (up to ``PG_SNAPSHOT_WAIT_S``) until every transaction that was open when it
started has ended. Either wait running out returns False: the caller retries on the next
forget or at recovery (``erasure.json`` is not advanced). The server's own WAL (``pg_wal``),
replicas and backups are outside this (README: "Guarantees and threat model").
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.exc import OperationalError

log = logging.getLogger("s3t")

# tables a forget erases content from: records (text, text_hmac set to NULL) and
# validation_scores (an erased validation record's rows deleted; they name it by id)
PG_ERASED_TABLES = ("records", "validation_scores")
PG_LOCK_TIMEOUT_S = 2.0  # each table's ACCESS EXCLUSIVE lock: readers queue behind a waiting VACUUM FULL
PG_SNAPSHOT_WAIT_S = 5.0  # for transactions open at the start (their snapshots may see the erased rows)

# other backends (any database: before PostgreSQL 14 they all hold back the horizon) holding a
# snapshot in a transaction that began before the erasure step did. The backend_xmin of another
# role's session is visible only to a superuser or a member of pg_read_all_stats.
_OLD_SNAPSHOTS = text("SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                      "AND backend_xmin IS NOT NULL AND xact_start < CAST(:since AS timestamptz)")
# VACUUM skips, with only a warning, a table the role neither owns nor is a member of the owner of
_NOT_OWNED = text("SELECT relname FROM pg_class WHERE relname IN :tables AND relkind = 'r' "
                  "AND relnamespace = CAST(current_schema() AS regnamespace) "
                  "AND NOT pg_has_role(current_user, relowner, 'MEMBER')"
                  ).bindparams(bindparam("tables", expanding=True))


def erase_residue(ledger: Any, attempts: int = 20) -> bool:
    """Physically remove erased content from the ledger database's files; True when done."""
    if ledger.dialect == "postgresql":
        return _pg_vacuum_full(ledger)
    raw = ledger.engine.raw_connection()
    try:
        for _ in range(attempts):
            busy, _log, _done = raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
            time.sleep(0.05)
        return False
    finally:
        raw.close()


def _pg_vacuum_full(ledger: Any, tables: tuple[str, ...] = PG_ERASED_TABLES) -> bool:
    from .ledger import _is_lock_timeout

    lock_timeout, snapshot_wait = PG_LOCK_TIMEOUT_S, PG_SNAPSHOT_WAIT_S  # read per call (tests shorten them)

    with ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        not_owned = list(conn.execute(_NOT_OWNED, {"tables": list(tables)}).scalars())
        if not_owned:
            log.warning("ledger erasure: the database role does not own %s, so VACUUM FULL skips them; erased "
                        "rows stay in the table files until the owner runs VACUUM FULL", ", ".join(not_owned))
            return False
        since = conn.execute(text("SELECT CAST(clock_timestamp() AS text)")).scalar()
        deadline = time.monotonic() + snapshot_wait
        while conn.execute(_OLD_SNAPSHOTS, {"since": since}).scalar():
            if time.monotonic() > deadline:
                log.warning("ledger erasure: a transaction open since before the forget still holds a snapshot "
                            "after %g s; VACUUM FULL would keep the erased rows (retried on the next forget)",
                            snapshot_wait)
                return False
            time.sleep(0.05)
        conn.exec_driver_sql(f"SET lock_timeout = {max(1, int(lock_timeout * 1000))}")
        try:
            conn.exec_driver_sql(f"VACUUM FULL {', '.join(tables)}")  # one transaction per table
        except OperationalError as e:
            if not _is_lock_timeout(e):
                raise
            log.warning("ledger erasure: VACUUM FULL waited %g s for a table lock (a long reader or writer); "
                        "retried on the next forget", lock_timeout)
            return False
        finally:
            conn.exec_driver_sql("RESET lock_timeout")  # the connection goes back to the pool
    return True
