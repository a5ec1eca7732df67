"""Ledger schema migrations, each ONE write transaction, recorded in ``meta``.

1 -> 2 (keyed fingerprints, issue 15 finding 3). Schema 1 stored a plain ``text_sha256`` of every
record's text, kept as a tombstone after the forget, and derived the ids of data without an id
column as ``sha256(position, text)[:16]``: both let whoever reads the ledger, or a receipt,
confirm a guessed text. In the transaction that finds ``schema_version = 1``
(:meth:`Ledger.__init__ <s3t.store.ledger.Ledger>`, under the database's write lock, so several
processes opening the ledger at once migrate it once):

1. ``records.text_sha256`` is dropped and ``records.text_hmac`` added: an HMAC under the
   workspace secret (:mod:`.secret`) for every live text, NULL for every erased one.
2. Derived ids are replaced by position ids (``row-N`` for training, ``val-N`` for validation
   rows: what a new fit of the same data gives), in ``records``, ``slice_members``,
   ``validation_scores`` and ``deletions``. A split counts as derived when every live row's id
   is ``sha256(position, text)[:16]`` (or, with no live row left, every id is 16 hex digits).
   Each slice version's ``members_sha256`` is recomputed over the new ids.
3. Receipts are re-chained: every receipt's ``record_ids`` get the new ids, and every receipt
   from the first changed one on gets a new ``prev_hash`` and ``hash`` (the chain must still
   verify). The request keys of record requests are recomputed over the new ids. Nothing of the
   old chain is kept: an old receipt hash is itself a function of the old ids, so keeping it
   would keep the confirmation it allows. Receipts copied out of the workspace before the
   migration keep their old ids and hashes (they are outside the ledger, like backups); a
   workspace whose ids were all given by the user keeps every receipt byte for byte.
4. ``schema_version`` becomes 2; ``secret_check`` names the key; ``migrated_1_to_2`` records
   the time and the counts (JSON). A log line says the same.

After the commit :func:`scrub` removes the old bytes from the database files: SQLite ``VACUUM``
(every page rewritten, ``secure_delete`` on) and ``wal_checkpoint(TRUNCATE)``; PostgreSQL
``VACUUM FULL`` of the rewritten tables (which also nulls the dropped column). The server's own
WAL and backups are outside it (README, "Guarantees and threat model").
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
from typing import Any

from sqlalchemy import text

from ..errors import WorkspaceError
from .secret import CHECK_META, fingerprint, key_check

log = logging.getLogger("s3t")

ID_PREFIX = {"train": "row-", "validation": "val-"}  # as s3t.data.to_records / S3T.fit derive them
REWRITTEN = ("records", "slice_members", "validation_scores", "deletions", "deletion_requests", "receipts",
             "slice_versions")
_HEX16 = re.compile(r"[0-9a-f]{16}")


def v1_derived_id(position: int, text_: str) -> str:
    """Schema 1's id of a record given without one (``s3t.data.records.derived_id`` before version 2)."""
    return hashlib.sha256(f"{position}\x00{text_}".encode()).hexdigest()[:16]


def _renames(rows: list[Any]) -> dict[str, str]:
    """old id -> position id, for every record of a split whose ids schema 1 derived."""
    out: dict[str, str] = {}
    for split, prefix in ID_PREFIX.items():
        mine = [r for r in rows if r.split == split]
        live = [r for r in mine if r.text is not None]
        derived = (all(r.id == v1_derived_id(r.position, r.text) for r in live) if live
                   else all(_HEX16.fullmatch(r.id) for r in mine))
        if mine and derived:
            out.update({r.id: f"{prefix}{r.position}" for r in mine})
    kept = {r.id for r in rows} - set(out)
    clash = sorted(set(out.values()) & kept)
    if clash:
        raise WorkspaceError(f"cannot migrate the ledger: position ids {clash[:3]} are already taken by given ids; "
                             "nothing was changed")
    return out


