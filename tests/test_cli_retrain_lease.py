"""`s3t retrain` by hand takes the fleet's retrain lease, as a serving replica's retrain does: it
never runs beside a replica's retrain on the same ledger, and its writes are fenced by the lease."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from s3t import S3T
from s3t.cli import app
from s3t.errors import S3TError
from s3t.store.lease import RETRAIN, Lease
from tests.fitted_copy import fitted_template, fitted_ws, record_in  # noqa: F401  (fixtures)

runner = CliRunner()


def test_retrain_refuses_while_a_replica_holds_the_lease_and_changes_nothing(fitted_ws):
    ws = fitted_ws.ws_.path
    fitted_ws.forget([record_in(fitted_ws, 0, 0)])
    before = fitted_ws.ws_.ledger.latest_manifest()
    replica = Lease(fitted_ws.ws_.ledger, RETRAIN, holder="replica-a", ttl=60)
    assert replica.try_acquire() is not None
    result = runner.invoke(app, ["retrain", "-w", str(ws), "--json"])
    assert result.exit_code != 0
    assert isinstance(result.exception, S3TError) and "replica-a" in str(result.exception)
    assert "--wait" in str(result.exception)
    assert fitted_ws.ws_.ledger.latest_manifest() == before  # nothing retrained or swapped
    replica.release()


def test_retrain_holds_the_lease_while_it_runs_and_releases_it(fitted_ws, monkeypatch):
    ws = fitted_ws.ws_.path
    fitted_ws.forget([record_in(fitted_ws, 1, 0)])
    seen = {}
    real = S3T.retrain

    def spy(self, *args, **kwargs):
        seen["state"] = Lease(self.ws_.ledger, RETRAIN).state()
        seen["guard"] = self.ws_.ledger.guard
        return real(self, *args, **kwargs)

    monkeypatch.setattr(S3T, "retrain", spy)
    result = runner.invoke(app, ["retrain", "-w", str(ws), "--json"])
    assert result.exit_code == 0, result.output
    assert seen["state"].held and seen["guard"] is not None and seen["guard"].epoch == seen["state"].epoch
    assert json.loads(result.stdout)["served_after"] == {"0": 3, "1": 3}
    after = Lease(fitted_ws.ws_.ledger, RETRAIN).state()
    assert not after.held and after.epoch == seen["state"].epoch  # released, no other acquisition
