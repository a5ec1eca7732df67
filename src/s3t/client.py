"""A typed Python client for the s3t HTTP service (``s3t serve``).

One method per operation of the service's OpenAPI schema (``/openapi.json``), named by its
``operationId``; each returns the documented response model (the service's own pydantic models,
so a response that breaks the documented shape fails here, not in the caller's code), and every
error response, documented with one shape, is raised as :class:`APIError`::

    from s3t.client import Client

    with Client("http://127.0.0.1:8000", token=FORGET_TOKEN, read_token=READ_TOKEN) as api:
        api.predict(["a gorgeous, moving film"]).labels          # ['pos']
        api.generate(["Where was Velmora Quistane born?"]).answers[0].text   # a causal-LM workspace
        receipt = api.forget(record_ids=["mr-1234"])              # 202: exact before it returns
        assert receipt_ok(receipt)                                # the hash covers every other field
        api.wait_for(receipt.request_id, "retrained")             # follows the schema's link
        api.status().pending_retrains, api.audit().ok

``token`` is the forget token (``POST /forget``; it reads too), ``read_token`` the read token
(request state, status, audit, dashboard data; ``/predict`` under ``--protect-predict``). Reads
send the read token when given, else the forget token. HTTP goes through the standard library
(urllib), or through any httpx-style client passed as ``http=`` (an ``httpx.Client`` with its own
TLS or proxy settings, or ``fastapi.testclient.TestClient`` in tests). No other dependency.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, TypeVar

from pydantic import BaseModel, ValidationError

from .service.dashboard_schemas import DashboardData
from .service.schemas import (
    AuditResponse, Certificate, ErrorResponse, ForgetState, GenerateResponse, Health, PredictResponse, Receipt,
    RequestState, SigningKeys, StatusResponse,
)

__all__ = ["APIError", "Client", "ProtocolError", "receipt_ok"]

M = TypeVar("M", bound=BaseModel)
RECEIPT_EXTRA = ("hash", "created", "state")  # fields the receipt hash does not cover


class APIError(Exception):
    """An error response: its status and the ``{"error": {"type", "message"}}`` body."""

    def __init__(self, status: int, type: str, message: str, headers: Optional[Mapping[str, str]] = None):
        super().__init__(f"{status} {type}: {message}")
        self.status, self.type, self.message, self.headers = status, type, message, dict(headers or {})


class ProtocolError(APIError):
    """A response the schema does not document (status or body shape): a bug in the service or a
    client talking to something else."""


@dataclass
class _Response:
    status_code: int
    headers: Mapping[str, str]
    content: bytes


class _Urllib:
    """The default transport: urllib, no connection reuse (one request per call)."""

    def __init__(self, base_url: str, timeout: float):
        self.base_url, self.timeout = base_url.rstrip("/"), timeout

    def request(self, method: str, url: str, *, headers: dict, json: Any = None, params: Optional[dict] = None) -> _Response:
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None
        if json is not None:
            data = _json_bytes(json)
            headers = {**headers, "Content-Type": "application/json"}
        req = urllib.request.Request(self.base_url + url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:  # noqa: S310 (the caller's URL)
                return _Response(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return _Response(e.code, dict(e.headers), e.read())

    def close(self) -> None:
        pass


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def receipt_ok(receipt: Receipt) -> bool:
    """True when ``receipt.hash`` is the sha256 of the canonical JSON of the receipt's other fields
    (the fields as the service sent them), i.e. the receipt is the one the ledger chained."""
    body = {k: v for k, v in receipt.model_dump(mode="json", exclude_unset=True).items() if k not in RECEIPT_EXTRA}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest() == receipt.hash


class Client:
    """The s3t service at ``base_url`` (see the module docstring). With ``http=``, paths are sent
    relative to ``base_url`` (empty: as they are, for a client that has its own base URL), and the
    caller keeps closing that client."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", token: Optional[str] = None,
                 read_token: Optional[str] = None, *, http: Any = None, timeout: float = 60.0):
        self.token, self.read_token = token, read_token
        self._own = http is None
        self._http = _Urllib(base_url, timeout) if http is None else http
        self._prefix = "" if http is None else base_url.rstrip("/")

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._http.close()

    # -- one method per operationId --------------------------------------------------------------

    def predict(self, texts: Sequence[str]) -> PredictResponse:
        """``POST /predict``: labels, class probabilities, the served prefix per shard."""
        return self._call("POST", "/predict", PredictResponse, 200, self._reader(), json={"texts": list(texts)})

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, combine: str = "probs",
                 temperature: float = 0.0, top_k: int = 0, seed: int = 0) -> GenerateResponse:
        """``POST /generate`` (a causal-LM workspace): one answer per prompt, each with its token count, finish
        reason and the manifest version and served prefixes that wrote it. A classifier workspace answers 409."""
        body = {"prompts": list(prompts), "max_new_tokens": max_new_tokens, "combine": combine,
                "temperature": temperature, "top_k": top_k, "seed": seed}
        return self._call("POST", "/generate", GenerateResponse, 200, self._reader(), json=body)

    def forget(self, record_ids: Optional[Sequence[str]] = None, subject: Optional[str] = None) -> Receipt:
        """``POST /forget`` (forget token): exactly one of ``record_ids`` or ``subject``. The receipt
        of a request made before comes back with ``created=False``."""
        body: dict[str, Any] = {}
        if record_ids is not None:
            body["record_ids"] = list(record_ids)
        if subject is not None:
            body["subject"] = subject
        return self._call("POST", "/forget", Receipt, 202, self._auth(self.token), json=body)

    def forget_state(self, request_id: str) -> ForgetState:
        """``GET /forget/{request_id}`` (read token): the request's state and its receipt."""
        return self._call("GET", f"/forget/{urllib.parse.quote(request_id, safe='')}", ForgetState, 200, self._reader())

    def forget_certificate(self, request_id: str) -> Certificate:
        """``GET /forget/{request_id}/certificate`` (read token): the signed deletion certificate;
        check it offline with :func:`s3t.certificate.verify_certificate` and :meth:`certificate_key`."""
        return self._call("GET", f"/forget/{urllib.parse.quote(request_id, safe='')}/certificate", Certificate, 200,
                          self._reader())

    def certificate_key(self) -> SigningKeys:
        """``GET /certificates/key``: the workspace's public signing key(s)."""
        return self._call("GET", "/certificates/key", SigningKeys, 200, {})

    def status(self) -> StatusResponse:
        """``GET /status`` (read token)."""
        return self._call("GET", "/status", StatusResponse, 200, self._reader())

    def audit(self) -> AuditResponse:
        """``GET /audit`` (read token): the checks of ``s3t audit``."""
        return self._call("GET", "/audit", AuditResponse, 200, self._reader())

    def dashboard_data(self, accuracy: bool = True) -> DashboardData:
        """``GET /dashboard/data`` (read token)."""
        return self._call("GET", "/dashboard/data", DashboardData, 200, self._reader(),
                          params={"accuracy": "true" if accuracy else "false"})

    def healthz(self) -> Health:
        """``GET /healthz``."""
        return self._call("GET", "/healthz", Health, 200, {})

    # -- conveniences ------------------------------------------------------------------------------

    def wait_for(self, request_id: str, state: RequestState = "retrained", timeout: float = 600.0,
                 poll: float = 0.5) -> ForgetState:
        """Poll ``forget_state`` (the link from a forget's receipt) until ``state``; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.forget_state(request_id)
            if now.state == state:
                return now
            if time.monotonic() >= deadline:
                raise TimeoutError(f"request {request_id} is {now.state!r}, not {state!r}, after {timeout} s")
            time.sleep(poll)

    # -- plumbing ----------------------------------------------------------------------------------

    @staticmethod
    def _auth(token: Optional[str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _reader(self) -> dict[str, str]:
        return self._auth(self.read_token or self.token)

    def _call(self, method: str, path: str, model: type[M], expected: int, headers: dict, **kwargs) -> M:
        r = self._http.request(method, self._prefix + path, headers={"Accept": "application/json", **headers}, **kwargs)
        try:
            body = json.loads(r.content)
        except ValueError:
            raise ProtocolError(r.status_code, "UndocumentedResponse", f"not JSON: {r.content[:200]!r}", r.headers) from None
        if r.status_code >= 400:
            try:
                err = ErrorResponse.model_validate(body).error
            except ValidationError:
                raise ProtocolError(r.status_code, "UndocumentedResponse", f"not the error shape: {body!r:.200}", r.headers) from None
            raise APIError(r.status_code, err.type, err.message, r.headers)
        if r.status_code != expected:
            raise ProtocolError(r.status_code, "UndocumentedResponse", f"{method} {path} answers {expected}, not {r.status_code}")
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise ProtocolError(r.status_code, "UndocumentedResponse", f"not a {model.__name__}: {exc}") from None
