"""Request and response models of the HTTP service (pydantic): what /docs and /openapi.json show."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictStr, model_validator

MAX_TEXTS = 1024  # per /predict request
MAX_IDS = 10_000  # per /forget request

RequestState = Literal["served-exact", "retraining", "retrained"]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"texts": ["a gorgeous, moving film"]}]})

    texts: list[StrictStr] = Field(..., min_length=1, max_length=MAX_TEXTS, description="Texts to classify.")


class PredictResponse(BaseModel):
    labels: list[str] = Field(..., description="Predicted label of each text.")
    probabilities: list[list[float]] = Field(..., description="Per text, ensemble probability of each class (order of `classes`).")
    classes: list[str]
    served: dict[str, int] = Field(
        ..., description="Per shard, the length of the served prefix that answered (0 = shard out of service)."
    )


class ForgetRequest(BaseModel):
    """Exactly one of ``record_ids`` or ``subject`` (alias ``subject_id``)."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True,
        json_schema_extra={"examples": [{"record_ids": ["r-17", "r-42"]}, {"subject": "user-42"}]},
    )

    record_ids: Optional[list[StrictStr]] = Field(None, min_length=1, max_length=MAX_IDS, description="Training record ids to forget.")
    subject: Optional[StrictStr] = Field(
        None, min_length=1, validation_alias=AliasChoices("subject", "subject_id"),
        description="Forget every training record of this data subject instead.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "ForgetRequest":
        if (self.record_ids is None) == (self.subject is None):
            raise ValueError("give exactly one of record_ids or subject")
        return self


class Receipt(BaseModel):
    """A forget receipt: ``hash`` = sha256 of the canonical JSON of every field except hash/created/state."""

    model_config = ConfigDict(extra="allow")  # later receipt fields pass through (so the hash stays checkable)

    request_id: str
    seq: int = Field(..., description="Position in the receipt chain (1-based).")
    record_ids: list[str]
    newly_deleted: int = Field(..., description="Records this request deleted (others were deleted earlier).")
    subject: Optional[str] = None
    affected_shards: list[int]
    served_before: dict[str, int] = Field(..., description="Served prefix length per shard before the request.")
    served_after: dict[str, int] = Field(..., description="Served prefix length per shard right after it (exact).")
    manifest_version: int
    created_at: str
    prev_hash: str = Field(..., description="Hash of the previous receipt (64 zeros for the first).")
    hash: str
    created: bool = Field(..., description="False: the same request was made before; this is its original receipt.")
    state: RequestState


class ForgetState(BaseModel):
    request_id: str
    state: RequestState = Field(
        ..., description="served-exact: the cut is served; retraining: in the background retrain; retrained: rebuilt without the records."
    )
    receipt: Receipt


class WorkerStatus(BaseModel):
    enabled: bool
    alive: bool = Field(..., description="The background retrain thread is running.")
    busy: bool = Field(..., description="A retrain is running now.")
    runs: int = Field(..., description="Retrains finished since start-up.")
    failures: int
    last_error: Optional[str] = None
    last_report: Optional[dict] = None
    policy: Optional[str] = Field(None, description="Retrain policy: immediate, accuracy or interval.")
    restore: Optional[str] = Field(None, description="How a retrain brings cut shards back: progressive or naive.")
    last_decision: Optional[str] = Field(None, description="Why the policy last did (or did not) start a retrain.")


class StatusResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    workspace: str
    shards: int
    slices: int
    budget: int
    selection: str
    sequences: dict[str, list[list[int]]]
    manifest_version: int
    served: dict[str, int] = Field(..., description="Served prefix length per shard in the ledger's manifest.")
    served_detail: dict[str, Optional[dict]]
    live_shards: int
    deleted_records: int
    requests: int
    checkpoints: int
    classes: list[str]
    ensemble_size: int = Field(..., description="Members in the in-memory ensemble answering /predict.")
    out_of_service: dict[str, str] = Field(..., description="Shards whose served checkpoint failed its integrity check -> checkpoint id.")
    pending_retrains: list[str] = Field(..., description="Requests in state served-exact or retraining.")
    worker: WorkerStatus


class AuditCheck(BaseModel):
    name: str
    ok: bool
    detail: str


class AuditResponse(BaseModel):
    ok: bool
    checks: list[AuditCheck]
    retraining: bool = Field(
        ..., description="A background retrain was still running after /audit waited for it (stages registered but not yet swapped in then fail `rule`)."
    )


class Health(BaseModel):
    ok: bool = True


class ErrorBody(BaseModel):
    type: str = Field(..., description="Error class, e.g. UnknownRecordError, ValidationError, Unauthorized.")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
