"""The HTTP service: endpoints, auth, idempotency, one error shape, body limit, OpenAPI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from s3t.forget import GENESIS, receipt_hash
from tests.fitted_copy import snapshot
from tests.service.conftest import AUTH, READ, TOKEN, settle, train_ids

TEXTS = ["a great film", "the plot was awful", "lovely acting"]
RECEIPT_EXTRA = ("hash", "created", "state")


def assert_error(r, status: int, kind: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == kind and body["error"]["message"]
    return body["error"]


def test_healthz_and_status(client):
    assert client.get("/healthz").json() == {"ok": True}
    st = client.get("/status", headers=READ).json()
    assert st["served"] == {"0": 3, "1": 3} and st["live_shards"] == 2 and st["ensemble_size"] == 2
    assert st["pending_retrains"] == [] and st["out_of_service"] == {} and st["worker"]["enabled"] is False
    assert st["sequences"]["0"] and len(st["sequences"]["0"]) == 3


def test_predict_matches_the_library(client, fitted_ws):
    r = client.post("/predict", json={"texts": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["classes"] == ["neg", "pos"] and body["served"] == {"0": 3, "1": 3}
    proba = np.array(body["probabilities"])
    np.testing.assert_allclose(proba, fitted_ws.predict_proba(TEXTS), atol=1e-6)
    assert body["labels"] == [body["classes"][i] for i in proba.argmax(-1)]


def test_forget_receipt_state_and_audit(client, fitted_ws):
    rid = train_ids(fitted_ws, 0, 1)[0]
    r = client.post("/forget", json={"record_ids": [rid]}, headers=AUTH)
    assert r.status_code == 202, r.text
    rc = r.json()
    assert rc["record_ids"] == [rid] and rc["affected_shards"] == [0] and rc["created"] is True
    assert rc["served_before"] == {"0": 3, "1": 3} and rc["served_after"]["0"] < 3 and rc["served_after"]["1"] == 3
    assert rc["prev_hash"] == GENESIS and rc["state"] == "served-exact"
    assert receipt_hash({k: v for k, v in rc.items() if k not in RECEIPT_EXTRA}) == rc["hash"]  # client-checkable
    assert fitted_ws.ws_.ledger.deleted_ids() == {rid}
    got = client.get(f"/forget/{rc['request_id']}", headers=READ).json()
    assert got["state"] == "served-exact" and got["receipt"]["hash"] == rc["hash"]
    assert client.post("/predict", json={"texts": TEXTS}).json()["served"] == rc["served_after"]
    audit = client.get("/audit", headers=READ).json()
    assert audit["ok"] is True and audit["retraining"] is False
    assert {c["name"] for c in audit["checks"]} >= {"lineage", "rule", "mirror", "files", "erasure", "receipts"}
    second = client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 1, 0)[0]]}, headers=AUTH).json()
    assert second["prev_hash"] == rc["hash"] and second["seq"] == 2


def test_forget_is_idempotent(client, fitted_ws):
    a, b = train_ids(fitted_ws, 1, 2)[:2]
    first = client.post("/forget", json={"record_ids": [a, b]}, headers=AUTH).json()
    settle(client)
    before = snapshot(fitted_ws)
    again = client.post("/forget", json={"record_ids": [b, a, b]}, headers=AUTH)
    assert again.status_code == 202
    assert again.json()["created"] is False
    assert {k: again.json()[k] for k in ("request_id", "hash", "seq")} == {k: first[k] for k in ("request_id", "hash", "seq")}
    assert snapshot(fitted_ws) == before
    subj = client.post("/forget", json={"subject_id": "user3"}, headers=AUTH).json()
    assert subj["created"] is True and subj["subject"] == "user3"
    same = client.post("/forget", json={"subject": "user3"}, headers=AUTH).json()
    assert same["request_id"] == subj["request_id"] and same["created"] is False


def test_forget_accepts_each_documented_shape_with_the_other_keys_null(client, fitted_ws):
    """The schema's oneOf: record ids, subject or subject_id, the other keys absent or null."""
    rid = train_ids(fitted_ws, 1, 2)[0]
    r = client.post("/forget", json={"record_ids": [rid], "subject": None, "subject_id": None}, headers=AUTH)
    assert r.status_code == 202 and r.json()["record_ids"] == [rid], r.text
    for body in ({"record_ids": None, "subject": "user3"}, {"subject_id": "user3", "subject": None}):
        r = client.post("/forget", json=body, headers=AUTH)
        assert r.status_code == 202 and r.json()["subject"] == "user3", (body, r.text)


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": TOKEN},
], ids=["missing", "wrong", "basic-scheme", "longer", "no-scheme"])
def test_forget_without_the_token_is_401_and_changes_nothing(client, fitted_ws, headers):
    before = snapshot(fitted_ws)
    r = client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 0, 0)[0]]}, headers=headers)
    assert_error(r, 401, "Unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    assert snapshot(fitted_ws) == before


@pytest.mark.parametrize("body", [
    {"record_ids": ["no-such-record"]}, {"record_ids": ["no-such-record", "r1-0"]}, {"subject": "nobody"},
], ids=["unknown-id", "known-and-unknown", "unknown-subject"])
def test_unknown_ids_are_404_and_change_nothing(client, fitted_ws, body):
    before = snapshot(fitted_ws)
    err = assert_error(client.post("/forget", json=body, headers=AUTH), 404, "UnknownRecordError")
    assert "no-such-record" in err["message"] or "nobody" in err["message"]
    assert snapshot(fitted_ws) == before
    assert before["n_manifests"] == snapshot(fitted_ws)["n_manifests"] and before["receipts"] == []


def test_unknown_request_and_route_use_the_error_shape(client):
    assert_error(client.get("/forget/req-0000000000000000", headers=READ), 404, "UnknownRecordError")
    assert_error(client.get("/forget/req-%00", headers=READ), 404, "UnknownRecordError")  # was a 500 on PostgreSQL
    assert_error(client.get("/no-such-route"), 404, "NotFound")
    assert_error(client.get("/predict"), 405, "MethodNotAllowed")


BAD_BODIES = [
    ("/predict", b'{"texts": ["unterminated'),
    ("/predict", b"not json at all"),
    ("/predict", {"texts": "one string, not a list"}),
    ("/predict", {"texts": [1, 2]}),
    ("/predict", {"texts": []}),
    ("/predict", {}),
    ("/predict", {"texts": ["ok"], "extra": 1}),
    ("/forget", b'{"record_ids": ['),
    ("/forget", {"record_ids": []}),
    ("/forget", {"record_ids": [1, 2]}),
    ("/forget", {"record_ids": "r1-0"}),
    ("/forget", {"subject": ""}),
    ("/forget", {"subject": 7}),
    ("/forget", {}),
    ("/forget", {"record_ids": ["r1-0"], "subject": "user1"}),
    ("/forget", [["r1-0"]]),
    ("/predict", b'{"texts": ["\xff"]}'),  # not UTF-8: was a 400 the schema did not document
    ("/forget", b'{"record_ids": ["r1-0\xc3"]}'),
    ("/predict", b"[" * 100_000),  # nested past the parser's recursion limit: was a 400 too
    ("/predict", b'{"texts": ["\\ud800"]}'),  # a lone surrogate (valid JSON, not text): was a 500 in the tokenizer
    ("/forget", b'{"record_ids": ["\\udfff"]}'),  # was a 500 (UnicodeEncodeError in the ledger)
    ("/forget", b'{"subject": "user1\\ud800"}'),
    ("/forget", {"subject": "user1", "subject_id": "user2"}),  # subject twice, under both names
    ("/forget", {"record_ids": None, "subject": None}),
    ("/forget", {"record_ids": ["r1-0\x00"]}),  # no id holds a NUL: was a 500 on PostgreSQL (a 404 on SQLite)
    ("/forget", {"subject": "user1\x00"}),
]


@pytest.mark.parametrize("path,body", BAD_BODIES, ids=[f"{p[1:]}-{i}" for i, (p, _) in enumerate(BAD_BODIES)])
def test_bad_input_is_422_with_the_error_shape_and_changes_nothing(client, fitted_ws, path, body):
    before = snapshot(fitted_ws)
    if isinstance(body, bytes):
        r = client.post(path, content=body, headers={**AUTH, "Content-Type": "application/json"})
    else:
        r = client.post(path, json=body, headers=AUTH)
    assert_error(r, 422, "ValidationError")
    assert snapshot(fitted_ws) == before


def test_an_unexpected_error_is_a_500_in_the_error_shape_that_names_nothing(client, monkeypatch):
    from fastapi.testclient import TestClient

    def broken(*args, **kwargs):
        raise RuntimeError("secret detail /srv/ws/ledger.db")

    monkeypatch.setattr(client.app.state.model, "status", broken)
    r = TestClient(client.app, raise_server_exceptions=False).get("/status", headers=READ)
    assert_error(r, 500, "InternalServerError")
    assert "secret detail" not in r.text and r.headers["content-type"] == "application/json"


def test_validation_record_is_a_data_error_422(client, fitted_template):
    err = assert_error(client.post("/forget", json={"record_ids": [fitted_template.val[0]["id"]]}, headers=AUTH), 422, "DataError")
    assert "validation" in err["message"]


def test_every_shard_dead_is_503(client, fitted_ws):
    ids = [train_ids(fitted_ws, shard, sl)[0] for shard in (0, 1) for sl in range(3)]
    assert client.post("/forget", json={"record_ids": ids}, headers=AUTH).json()["served_after"] == {"0": 0, "1": 0}
    assert_error(client.post("/predict", json={"texts": TEXTS}), 503, "NoLiveModelError")
    assert client.get("/status", headers=READ).json()["ensemble_size"] == 0


def _big_json(n_bytes: int) -> bytes:
    return json.dumps({"record_ids": ["x" * 1000] * (n_bytes // 1000)}).encode()


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/forget", "/predict"])
def test_bodies_over_10mb_are_413_and_change_nothing(client, fitted_ws, path, streamed):
    before = snapshot(fitted_ws)
    data = _big_json(11 * 1024 * 1024)
    content = (data[i:i + 65536] for i in range(0, len(data), 65536)) if streamed else data
    r = client.post(path, content=content, headers={**AUTH, "Content-Type": "application/json"})
    assert_error(r, 413, "PayloadTooLarge")
    assert snapshot(fitted_ws) == before


def test_a_body_just_under_the_limit_is_parsed(client, fitted_ws):
    data = json.dumps({"record_ids": [f"{i:05d}" + "x" * 1030 for i in range(10_000)]}).encode()
    assert 10 * 1024 * 1024 - 100_000 < len(data) < 10 * 1024 * 1024
    r = client.post("/forget", content=data, headers={**AUTH, "Content-Type": "application/json"})
    assert_error(r, 404, "UnknownRecordError")  # parsed and resolved, not refused for its size


def test_corrupted_checkpoint_shard_is_out_of_service(make_client, fitted_ws, caplog):
    _, body = fitted_ws.ws_.ledger.latest_manifest()
    bad = body["shards"]["0"]["checkpoint"]
    path = fitted_ws.ws_.resolve(fitted_ws.ws_.ledger.checkpoint(bad).path)
    path.write_bytes(path.read_bytes()[:-7] + b"garbage")
    client = make_client()
    st = client.get("/status", headers=READ).json()
    assert st["out_of_service"] == {"0": bad} and st["ensemble_size"] == 1
    r = client.post("/predict", json={"texts": TEXTS})
    assert r.status_code == 200 and r.json()["served"] == {"0": 0, "1": 3}
    assert any(rec.levelname == "ERROR" and bad in rec.getMessage() for rec in caplog.records)
    assert client.get("/audit", headers=READ).json()["ok"] is False  # the audit names the file too


def test_openapi_lists_the_endpoints_and_models(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/predict", "/forget", "/forget/{request_id}", "/status", "/audit", "/healthz"} <= set(paths)
    assert set(paths["/forget"]) == {"post"} and set(paths["/predict"]) == {"post"}
    schemas = spec["components"]["schemas"]
    for name in ("PredictRequest", "PredictResponse", "ForgetRequest", "Receipt", "ForgetState", "StatusResponse",
                 "AuditResponse", "ErrorResponse"):
        assert name in schemas, name
    assert "HTTPValidationError" not in schemas  # 422s document our error shape, not FastAPI's
    forget = paths["/forget"]["post"]
    assert forget["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ForgetRequest")
    assert forget["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/Receipt")
    assert forget["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    # two bearer schemes (issue 21): the forget token forgets; reads take the read token or the forget token
    assert set(spec["components"]["securitySchemes"]) == {"ForgetToken", "ReadToken"}
    assert all(v == {"type": "http", "scheme": "bearer", "description": v["description"]}
               for v in spec["components"]["securitySchemes"].values())
    assert forget["security"] == [{"ForgetToken": []}] and "security" not in paths["/predict"]["post"]
    for path in ("/forget/{request_id}", "/status", "/audit", "/dashboard/data"):  # reads name requests: a token
        assert paths[path]["get"]["security"] == [{"ReadToken": []}, {"ForgetToken": []}], path
        assert paths[path]["get"]["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert "security" not in paths["/healthz"]["get"]
    assert schemas["PredictRequest"]["properties"]["texts"]["minItems"] == 1
    # the error shape on every operation, 413 where a body is read, the receipt linked to its state
    for path, ops in paths.items():
        for method, op in ops.items():
            errors = {code: r for code, r in op["responses"].items() if int(code) >= 400}
            assert errors and all(r["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
                                  for r in errors.values()), (method, path)
            assert ("413" in errors) == ("requestBody" in op), (method, path)
    link = forget["responses"]["202"]["links"]["GetForgetState"]
    assert link["parameters"] == {"request_id": "$response.body#/request_id"}
    assert link["operationId"] == paths["/forget/{request_id}"]["get"]["operationId"]
    # exactly one of record_ids / subject / subject_id (its old name): oneOf, as the server decides
    shapes = schemas["ForgetRequest"]["oneOf"]
    assert [s["required"] for s in shapes] == [["record_ids"], ["subject"], ["subject_id"]]
    assert schemas["ForgetRequest"]["properties"]["subject_id"]["deprecated"] is True
    assert client.get("/docs").status_code == 200
