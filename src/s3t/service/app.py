"""The HTTP service: ``create_app(workspace)`` returns a FastAPI app (testable without a server).

Endpoints: ``POST /predict``, ``POST /forget`` (forget token), ``GET /forget/{request_id}``,
``GET /status``, ``GET /audit`` (read token), ``GET /healthz``; docs at ``/docs``; the operator
dashboard at ``/`` (see :mod:`s3t.service.web`). Everything that names a request, a record or a
subject (receipts, request state, the deletion log, status, audit details) needs the read token
or the forget token (:mod:`s3t.service.auth`); ``/predict`` and ``/healthz`` are open unless
``protect_predict``. Every error has one
JSON shape, ``{"error": {"type": ..., "message": ...}}``, mapped from :mod:`s3t.errors` here; a body
that is not JSON, not UTF-8 or nested too deeply is a 422 like any other invalid body.
``/openapi.json`` documents every status and body shape each operation answers with, the two
tokens as security schemes and the link from a forget's receipt to its state; the test suite
checks that with a property-based fuzzer (``tests/service/test_contract.py``).
Endpoints are plain ``def``: FastAPI runs them in its thread pool, so a prediction never
blocks the event loop and never waits for a retrain (see :mod:`s3t.service.worker`).

Replicas: several apps (processes, machines) may serve one PostgreSQL ledger. Each prediction
passes the version fence first (:mod:`s3t.service.fence`: no answer from a manifest older than
the latest committed before the request arrived) and says which manifest version and which
checkpoints answered; each replica LISTENs for new manifests; one retrain runs for the whole
fleet, under the ledger's ``retrain`` lease (:mod:`s3t.store.lease`, :mod:`s3t.service.worker`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from contextlib import asynccontextmanager, contextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Optional

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import errors
from ..config import RESTORES
from ..estimator import S3T
from ..forget import Receipt as ReceiptRecord
from ..serve.policy import RetrainPolicy
from ..store.schema import Receipt as ReceiptRow
from . import schemas as sc
from ..store.lease import DEFAULT_TTL, LEASE_TTL_ENV, RETRAIN, Lease
from .auth import require_forget_token, require_read_token, resolve_read_token, resolve_token
from .fence import ManifestFence, ManifestListener, pass_fence, snapshot
from .generate_routes import generate_router, require_task
from .web import add_dashboard
from .worker import RetrainWorker, pending_requests, recover_on_startup

log = logging.getLogger("s3t")

MAX_BODY = 10 * 1024 * 1024  # bytes; larger bodies get 413 before any parsing
AUDIT_WAIT = 300.0  # seconds /audit waits for a running retrain (so it never sees a half-done swap)

STATUS = {  # first match along the exception's MRO wins; other S3TErrors are 500
    errors.UnknownRecordError: 404,
    errors.DataError: 422,
    errors.ConfigError: 422,
    errors.NoLiveModelError: 503,
    errors.LedgerBusyError: 503,  # another process held the ledger's write lock too long: retry
    errors.NotFittedError: 409,
    errors.WorkspaceError: 409,
    errors.IntegrityError: 500,
}
ERRORS = {code: {"model": sc.ErrorResponse} for code in (404, 409, 422, 500, 503)}
UNAUTHORIZED = {401: {"model": sc.ErrorResponse, "description": "Missing or invalid bearer token",
                      "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}}}}
AUTH_ERRORS = {**UNAUTHORIZED, **ERRORS}
TOO_LARGE = {413: {"model": sc.ErrorResponse, "description": f"Request body over {MAX_BODY} bytes"}}
FORGET_LINKS = {  # OpenAPI links: a client (or a fuzzer) follows a receipt to its request's state
    "GetForgetState": {
        "operationId": "forget_state",
        "parameters": {"request_id": "$response.body#/request_id"},
        "description": "The request's state (served-exact, retraining, retrained) and its receipt: GET /forget/{request_id}.",
    },
    "GetForgetCertificate": {
        "operationId": "forget_certificate",
        "parameters": {"request_id": "$response.body#/request_id"},
        "description": "The request's signed deletion certificate: GET /forget/{request_id}/certificate.",
    },
}


def error_response(status: int, kind: str, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: 413 for bodies over ``limit`` bytes, by Content-Length or as streamed,
    before the app parses anything. The (bounded) body is buffered and replayed to the app."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = error_response(413, "PayloadTooLarge", f"request body exceeds {self.limit} bytes")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await too_large(scope, receive, send)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _receipt_out(receipt: ReceiptRecord, state: str, created: bool) -> sc.Receipt:
    return sc.Receipt(**receipt.to_dict(), created=created, state=state)


def create_app(workspace: str | Path, db: Optional[str] = None, token: Optional[str] = None, background: bool = True,
               retrain_interval: float = 30.0, read_token: Optional[str] = None, protect_predict: bool = False,
               retrain_policy: Optional[str] = None, restore: Optional[str] = None, fence: bool = True,
               listen: Optional[bool] = None, lease_ttl: Optional[float] = None,
               forget_batch: Optional[int] = None, erasure_interval: Optional[float] = None) -> FastAPI:
    """Build the service over a trained workspace (loaded and recovered now; errors raise here).

    ``token``: bearer token for POST /forget (else ``S3T_TOKEN``, else ``WORKSPACE/token``,
    generated if missing). ``read_token``: bearer token for reads (else ``S3T_READ_TOKEN``, else
    ``WORKSPACE/read_token``, generated if missing); the forget token reads too.
    ``protect_predict``: /predict needs a read (or forget) token as well.
    ``background``: retrain cut stages after forgets in a background
    thread (else leave it to ``s3t retrain``). ``retrain_interval``: seconds between retries.
    ``retrain_policy`` ('immediate' | 'accuracy' | 'interval') and ``restore`` ('progressive' |
    'naive') override the workspace's ``serve.retrain`` / ``serve.restore``.

    Replicas (:mod:`s3t.service.fence`, :mod:`s3t.store.lease`): ``fence`` checks the ledger's
    latest manifest version before every prediction (off only to measure what it costs: then a
    replica answers from whatever it last swapped to). ``listen``: LISTEN for new manifests
    (default: on for PostgreSQL). ``lease_ttl``: seconds before a dead retrain-lease holder is
    taken over (else ``S3T_LEASE_TTL``, else 20). ``forget_batch`` overrides ``serve.forget_batch``
    (most forgets per group commit; 1: each alone), ``erasure_interval`` ``serve.erasure_interval``
    (least seconds between two physical erasures of the ledger's files).
    """
    model = S3T.load(workspace, db=db)
    overrides = {k: v for k, v in (("forget_batch", forget_batch), ("erasure_interval", erasure_interval)) if v is not None}
    if overrides:  # checked by ServeConfig as if the workspace had them
        from dataclasses import replace

        model.config = replace(model.config, serve=replace(model.config.serve, **overrides))
    if lease_ttl is None:
        lease_ttl = float(os.environ.get(LEASE_TTL_ENV) or DEFAULT_TTL)
    lease = Lease(model.ws_.ledger, RETRAIN, ttl=lease_ttl)
    fencer = ManifestFence(model.ws_.ledger) if fence else None
    if listen is None:
        listen = model.ws_.ledger.dialect == "postgresql"
    secret = resolve_token(model.ws_.path, token)
    reader = Depends(require_read_token(resolve_read_token(model.ws_.path, read_token), secret))
    # No lock around forgets or this swap: S3T.forget is thread-safe (group commit, monotonic swaps,
    # a file lock on served.json, one file-step thread); a lock here would commit forgets one by one.
    def after_retrain() -> None:  # on the worker's one thread
        model.ws_.sync_served()
        if getattr(model, "_ensemble", None) is not None:
            model._sync()  # swap the in-memory ensemble now, not on the next prediction

    serve_cfg = model.config.serve
    policy = RetrainPolicy(retrain_policy or serve_cfg.retrain, serve_cfg.retrain_delta, serve_cfg.retrain_every)
    if restore is not None and restore not in RESTORES:
        raise errors.ConfigError(f"restore must be one of {list(RESTORES)}; got {restore!r}")
    worker = RetrainWorker(model, after_retrain, interval=retrain_interval, policy=policy,
                           restore=restore, lease=lease) if background else None

    def on_manifest(version: Optional[int]) -> None:  # the listener's thread: swap before the next request
        if getattr(model, "_ensemble", None) is not None and (version is None or version > model._ensemble.manifest_version):
            model._sync()
        if worker is not None:  # a forget through another replica queues a retrain for the fleet
            worker.nudge()

    listener = ManifestListener(model.ws_.ledger, on_manifest,
                                on_lease=(lambda _name: worker.notify()) if worker is not None else None) if listen else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        recover_on_startup(model, lease)
        try:
            model.ensemble_  # load the backbone and the served checkpoints before taking traffic
        except errors.S3TError as exc:
            log.error("ensemble not loaded at start-up: %s", exc)
        if listener is not None:
            listener.start()
        if worker is not None:
            worker.start()
        yield
        if listener is not None:
            await asyncio.to_thread(listener.stop)
        if worker is not None:
            await asyncio.to_thread(worker.stop)
        if fencer is not None:
            fencer.close()
        model.ws_.ledger.close()

    app = FastAPI(
        title="s3t", version="0.1.0", lifespan=lifespan,
        description="Exact machine unlearning (S3T): predictions from checkpoints that never saw a deleted record; "
                    "forget in milliseconds, retrain in the background.",
    )
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.state.model, app.state.worker = model, worker
    app.state.fence, app.state.listener, app.state.lease = fencer, listener, lease

    @app.exception_handler(errors.S3TError)
    async def s3t_error(request: Request, exc: errors.S3TError):
        status = next((STATUS[k] for k in type(exc).__mro__ if k in STATUS), 500)
        return error_response(status, type(exc).__name__, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return error_response(422, "ValidationError", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI: a body it could not parse
            why = {UnicodeDecodeError: "not UTF-8", RecursionError: "nested too deeply"}.get(type(exc.__cause__), "unreadable")
            return error_response(422, "ValidationError", f"body: not a JSON document ({why})")
        kind = HTTPStatus(exc.status_code).phrase.title().replace(" ", "").replace("-", "")
        return error_response(exc.status_code, kind, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):  # the server still logs the traceback
        return error_response(500, "InternalServerError", "internal error; the server log has the details")

    @app.post("/predict", response_model=sc.PredictResponse, summary="Classify texts with the served ensemble",
              operation_id="predict", dependencies=[reader] if protect_predict else [],
              responses={**(AUTH_ERRORS if protect_predict else ERRORS), **TOO_LARGE})
    def predict(req: sc.PredictRequest) -> sc.PredictResponse:
        require_task(model, "classification")  # a causal-LM workspace answers POST /generate
        ens = model.ensemble_
        # the fence in use (scripts/replicas_bench.py switches it to measure its cost)
        pass_fence(app.state.fence, model)
        for _ in range(5):  # the member table this prediction used (retry if swapped meanwhile)
            version, members = snapshot(model)
            proba = ens.predict_proba(req.texts)
            if ens.members is members:  # every swap makes a new table: unchanged throughout
                break
        else:  # swapped under it five times in a row: answer holding the swap lock
            from ..estimator import _SYNC_LOCK

            with _SYNC_LOCK:
                version, members = snapshot(model)
                proba = ens.predict_proba(req.texts)
        classes = [str(c) for c in model.classes_]
        return sc.PredictResponse(
            labels=[classes[i] for i in proba.argmax(-1)], probabilities=proba.tolist(), classes=classes,
            served={str(s): (members[s].stage if s in members else 0) for s in range(model.config.plan.shards)},
            manifest_version=version, checkpoints={str(s): m.checkpoint_id for s, m in sorted(members.items())},
        )

    @app.post("/forget", status_code=202, response_model=sc.Receipt, summary="Forget records (exact now, retrained later)",
              operation_id="forget", dependencies=[Depends(require_forget_token(secret))],
              responses={202: {"links": FORGET_LINKS}, **AUTH_ERRORS, **TOO_LARGE})
    def forget(req: sc.ForgetRequest) -> sc.Receipt:
        receipt = model.forget(record_ids=req.record_ids, subject=req.subject)
        if worker is not None:
            worker.notify()
        # a request committed just now is served exactly; a repeat may have been retrained since
        state = "served-exact" if receipt.created else (model.ws_.ledger.request_state(receipt.request_id)
                                                        or "served-exact")
        return _receipt_out(receipt, state, receipt.created)

    @app.get("/forget/{request_id}", response_model=sc.ForgetState, responses=AUTH_ERRORS, dependencies=[reader],
             operation_id="forget_state", summary="State of a forget request (read token)")
    def forget_state(request_id: str) -> sc.ForgetState:
        ledger = model.ws_.ledger
        if "\x00" in request_id:  # no request id has one (and PostgreSQL would refuse the query: a 500)
            raise errors.UnknownRecordError(f"unknown request id {request_id!r}")
        with ledger.Session() as s:
            row = s.get(ReceiptRow, request_id)
            if row is None:
                raise errors.UnknownRecordError(f"unknown request id {request_id!r}")
            receipt = ReceiptRecord(json.loads(row.body), row.hash, created=False)
        state = ledger.request_state(request_id)
        return sc.ForgetState(request_id=request_id, state=state, receipt=_receipt_out(receipt, state, False))

    @app.get("/forget/{request_id}/certificate", response_model=sc.Certificate, responses=AUTH_ERRORS,
             dependencies=[reader], operation_id="forget_certificate",
             summary="Signed deletion certificate of a request (read token); verify it offline with GET /certificates/key")
    def forget_certificate(request_id: str) -> dict:
        from ..certificate import issue_certificate

        if "\x00" in request_id:
            raise errors.UnknownRecordError(f"unknown request id {request_id!r}")
        model.flush()  # the certified files are the ones on disk
        return issue_certificate(model, request_id)

    @app.get("/certificates/key", response_model=sc.SigningKeys, responses={500: {"model": sc.ErrorResponse}},
             operation_id="certificate_key", summary="The workspace's public signing key(s) (no token: they are public)")
    def certificate_key() -> sc.SigningKeys:
        from ..store.signing import public_keys, public_pem

        current = public_pem(model.ws_.path)
        return sc.SigningKeys(current=current, keys=public_keys(model.ws_.path))

    @app.get("/status", response_model=sc.StatusResponse, responses=AUTH_ERRORS, dependencies=[reader],
             operation_id="status", summary="Shards, served prefixes, pending retrains (read token: names requests)")
    def status() -> sc.StatusResponse:
        ens = model.ensemble_
        return sc.StatusResponse(
            **model.status(), ensemble_size=len(ens.members),
            out_of_service={str(k): v for k, v in ens.out_of_service.items()},
            pending_retrains=pending_requests(model), worker=_worker_status(worker),
        )

    @app.get("/audit", response_model=sc.AuditResponse, responses=AUTH_ERRORS, dependencies=[reader],
             operation_id="audit", summary="The checks of `s3t audit` (read token: failures name records and requests)")
    def audit() -> sc.AuditResponse:
        # hold this replica's retrain off, then the fleet's (the retrain lease): no stage registered
        # but not yet swapped in, by any replica, while the audit reads
        quiesce = worker.quiesce(AUDIT_WAIT) if worker is not None else _quiet()
        with quiesce as quiet:
            audit_lease = Lease(model.ws_.ledger, RETRAIN, holder=f"{lease.holder}/audit", ttl=lease.ttl)
            with audit_lease.hold(wait=AUDIT_WAIT) as epoch:
                return sc.AuditResponse(**model.audit().to_dict(), retraining=not quiet or epoch is None)

    @app.get("/healthz", response_model=sc.Health, summary="Liveness", operation_id="healthz",
             responses={500: {"model": sc.ErrorResponse}})
    def healthz() -> sc.Health:
        return sc.Health()

    app.include_router(generate_router(model, [reader] if protect_predict else [], protected=protect_predict))
    add_dashboard(app, model, lambda: _worker_status(worker), lambda: pending_requests(model), reader, AUTH_ERRORS)
    return app


@contextmanager
def _quiet():
    yield True


def _worker_status(worker: Optional[RetrainWorker]) -> sc.WorkerStatus:
    if worker is None:
        return sc.WorkerStatus(enabled=False, alive=False, busy=False, runs=0, failures=0)
    lease = None
    if worker.lease is not None:
        try:
            lease = {**worker.lease.state().to_dict(), "this_replica": worker.lease.holder, "deferred": worker.deferred,
                     "takeovers": worker.lease.takeovers}
        except Exception:  # status must answer even when the ledger is slow
            lease = {"this_replica": worker.lease.holder, "error": "lease state unavailable"}
    return sc.WorkerStatus(enabled=True, alive=worker.alive, busy=worker.busy, runs=worker.runs, failures=worker.failures,
                           last_error=worker.last_error, last_report=worker.last_report, policy=worker.policy.kind,
                           restore=worker.restore, last_decision=worker.last_decision, lease=lease)
