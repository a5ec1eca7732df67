"""Ledger schema (SQLAlchemy ORM). The ledger is the single source of truth.

Tables
------
meta               key/value: schema version, config JSON, label names
records            every record: split, label, subject, text and its keyed fingerprint ``text_hmac``
                   (HMAC-SHA256 under the workspace secret, s3t.store.secret; both NULL once
                   forgotten), shard/slice
slice_versions     a slice's membership at one point in time (a new version after a deletion)
slice_members      (slice version, record) pairs
sequences          per shard, the B slice orders
checkpoints        one trained stage: shard, prefix, parent, file, sha256, seed, threads
checkpoint_lineage (checkpoint, slice version) — exactly the data a checkpoint saw
validation_scores  (checkpoint, validation record) -> prediction correct; a checkpoint's
                   val_accuracy is their mean, so erasing a validation record re-scores exactly
deletion_requests  forget requests (idempotency key, state)
deletions          deleted record -> request
manifests          served manifest versions (which checkpoint each shard serves)
receipts           hash-chained receipts of forget requests
leases             named leases in the ledger (``retrain``: which replica runs the fleet's background
                   retrain; holder, epoch = fencing token, expiry on the database clock; s3t.store.lease)

Version 2 replaced schema 1's plain ``records.text_sha256`` and text-derived ids (a guessed
text could be confirmed from them); ``s3t.store.migrate`` migrates a version-1 ledger.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 2


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Record(Base):
    __tablename__ = "records"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, index=True)
    split: Mapped[str] = mapped_column(String(16), index=True)  # train | validation
    label: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str | None] = mapped_column(String(255), index=True, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)  # NULL once forgotten
    text_hmac: Mapped[str | None] = mapped_column(String(64), nullable=True)  # keyed; NULL once forgotten
    shard: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    slice: Mapped[int | None] = mapped_column(Integer, nullable=True)


class SliceVersion(Base):
    __tablename__ = "slice_versions"
    __table_args__ = (UniqueConstraint("shard", "slice", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shard: Mapped[int] = mapped_column(Integer)
    slice: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    members_sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)


class SliceMember(Base):
    __tablename__ = "slice_members"
    slice_version_id: Mapped[int] = mapped_column(ForeignKey("slice_versions.id"), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), primary_key=True, index=True)


class SequenceRow(Base):
    __tablename__ = "sequences"
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    order: Mapped[str] = mapped_column(String(255))  # "2,0,1"


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ordinal: Mapped[int] = mapped_column(Integer, unique=True)  # registration order; newest wins
    shard: Mapped[int] = mapped_column(Integer, index=True)
    prefix: Mapped[str] = mapped_column(String(255))
    stage: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("checkpoints.id"), nullable=True)
    path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    seed: Mapped[str] = mapped_column(String(32))
    threads: Mapped[int] = mapped_column(Integer)
    n_examples: Mapped[int] = mapped_column(Integer)
    val_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[str] = mapped_column(String(40))
    purged: Mapped[bool] = mapped_column(Boolean, default=False)  # file erased (lineage hit a deletion)


class CheckpointLineage(Base):
    __tablename__ = "checkpoint_lineage"
    checkpoint_id: Mapped[str] = mapped_column(ForeignKey("checkpoints.id"), primary_key=True)
    slice_version_id: Mapped[int] = mapped_column(ForeignKey("slice_versions.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class ValidationScore(Base):
    __tablename__ = "validation_scores"
    checkpoint_id: Mapped[str] = mapped_column(ForeignKey("checkpoints.id"), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), primary_key=True, index=True)
    correct: Mapped[bool] = mapped_column(Boolean)


class DeletionRequest(Base):
    __tablename__ = "deletion_requests"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the canonical request
    subject: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(32))  # served-exact | retraining | retrained
    created_at: Mapped[str] = mapped_column(String(40))


class Deletion(Base):
    __tablename__ = "deletions"
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("deletion_requests.id"), index=True)


class Manifest(Base):
    __tablename__ = "manifests"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)  # JSON


class Receipt(Base):
    __tablename__ = "receipts"
    request_id: Mapped[str] = mapped_column(ForeignKey("deletion_requests.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    body: Mapped[str] = mapped_column(Text)  # canonical JSON (includes prev_hash)
    hash: Mapped[str] = mapped_column(String(64))


class LeaseRow(Base):
    """A named lease (s3t.store.lease). Added without a schema version bump: ``create_all`` adds
    the table to an existing ledger the first time a newer s3t opens it."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(255), nullable=True)
    epoch: Mapped[int] = mapped_column(Integer, default=0)  # +1 on every acquisition: the fencing token
    acquired_at: Mapped[float] = mapped_column(Float, default=0.0)  # database clock, seconds since 1970
    renewed_at: Mapped[float] = mapped_column(Float, default=0.0)
    expires_at: Mapped[float] = mapped_column(Float, default=0.0)
