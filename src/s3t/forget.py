"""Forget: record the request, cut lineages, choose surviving prefixes, swap — one transaction.

1. Validate the request (unknown ids → :class:`UnknownRecordError`, nothing changes).
2. Same records (or subject) as an earlier request → that request's receipt, nothing changes.
3. In ONE ledger transaction: the request, the deletions, erasure of the records' text,
   the new served manifest (every lineage holding a deleted record is cut by the serving
   rule) and a receipt hash-chained to the previous one. The commit is durable (fsync)
   before the receipt is returned.

A subject request erases every row of the subject, training and validation. Validation rows
trained nothing, so they cut no lineage; but they scored checkpoints (tie-breaks, status), so
their per-record scores are dropped and every checkpoint they scored is re-scored without
them, and the whole manifest is recomputed on the new scores. A checkpoint registered before
per-record scores were kept has its score dropped (None) instead: it may have used the rows.

A dry run (``dry_run=True``) runs the same transaction and rolls it back: the receipt it
returns is what the request would produce (records, affected shards, served prefixes after)
and nothing is stored. The served ensemble runs one at start-up to warm the forget path, so
the first real request does not pay for compiling its statements.

This module is torch-free; the estimator then swaps the in-memory ensemble to the new
manifest and erases the files of the cut checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

from sqlalchemy import bindparam, case, delete, func, insert, select, update

from .errors import DataError, S3TError, UnknownRecordError
from .store.ledger import Ledger, canonical, utcnow
from .store.schema import Checkpoint, Deletion, DeletionRequest, Record, Receipt as ReceiptRow, ValidationScore

GENESIS = "0" * 64

# the forget transaction's statements, built once (see s3t.store.ledger)
_Q_REQUEST_BY_KEY = select(DeletionRequest.id).where(DeletionRequest.key == bindparam("key"))
_RECORD_COLS = (Record.id, Record.split, Record.shard)
_Q_RECORDS = select(*_RECORD_COLS).where(Record.id.in_(bindparam("ids", expanding=True)))
_Q_SUBJECT = select(*_RECORD_COLS).where(Record.subject == bindparam("subject"))  # every split
_IDS = bindparam("ids", expanding=True)
_SCORED_BY = select(ValidationScore.checkpoint_id).where(ValidationScore.record_id.in_(_IDS)).distinct()
_DROP_SCORES = delete(ValidationScore).where(ValidationScore.record_id.in_(_IDS))
_RESCORE = (update(Checkpoint).where(Checkpoint.id.in_(bindparam("ckpts", expanding=True)))
            .values(val_accuracy=select(func.avg(case((ValidationScore.correct, 1.0), else_=0.0)))
                    .where(ValidationScore.checkpoint_id == Checkpoint.id).scalar_subquery())
            .execution_options(synchronize_session=False))
_UNSCORED = (update(Checkpoint).where(Checkpoint.val_accuracy.is_not(None),
                                      ~select(ValidationScore.checkpoint_id)
                                      .where(ValidationScore.checkpoint_id == Checkpoint.id).exists())
             .values(val_accuracy=None).execution_options(synchronize_session=False))
_Q_LAST_RECEIPT = select(ReceiptRow.seq, ReceiptRow.hash).order_by(ReceiptRow.seq.desc()).limit(1)
_INS_REQUEST, _INS_DELETION, _INS_RECEIPT = insert(DeletionRequest), insert(Deletion), insert(ReceiptRow)
_ERASE_TEXT = (update(Record).where(Record.id.in_(bindparam("ids", expanding=True))).values(text=None, text_hmac=None)
               .execution_options(synchronize_session=False))
_PURGE = (update(Checkpoint).where(Checkpoint.id.in_(bindparam("ids", expanding=True)), Checkpoint.purged.is_(False))
          .values(purged=True).returning(Checkpoint.id, Checkpoint.path).execution_options(synchronize_session=False))


@dataclass(frozen=True)
class Receipt:
    """Proof of a forget request. ``hash`` = sha256 of the canonical JSON of ``body``."""

    body: dict[str, Any]
    hash: str
    created: bool = field(default=True, compare=False)  # False: an earlier identical request's receipt
    cut_paths: tuple[str, ...] = field(default=(), compare=False)  # files of checkpoints this request cut: erase
    manifest: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # the body committed (new requests)
    dry_run: bool = field(default=False, compare=False)  # a preview: nothing was stored, nothing changed

    @property
    def request_id(self) -> str:
        return self.body["request_id"]

    @property
    def prev_hash(self) -> str:
        return self.body["prev_hash"]

    @property
    def affected_shards(self) -> list[int]:
        return self.body["affected_shards"]

    @property
    def before(self) -> dict[str, int]:
        return self.body["served_before"]

    @property
    def after(self) -> dict[str, int]:
        return self.body["served_after"]

    def to_dict(self) -> dict[str, Any]:
        return {**self.body, "hash": self.hash, **({"dry_run": True} if self.dry_run else {})}



def receipt_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def request_key(record_ids: Sequence[str] | None, subject: str | None) -> str:
    """The idempotency key: sha256 of the canonical ids (or subject). Unkeyed on purpose: ids and
    subjects are identifiers, not texts (no id is derived from a text since schema 2), and the
    ledger keeps them in plain beside it (deletions, the request's subject, the receipt), so the
    hash confirms nothing they do not show; a keyed one would tie idempotency to the secret."""
    ident = {"subject": subject} if subject is not None else {"records": sorted(set(record_ids or []))}
    return hashlib.sha256(canonical(ident).encode()).hexdigest()


def _prefixes(manifest: dict[str, Any]) -> dict[str, int]:
    return {shard: (0 if v is None else int(v["stage"])) for shard, v in manifest["shards"].items()}


def resolve_request(ledger: Ledger, s, record_ids: Sequence[str] | None, subject: str | None) -> list[Any]:
    """The records a request names (rows with id, split, shard): the given training records, or
    every record of the subject (validation rows too); raises without changing anything."""
    return check_request(record_ids, subject, lambda ids: s.execute(_Q_RECORDS, {"ids": ids}),
                         lambda subj: s.execute(_Q_SUBJECT, {"subject": subj}))


def check_request(record_ids: Sequence[str] | None, subject: str | None, rows_of_ids, rows_of_subject) -> list[Any]:
    """:func:`resolve_request` on given lookups (sorted ids -> rows, subject -> rows)."""
    if (record_ids is None) == (subject is None):
        raise DataError("give exactly one of record_ids or subject")
    if subject is not None:
        if not isinstance(subject, str) or not subject:
            raise DataError(f"subject must be a non-empty string; got {subject!r}")
        rows = list(rows_of_subject(subject))
        if not rows:
            raise UnknownRecordError(f"no record belongs to subject {subject!r}")
        return sorted(rows, key=lambda r: r.id)
    if isinstance(record_ids, str):
        record_ids = [record_ids]
    ids = [str(r) for r in record_ids]
    if not ids:
        raise DataError("record_ids is empty: name at least one record to forget")
    wanted = sorted(set(ids))
    rows = {r.id: r for r in rows_of_ids(wanted)}
    unknown = [i for i in wanted if i not in rows]
    if unknown:
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise UnknownRecordError(f"unknown record id(s): {', '.join(unknown[:5])}{more}; nothing was changed")
    not_train = [i for i in wanted if rows[i].split != "train"]
    if not_train:
        raise DataError(
            f"record(s) {', '.join(not_train[:5])} are validation records, not training data; no model was trained "
            "on them, so there is nothing to forget"
        )
    return [rows[i] for i in wanted]


def record_forget(ledger: Ledger, record_ids: Sequence[str] | None = None, subject: str | None = None,
                  dry_run: bool = False) -> Receipt:
    """Durably record a forget request and the new served manifest; return its receipt.

    ``dry_run``: run the same transaction, then roll it back; the returned receipt (``dry_run``
    set, ``created`` False) says what the request would do, and the ledger is unchanged.
    """
    out = record_forgets(ledger, [(record_ids, subject)], dry_run=dry_run)[0]
    if isinstance(out, Exception):
        raise out
    return out


def record_forgets(ledger: Ledger, requests: Sequence[tuple[Sequence[str] | None, str | None]],
                   dry_run: bool = False, batched: bool = True) -> list[Receipt | S3TError]:
    """Group commit: several forget requests in ONE transaction (one lock, one fsync), in order.

    ``batched`` (the default): the transaction's reads are made once for the whole batch and its
    writes sent together (:mod:`s3t.forget_batch`); False: each request reads and writes on its
    own, as a lone transaction would (the reference the batch is tested against).

    Each request gets what it would get alone: its own deletions, its own manifest version and its
    own receipt, chained to the previous one in the order given. A request that is refused (unknown
    ids, a validation record, ...) is refused before it writes anything, and its error is returned
    in its place; the others commit. Nothing is acknowledged unless the whole transaction commits.
    """
    asked = []
    for record_ids, subject in requests:
        if isinstance(record_ids, str):
            record_ids = [record_ids]
        if record_ids is not None:
            record_ids = sorted({str(r) for r in record_ids})
        asked.append((record_ids, subject, request_key(record_ids if subject is None else None, subject)))
    out: list[Receipt | S3TError] = []
    with ledger.write() as session:
        # Core statements on the transaction's connection: the ORM layer would double their cost
        s = session.connection()
        if batched:
            from .forget_batch import ForgetBatch

            out = ForgetBatch(ledger, session, s).run(asked)
        else:
            for record_ids, subject, key in asked:
                try:
                    out.append(_forget_one(ledger, session, s, record_ids, subject, key))
                except (DataError, UnknownRecordError) as exc:  # raised before the request wrote anything
                    out.append(exc)
        if dry_run:  # rolled back here, the block's exit has nothing left to commit
            session.rollback()
            return [r if not isinstance(r, Receipt) or not r.created else
                    Receipt(r.body, r.hash, created=False, manifest=r.manifest, dry_run=True) for r in out]
    return out


def _forget_one(ledger: Ledger, session, s, record_ids: list[str] | None, subject: str | None, key: str) -> Receipt:
    """One request inside the forget transaction (see the module docstring)."""
    existing = s.scalars(_Q_REQUEST_BY_KEY, {"key": key}).first()
    if existing is not None:
        row = session.get(ReceiptRow, existing)
        return Receipt(json.loads(row.body), row.hash, created=False)
    rows = resolve_request(ledger, s, record_ids, subject)
    _, before = ledger.latest_manifest(s)
    request_id = "req-" + uuid.uuid4().hex[:16]
    now = utcnow()
    # plain INSERT/UPDATE statements (no ORM unit of work): this transaction is the forget latency
    s.execute(_INS_REQUEST, {"id": request_id, "key": key, "subject": subject, "state": "served-exact",
                             "created_at": now})
    already = ledger.deleted_ids(s, among=[r.id for r in rows])
    new = [r.id for r in rows if r.id not in already]
    if new:  # erase the content and its fingerprint; the id stays (it names no text: s3t.store.secret)
        s.execute(_INS_DELETION, [{"record_id": i, "request_id": request_id} for i in new])
        s.execute(_ERASE_TEXT, {"ids": new})
    # a lineage never leaves its shard: only the shards of these records can change
    affected = sorted({int(r.shard) for r in rows if r.split == "train"})
    validation = [r.id for r in rows if r.split != "train"]
    if validation:  # their scores go; every checkpoint they scored is re-scored: any shard can change
        rescore(s, validation)
        tainted = ledger.tainted_checkpoints(s)
        after = ledger.compute_manifest(s, tainted)
    else:
        tainted = ledger.tainted_checkpoints(s, affected)
        after = ledger.compute_manifest(s, tainted, shards=affected, base=before)
    # cut checkpoints are marked purged in this transaction; their files are erased after the
    # commit (and by recovery, which erases the file of every tainted or purged checkpoint)
    cut = list(s.execute(_PURGE, {"ids": sorted(tainted)})) if tainted else []
    version = ledger.add_manifest(s, after, reason=f"forget {request_id}")
    last = s.execute(_Q_LAST_RECEIPT).first()
    body = {
        "request_id": request_id,
        "seq": 1 if last is None else last.seq + 1,
        "record_ids": sorted(r.id for r in rows),
        "newly_deleted": len(new),
        "validation_records": len(validation),
        "subject": subject,
        "affected_shards": affected,
        "served_before": _prefixes(before),
        "served_after": _prefixes(after),
        "manifest_version": version,
        "created_at": now,
        "prev_hash": GENESIS if last is None else last.hash,
    }
    digest = receipt_hash(body)
    s.execute(_INS_RECEIPT, {"request_id": request_id, "seq": body["seq"], "body": canonical(body), "hash": digest})
    return Receipt(body, digest, created=True, cut_paths=tuple(c.path for c in cut), manifest=after)


def rescore(s, erased_validation: Sequence[str]) -> list[str]:
    """Drop the per-record scores of erased validation records and re-score every checkpoint they
    scored on the rest (None when none is left); checkpoints without per-record scores lose
    their score. Returns the re-scored checkpoint ids. Runs inside the forget's transaction."""
    ids = sorted(erased_validation)
    scored = sorted(s.scalars(_SCORED_BY, {"ids": ids}))
    s.execute(_DROP_SCORES, {"ids": ids})
    if scored:
        s.execute(_RESCORE, {"ckpts": scored})
    s.execute(_UNSCORED)
    return scored


def receipts(ledger: Ledger) -> list[Receipt]:
    with ledger.Session() as s:
        return [Receipt(json.loads(r.body), r.hash, created=False) for r in s.scalars(select(ReceiptRow).order_by(ReceiptRow.seq))]


def chain_problems(chain: Sequence[Receipt]) -> list[list[str]]:
    """Per receipt of a chain (in sequence order), its problems: sequence number, link to the
    previous receipt's hash, its own hash. An empty list for a receipt = it verifies."""
    per, prev = [], GENESIS
    for i, r in enumerate(chain, start=1):
        problems = []
        if r.body.get("seq") != i:
            problems.append(f"sequence number {r.body.get('seq')} != {i}")
        if r.body.get("prev_hash") != prev:
            problems.append("prev_hash does not match the previous receipt's hash")
        if receipt_hash(r.body) != r.hash:
            problems.append("hash does not match its content")
        per.append(problems)
        prev = r.hash
    return per


def verify_chain(chain: Sequence[Receipt]) -> list[str]:
    """Problems in a receipt chain (empty list = the chain verifies)."""
    return [f"receipt {r.request_id}: {p}" for r, ps in zip(chain, chain_problems(chain)) for p in ps]


class ForgetGroup:
    """Group commit of concurrent forgets in one process (leader / followers).

    A forget that finds no commit running commits at once, alone: a lone forget waits for nothing.
    Forgets that arrive while a commit runs queue up; when it ends, the first of them commits the
    whole queue in one :func:`record_forgets` transaction and hands each its receipt or error. So
    under load the lock, the transaction and the fsync are shared by every request that arrived
    during the previous commit, and each request still gets its own receipt, in arrival order.
    """

    def __init__(self, ledger: Ledger, max_batch: int = 256):
        self.ledger, self.max_batch = ledger, max_batch
        self._cv = threading.Condition()
        self._queue: list[dict[str, Any]] = []
        self._committing = False
        self.batches = 0  # commits made (a batch of one included): forgets / batches = mean group size
        # (version, body) of the newest manifest a batch of this group committed: every request of a
        # batch swaps straight to it (the first one to swap does; the others find nothing to do)
        self.newest: tuple[int, dict[str, Any] | None] = (0, None)

    def forget(self, record_ids: Sequence[str] | None, subject: str | None) -> Receipt:
        item: dict[str, Any] = {"request": (record_ids, subject)}
        with self._cv:
            self._queue.append(item)
        while True:
            with self._cv:
                while "result" not in item and self._committing:
                    self._cv.wait()
                if "result" in item:
                    break
                self._committing = True  # lead: commit what is queued now, oldest first
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            try:
                results: list[Any] = record_forgets(self.ledger, [b["request"] for b in batch])
            except BaseException as exc:  # nothing committed: every request of the batch fails with it
                results = [exc] * len(batch)
            made = [r for r in results if isinstance(r, Receipt) and r.created and r.manifest is not None]
            with self._cv:
                for b, r in zip(batch, results):
                    b["result"] = r
                if made and made[-1].body["manifest_version"] > self.newest[0]:
                    self.newest = (made[-1].body["manifest_version"], made[-1].manifest)
                self._committing = False
                self.batches += 1
                self._cv.notify_all()
        result = item["result"]
        if isinstance(result, BaseException):
            raise result
        return result