def migrate_1_to_2(s: Any, dialect: str, key: bytes) -> dict[str, Any]:
    """Run migration 1 -> 2 inside the open write transaction ``s`` (see the module docstring)."""
    from ..forget import GENESIS, receipt_hash, request_key
    from .ledger import canonical, sha256_text, utcnow

    if dialect == "sqlite" and sqlite3.sqlite_version_info < (3, 35, 0):
        raise WorkspaceError(f"migrating this ledger needs SQLite >= 3.35 (ALTER TABLE DROP COLUMN); this Python has "
                             f"{sqlite3.sqlite_version}. Nothing was changed")
    c = s.connection()
    rows = list(c.execute(text("SELECT id, position, split, text FROM records")))
    c.execute(text("ALTER TABLE records ADD COLUMN text_hmac VARCHAR(64)"))
    c.execute(text("ALTER TABLE records DROP COLUMN text_sha256"))
    live = [{"rid": r.id, "fp": fingerprint(key, r.text)} for r in rows if r.text is not None]
    if live:
        c.execute(text("UPDATE records SET text_hmac = :fp WHERE id = :rid"), live)

    renames = _renames(rows)
    if renames:
        pairs = [{"old": o, "new": n} for o, n in renames.items()]
        cols = "position, split, label, subject, text, text_hmac, shard, slice"
        c.execute(text(f"INSERT INTO records (id, {cols}) SELECT :new, {cols} FROM records WHERE id = :old"), pairs)
        for table in ("slice_members", "validation_scores", "deletions"):
            c.execute(text(f"UPDATE {table} SET record_id = :new WHERE record_id = :old"), pairs)
        c.execute(text("DELETE FROM records WHERE id = :old"), pairs)
        members: dict[int, list[str]] = {}
        for sv, rid in c.execute(text("SELECT slice_version_id, record_id FROM slice_members")):
            members.setdefault(sv, []).append(rid)
        c.execute(text("UPDATE slice_versions SET members_sha256 = :h WHERE id = :sv"),
                  [{"sv": sv, "h": sha256_text("\n".join(sorted(ids)))} for sv, ids in members.items()])

    rechained, prev = 0, GENESIS
    requests = dict(c.execute(text("SELECT id, subject FROM deletion_requests")).all())
    for rid, body_json, old_hash in c.execute(text("SELECT request_id, body, hash FROM receipts ORDER BY seq")).all():
        body = json.loads(body_json)
        body["record_ids"] = sorted(renames.get(i, i) for i in body["record_ids"])
        body["prev_hash"] = prev
        prev = receipt_hash(body)
        if prev != old_hash:
            rechained += 1
            c.execute(text("UPDATE receipts SET body = :b, hash = :h WHERE request_id = :r"),
                      {"b": canonical(body), "h": prev, "r": rid})
            if requests.get(rid) is None:  # a request by record ids: its idempotency key names them
                c.execute(text("UPDATE deletion_requests SET key = :k WHERE id = :r"),
                          {"k": request_key(body["record_ids"], None), "r": rid})

    record = {"at": utcnow(), "fingerprints": len(live), "fingerprints_dropped": len(rows) - len(live),
              "ids_renamed": len(renames), "receipts_rechained": rechained}
    for k, v in (("schema_version", "2"), (CHECK_META, key_check(key)), ("migrated_1_to_2", canonical(record))):
        c.execute(text("UPDATE meta SET value = :v WHERE key = :k"), {"k": k, "v": v})
        if not c.execute(text("SELECT 1 FROM meta WHERE key = :k"), {"k": k}).first():
            c.execute(text("INSERT INTO meta (key, value) VALUES (:k, :v)"), {"k": k, "v": v})
    return record


def scrub(ledger: Any, tables: tuple[str, ...] = REWRITTEN) -> bool:
    """Remove superseded bytes (old fingerprints, old ids) from the database's files: SQLite the
    whole file, PostgreSQL ``tables``. True when done."""
    try:
        if ledger.dialect == "sqlite":
            raw = ledger.engine.raw_connection()
            try:
                raw.driver_connection.execute("VACUUM")
                busy, _, _ = raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                raw.close()
            if busy:
                raise sqlite3.OperationalError("a reader held the WAL")
        elif ledger.dialect == "postgresql":
            with ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("SET lock_timeout = '10s'")
                conn.exec_driver_sql(f"VACUUM FULL {', '.join(tables)}")
        return True
    except Exception as exc:  # the transaction is committed; what is left is bytes in free space
        log.warning("could not rewrite the ledger's files after re-keying (%s): superseded fingerprints may stay in "
                    "free pages until the next forget's erasure step", exc)
        return False
