"""One retrain for the fleet: the background worker retrains only while it holds the ledger's
``retrain`` lease, takes it over when its holder stops renewing, and its retrain child writes
nothing once the lease it was started under is gone (SQLite, in process; real replicas on
PostgreSQL with kill -9 are in test_replicas.py)."""

from __future__ import annotations

import subprocess
import sys

from s3t.store.lease import RETRAIN, Lease, LeaseGuard
from tests.conftest import wait_until
from tests.service.conftest import AUTH, READ, train_ids, wait_for_state


def _wait(cond, timeout: float = 60.0) -> bool:
    return wait_until(cond, timeout, poll=0.05)


def test_no_retrain_while_another_replica_holds_the_lease_then_one_after_it_is_released(make_client, fitted_ws):
    other = Lease(fitted_ws.ws_.ledger, RETRAIN, holder="replica-elsewhere", ttl=600)
    client = make_client(background=True)
    worker = client.app.state.worker
    assert other.try_acquire() is not None
    rc = client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 0, 0)[0]]}, headers=AUTH).json()
    assert _wait(lambda: worker.deferred >= 1), worker.last_decision
    assert worker.runs == 0 and not worker.busy
    assert client.get(f"/forget/{rc['request_id']}", headers=READ).json()["state"] == "served-exact"
    status = client.get("/status", headers=READ).json()["worker"]
    assert status["lease"]["holder"] == "replica-elsewhere" and status["lease"]["held"]
    assert "another replica holds the retrain lease" in status["last_decision"]
    other.release()
    worker.notify()  # what the release's NOTIFY does on PostgreSQL
    wait_for_state(client, rc["request_id"], "retrained")
    assert worker.runs == 1 and worker.lease.takeovers == 0
    assert not other.state().held  # released again after the retrain


def test_a_dead_holders_lease_is_taken_over_when_it_expires(make_client, fitted_ws):
    dead = Lease(fitted_ws.ws_.ledger, RETRAIN, holder="replica-that-died", ttl=1.5)
    epoch = dead.try_acquire()  # ... and never renews it
    client = make_client(background=True)
    worker = client.app.state.worker
    rc = client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 1, 0)[0]]}, headers=AUTH).json()
    wait_for_state(client, rc["request_id"], "retrained")  # the worker woke at the expiry by itself
    assert worker.deferred >= 1 and worker.lease.takeovers == 1
    assert worker.lease.state().epoch == epoch + 1
    assert client.get("/audit", headers=READ).json()["ok"] is True


def test_a_retrain_child_started_under_a_lost_lease_writes_nothing(fitted_ws):
    led = fitted_ws.ws_.ledger
    receipt = fitted_ws.forget(record_ids=[train_ids(fitted_ws, 0, 1)[0]])
    fitted_ws.flush()
    stale = Lease(led, RETRAIN, holder="server-a", ttl=0.5)
    stale_epoch = stale.try_acquire()
    assert _wait(lambda: Lease(led, RETRAIN, holder="server-b", ttl=600).try_acquire() is not None)
    versions = led.latest_version()
    slices = {k: v.version for k, v in led.current_slice_versions().items()}
    child = subprocess.run([sys.executable, "-m", "s3t.service.worker", str(fitted_ws.ws_.path), "--lease",
                            LeaseGuard(RETRAIN, "server-a", stale_epoch).token()],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode != 0 and "LeaseLostError" in child.stderr, child.stderr[-2000:]
    assert led.request_state(receipt.request_id) == "served-exact"  # not even marked retraining
    assert led.latest_version() == versions
    assert {k: v.version for k, v in led.current_slice_versions().items()} == slices  # no slice rebuilt
    assert not any(c.created_at > receipt.body["created_at"] for c in led.checkpoints())
