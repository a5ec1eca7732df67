"""Three real `s3t serve` replicas on one real PostgreSQL ledger (loopback only, bounded loops).

1. Forgets are sent round-robin; right after each acknowledgement a prediction goes to every
   replica, and the checker (tests/service/replicas.py) fails if any answer came from a manifest
   older than the acknowledged one or from a checkpoint trained on an acknowledged deletion.
2. The replica holding the fleet's retrain lease is killed with SIGKILL in the middle of a retrain
   (its retrain child had marked the requests ``retraining`` and not finished); another replica
   takes the lease over once it expires and finishes the retrain. Predictions keep being checked.
3. The killed replica is started again and answers from the latest version at once.
Then: every acknowledged deletion is in the ledger and retrained, the history audit (every manifest
version ever committed) is clean, and the full audit passes.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from s3t.store.lease import RETRAIN, Lease
from s3t.store.ledger import Ledger
from tests.pg import pg, require_pg  # noqa: F401  (pg: fixture)
from tests.service.replicas import AUTH, READ, Replica, check_answers, db_url, fit_pg_template

require_pg()

TEXTS = ["a great film", "the plot was awful"]
LEASE_TTL = 4.0  # seconds: how long a dead holder keeps the lease
DEADLINE_S = 600  # the whole test, every loop included


class Fleet:
    def __init__(self, ws, url, log_dir, n: int = 3):
        self.ws, self.url, self.log_dir = ws, url, log_dir
        self.replicas = [self._spawn() for _ in range(n)]
        for r in self.replicas:
            r.wait_ready()
        self.clients = {r.port: httpx.Client(base_url=r.url, timeout=120) for r in self.replicas}
        self.deleted: set[str] = set()
        self.floor = 0
        self.answers: list[dict] = []
        self.acknowledged: list[str] = []
        self.dark = 0

    def _spawn(self) -> Replica:
        return Replica(self.ws, self.url, self.log_dir, env={"S3T_LEASE_TTL": str(LEASE_TTL)})

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.proc.poll() is None]

    def forget(self, via: Replica, record_ids: list[str]) -> dict:
        r = self.clients[via.port].post("/forget", json={"record_ids": record_ids}, headers=AUTH)
        assert r.status_code == 202, r.text
        receipt = r.json()
        self.deleted.update(record_ids)
        self.floor = max(self.floor, receipt["manifest_version"])
        self.acknowledged.append(receipt["request_id"])
        return receipt

    def predict_everywhere(self) -> None:
        """Right after an acknowledgement: one prediction to every live replica."""
        for rep in self.live():
            r = self.clients[rep.port].post("/predict", json={"texts": TEXTS})
            if r.status_code == 503 and r.json()["error"]["type"] == "NoLiveModelError":
                self.dark += 1  # every shard cut and not yet retrained: refusing is exact too
                continue
            assert r.status_code == 200, (r.status_code, r.text, rep.tail())
            self.answers.append({"replica": rep.port, "floor": self.floor, "deleted": set(self.deleted),
                                 "response": r.json()})

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        for r in self.replicas:
            r.stop()


def _replica_holding(fleet: Fleet, ledger: Ledger):
    """The replica whose background worker holds the retrain lease now (not an audit or a swap)."""
    st = Lease(ledger, RETRAIN, holder="observer").state()
    if not st.held or "/" in (st.holder or ""):
        return None, st
    pid = int(st.holder.split(":")[1])
    return next((r for r in fleet.live() if r.pid == pid), None), st


def test_three_replicas_on_one_ledger_exact_everywhere_and_a_killed_lease_holder_is_taken_over(tmp_path, tiny_model, pg):
    from sqlalchemy import select

    from s3t.audit import history_violations
    from s3t.store.schema import DeletionRequest

    start = time.monotonic()
    tmpl = fit_pg_template(pg, tmp_path, tiny_model, name="replicas")
    url = db_url(pg, "replicas")
    ledger = Ledger(url)
    by_slice: dict[tuple[int, int], list[str]] = {}
    for r in ledger.records("train"):
        by_slice.setdefault((r.shard, r.slice), []).append(r.id)
    fleet = Fleet(tmpl.ws, url, tmp_path)
    try:
        # 1. round-robin forgets, every replica checked right after each acknowledgement
        plan = [(0, 0), (1, 1), (0, 2), (1, 0), (0, 0), (1, 1)]  # two slices per shard: never all cut
        for k, key in enumerate(plan):
            fleet.forget(fleet.replicas[k % 3], [by_slice[key].pop()])
            fleet.predict_everywhere()
        problems = check_answers(ledger, fleet.answers)
        assert problems == [], problems
        assert len({a["replica"] for a in fleet.answers}) == 3

        # 2. kill -9 the lease holder mid-retrain (a forget hitting every sequence of both shards)
        killed = killed_epoch = None
        for attempt in range(5):
            fleet.forget(fleet.live()[attempt % len(fleet.live())], [by_slice[(0, 0)].pop(), by_slice[(1, 0)].pop()])
            fleet.predict_everywhere()
            while time.monotonic() - start < DEADLINE_S:  # until the holder's child is mid-retrain
                holder, st = _replica_holding(fleet, ledger)
                if holder is not None and ledger.requests_in_state("retraining"):
                    os.kill(holder.pid, signal.SIGKILL)  # the server only: its child must notice and stop
                    holder.proc.wait(timeout=30)
                    break
                if not ledger.requests_in_state("served-exact", "retraining"):
                    holder = None  # the retrain finished before we saw it running: try again
                    break
                time.sleep(0.02)
            after = Lease(ledger, RETRAIN, holder="observer").state()
            if holder is not None and after.epoch == st.epoch and after.holder == st.holder and \
                    ledger.requests_in_state("retraining"):
                killed, killed_epoch = holder, st.epoch  # it died holding the lease, the retrain half-done
                break
        assert killed is not None, "never caught the lease holder in the middle of a retrain"
        survivors = fleet.live()
        assert len(survivors) == 2

        # a forget through a survivor while the lease is still held by the dead replica, and checks
        fleet.forget(survivors[0], [by_slice[(1, 2)].pop()])
        fleet.predict_everywhere()
        while time.monotonic() - start < DEADLINE_S:  # a survivor takes over and finishes the retrain
            pending = ledger.requests_in_state("served-exact", "retraining")
            st = Lease(ledger, RETRAIN, holder="observer").state()
            if not pending and st.epoch > killed_epoch and not st.held:
                break
            fleet.predict_everywhere()
            time.sleep(0.5)
        assert not ledger.requests_in_state("served-exact", "retraining"), [r.tail() for r in survivors]
        statuses = [fleet.clients[r.port].get("/status", headers=READ).json() for r in survivors]
        assert sum(s["worker"]["lease"]["takeovers"] for s in statuses) >= 1, [s["worker"] for s in statuses]

        # 3. the killed replica comes back and answers from the latest version at once
        fleet.replicas.remove(killed)
        killed.stop()
        back = fleet._spawn().wait_ready()
        fleet.replicas.append(back)
        fleet.clients[back.port] = httpx.Client(base_url=back.url, timeout=120)
        fleet.floor = ledger.latest_version()
        fleet.predict_everywhere()
        problems = check_answers(ledger, fleet.answers)
        assert problems == [], problems

        # nothing lost, every manifest ever committed exact, the full audit clean
        with ledger.Session() as s:
            states = dict(s.execute(select(DeletionRequest.id, DeletionRequest.state)).all())
            assert history_violations(ledger, s) == []
        assert all(states[rid] == "retrained" for rid in fleet.acknowledged), states
        assert ledger.deleted_ids() == fleet.deleted
        audit = fleet.clients[back.port].get("/audit", headers=READ).json()
        assert audit["ok"] and not audit["retraining"], audit
        print(f"replicas: {len(fleet.answers)} answers checked ({fleet.dark} refused: no live shard), "
              f"{len(fleet.acknowledged)} forgets, killed the holder of lease epoch {killed_epoch} on attempt "
              f"{attempt + 1}, lease now at epoch {Lease(ledger, RETRAIN, holder='observer').state().epoch}, "
              f"{time.monotonic() - start:.0f} s")
    finally:
        fleet.close()
        for r in fleet.replicas:  # nothing of ours left running (the killed server's group too)
            try:
                os.killpg(r.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        ledger.close()
