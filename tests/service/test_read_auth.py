"""Read authorisation (issue 15, finding 9): who asked to be forgotten is personal data.

The deletion log, receipts, request state, status, audit and the dashboard's data need a token:
the read token (``S3T_READ_TOKEN`` / ``WORKSPACE/read_token``) or the forget token. ``/predict``
and ``/healthz`` stay open unless ``protect_predict``. A refused read is a 401 in the error shape
that names nothing, and changes nothing.
"""

from __future__ import annotations

import logging
import stat

import pytest

from s3t.errors import ConfigError
from s3t.service import auth
from tests.fitted_copy import snapshot
from tests.service.conftest import AUTH, READ, READ_TOKEN, TOKEN, settle, train_ids

SUBJECT = "user3"
TEXTS = ["a great film"]
BAD_HEADERS = [
    {}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {READ_TOKEN}"},
    {"Authorization": f"Bearer {READ_TOKEN}x"}, {"Authorization": f"Bearer {READ_TOKEN[:-1]}"}, {"Authorization": READ_TOKEN},
]
BAD_IDS = ["missing", "wrong", "basic-scheme", "longer", "shorter", "no-scheme"]


def forget_subject(client) -> dict:
    r = client.post("/forget", json={"subject": SUBJECT}, headers=AUTH)
    assert r.status_code == 202, r.text
    settle(client)
    return r.json()


def read_paths(request_id: str) -> list[str]:
    return [f"/forget/{request_id}", "/dashboard/data", "/dashboard/data?accuracy=maybe", "/dashboard/view", "/status", "/audit"]


@pytest.mark.parametrize("headers", BAD_HEADERS, ids=BAD_IDS)
def test_reads_without_the_token_are_401_name_nobody_and_change_nothing(make_client, fitted_ws, headers):
    client = make_client(read_token=READ_TOKEN)
    rc = forget_subject(client)
    before = snapshot(fitted_ws)
    for path in read_paths(rc["request_id"]):
        r = client.get(path, headers=headers)
        assert r.status_code == 401, (path, r.status_code, r.text[:200])
        body = r.json()
        assert set(body) == {"error"} and body["error"]["type"] == "Unauthorized" and body["error"]["message"], path
        assert r.headers["www-authenticate"] == "Bearer"
        assert SUBJECT not in r.text and rc["request_id"] not in r.text
        assert not any(rid in r.text for rid in rc["record_ids"])
    assert snapshot(fitted_ws) == before


def test_read_token_and_forget_token_both_read(make_client, fitted_ws):
    client = make_client(read_token=READ_TOKEN)
    rc = forget_subject(client)
    for headers in (READ, AUTH):
        got = client.get(f"/forget/{rc['request_id']}", headers=headers)
        assert got.status_code == 200, got.text
        assert got.json()["receipt"]["hash"] == rc["hash"] and got.json()["receipt"]["subject"] == SUBJECT
        log = client.get("/dashboard/data", params={"accuracy": "false"}, headers=headers).json()["log"]
        assert [e["subject"] for e in log["entries"]] == [SUBJECT]
        view = client.get("/dashboard/view", headers=headers)
        assert view.status_code == 200 and rc["request_id"] in view.text and SUBJECT in view.text
        assert view.headers["cache-control"] == "no-store"
        assert client.get("/status", headers=headers).json()["pending_retrains"] == [rc["request_id"]]
        assert client.get("/audit", headers=headers).json()["ok"] is True


def test_an_unknown_request_without_a_token_is_401_not_404(make_client):
    client = make_client(read_token=READ_TOKEN)  # no oracle for which request ids exist
    r = client.get("/forget/req-0000000000000000")
    assert r.status_code == 401 and r.json()["error"]["type"] == "Unauthorized"
    assert client.get("/forget/req-0000000000000000", headers=READ).status_code == 404


def test_the_read_token_cannot_forget(make_client, fitted_ws):
    client = make_client(read_token=READ_TOKEN)
    before = snapshot(fitted_ws)
    r = client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 0, 0)[0]]}, headers=READ)
    assert r.status_code == 401 and r.json()["error"]["type"] == "Unauthorized"
    assert snapshot(fitted_ws) == before


