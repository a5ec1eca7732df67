"""The ledger: records, slices, lineages, deletions, manifests and receipts (SQLAlchemy).

Any SQLAlchemy URL works; SQLite is the embedded default (WAL, ``synchronous=FULL``, so a
commit is on disk before anything is acknowledged). Every state change that acknowledges
something is one transaction.

Several processes write one ledger (a server, its retrain child, CLI commands, replicas on
PostgreSQL). Every write goes through :meth:`Ledger.write`, which takes the *database's* write
lock before the first read — SQLite ``BEGIN IMMEDIATE``, PostgreSQL a transaction-scoped
advisory lock — so the reads that decide a write (the served manifest, the deletions, the
checkpoints) see every commit before it and nothing can commit in between. A writer waits for
the lock up to ``lock_timeout`` seconds, then gets :class:`~s3t.errors.LedgerBusyError` and
nothing changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from contextlib import contextmanager
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Sequence

from sqlalchemy import bindparam, create_engine, event, func, insert, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import LedgerBusyError, WorkspaceError
from ..serve.rule import Served, StageView, choose_served
from .schema import (
    SCHEMA_VERSION,
    Base,
    Checkpoint,
    CheckpointLineage,
    Deletion,
    Manifest,
    Meta,
    Record,
    SequenceRow,
    SliceMember,
    SliceVersion,
    ValidationScore,
)

log = logging.getLogger("s3t")

# Statements on the forget path, built once: building a SQLAlchemy expression costs about as
# much as running it on SQLite, and a forget runs about a dozen. Lists bind as expanding IN.
_SHARDS = bindparam("shards", expanding=True)
_Q_LATEST_MANIFEST = select(Manifest.version, Manifest.body).order_by(Manifest.version.desc()).limit(1)
_Q_MAX_MANIFEST = select(func.max(Manifest.version))
_INS_MANIFEST = insert(Manifest)  # values bound per call: building .values() costs more than the insert
MANIFEST_CHANNEL = "s3t_manifest"  # PostgreSQL: every manifest commit NOTIFYs its version here (replicas LISTEN)
_NOTIFY_MANIFEST = text(f"SELECT pg_notify('{MANIFEST_CHANNEL}', :version)")
_Q_DELETED_AMONG = select(Deletion.record_id).where(Deletion.record_id.in_(bindparam("ids", expanding=True)))
_TAINTED_SLICE_VERSIONS = select(SliceMember.slice_version_id).join(Deletion, Deletion.record_id == SliceMember.record_id)
_Q_TAINTED_IN_SHARDS = (
    select(CheckpointLineage.checkpoint_id)
    .where(CheckpointLineage.slice_version_id.in_(
        _TAINTED_SLICE_VERSIONS
        .join(SliceVersion, SliceVersion.id == SliceMember.slice_version_id)
        .where(SliceVersion.shard.in_(_SHARDS))))
    .distinct()
)
_CHAIN_COLS = (Checkpoint.id, Checkpoint.shard, Checkpoint.prefix, Checkpoint.parent_id, Checkpoint.purged,
               Checkpoint.val_accuracy)
_Q_CHECKPOINTS_IN_SHARDS = select(*_CHAIN_COLS).where(Checkpoint.shard.in_(_SHARDS)).order_by(Checkpoint.ordinal)
_Q_SEQUENCES_IN_SHARDS = (select(SequenceRow.shard, SequenceRow.order).where(SequenceRow.shard.in_(_SHARDS))
                          .order_by(SequenceRow.shard, SequenceRow.index))


def build_chains(current: dict[tuple[int, str], Any], seqs: Iterable[tuple[int, str]], tainted: set[str],
                 purged: dict[str, bool] | None = None) -> dict[int, list[list[StageView | None]]]:
    """Per shard, per sequence (``seqs``: (shard, "i,j,...") rows in order): the current checkpoint
    of each stage (``current``: (shard, prefix) -> row with id, parent_id, purged, val_accuracy;
    None = not trained), clean unless tainted or purged (``purged`` overrides the rows' flags)."""
    out: dict[int, list[list[StageView | None]]] = defaultdict(list)
    for shard, order in seqs:
        order = order.split(",")
        chain: list[StageView | None] = []
        for k in range(1, len(order) + 1):
            c = current.get((shard, ",".join(order[:k])))
            gone = c is not None and (c.purged if purged is None else purged.get(c.id, c.purged))
            chain.append(None if c is None else
                         StageView(c.id, c.parent_id, clean=c.id not in tainted and not gone, val_accuracy=c.val_accuracy))
        out[shard].append(chain)
    return dict(out)


def manifest_from(chains: dict[int, list[list[StageView | None]]], base: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The served manifest the serving rule gives on ``chains``; shards not in ``chains`` are
    copied from ``base``."""
    out: dict[str, Any] = {} if base is None else dict(base["shards"])
    for shard, shard_chains in chains.items():
        served: Served | None = choose_served(shard_chains)
        out[str(shard)] = None if served is None else {
            "sequence": served.sequence,
            "stage": served.stage,
            "checkpoint": served.checkpoint_id,
            "val_accuracy": served.val_accuracy,
        }
    return {"shards": {k: out[k] for k in sorted(out, key=int)}}


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


LOCK_TIMEOUT_S = 30.0  # how long a writer waits for another process's write transaction
_PG_LOCK_KEY = 0x53335400  # the advisory lock every s3t write transaction takes on PostgreSQL
_WRITE = "s3t_write"  # execution option that marks a write transaction's connection


def _sqlite_connect(ledger: "Ledger"):
    def on_connect(dbapi_conn, _record) -> None:
        # the driver's own implicit BEGIN is switched off: _sqlite_begin emits BEGIN itself,
        # DEFERRED for reads (one snapshot per session) and IMMEDIATE for writes
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(ledger.lock_timeout * 1000)}")  # read now: see lock_timeout
        _enter_wal(cur, ledger.lock_timeout)
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA secure_delete=ON")  # freed and overwritten content is zeroed, not left in free pages
        cur.close()

    return on_connect


def _enter_wal(cur, timeout: float) -> None:
    """Switch a connection's database to WAL. On a brand-new file, connections of several processes
    race to convert it, and the loser gets "database is locked" at once (the busy handler does not
    cover a journal-mode change): retry briefly, within the ledger's lock timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_begin(conn) -> None:
    # straight to the driver: through exec_driver_sql this cost ~0.1 ms per session (measured)
    conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def _is_lock_timeout(err: Exception) -> bool:
    orig = getattr(err, "orig", err)  # SQLAlchemy wraps driver errors; the BEGIN above raises the driver's own
    msg = str(orig).lower()
    return "database is locked" in msg or "lock timeout" in msg or "locknotavailable" in type(orig).__name__.lower()


class Ledger:
    """Durable state of one workspace."""

    def __init__(self, url: str, lock_timeout: float = LOCK_TIMEOUT_S, secret: Callable[[], bytes] | None = None):
        """``secret`` gives the workspace secret (:mod:`.secret`): the key of the text fingerprints
        :meth:`initialise` writes, and of a schema-1 ledger's migration (:mod:`.migrate`)."""
        self.url = url
        self._secret = secret
        self._lock_timeout = float(lock_timeout)
        self.engine = create_engine(url, future=True)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_connect(self))
            event.listen(self.engine, "begin", _sqlite_begin)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        self._WriteSession = sessionmaker(self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False)
        self.write_lock = threading.RLock()  # orders this process's threads before the database lock
        # called inside every guarded write transaction, under the database lock, before anything
        # else: a process working under a lease sets s3t.store.lease.LeaseGuard (fencing)
        self.guard: Callable[[Session], None] | None = None
        migrated = None
        with self.write() as s:
            # under the write lock: processes opening a new database at once create the tables once
            Base.metadata.create_all(s.connection())
            version = s.get(Meta, "schema_version")
            if version is None:
                s.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(version.value) == 1:  # schema 1: plain text hashes, text-derived ids
                if self._secret is None:
                    raise WorkspaceError("this ledger has schema version 1 and must be migrated: open its workspace "
                                         "(S3T.load, or any s3t command with -w), which migrates it once")
                from .migrate import migrate_1_to_2

                migrated = migrate_1_to_2(s, self.dialect, self._secret())
            elif int(version.value) != SCHEMA_VERSION:
                raise WorkspaceError(f"ledger schema version {version.value} is not supported (expected {SCHEMA_VERSION})")
        if migrated is not None:
            from .migrate import scrub

            log.warning("migrated the ledger (%s) from schema version 1 to 2: %s", self.url.split("@")[-1], migrated)
            scrub(self)

    @property
    def lock_timeout(self) -> float:
        """Seconds a writer waits for another's write lock. Setting it takes effect for the next
        transaction: SQLite's busy timeout is per connection, so the pooled ones are replaced."""
        return self._lock_timeout

    @lock_timeout.setter
    def lock_timeout(self, seconds: float) -> None:
        self._lock_timeout = float(seconds)
        if self.dialect == "sqlite":
            self.engine.dispose()  # connections in use finish as they are, then close

    def close(self) -> None:
        self.engine.dispose()

    def erase_residue(self, attempts: int = 20) -> bool:
        """Physically remove erased content the database still holds in its own files (SQLite WAL
        truncate, PostgreSQL ``VACUUM FULL``: :mod:`.erasure`). True when done, False: retry later."""
        from .erasure import erase_residue

        return erase_residue(self, attempts)

    @contextmanager
    def write(self, guarded: bool = True) -> Iterator[Session]:
        """One serialised read-then-write transaction (commits on exit, rolls back on error).

        The database's write lock is taken before anything is read, so every read inside sees
        all earlier commits of every process and nothing commits until this one does. Waits up
        to ``lock_timeout`` s for another writer, then raises :class:`LedgerBusyError`.
        With ``guarded`` (the default) and a :attr:`guard` set, the guard runs first (under the
        lock) and may refuse the transaction (a lease's fencing check; lease operations pass False).
        """
        with self.write_lock:
            try:
                with self._WriteSession.begin() as s:
                    s.connection()  # SQLite: BEGIN IMMEDIATE now, not at the first statement
                    if self.dialect == "postgresql":
                        ms = max(1, int(self.lock_timeout * 1000))
                        s.execute(text(f"SET LOCAL lock_timeout = {ms}"))
                        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                    elif self.dialect != "sqlite":
                        raise WorkspaceError(f"ledger database {self.dialect!r} is not supported (SQLite or PostgreSQL)")
                    if guarded and self.guard is not None:
                        self.guard(s)
                    yield s
            except (OperationalError, sqlite3.OperationalError) as e:
                if _is_lock_timeout(e):
                    raise LedgerBusyError(
                        f"another process held the ledger's write lock for more than {self.lock_timeout:g} s "
                        f"({self.url.split('@')[-1]}); nothing was changed — retry, or look for a stuck s3t process"
                    ) from e
                raise

    # -- meta -------------------------------------------------------------------------
    def meta(self, key: str, default: str | None = None) -> str | None:
        with self.Session() as s:
            row = s.get(Meta, key)
            return default if row is None else row.value

    def set_meta(self, s: Session, key: str, value: str) -> None:
        s.merge(Meta(key=key, value=value))

    @property
    def initialised(self) -> bool:
        return self.meta("config") is not None

    # -- initial load -----------------------------------------------------------------
    def initialise(
        self,
        config_json: str,
        label_names: Sequence[str],
        train: Iterable[dict],
        validation: Iterable[dict],
        sequences: dict[int, list[tuple[int, ...]]],
        key: bytes | None = None,
    ) -> None:
        """Store records (each text with its keyed fingerprint: ``key``, else the workspace secret),
        their shard/slice, slice versions 0 and the sequences, in one transaction."""
        from .secret import CHECK_META, fingerprint, key_check

        with self.write() as s:
            if s.get(Meta, "config") is not None:
                raise WorkspaceError("this workspace already holds a trained plan; use a new workspace")
            if key is None:
                if self._secret is None:
                    raise WorkspaceError("initialise needs the workspace secret (the key of the text fingerprints)")
                key = self._secret()
            self.set_meta(s, "config", config_json)
            self.set_meta(s, "label_names", json.dumps(list(label_names)))
            self.set_meta(s, CHECK_META, key_check(key))
            members: dict[tuple[int, int], list[str]] = defaultdict(list)
            for r in train:
                s.add(Record(split="train", text_hmac=fingerprint(key, r["text"]), **r))
                members[(r["shard"], r["slice"])].append(r["id"])
            for r in validation:
                s.add(Record(split="validation", text_hmac=fingerprint(key, r["text"]), shard=None, slice=None, **r))
            s.flush()
            for (shard, sl), ids in sorted(members.items()):
                self._add_slice_version(s, shard, sl, 0, ids)
            for shard, seqs in sequences.items():
                for j, order in enumerate(seqs):
                    s.add(SequenceRow(shard=shard, index=j, order=",".join(map(str, order))))

    def _add_slice_version(self, s: Session, shard: int, sl: int, version: int, ids: Sequence[str]) -> SliceVersion:
        sv = SliceVersion(shard=shard, slice=sl, version=version, size=len(ids), members_sha256=sha256_text("\n".join(sorted(ids))))
        s.add(sv)
        s.flush()
        s.add_all(SliceMember(slice_version_id=sv.id, record_id=i) for i in ids)
        return sv

    # -- reads ------------------------------------------------------------------------
    def label_names(self) -> list[str]:
        return json.loads(self.meta("label_names") or "[]")

    def records(self, split: str = "train") -> list[Record]:
        with self.Session() as s:
            return list(s.scalars(select(Record).where(Record.split == split).order_by(Record.position)))

    def sequences(self) -> dict[int, list[tuple[int, ...]]]:
        out: dict[int, list[tuple[int, ...]]] = defaultdict(list)
        with self.Session() as s:
            for row in s.scalars(select(SequenceRow).order_by(SequenceRow.shard, SequenceRow.index)):
                out[row.shard].append(tuple(int(x) for x in row.order.split(",")))
        return dict(out)

    def live_training_record(self) -> str | None:
        """The id of one training record not forgotten (its text not erased), or None."""
        with self.Session() as s:
            return s.scalar(select(Record.id).where(Record.split == "train", Record.text.is_not(None)).limit(1))

    def deleted_ids(self, s: Session | None = None, among: Iterable[str] | None = None) -> set[str]:
        """Deleted record ids; with ``among``, only those of these ids (a forget checks its own ids,
        not the whole deletion table)."""
        if s is None:
            with self.Session() as s2:
                return self.deleted_ids(s2, among)
        if among is not None:
            return set(s.scalars(_Q_DELETED_AMONG, {"ids": list(among)}))
        return set(s.scalars(select(Deletion.record_id)))

    def current_slice_versions(self, s: Session | None = None) -> dict[tuple[int, int], SliceVersion]:
        if s is None:
            with self.Session() as s2:
                return self.current_slice_versions(s2)
        out: dict[tuple[int, int], SliceVersion] = {}
        for sv in s.scalars(select(SliceVersion).order_by(SliceVersion.version)):
            out[(sv.shard, sv.slice)] = sv
        return out

    def slice_member_ids(self, slice_version_id: int) -> list[str]:
        with self.Session() as s:
            q = (
                select(SliceMember.record_id)
                .join(Record, Record.id == SliceMember.record_id)
                .where(SliceMember.slice_version_id == slice_version_id)
                .order_by(Record.position)
            )
            return list(s.scalars(q))

    @staticmethod
    def _tainted_slice_versions_query():
        """Slice versions holding a deleted record, as a query (run it, or use it as a subquery)."""
        return _TAINTED_SLICE_VERSIONS

    def tainted_slice_versions(self, s: Session) -> set[int]:
        return set(s.scalars(self._tainted_slice_versions_query().distinct()))

    def checkpoints(self, s: Session | None = None) -> list[Checkpoint]:
        if s is None:
            with self.Session() as s2:
                return self.checkpoints(s2)
        return list(s.scalars(select(Checkpoint).order_by(Checkpoint.ordinal)))

    def checkpoint(self, checkpoint_id: str) -> Checkpoint | None:
        with self.Session() as s:
            return s.get(Checkpoint, checkpoint_id)

    def lineage(self, s: Session) -> dict[str, list[int]]:
        """Per checkpoint: its slice versions in training order (plain rows, no ORM objects:
        this runs inside every forget and grows with m·B·L)."""
        out: dict[str, list[int]] = defaultdict(list)
        q = select(CheckpointLineage.checkpoint_id, CheckpointLineage.slice_version_id).order_by(CheckpointLineage.position)
        for cid, sv in s.execute(q):
            out[cid].append(sv)
        return out

    def tainted_checkpoints(self, s: Session | None = None, shards: Iterable[int] | None = None) -> set[str]:
        """Checkpoints whose lineage holds a deleted record (one query, evaluated by the database);
        only those of ``shards`` when given (a lineage never leaves its shard)."""
        if s is None:
            with self.Session() as s2:
                return self.tainted_checkpoints(s2, shards)
        if shards is not None:
            return set(s.scalars(_Q_TAINTED_IN_SHARDS, {"shards": list(shards)}))
        bad = self._tainted_slice_versions_query()
        q = select(CheckpointLineage.checkpoint_id).where(CheckpointLineage.slice_version_id.in_(bad)).distinct()
        return set(s.scalars(q))

    # -- checkpoints ------------------------------------------------------------------
    def register_checkpoint(self, *, lineage: Sequence[int], val_scores: Sequence[tuple[str, bool]] = (),
                            **fields: Any) -> None:
        """Register a checkpoint whose file is already durably written (its sha256 given), with
        its per-record validation outcomes (``val_accuracy`` is their mean)."""
        with self.write() as s:
            ordinal = (s.scalar(select(func.max(Checkpoint.ordinal))) or 0) + 1
            s.add(Checkpoint(ordinal=ordinal, created_at=utcnow(), purged=False, **fields))
            s.flush()
            s.add_all(
                CheckpointLineage(checkpoint_id=fields["id"], slice_version_id=sv, position=i) for i, sv in enumerate(lineage)
            )
            s.add_all(ValidationScore(checkpoint_id=fields["id"], record_id=rid, correct=bool(ok)) for rid, ok in val_scores)

    def mark_purged(self, checkpoint_ids: Iterable[str]) -> None:
        ids = list(checkpoint_ids)
        if ids:
            with self.write() as s:
                s.execute(update(Checkpoint).where(Checkpoint.id.in_(ids)).values(purged=True))

    # -- serving rule -----------------------------------------------------------------
    def chains(self, s: Session, tainted: set[str] | None = None,
               shards: Iterable[int] | None = None) -> dict[int, list[list[StageView | None]]]:
        """Per shard (all, or ``shards``), per sequence: the current checkpoint of each stage
        (None = not trained)."""
        tainted = self.tainted_checkpoints(s, shards) if tainted is None else tainted
        current: dict[tuple[int, str], Any] = {}
        if shards is None:
            ckpts = s.execute(select(*_CHAIN_COLS).order_by(Checkpoint.ordinal))
            seqs = s.execute(select(SequenceRow.shard, SequenceRow.order).order_by(SequenceRow.shard, SequenceRow.index))
        else:
            ckpts = s.execute(_Q_CHECKPOINTS_IN_SHARDS, {"shards": list(shards)})
            seqs = s.execute(_Q_SEQUENCES_IN_SHARDS, {"shards": list(shards)})
        for c in ckpts:  # the newest registration wins
            current[(c.shard, c.prefix)] = c
        return build_chains(current, seqs, tainted)

    def compute_manifest(self, s: Session, tainted: set[str] | None = None, shards: Iterable[int] | None = None,
                         base: dict[str, Any] | None = None) -> dict[str, Any]:
        """The served manifest the serving rule gives. With ``shards`` and ``base``, only those
        shards are recomputed and the others are copied from ``base`` (a deletion changes only
        the shards of its records: lineages never cross shards)."""
        if (shards is None) != (base is None):
            raise ValueError("give both shards and base, or neither")
        return manifest_from(self.chains(s, tainted, shards), base)

    def fallbacks(self) -> dict[str, tuple[int, int]]:
        """Checkpoints a next deletion could make a shard serve: ``{checkpoint_id: (shard, stage)}``.

        For each slice version in a served checkpoint's lineage, the serving rule is re-run as if
        that slice were hit; its choice is the shard's fallback for a deletion there. A deletion
        in a slice outside the served lineage changes nothing, so this covers every
        single-slice deletion. The served ensemble builds these members ahead of time.
        """
        with self.Session() as s:
            _, manifest = self.latest_manifest(s)
            chains, lineage = self.chains(s), self.lineage(s)
        out: dict[str, tuple[int, int]] = {}
        for shard_key, entry in manifest["shards"].items():
            if entry is None:
                continue
            shard = int(shard_key)
            for sv in lineage.get(entry["checkpoint"], []):
                hit = {cid for cid, svs in lineage.items() if sv in svs}
                alt = [[v if v is None or v.checkpoint_id not in hit else replace(v, clean=False) for v in chain]
                       for chain in chains.get(shard, [])]
                served = choose_served(alt)
                if served is not None:
                    out[served.checkpoint_id] = (shard, served.stage)
        return out

    def latest_manifest(self, s: Session | None = None) -> tuple[int, dict[str, Any]]:
        if s is None:
            with self.Session() as s2:
                return self.latest_manifest(s2)
        row = s.execute(_Q_LATEST_MANIFEST).first()
        return (0, {"shards": {}}) if row is None else (row.version, json.loads(row.body))

    def latest_version(self) -> int:
        """The latest committed manifest version (0: none yet): one index lookup, no body."""
        with self.Session() as s:
            return s.scalar(_Q_MAX_MANIFEST) or 0

    def add_manifest(self, s: Session, body: dict[str, Any], reason: str) -> int:
        version = (s.scalar(_Q_MAX_MANIFEST) or 0) + 1
        s.execute(_INS_MANIFEST, {"version": version, "created_at": utcnow(), "reason": reason, "body": canonical(body)})
        if self.dialect == "postgresql":  # delivered to every listening replica when (and only if) this commits
            s.execute(_NOTIFY_MANIFEST, {"version": str(version)})
        return version

    def refresh_manifest(self, reason: str) -> tuple[int, dict[str, Any]]:
        """Recompute the served manifest; store a new version only if it changed."""
        with self.write() as s:
            body = self.compute_manifest(s)
            version, old = self.latest_manifest(s)
            if version and canonical(old) == canonical(body):
                return version, old
            return self.add_manifest(s, body, reason), body

    # -- retraining -------------------------------------------------------------------
    def rebuild_tainted_slices(self) -> list[tuple[int, int]]:
        """New versions of every current slice holding a deleted record (members minus deleted)."""
        with self.write() as s:
            bad = self.tainted_slice_versions(s)
            rebuilt = []
            for (shard, sl), sv in sorted(self.current_slice_versions(s).items()):
                if sv.id not in bad:
                    continue
                deleted = self.deleted_ids(s)
                q = (select(SliceMember.record_id).join(Record, Record.id == SliceMember.record_id)
                     .where(SliceMember.slice_version_id == sv.id).order_by(Record.position))
                keep = [i for i in s.scalars(q) if i not in deleted]
                self._add_slice_version(s, shard, sl, sv.version + 1, keep)
                rebuilt.append((shard, sl))
            return rebuilt

    def requests_in_state(self, *states: str) -> list[str]:
        from .schema import DeletionRequest

        with self.Session() as s:
            q = select(DeletionRequest.id).where(DeletionRequest.state.in_(states)).order_by(DeletionRequest.created_at)
            return list(s.scalars(q))

    def set_request_state(self, request_ids: Sequence[str], state: str) -> None:
        from .schema import DeletionRequest

        if request_ids:
            with self.write() as s:
                s.execute(update(DeletionRequest).where(DeletionRequest.id.in_(list(request_ids))).values(state=state))

    def request_state(self, request_id: str) -> str | None:
        from .schema import DeletionRequest

        with self.Session() as s:
            row = s.get(DeletionRequest, request_id)
            return None if row is None else row.state
