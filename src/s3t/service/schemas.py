"""Request and response models of the HTTP service (pydantic): what /docs and /openapi.json show."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, StringConstraints,
                      model_validator)

MAX_TEXTS = 1024  # per /predict request
MAX_IDS = 10_000  # per /forget request

RequestState = Literal["served-exact", "retraining", "retrained"]


NO_NUL = "^[^\\u0000]*$"  # JSON Schema pattern: no NUL character


def _unicode_text(value: str) -> str:
    """JSON can escape a lone UTF-16 surrogate (``"\\ud800"``); that is not text: the tokenizer and
    the ledger cannot encode it, so it is a 422 here, not a 500 later."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (a lone surrogate)") from None
    return value


def _key(value: str) -> str:
    """A record id or a subject: text without NUL (PostgreSQL cannot store one, so no ledger holds
    such an id; it is a 422 on every backend, not a 500 on PostgreSQL and a 404 on SQLite)."""
    if "\x00" in _unicode_text(value):
        raise ValueError("contains a NUL character (no record id or subject does)")
    return value


Text = Annotated[StrictStr, AfterValidator(_unicode_text)]
RecordId = Annotated[StrictStr, AfterValidator(_key), Field(json_schema_extra={"pattern": NO_NUL})]
SubjectName = Annotated[StrictStr, StringConstraints(min_length=1), AfterValidator(_key),
                        Field(json_schema_extra={"pattern": NO_NUL})]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"texts": ["a gorgeous, moving film"]}]})

    texts: list[Text] = Field(..., min_length=1, max_length=MAX_TEXTS, description="Texts to classify.")


class PredictResponse(BaseModel):
    labels: list[str] = Field(..., description="Predicted label of each text.")
    probabilities: list[list[float]] = Field(..., description="Per text, ensemble probability of each class (order of `classes`).")
    classes: list[str]
    served: dict[str, int] = Field(
        ..., description="Per shard, the length of the served prefix that answered (0 = shard out of service)."
    )
    manifest_version: int = Field(
        ..., description="The served manifest version that answered: never older than the latest version committed "
                         "(by any replica sharing the ledger) before this request arrived.")
    checkpoints: dict[str, str] = Field(
        ..., description="Per shard that answered, the checkpoint that answered (the manifest's entry for that shard).")


MAX_PROMPTS = 16  # per /generate request (S3T_MAX_PROMPTS lowers or raises it per server)
MAX_NEW_TOKENS = 512  # per /generate answer (S3T_MAX_NEW_TOKENS)
MAX_PROMPT_CHARS = 4_000  # per prompt (about 1,000 tokens of English)
MAX_SEED = 2 ** 32 - 1


def _prompt(value: str) -> str:
    if not value.strip():
        raise ValueError("empty or whitespace only (a prompt needs text)")
    return value


def _integral(value: Any) -> Any:
    """JSON Schema's ``integer`` includes numbers like ``5.0``; StrictInt alone would refuse them (strings and
    booleans stay refused)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[StrictInt, BeforeValidator(_integral)]
Prompt = Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_PROMPT_CHARS), AfterValidator(_unicode_text),
                   AfterValidator(_prompt), Field(json_schema_extra={"pattern": "\\S"})]


class GenerateRequest(BaseModel):
    """Prompts for ``POST /generate`` (a causal-LM workspace) and how to decode them. The server's bounds
    on ``prompts`` and ``max_new_tokens`` are in its /openapi.json (see :mod:`s3t.service.generate_routes`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"prompts": ["Where was Velmora Quistane born?"], "max_new_tokens": 32}]})

    prompts: list[Prompt] = Field(..., min_length=1, max_length=MAX_PROMPTS,
                                  description="Prompts, each answered as one user turn in the model's chat template.")
    max_new_tokens: JsonInt = Field(64, ge=1, le=MAX_NEW_TOKENS, description="Tokens generated per answer at most.")
    combine: Literal["probs", "logprobs"] = Field(
        "probs", description="How the live shards' next-token distributions mix: mean of probabilities, or of "
                             "log-probabilities (renormalised).")
    temperature: Annotated[float, Field(strict=True, ge=0, le=100)] = Field(
        0.0, description="0: greedy; above 0: sample from the mixed distribution at this temperature.")
    top_k: JsonInt = Field(0, ge=0, le=1_000_000, description="With sampling, keep only the k likeliest tokens (0 = all).")
    seed: JsonInt = Field(0, ge=0, le=MAX_SEED, description="Seed of each answer's sampling generator (same seed, "
                                                               "same answer).")


