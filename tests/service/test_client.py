"""``s3t.client``: the typed client a user would call, against the documented contract (issue 21).

The client has one method per operation of ``/openapi.json`` (named by operationId) returning the
model the schema documents for its success status; these tests drive the service through it
(in-process with the TestClient as its transport; ``test_worker`` runs it over a real socket).
"""

from __future__ import annotations

import json
import typing

import pytest

from s3t.client import APIError, Client, ProtocolError, receipt_ok
from s3t.forget import receipt_hash
from s3t.service.schemas import Receipt
from tests.service.conftest import READ_TOKEN, TOKEN, train_ids

TEXTS = ["a great film", "the plot was awful"]


@pytest.fixture
def api(client):
    return Client("", token=TOKEN, read_token=READ_TOKEN, http=client)


def test_one_method_per_operation_returning_the_documented_model(client):
    spec = client.get("/openapi.json").json()
    ops = {op["operationId"]: (method, path, op) for path, item in spec["paths"].items() for method, op in item.items()}
    assert set(ops) == {"predict", "generate", "forget", "forget_state", "forget_certificate", "certificate_key", "status",
                        "audit", "healthz", "dashboard_data"}
    for name, (method, path, op) in ops.items():
        documented = [code for code in op["responses"] if code.startswith("2")]
        assert len(documented) == 1, (name, documented)  # one success status: what the client expects
        ref = op["responses"][documented[0]]["content"]["application/json"]["schema"]["$ref"]
        returns = typing.get_type_hints(getattr(Client, name))["return"]
        assert ref == f"#/components/schemas/{returns.__name__}", (name, ref, returns)
    link = ops["forget"][2]["responses"]["202"]["links"]["GetForgetState"]
    assert link["operationId"] == "forget_state"  # Client.wait_for follows it
    assert ops["forget"][2]["responses"]["202"]["links"]["GetForgetCertificate"]["operationId"] == "forget_certificate"


def test_a_forget_through_the_client(api, fitted_ws):
    pred = api.predict(TEXTS)
    assert len(pred.labels) == 2 and pred.classes == ["neg", "pos"] and pred.served == {"0": 3, "1": 3}
    rid = train_ids(fitted_ws, 0, 1)[0]
    receipt = api.forget(record_ids=[rid])
    assert isinstance(receipt, Receipt) and receipt.created and receipt.record_ids == [rid] and receipt.state == "served-exact"
    assert receipt_ok(receipt)
    raw = {k: v for k, v in receipt.model_dump(mode="json", exclude_unset=True).items() if k not in ("hash", "created", "state")}
    assert receipt_hash(raw) == receipt.hash  # the client's check is the ledger's
    assert not receipt_ok(receipt.model_copy(update={"newly_deleted": receipt.newly_deleted + 1}))
    again = api.forget(record_ids=[rid])
    assert not again.created and again.request_id == receipt.request_id and receipt_ok(again)
    state = api.wait_for(receipt.request_id, "served-exact", timeout=5)
    assert state.receipt.hash == receipt.hash and receipt_ok(state.receipt)
    assert api.status().pending_retrains == [receipt.request_id]
    assert api.audit().ok
    log = api.dashboard_data(accuracy=False).log
    assert [e.request_id for e in log.entries] == [receipt.request_id]
    assert api.healthz().ok
    by_subject = api.forget(subject="user3")
    assert by_subject.subject == "user3" and receipt_ok(by_subject) and by_subject.prev_hash == receipt.hash


def test_errors_are_api_errors_in_the_documented_shape(api, client, fitted_ws):
    with pytest.raises(APIError) as e:
        api.forget(record_ids=["no-such-record"])
    assert (e.value.status, e.value.type) == (404, "UnknownRecordError") and "no-such-record" in e.value.message
    with pytest.raises(APIError) as e:
        api.forget()  # neither record_ids nor subject
    assert (e.value.status, e.value.type) == (422, "ValidationError")
    with pytest.raises(APIError) as e:
        api.forget_state("req-0000000000000000")
    assert e.value.status == 404
    reader = Client("", read_token=READ_TOKEN, http=client)
    assert reader.status().workspace  # the read token reads
    with pytest.raises(APIError) as e:
        reader.forget(record_ids=[train_ids(fitted_ws, 0, 0)[0]])  # and cannot forget
    assert (e.value.status, e.value.type) == (401, "Unauthorized") and e.value.headers["www-authenticate"] == "Bearer"
    with pytest.raises(APIError) as e:
        Client("", http=client).audit()
    assert e.value.status == 401
    assert fitted_ws.ws_.ledger.deleted_ids() == set()


def test_wait_for_times_out_with_the_state_it_saw(api, fitted_ws):
    receipt = api.forget(record_ids=[train_ids(fitted_ws, 1, 2)[0]])
    with pytest.raises(TimeoutError, match="served-exact"):
        api.wait_for(receipt.request_id, "retrained", timeout=0.3, poll=0.1)  # no worker: never retrained


class Canned:
    """An http= stand-in that answers every request with one response."""

    def __init__(self, status: int, content: bytes):
        self.status, self.content = status, content

    def request(self, method, url, **kwargs):
        return type("R", (), {"status_code": self.status, "content": self.content, "headers": {}})()


@pytest.mark.parametrize("status,content,why", [
    (500, b"Internal Server Error", "not JSON"),
    (400, b'{"detail": "There was an error parsing the body"}', "not the error shape"),
    (200, json.dumps({"ok": True}).encode(), "answers 202, not 200"),
    (202, json.dumps({"request_id": "r"}).encode(), "not a Receipt"),
], ids=["text-500", "other-error-shape", "undocumented-status", "wrong-body"])
def test_an_undocumented_response_is_a_protocol_error(status, content, why):
    with pytest.raises(ProtocolError, match=why) as e:
        Client("", token="t", http=Canned(status, content)).forget(record_ids=["r1-0"])
    assert e.value.status == status


def test_a_certificate_through_the_client_verifies_offline(api, fitted_ws):
    from s3t.certificate import verify_certificate

    receipt = api.forget(subject="user6")
    cert = api.forget_certificate(receipt.request_id)
    key = api.certificate_key()
    assert cert.request["request_id"] == receipt.request_id
    check = verify_certificate(cert.model_dump(mode="json"), key.current)
    assert check.ok, check.problems
