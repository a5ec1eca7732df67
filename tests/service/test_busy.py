"""Another process holds the ledger's write lock past the timeout: POST /forget answers 503 in the
one error shape (LedgerBusyError: retry), changes nothing, and a retry after the lock is released
succeeds."""

from __future__ import annotations

import sqlite3
import time

from tests.fitted_copy import snapshot
from tests.service.conftest import AUTH, settle, train_ids

LOCK_TIMEOUT_S = 0.5


def test_forget_while_another_process_holds_the_write_lock_is_a_503_that_changes_nothing(make_client, fitted_ws):
    client = make_client()
    ledger = client.app.state.model.ws_.ledger
    assert ledger.dialect == "sqlite"
    ledger.lock_timeout = LOCK_TIMEOUT_S  # the server waits this long for another writer
    rid = train_ids(fitted_ws, 0, 1)[0]
    before = snapshot(fitted_ws)

    holder = sqlite3.connect(fitted_ws.ws_.path / "ledger.sqlite", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as another s3t process's write transaction holds it
        start = time.monotonic()
        r = client.post("/forget", json={"record_ids": [rid]}, headers=AUTH)
        waited = time.monotonic() - start
        assert r.status_code == 503, r.text
        body = r.json()
        assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
        assert body["error"]["type"] == "LedgerBusyError"
        assert "another process held the ledger's write lock" in body["error"]["message"]
        assert LOCK_TIMEOUT_S * 0.8 <= waited < LOCK_TIMEOUT_S + 5, waited  # it waited the timeout it was given
    finally:
        holder.rollback()
        holder.close()
    settle(client)
    assert snapshot(fitted_ws) == before

    retry = client.post("/forget", json={"record_ids": [rid]}, headers=AUTH)
    assert retry.status_code == 202, retry.text
    assert retry.json()["created"] is True and retry.json()["record_ids"] == [rid]
    settle(client)
    after = snapshot(fitted_ws)
    assert after["deleted"] == [rid] and after["n_manifests"] == before["n_manifests"] + 1
    assert after["texts"][rid] is None and len(after["receipts"]) == len(before["receipts"]) + 1
