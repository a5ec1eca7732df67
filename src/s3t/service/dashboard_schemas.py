"""Response models of the operator dashboard's data endpoint (``GET /dashboard/data``)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field

from .schemas import RequestState, WorkerStatus

CellState = Literal["served", "trained", "cut", "retraining", "missing"]
CELL_STATES: tuple[str, ...] = ("served", "trained", "cut", "retraining", "missing")


class GridCell(BaseModel):
    stage: int = Field(..., description="Stage k (1-based): trained on the first k slices of the sequence.")
    slice: int = Field(..., description="The slice this stage added (the sequence's k-th slice).")
    state: CellState = Field(
        ..., description="served: in the served checkpoint's lineage; trained: clean but not served; cut: its lineage holds "
                         "a deleted record (waiting for a retrain); retraining: cut, and a retrain for it is running; "
                         "missing: not trained.",
    )
    checkpoint: Optional[str] = None
    val_accuracy: Optional[float] = None
    head: bool = Field(False, description="This cell is the shard's served checkpoint itself.")
    cut_by: list[str] = Field(default_factory=list, description="Requests whose deletions cut this stage.")


class GridSequence(BaseModel):
    index: int
    order: list[int] = Field(..., description="The sequence's slice order.")
    valid_prefix: int = Field(..., description="Leading stages that are clean and chained.")
    cells: list[GridCell]


class GridShard(BaseModel):
    shard: int
    served_stage: int = Field(..., description="Served prefix length (0 = the shard is dead).")
    served_sequence: Optional[int] = None
    served_checkpoint: Optional[str] = None
    val_accuracy: Optional[float] = None
    out_of_service: bool = Field(False, description="Its served checkpoint failed the integrity check at load.")
    sequences: list[GridSequence]


class EnsembleSummary(BaseModel):
    manifest_version: int
    shards: int
    slices: int
    budget: int
    selection: str
    live_shards: int
    served: dict[str, int] = Field(..., description="Served prefix length per shard.")
    ensemble_size: int = Field(..., description="Members in the in-memory ensemble answering /predict.")
    out_of_service: dict[str, str]
    validation_accuracy: Optional[float] = Field(
        None, description="Accuracy of the served ensemble on the validation records (None: no live model or no validation data)."
    )
    validation_records: int = Field(..., description="Validation records the accuracy is measured on.")
    deleted_records: int
    requests: int
    pending_retrains: list[str]
    worker: WorkerStatus


class LogEntry(BaseModel):
    seq: int
    request_id: str
    created_at: str
    state: Optional[RequestState]
    records: int = Field(..., description="Records the request names.")
    record_ids: list[str] = Field(..., description="The first record ids (see `records` for the count).")
    newly_deleted: int
    subject: Optional[str] = None
    affected_shards: list[int]
    served_before: dict[str, int]
    served_after: dict[str, int]
    manifest_version: int
    hash: str
    prev_hash: str
    chain_ok: bool = Field(..., description="Sequence number, prev_hash link and hash of this receipt verify.")
    chain_problems: list[str] = Field(default_factory=list)


class DeletionLog(BaseModel):
    chain_ok: bool = Field(..., description="The whole receipt hash chain verifies.")
    problems: list[str]
    total: int = Field(..., description="Receipts in the ledger.")
    entries: list[LogEntry] = Field(..., description="The newest receipts first (bounded).")
    states: dict[str, int] = Field(..., description="Requests per state.")


class HistoryPoint(BaseModel):
    manifest_version: int
    created_at: str
    reason: str
    deleted_records: int = Field(..., description="Records deleted up to this manifest.")
    requests: int = Field(..., description="Forget requests up to this manifest.")
    served: dict[str, int]
    mean_member_accuracy: Optional[float] = Field(
        None, description="Mean validation accuracy of the served checkpoints (from the ledger, recorded at training)."
    )
    ensemble_accuracy: Optional[float] = Field(
        None, description="Measured validation accuracy of the served ensemble (when this service measured that manifest)."
    )
    deleted_subjects: int = Field(
        0, description="Distinct training subjects with a deleted record up to this manifest (a record without a subject "
                       "counts as its own): the x axis of the capacity plot when capacity_unit is 'subjects'.")
    live_first_slices: int = Field(..., description="Distinct (shard, first slice) whose stage-1 checkpoint was clean.")
    remaining_capacity: float = Field(..., description="m·L·H(live first slices): expected further deletions until every "
                                                       "shard is dead, in the capacity's capacity_unit.")


CapacityUnit = Literal["subjects", "records"]


class Capacity(BaseModel):
    formula: str
    capacity_unit: CapacityUnit = Field(
        "records", description="What the capacity counts. 'subjects' when the plan places by subject (placement "
                               "'subject', or 'auto') and the training records have subjects: a subject deletion then cuts "
                               "one slice and m·L·H(·) counts subjects (see s3t.plan.subject_rate); else 'records'.")
    expected_total: float = Field(..., description="m·L·H(m·min(B, L)): the plan's deletion rate when fresh.")
    first_slices: int = Field(..., description="Distinct (shard, first slice) pairs of the plan.")
    live_first_slices: int
    remaining: float = Field(..., description="m·L·H(live first slices) now.")


class DashboardData(BaseModel):
    generated_at: str
    workspace: str
    summary: EnsembleSummary
    counts: dict[str, int] = Field(..., description="Grid cells per state.")
    grid: list[GridShard]
    log: DeletionLog
    capacity: Capacity
    history: list[HistoryPoint] = Field(..., description="One point per served manifest version, oldest first (bounded).")
