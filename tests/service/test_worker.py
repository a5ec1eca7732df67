"""Background retraining, start-up recovery, the bearer token file and a real `s3t serve`."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from s3t.client import APIError, Client, receipt_ok
from s3t.service import worker as worker_module
from s3t.service.auth import resolve_token
from s3t.store.ledger import Ledger
from tests.service.conftest import AUTH, READ, train_ids, wait_for_state

TEXTS = ["a great film", "the plot was awful"]


def test_requeued_at_start_up_then_retrained_and_verified(make_client, fitted_ws):
    """served-exact (no worker) -> a restart with the worker re-queues it -> retrained; verify is ok."""
    plain = make_client()
    rid = train_ids(fitted_ws, 0, 2)[0]
    rc = plain.post("/forget", json={"record_ids": [rid]}, headers=AUTH).json()
    time.sleep(0.5)
    assert plain.get(f"/forget/{rc['request_id']}", headers=READ).json()["state"] == "served-exact"
    plain.__exit__(None, None, None)  # "restart"
    served = make_client(background=True)
    seen = wait_for_state(served, rc["request_id"], "retrained")
    assert seen[-1] == "retrained" and seen[0] in ("served-exact", "retraining")
    assert seen == [s for s in ("served-exact", "retraining", "retrained") if s in seen]  # never backwards
    st = served.get("/status", headers=READ).json()
    assert st["served"] == {"0": 3, "1": 3} and st["pending_retrains"] == [] and st["worker"]["runs"] == 1
    assert st["worker"]["last_report"]["requests"] == [rc["request_id"]]
    assert served.post("/predict", json={"texts": TEXTS}).json()["served"] == {"0": 3, "1": 3}
    assert served.get("/audit", headers=READ).json()["ok"] is True
    cert = fitted_ws.verify(rc["request_id"])
    assert cert.ok, cert.mismatches


def test_predictions_are_served_while_the_worker_retrains(make_client, fitted_ws):
    client = make_client(background=True)
    worker = client.app.state.worker
    ids = [train_ids(fitted_ws, 0, 0)[0], train_ids(fitted_ws, 1, 1)[0]]
    rc = client.post("/forget", json={"record_ids": ids}, headers=AUTH).json()
    wait_busy(worker)
    during = []
    while worker.busy and len(during) < 20:
        r = client.post("/predict", json={"texts": TEXTS})
        if worker.busy:  # answered while the retrain was still running
            during.append(r)
    assert len(during) >= 3, "too few predictions overlapped the retrain"
    assert all(r.status_code == 200 for r in during)
    served = [r.json()["served"] for r in during]
    # the cut at first; progressive restore then serves longer prefixes as its steps are swapped in
    assert served[0] == rc["served_after"]
    for a, b in zip(served, served[1:]):
        assert all(rc["served_after"][k] <= a[k] <= b[k] <= 3 for k in a), served
    wait_for_state(client, rc["request_id"], "retrained")
    assert client.post("/predict", json={"texts": TEXTS}).json()["served"] == {"0": 3, "1": 3}
    assert client.app.state.model.ensemble_.manifest_version == fitted_ws.ws_.ledger.latest_manifest()[0]


def wait_busy(worker, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not worker.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.busy, "the forget did not wake the background worker"


def test_audit_waits_for_a_running_retrain(make_client, fitted_ws):
    client = make_client(background=True)
    worker = client.app.state.worker
    rc = client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 1, 1)[0]]}, headers=AUTH).json()
    wait_busy(worker)
    audit = client.get("/audit", headers=READ).json()
    assert worker.runs == 1  # it waited for the retrain (and its swap) to finish
    assert audit["ok"] is True and audit["retraining"] is False
    assert client.get(f"/forget/{rc['request_id']}", headers=READ).json()["state"] == "retrained"


def test_shutdown_during_a_retrain_keeps_the_request_queued_and_the_workspace_consistent(make_client, fitted_ws):
    client = make_client(background=True)
    worker = client.app.state.worker
    rc = client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 0, 1)[0]]}, headers=AUTH).json()
    wait_busy(worker)
    deadline = time.monotonic() + 60
    while fitted_ws.ws_.ledger.request_state(rc["request_id"]) == "served-exact" and time.monotonic() < deadline:
        time.sleep(0.02)  # until the child has started the retrain
    start = time.monotonic()
    client.__exit__(None, None, None)
    assert time.monotonic() - start < 15 and not worker.alive and not worker.busy
    state = fitted_ws.ws_.ledger.request_state(rc["request_id"])
    report = fitted_ws.audit()
    assert report.ok, report.failures()  # whatever the child registered was swapped in, or nothing was
    if state != "retrained":  # interrupted: still queued for the next start-up
        assert state == "retraining" and fitted_ws.ws_.ledger.requests_in_state("retraining") == [rc["request_id"]]


def half_done_swap(est, monkeypatch) -> None:
    """A retrain that registered its stages but died before swapping the manifest in."""
    est.forget(record_ids=[train_ids(est, 1, 0)[0]])
    with monkeypatch.context() as m:
        m.setattr(Ledger, "refresh_manifest", lambda self, reason: self.latest_manifest())
        est.retrain()
    assert est.status()["served"]["1"] < 3 and not est.audit().ok  # rule: stale manifest


def test_stop_terminates_the_child_and_swaps_in_what_it_registered(make_client, fitted_ws, monkeypatch):
    client = make_client(background=True)
    worker = client.app.state.worker
    half_done_swap(fitted_ws, monkeypatch)  # after start-up: only stop() can finish it
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]  # stands in for a long retrain child

    def long_retrain():
        with worker._gate:
            worker._run_child(sleeper)

    monkeypatch.setattr(worker, "_retrain_once", long_retrain)
    monkeypatch.setattr(worker_module, "pending_requests", lambda model: ["req-stand-in"])
    worker.notify()
    wait_busy(worker)
    start = time.monotonic()
    client.__exit__(None, None, None)
    assert time.monotonic() - start < 15 and not worker.alive
    assert fitted_ws.audit().ok and fitted_ws.status()["served"] == {"0": 3, "1": 3}


def test_a_failed_retrain_is_logged_and_retried(make_client, fitted_ws, monkeypatch, caplog):
    client = make_client(background=True, retrain_interval=0.5)
    worker = client.app.state.worker
    calls = []
    real = worker._retrain_once

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated training failure")
        return real()

    monkeypatch.setattr(worker, "_retrain_once", flaky)
    rc = client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 1, 2)[0]]}, headers=AUTH).json()
    wait_for_state(client, rc["request_id"], "retrained")
    assert len(calls) == 2 and worker.failures == 1 and worker.alive
    assert any("simulated training failure" in (r.exc_text or "") for r in caplog.records if r.levelno == logging.ERROR)
    assert client.get("/healthz").status_code == 200


def test_start_up_finishes_a_half_done_swap(make_client, fitted_ws, monkeypatch):
    half_done_swap(fitted_ws, monkeypatch)
    client = make_client()
    assert client.get("/status", headers=READ).json()["served"] == {"0": 3, "1": 3}
    assert client.get("/audit", headers=READ).json()["ok"] is True


def test_token_order_and_generated_file(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("S3T_TOKEN", raising=False)
    with caplog.at_level(logging.WARNING, logger="s3t"):
        generated = resolve_token(tmp_path)
    path = tmp_path / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text().strip() == generated
    assert len(generated) >= 32 and str(path) in caplog.text and generated not in caplog.text
    assert resolve_token(tmp_path) == generated  # read back, not regenerated
    monkeypatch.setenv("S3T_TOKEN", "from-env")
    assert resolve_token(tmp_path) == "from-env"
    assert resolve_token(tmp_path, "explicit") == "explicit"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_s3t_serve_runs_uvicorn(fitted_ws):
    """A real `s3t serve` on a loopback port, driven as a user would: through s3t.client (urllib)."""
    ws, port = fitted_ws.ws_.path, _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("S3T_TOKEN", "S3T_READ_TOKEN")}
    proc = subprocess.Popen([sys.executable, "-m", "s3t.cli", "serve", "-w", str(ws), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**env, "HF_HUB_OFFLINE": "1"})
    base = f"http://127.0.0.1:{port}"
    anyone = Client(base, timeout=30)
    try:
        deadline, up = time.monotonic() + 120, False
        while time.monotonic() < deadline and proc.poll() is None and not up:
            try:
                up = anyone.healthz().ok
            except OSError:  # not listening yet
                time.sleep(0.2)
        assert up, "s3t serve did not become healthy"
        token, read_token = ((ws / name).read_text().strip() for name in ("token", "read_token"))  # generated on first start
        pred = anyone.predict(TEXTS)
        assert len(pred.labels) == 2
        rid = train_ids(fitted_ws, 0, 0)[0]
        with pytest.raises(APIError) as refused:
            anyone.forget(record_ids=[rid])
        assert refused.value.status == 401 and fitted_ws.ws_.ledger.deleted_ids() == set()
        receipt = Client(base, token=token, timeout=30).forget(record_ids=[rid])
        assert receipt.record_ids == [rid] and receipt_ok(receipt)
        assert fitted_ws.ws_.ledger.deleted_ids() == {rid}
        state = Client(base, read_token=read_token, timeout=30).forget_state(receipt.request_id)
        assert state.state == "served-exact" and state.receipt.hash == receipt.hash
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=60)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
    # uvicorn re-raises the signal after a clean shutdown: exit status -SIGTERM (older versions: 0)
    assert proc.returncode in (0, -signal.SIGTERM), out[-3000:]
    assert "Application shutdown complete" in out and "Finished server process" in out and "Traceback" not in out
    assert json.loads((ws / "served.json").read_text())["version"] == fitted_ws.ws_.ledger.latest_manifest()[0]


def test_accuracy_policy_keeps_the_cut_until_a_shard_dies(make_client, fitted_ws):
    """Policy 'accuracy' with a generous delta: a shortened shard is not retrained (the cut stays
    served, exact); a dead shard is. Decisions are visible in /status."""
    from s3t.serve.policy import RetrainPolicy

    client = make_client(background=True, retrain_policy="accuracy", retrain_interval=0.2)
    worker = client.app.state.worker
    worker.policy = RetrainPolicy("accuracy", delta=1.0)
    first = client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 0, 1)[0]]}, headers=AUTH).json()
    assert 0 < first["served_after"]["0"] < 3
    deadline = time.monotonic() + 10
    while worker.last_decision is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # several wakes: none may retrain
    st = client.get("/status", headers=READ).json()
    assert st["worker"]["policy"] == "accuracy" and "within" in st["worker"]["last_decision"]
    assert worker.runs == 0 and st["pending_retrains"] == [first["request_id"]]
    assert client.post("/predict", json={"texts": TEXTS}).json()["served"] == first["served_after"]
    kill = [train_ids(fitted_ws, 0, sl)[0] for sl in (0, 2)]  # with slice 1 cut: every sequence of shard 0
    second = client.post("/forget", json={"record_ids": kill}, headers=AUTH).json()
    assert second["served_after"]["0"] == 0
    wait_for_state(client, second["request_id"], "retrained")
    assert client.get(f"/forget/{first['request_id']}", headers=READ).json()["state"] == "retrained"
    assert "1 shard(s) dead" == client.get("/status", headers=READ).json()["worker"]["last_decision"]
    assert worker.runs == 1
    assert client.post("/predict", json={"texts": TEXTS}).json()["served"] == {"0": 3, "1": 3}
