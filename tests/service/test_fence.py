"""The version fence: a prediction is never answered from a manifest older than the latest one
committed before the request arrived, whichever process committed it; the answer names the
manifest version and the checkpoints that gave it. In process: SQLite (a CLI-style forget in another
estimator) and PostgreSQL (several apps on one ledger, the LISTEN path). Real `s3t serve` replicas
are in test_replicas.py."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from s3t import S3T
from s3t.service import create_app
from s3t.service.fence import ManifestFence
from tests.conftest import wait_until
from tests.pg import pg, pg_bin  # noqa: F401  (pg: fixture)
from tests.service.conftest import AUTH, train_ids
from tests.service.replicas import AUTH as REPLICA_AUTH, READ_TOKEN, TOKEN, check_answers, fit_pg_template, manifests

TEXTS = ["a great film", "the plot was awful"]


def _answer(client, replica: str, floor: int, deleted: set[str]) -> dict:
    r = client.post("/predict", json={"texts": TEXTS})
    assert r.status_code == 200, r.text
    return {"replica": replica, "floor": floor, "deleted": set(deleted), "response": r.json()}


# -- the fence itself ------------------------------------------------------------------------------
class ScriptedFence(ManifestFence):
    """A fence whose query reads ``committed`` when it starts and returns when released."""

    def __init__(self):
        super().__init__(ledger=None)
        self.committed = 0
        self.releases: list[threading.Event] = []

    def _query(self) -> int:
        seen = self.committed  # what a statement starting now sees
        gate = threading.Event()
        self.releases.append(gate)
        assert gate.wait(30)
        return seen


def test_a_caller_never_gets_the_answer_of_a_query_that_started_before_it():
    fence = ScriptedFence()
    got: dict[str, int] = {}

    def call(name: str) -> None:
        got[name] = fence.latest()

    early = threading.Thread(target=call, args=("early",))
    early.start()
    assert _wait(lambda: len(fence.releases) == 1)  # query 1 runs (it saw version 0)
    fence.committed = 1  # a forget commits while it runs; two predictions arrive after that
    late = [threading.Thread(target=call, args=(f"late{i}",)) for i in range(2)]
    for t in late:
        t.start()
    assert _wait(lambda: fence.calls == 3)
    fence.releases[0].set()
    assert _wait(lambda: len(fence.releases) == 2)  # one new query, shared by both late callers
    fence.releases[1].set()
    for t in [early, *late]:
        t.join(30)
    assert got == {"early": 0, "late0": 1, "late1": 1}
    assert fence.queries == 2 and fence.calls == 3



def _wait(cond, timeout: float = 30.0) -> bool:
    return wait_until(cond, timeout, poll=0.01)


# -- SQLite: one server, forgets from another process ----------------------------------------------
def test_predict_names_the_manifest_version_and_the_checkpoints_that_answered(make_client, fitted_ws):
    client = make_client()
    led = fitted_ws.ws_.ledger
    first = _answer(client, "a", 0, set())
    assert first["response"]["manifest_version"] == led.latest_version()
    rid = train_ids(fitted_ws, 0, 0)[0]
    receipt = client.post("/forget", json={"record_ids": [rid]}, headers=AUTH).json()
    after = _answer(client, "a", receipt["manifest_version"], {rid})
    assert after["response"]["manifest_version"] == receipt["manifest_version"] > first["response"]["manifest_version"]
    assert after["response"]["served"] == receipt["served_after"]
    assert check_answers(led, [first, after]) == []


def test_a_forget_committed_by_another_process_is_seen_by_the_next_prediction(make_client, fitted_ws):
    """The fenced server answers from the new version at once; the same server without the fence
    (and with no listener: SQLite) keeps answering from the cut checkpoint, and the checker says so."""
    fenced, unfenced = make_client(), make_client(fence=False)
    other = S3T.load(fitted_ws.ws_.path)  # e.g. `s3t forget` from the command line
    deleted: set[str] = set()
    answers, control = [], []
    try:
        for shard, sl in ((0, 0), (1, 0)):
            rid = train_ids(fitted_ws, shard, sl)[0]
            receipt = other.forget(record_ids=[rid])
            deleted.add(rid)
            floor = receipt.body["manifest_version"]
            answers.append(_answer(fenced, "fenced", floor, deleted))
            control.append(_answer(unfenced, "unfenced", floor, deleted))
    finally:
        other.flush()
        other.ws_.ledger.close()
    assert check_answers(fitted_ws.ws_.ledger, answers) == []
    problems = check_answers(fitted_ws.ws_.ledger, control)
    assert len(problems) == 2 and all("older than the acknowledged" in p for p in problems), problems


def test_a_replica_that_cannot_read_the_ledger_refuses_to_answer(make_client):
    client = make_client()
    assert client.post("/predict", json={"texts": TEXTS}).status_code == 200

    def down() -> int:
        raise OSError("connection refused")

    client.app.state.fence._query = down
    r = client.post("/predict", json={"texts": TEXTS})
    assert r.status_code == 503, r.text
    assert r.json()["error"]["type"] == "LedgerUnreachableError"


# -- PostgreSQL: several apps on one ledger ---------------------------------------------------------
@pytest.fixture(scope="module")
def pg_template(tmp_path_factory, tiny_model, request):
    if pg_bin() is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    cluster = request.getfixturevalue("pg")
    return fit_pg_template(cluster, tmp_path_factory.mktemp("pg-fence"), tiny_model, name="fence")


def _app(ws, url, **kwargs) -> TestClient:
    client = TestClient(create_app(ws, db=url, token=TOKEN, read_token=READ_TOKEN, background=False, **kwargs))
    client.__enter__()
    return client


def test_replicas_on_postgres_fence_and_listen(pg_template, tmp_path):
    """A forgets; F (fence, no listener) answers from the new version at once; L (listener, no
    fence) swaps without being asked; C (neither) stays on the cut checkpoints and is caught."""
    ws, url = pg_template.clone(tmp_path / "ws")
    a = _app(ws, url)
    f, lis, c = _app(ws, url, listen=False), _app(ws, url, fence=False), _app(ws, url, fence=False, listen=False)
    try:
        est = a.app.state.model
        ids = {(r.shard, r.slice): r.id for r in est.ws_.ledger.records("train")}
        deleted: set[str] = set()
        answers, control = [], []
        for shard, sl in ((0, 0), (1, 1)):
            rid = ids[(shard, sl)]
            r = a.post("/forget", json={"record_ids": [rid]}, headers=REPLICA_AUTH)
            assert r.status_code == 202, r.text
            receipt = r.json()
            deleted.add(rid)
            floor = receipt["manifest_version"]
            answers.append(_answer(f, "F", floor, deleted))
            control.append(_answer(c, "C", floor, deleted))
            # L is told by NOTIFY: it swaps on its own, before any request reaches it
            assert _wait(lambda: lis.app.state.model._ensemble.manifest_version >= floor), "listener never swapped"
            answers.append(_answer(lis, "L", floor, deleted))
        assert lis.app.state.listener.notifications >= 2
        led = est.ws_.ledger
        assert check_answers(led, answers) == []
        assert len(check_answers(led, control)) == 2
        assert max(manifests(led)) == answers[-1]["response"]["manifest_version"]
    finally:
        for client in (c, lis, f, a):
            client.__exit__(None, None, None)
