"""Group commit's batch: the forget transaction of many requests at the cost of about one.

:func:`s3t.forget.record_forgets` commits a batch of forget requests in one transaction. Done one
request at a time, each request read the latest manifest, the last receipt, the deletions, the
tainted checkpoints and the chains of its shards, then wrote its rows: about seventeen statements
per request, every one a round trip on PostgreSQL, all inside the ledger's write lock. Here the
reads are made once for the batch (under the same lock, so they see every earlier commit), the
serving rule then runs in memory request after request, each seeing the deletions of the requests
before it, and the rows are written together at the end (``executemany``). A batch of one costs
what a lone forget did; a batch of sixty-four costs about the same again, not sixty-four times it.

What each request gets is what it would get alone, in the order given (a test replays random
batches one request per transaction and compares every manifest, receipt and row): its own
deletions, erasure, cut checkpoints, manifest version and a receipt chained to the previous one.
A request that erases validation rows (a subject's) re-scores checkpoints in the database: the
batch writes what it holds, runs that request the one-at-a-time way and reads afresh after it.

Torch-free, like :mod:`s3t.forget`.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from typing import Any, Sequence

from sqlalchemy import bindparam, select

from .errors import DataError, S3TError, UnknownRecordError
from .forget import (
    _ERASE_TEXT, _IDS, _INS_DELETION, _INS_RECEIPT, _INS_REQUEST, _PURGE, _Q_LAST_RECEIPT, _Q_RECORDS, GENESIS, Receipt,
    _forget_one, _prefixes, check_request, receipt_hash)
from .store.ledger import (
    _INS_MANIFEST, _NOTIFY_MANIFEST, _Q_DELETED_AMONG, _Q_SEQUENCES_IN_SHARDS, _Q_TAINTED_IN_SHARDS,
    _SHARDS, Ledger, build_chains, canonical, manifest_from, utcnow)
from .store.schema import Checkpoint, CheckpointLineage, DeletionRequest, Receipt as ReceiptRow, Record, SliceMember

_Q_KEYS = select(DeletionRequest.key, DeletionRequest.id).where(DeletionRequest.key.in_(bindparam("keys", expanding=True)))
_Q_SUBJECTS = (select(Record.id, Record.split, Record.shard, Record.subject)
               .where(Record.subject.in_(bindparam("subjects", expanding=True))))
_Q_SLICES_OF = select(SliceMember.record_id, SliceMember.slice_version_id).where(SliceMember.record_id.in_(_IDS))
_Q_CKPTS = (select(Checkpoint.id, Checkpoint.shard, Checkpoint.prefix, Checkpoint.parent_id, Checkpoint.purged,
                   Checkpoint.val_accuracy, Checkpoint.path)
            .where(Checkpoint.shard.in_(_SHARDS)).order_by(Checkpoint.ordinal))
_Q_LINEAGE = (select(CheckpointLineage.checkpoint_id, CheckpointLineage.slice_version_id)
              .join(Checkpoint, Checkpoint.id == CheckpointLineage.checkpoint_id).where(Checkpoint.shard.in_(_SHARDS)))


class _Shards:
    """The serving rule's inputs for some shards, read once: checkpoints (newest registration per
    stage), sequences, lineages, and which checkpoints are tainted / purged (kept current in memory)."""

    def __init__(self, s, shards: list[int]):
        rows = list(s.execute(_Q_CKPTS, {"shards": shards}))
        self.current = {}
        for c in rows:  # the newest registration wins
            self.current[(c.shard, c.prefix)] = c
        self.path = {c.id: c.path for c in rows}
        self.shard_of = {c.id: c.shard for c in rows}
        self.purged = {c.id: bool(c.purged) for c in rows}
        self.seqs = defaultdict(list)
        for shard, order in s.execute(_Q_SEQUENCES_IN_SHARDS, {"shards": shards}):
            self.seqs[shard].append((shard, order))
        self.lineage = defaultdict(set)
        for cid, sv in s.execute(_Q_LINEAGE, {"shards": shards}):
            self.lineage[cid].add(sv)
        self.tainted = set(s.scalars(_Q_TAINTED_IN_SHARDS, {"shards": shards}))

    def cut(self, bad_slices: set[int], shards: list[int]) -> list[str]:
        """Taint every checkpoint whose lineage holds one of ``bad_slices``; purge (in memory) and
        return the tainted checkpoints of ``shards`` not purged yet."""
        if bad_slices:
            self.tainted |= {cid for cid, svs in self.lineage.items() if svs & bad_slices}
        cut = sorted(c for c in self.tainted if self.shard_of.get(c) in shards and not self.purged[c])
        for c in cut:
            self.purged[c] = True
        return cut

    def manifest(self, shards: list[int], base: dict[str, Any]) -> dict[str, Any]:
        seqs = [row for shard in shards for row in self.seqs.get(shard, [])]
        return manifest_from(build_chains(self.current, seqs, self.tainted, self.purged), base)


class ForgetBatch:
    """One group commit (see the module docstring): ``run(asked)`` inside ``ledger.write()``;
    ``asked``: (sorted record ids or None, subject or None, idempotency key) per request."""

    def __init__(self, ledger: Ledger, session, s):
        self.ledger, self.session, self.s = ledger, session, s
        self.state: _Shards | None = None  # the batch's reads; None: read (again) at the next request
        self.rows: dict[str, list] = defaultdict(list)  # pending writes, by table
        self.made: dict[str, tuple[dict, str]] = {}  # key -> (body, hash) of a receipt this batch created

    def run(self, asked: Sequence[tuple[list[str] | None, str | None, str]]) -> list[Any]:
        s = self.s
        found = dict(s.execute(_Q_KEYS, {"keys": sorted({k for _, _, k in asked})}).all())
        ids = sorted({i for r, subj, _ in asked if subj is None and r for i in r})
        by_id = {r.id: r for r in s.execute(_Q_RECORDS, {"ids": ids})} if ids else {}
        subjects = sorted({subj for _, subj, _ in asked if isinstance(subj, str) and subj})
        by_subject: dict[str, list] = defaultdict(list)
        for r in (s.execute(_Q_SUBJECTS, {"subjects": subjects}) if subjects else []):
            by_subject[r.subject].append(r)
        resolved: list[list | S3TError] = []
        for record_ids, subject, _ in asked:  # refused requests are refused before anything is written
            try:
                resolved.append(check_request(record_ids, subject, lambda w: [by_id[i] for i in w if i in by_id],
                                              lambda subj: by_subject.get(subj, [])))
            except (DataError, UnknownRecordError) as exc:
                resolved.append(exc)
        self.train_rows = list({r.id: r for rows in resolved if isinstance(rows, list)
                                for r in rows if r.split == "train"}.values())
        out: list[Any] = []
        for (record_ids, subject, key), rows in zip(asked, resolved):
            if key in self.made:  # the same request twice in one batch: the first one's receipt
                body, digest = self.made[key]
                out.append(Receipt(json.loads(canonical(body)), digest, created=False))
            elif key in found:  # a retry of a request committed before this batch
                row = self.session.get(ReceiptRow, found[key])
                out.append(Receipt(json.loads(row.body), row.hash, created=False))
            elif isinstance(rows, S3TError):
                out.append(rows)
            elif any(r.split != "train" for r in rows):  # validation rows: re-scoring runs in the database
                self.flush()
                try:
                    out.append(_forget_one(self.ledger, self.session, s, record_ids, subject, key))
                except (DataError, UnknownRecordError) as exc:  # raised before the request wrote anything
                    out.append(exc)
                    continue
                self.made[key] = (out[-1].body, out[-1].hash)
                self.state = None  # checkpoints re-scored, manifest recomputed: read again
            else:
                out.append(self._one(rows, subject, key))
        self.flush()
        return out

    def _load(self) -> None:
        """The batch's reads: latest manifest, last receipt, deletions among the batch's records,
        their slice versions, and the serving rule's inputs of their shards."""
        s = self.s
        self.version, self.manifest = self.ledger.latest_manifest(s)
        last = s.execute(_Q_LAST_RECEIPT).first()
        self.last = (0, None) if last is None else (last.seq, last.hash)
        wanted = sorted(r.id for r in self.train_rows)
        self.deleted = set(s.scalars(_Q_DELETED_AMONG, {"ids": wanted}))
        self.slices_of: dict[str, set[int]] = defaultdict(set)
        for rid, sv in s.execute(_Q_SLICES_OF, {"ids": wanted}):
            self.slices_of[rid].add(sv)
        self.state = _Shards(s, sorted({int(r.shard) for r in self.train_rows}))

    def _one(self, rows: list, subject: str | None, key: str) -> Any:
        """One request on the batch's state (see :func:`s3t.forget._forget_one`, its one-at-a-time form)."""
        if self.state is None:
            self._load()
        request_id = "req-" + uuid.uuid4().hex[:16]
        now = utcnow()
        before = self.manifest
        self.rows["request"].append({"id": request_id, "key": key, "subject": subject, "state": "served-exact",
                                     "created_at": now})
        new = [r.id for r in rows if r.id not in self.deleted]
        self.deleted.update(new)
        self.rows["deletion"] += [{"record_id": i, "request_id": request_id} for i in new]
        self.rows["erase"] += new
        affected = sorted({int(r.shard) for r in rows})
        cut = self.state.cut(set().union(*(self.slices_of[i] for i in new)), affected)
        self.rows["purge"] += cut
        after = self.state.manifest(affected, before)
        self.version += 1
        self.manifest = after
        self.rows["manifest"].append({"version": self.version, "created_at": utcnow(),
                                      "reason": f"forget {request_id}", "body": canonical(after)})
        seq, prev = self.last
        body = {
            "request_id": request_id,
            "seq": seq + 1,
            "record_ids": sorted(r.id for r in rows),
            "newly_deleted": len(new),
            "validation_records": 0,
            "subject": subject,
            "affected_shards": affected,
            "served_before": _prefixes(before),
            "served_after": _prefixes(after),
            "manifest_version": self.version,
            "created_at": now,
            "prev_hash": GENESIS if prev is None else prev,
        }
        digest = receipt_hash(body)
        self.last = (seq + 1, digest)
        self.rows["receipt"].append({"request_id": request_id, "seq": body["seq"], "body": canonical(body),
                                     "hash": digest})
        self.made[key] = (body, digest)
        return Receipt(body, digest, created=True, cut_paths=tuple(self.state.path[c] for c in cut), manifest=after)

    def flush(self) -> None:
        """Write the pending rows, in foreign-key order, one statement per table."""
        s, rows = self.s, self.rows
        if rows["request"]:
            s.execute(_INS_REQUEST, rows["request"])
        if rows["deletion"]:
            s.execute(_INS_DELETION, rows["deletion"])
        if rows["erase"]:
            s.execute(_ERASE_TEXT, {"ids": sorted(set(rows["erase"]))})
        if rows["purge"]:
            s.execute(_PURGE, {"ids": sorted(set(rows["purge"]))})
        if rows["manifest"]:
            s.execute(_INS_MANIFEST, rows["manifest"])
            if self.ledger.dialect == "postgresql":  # one notice per batch: a listener reads the latest
                s.execute(_NOTIFY_MANIFEST, {"version": str(rows["manifest"][-1]["version"])})
        if rows["receipt"]:
            s.execute(_INS_RECEIPT, rows["receipt"])
        rows.clear()