def test_the_page_shell_is_open_and_names_nobody(make_client, fitted_ws):
    client = make_client(read_token=READ_TOKEN)
    rc = forget_subject(client)
    page = client.get("/")
    assert page.status_code == 200 and 'id="read-token"' in page.text
    for secret in (SUBJECT, rc["request_id"], *rc["record_ids"], READ_TOKEN, TOKEN, str(fitted_ws.ws_.path)):
        assert secret not in page.text, secret
    assert 'data-state="cut"' not in page.text and "data-request" not in page.text


def test_predict_and_healthz_are_open_by_default(make_client):
    client = make_client(read_token=READ_TOKEN)
    assert client.post("/predict", json={"texts": TEXTS}).status_code == 200
    assert client.get("/healthz").json() == {"ok": True}
    assert "security" not in client.get("/openapi.json").json()["paths"]["/predict"]["post"]


def test_protect_predict_needs_a_read_or_forget_token(make_client, fitted_ws):
    client = make_client(read_token=READ_TOKEN, protect_predict=True)
    for headers in BAD_HEADERS:
        r = client.post("/predict", json={"texts": TEXTS}, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "Unauthorized", headers
    bad_body = client.post("/predict", json={"texts": []})  # refused before the body is looked at
    assert bad_body.status_code == 401
    for headers in (READ, AUTH):
        r = client.post("/predict", json={"texts": TEXTS}, headers=headers)
        assert r.status_code == 200 and r.json()["labels"], r.text
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").json()["paths"]["/predict"]["post"]["security"] == [{"ReadToken": []}, {"ForgetToken": []}]


def test_a_generated_read_token_is_0600_differs_from_the_forget_token_and_works(make_client, fitted_ws, caplog, monkeypatch):
    monkeypatch.delenv(auth.READ_ENV_VAR, raising=False)
    path = fitted_ws.ws_.path / auth.READ_TOKEN_FILE
    assert not path.exists()
    with caplog.at_level(logging.WARNING, logger="s3t"):
        client = make_client(read_token=None)
    value = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(value) >= 32 and value != TOKEN
    assert any(str(path) in rec.getMessage() for rec in caplog.records)
    assert not any(value in rec.getMessage() for rec in caplog.records)  # where, never what
    assert client.get("/status", headers={"Authorization": f"Bearer {value}"}).status_code == 200
    assert client.get("/status").status_code == 401
    again = make_client(read_token=None)  # a restart reads the same file
    assert again.get("/status", headers={"Authorization": f"Bearer {value}"}).status_code == 200


def test_read_token_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv(auth.READ_ENV_VAR, raising=False)
    assert auth.resolve_read_token(tmp_path, "given") == "given"
    (tmp_path / auth.READ_TOKEN_FILE).write_text("from-file\n")
    assert auth.resolve_read_token(tmp_path) == "from-file"
    monkeypatch.setenv(auth.READ_ENV_VAR, "from-env")
    assert auth.resolve_read_token(tmp_path) == "from-env"
    monkeypatch.delenv(auth.READ_ENV_VAR)
    (tmp_path / auth.READ_TOKEN_FILE).write_text("  \n")
    with pytest.raises(ConfigError, match="read_token"):
        auth.resolve_read_token(tmp_path)


def test_every_token_comparison_is_constant_time(make_client, monkeypatch):
    client = make_client(read_token=READ_TOKEN)
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert client.get("/status", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert {b for _, b in calls} == {READ_TOKEN.encode(), TOKEN.encode()}  # both compared, no early exit
    calls.clear()
    assert client.get("/status", headers=READ).status_code == 200
    assert {b for _, b in calls} == {READ_TOKEN.encode(), TOKEN.encode()}


@pytest.mark.parametrize("args, protected", [([], False), (["--protect-predict"], True), (["--open-predict"], False)])
def test_serve_passes_protect_predict_through(tmp_path, monkeypatch, args, protected):
    import uvicorn
    from typer.testing import CliRunner

    import s3t.service.app as service_app
    from s3t.cli import app

    seen: dict = {}
    monkeypatch.setattr(service_app, "create_app", lambda workspace, **kw: seen.update(kw) or "the-app")
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: seen.update(ran=application))
    result = CliRunner().invoke(app, ["serve", "-w", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    assert seen["ran"] == "the-app" and seen["protect_predict"] is protected
