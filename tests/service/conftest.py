"""Fixtures of the service tests: an app over a private copy of the fitted tiny workspace."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from s3t.service import create_app
from tests.fitted_copy import fitted_template, fitted_ws  # noqa: F401  (fixtures)

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ_TOKEN = "test-read-token-9876543210"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


@pytest.fixture
def make_client(fitted_ws):
    """``make_client(**create_app kwargs)`` -> a started TestClient (lifespan run); all closed at teardown."""
    yield from started_clients(lambda n: fitted_ws.ws_.path)


def started_clients(workspace_for):
    """A fixture body: yields ``make(**create_app kwargs)``, which starts a TestClient (lifespan run) over
    ``workspace_for(n)`` for the n-th client, with the test tokens and no background worker; all are
    closed at teardown."""
    clients = []

    def make(**kwargs) -> TestClient:
        kwargs = {"token": TOKEN, "read_token": READ_TOKEN, "background": False, **kwargs}
        client = TestClient(create_app(workspace_for(len(clients)), **kwargs))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in reversed(clients):
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def settle(client) -> None:
    """Wait for the app's queued file steps (cut files erased, served.json rewritten) of earlier
    forgets: they run on a background thread after the forget's response."""
    assert client.app.state.model.flush(timeout=60), "file steps still pending after 60 s"


def wait_for_state(client, request_id: str, state: str, timeout: float = 90.0) -> list[str]:
    """Poll GET /forget/{id} until ``state`` (bounded); return the distinct states seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/forget/{request_id}", headers=READ)
        assert r.status_code == 200, r.text
        now = r.json()["state"]
        if not seen or seen[-1] != now:
            seen.append(now)
        if now == state and not (client.app.state.worker and client.app.state.worker.busy):
            return seen  # and the server has swapped the result in
        time.sleep(0.2)
    worker = client.app.state.worker
    raise AssertionError(f"request {request_id} not {state!r} after {timeout}s (seen {seen}; worker error {worker and worker.last_error})")


def train_ids(est, shard: int, sl: int) -> list[str]:
    return [r.id for r in est.ws_.ledger.records("train") if r.shard == shard and r.slice == sl]