class GeneratedAnswer(BaseModel):
    text: str = Field(..., description="The answer (special tokens removed).")
    tokens: int = Field(..., description="Tokens generated (the end-of-turn token not counted).")
    finish_reason: Literal["stop", "length"] = Field(
        ..., description="stop: the model ended its turn; length: max_new_tokens reached.")
    manifest_version: int = Field(..., description="The served manifest whose members wrote this whole answer.")
    served: dict[str, int] = Field(
        ..., description="Per shard, the length of the served prefix that took part (0 = shard out of service).")


class GenerateResponse(BaseModel):
    answers: list[GeneratedAnswer] = Field(..., description="One answer per prompt, in order.")


def _forget_schema(schema: dict[str, Any]) -> None:
    """The body is one of three shapes (``oneOf``): record ids, a subject, or a subject under its old
    name ``subject_id``; the other keys absent or null. ``_exactly_one`` below is the same rule."""
    props = schema["properties"]

    def shape(title: str, key: str) -> dict[str, Any]:
        return {"title": title, "type": "object", "required": [key],
                "properties": {k: dict(props[k]["anyOf"][0]) if k == key else {"type": "null"} for k in props}}

    schema["oneOf"] = [shape("ForgetRecords", "record_ids"), shape("ForgetSubject", "subject"),
                       shape("ForgetSubjectId", "subject_id")]
    props["subject_id"]["deprecated"] = True
    schema["examples"] = [{"record_ids": ["r-17", "r-42"]}, {"subject": "user-42"}]


class ForgetRequest(BaseModel):
    """Exactly one of ``record_ids`` or ``subject`` (``subject_id``: its old name); the others absent or null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_forget_schema)

    record_ids: Optional[list[RecordId]] = Field(None, min_length=1, max_length=MAX_IDS, description="Training record ids to forget.")
    subject: Optional[SubjectName] = Field(None, description="Forget every training record of this data subject instead.")
    subject_id: Optional[SubjectName] = Field(None, description="Old name of `subject` (deprecated).")

    @model_validator(mode="after")
    def _exactly_one(self) -> "ForgetRequest":
        given = [v for v in (self.record_ids, self.subject, self.subject_id) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of record_ids or subject")
        if self.subject_id is not None:
            self.subject, self.subject_id = self.subject_id, None
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
    lease: Optional[dict] = Field(
        None, description="The fleet's retrain lease (one retrain for every replica sharing the ledger): holder, epoch, "
                          "seconds to expiry, whether held; this_replica (this replica's holder id), deferred (wakes that "
                          "found another replica holding it), takeovers (times this replica took it over from a dead holder).")


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


class SigningKey(BaseModel):
    key_id: str = Field(..., description="First 16 hex digits of sha256 over the raw Ed25519 public key.")
    public_pem: str
    valid_from: str
    valid_until: Optional[str] = Field(None, description="None while it is the current key.")


class SigningKeys(BaseModel):
    current: str = Field(..., description="The current public key (PEM): what `s3t certificate verify --key` needs.")
    keys: list[SigningKey] = Field(..., description="Every key this workspace has signed with, old ones included.")


class Certificate(BaseModel):
    """A signed deletion certificate (s3t.certificate); check it offline with the public key."""

    model_config = ConfigDict(extra="allow")
    format: str
    issued_at: str
    request: dict[str, Any]
    served: dict[str, Any]
    signature: dict[str, str]


class ErrorBody(BaseModel):
    type: str = Field(..., description="Error class, e.g. UnknownRecordError, ValidationError, Unauthorized.")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
