"""Fault and load harness for `s3t serve` (loopback only, bounded in time).

    python -m tests.fault.harness --out results/fault [--trials 20] [--requests 1000] [--clients 16]

1. Crash trials: start the server as a subprocess over a copy of a fitted workspace, send
   forget + predict traffic, ``kill -9`` it at a random moment (during forgets, during the
   background retrain, during a swap), then check: BEFORE recovery, from the ledger as the
   crash left it, no manifest version ever committed served a checkpoint holding a record
   deleted before it (audit ``history``, ``lineage``, ``receipts``); restart it (recovery runs
   at start-up), then every acknowledged deletion is in the ledger, ``audit`` passes.
2. Load: N forget requests from C concurrent httpx clients with duplicates mixed in; each
   distinct request must be acknowledged by exactly one receipt; p50/p99 latency.

Writes ``fault.json`` into ``--out``. Every loop has a bound; every server is killed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

TOKEN = "harness-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`s3t serve` as a subprocess on 127.0.0.1 (its own process group); its log in ``log_dir``
    (default: beside the workspace). ``db``: a ledger URL; ``args``: more `s3t serve` options."""

    def __init__(self, workspace: Path, background: bool = True, env: dict[str, str] | None = None,
                 db: str | None = None, log_dir: Path | None = None, args: tuple[str, ...] = (),
                 name: str = "server"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "s3t.cli", "serve", "--workspace", str(workspace), "--host", "127.0.0.1",
               "--port", str(self.port), *(["--db", db] if db else []), *([] if background else ["--no-background"]),
               *args]
        env = {**os.environ, "S3T_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.name = name
        self.log_path = (log_dir or workspace.parent) / f"{name}-{self.port}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 120.0) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} on {self.port} not ready after {timeout}s: {self.tail()}")

    def kill9(self) -> None:
        """kill -9 of the server and everything it started (its retrain child, training workers)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()
                return
        self.log.close()


def headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def make_workspace(root: Path, n_records: int) -> Path:
    """Fit a tiny-model workspace once (random BERT, toy texts) to copy per trial."""
    from s3t import S3T
    from tests.conftest import make_tiny_model, tiny_config, toy_rows

    model_dir = make_tiny_model(root / "tiny-model", 6)
    ws = root / "template"
    S3T(tiny_config(model_dir, shards=4, epochs=1), workspace=ws).fit(
        toy_rows(n_records, seed=11, subjects=50), validation=toy_rows(40, seed=12))
    return ws


# checks that must hold in the ledger exactly as a crash left it (files may still lag: recovery's job)
BEFORE_RECOVERY = ("lineage", "history", "receipts")


def audit_before_recovery(ws: Path) -> list:
    """The checks of BEFORE_RECOVERY on the ledger exactly as the crash left it (nothing recovered)."""
    from s3t.audit import audit
    from s3t.store.workspace import Workspace

    raw = Workspace(ws)  # opens the ledger; recovery runs only in S3T.load / a server start
    try:
        return [c for c in audit(raw).checks if c.name in BEFORE_RECOVERY]
    finally:
        raw.ledger.close()


def check_workspace(ws: Path, acknowledged: set[str], before: list) -> dict:
    from s3t import S3T

    assert {c.name for c in before} == set(BEFORE_RECOVERY)
    est = S3T.load(ws)  # runs recovery, as a restarted server does
    deleted = est.ws_.ledger.deleted_ids()
    report = est.audit()
    est.ws_.ledger.close()
    return {
        "lost_acknowledged": sorted(acknowledged - deleted),
        "history_before_recovery_ok": all(c.ok for c in before),
        "audit_ok": report.ok,
        "failures": [c.__dict__ for c in report.failures()] + [
            {**c.__dict__, "name": f"{c.name} (before recovery)"} for c in before if not c.ok],
    }


def worker_state(client: httpx.Client) -> str:
    """What the server was doing just before the kill: 'retrain' if the background retrain was running."""
    try:
        status = client.get("/status", timeout=5, headers=headers()).json()
    except (httpx.HTTPError, ValueError):
        return "unknown"
    if status["worker"]["busy"]:
        return "retrain"
    return "forget-traffic (retrain queued)" if status["pending_retrains"] else "forget-traffic"


def crash_trial(template: Path, root: Path, i: int, rng: random.Random, record_ids: list[str]) -> dict:
    """One kill -9 trial. The moment rotates: during forget traffic (no retrain running), during
    a background retrain, and at a swap (a crash point in the retrain, see ``s3t.retrain._crash_point``:
    after the new stages are registered, or after the new manifest is committed but before
    ``served.json`` is rewritten), where the server and its retrain child die together."""
    ws = root / f"trial-{i}" / "ws"
    shutil.copytree(template, ws)
    moment = ["forget", "retrain", "swap"][i % 3]
    marker = ws.parent / "crashed"
    env = {}
    if moment == "swap":
        env["S3T_FAULT_CRASH_AT"] = f"{rng.choice(['swap', 'served'])}:{marker}"
    server = Server(ws, background=moment != "forget", env=env)
    acknowledged: set[str] = set()
    at_kill = "not started"
    try:
        server.wait_ready()
        # forget: a random moment of the traffic; retrain: a random moment once the retrain runs;
        # swap: until the crash point kills the server (bounded)
        window = {"forget": rng.uniform(0.2, 3.0), "retrain": 120.0, "swap": 240.0}[moment]
        stop_at = time.monotonic() + window
        kill_after_busy = rng.uniform(0.0, 2.0)
        busy_since = None
        with httpx.Client(base_url=server.url, timeout=30) as client:
            n = 0
            while time.monotonic() < stop_at and n < 5000:  # bounded
                if n < 40:
                    ids = rng.sample(record_ids, rng.randint(1, 3))
                    try:
                        r = client.post("/forget", json={"record_ids": ids}, headers=headers())
                        if r.status_code == 202:
                            acknowledged.update(ids)
                    except httpx.HTTPError:
                        break
                try:
                    client.post("/predict", json={"texts": ["great film", "dull plot"]})
                    state = worker_state(client) if moment == "retrain" else None
                except httpx.HTTPError:
                    break  # the crash point fired
                if n >= 40:
                    time.sleep(0.05)  # after the forgets: light predict traffic until the kill
                if state == "retrain":
                    busy_since = busy_since or time.monotonic()
                    if time.monotonic() - busy_since >= kill_after_busy:
                        break
                n += 1
            at_kill = worker_state(client)
    finally:
        server.kill9()
    before = audit_before_recovery(ws)
    if moment == "swap":
        at_kill = f"swap ({env['S3T_FAULT_CRASH_AT'].split(':')[0]})" if marker.exists() else f"{at_kill} (crash point not reached)"
    restarted = Server(ws)  # recovery runs at start-up; it must serve again at once
    try:
        restarted.wait_ready()
        status = httpx.get(restarted.url + "/status", timeout=60, headers=headers()).json()
        predict = httpx.post(restarted.url + "/predict", json={"texts": ["great film"]}, timeout=60)
        served_after_restart = predict.status_code == 200 or (
            predict.status_code == 503 and not any(status["served"].values()))  # 503 only with no live shard
    finally:
        restarted.stop()
    result = check_workspace(ws, acknowledged, before)
    result.update({"trial": i, "moment": moment, "acknowledged": len(acknowledged), "at_kill": at_kill,
                   "served_after_restart": served_after_restart, "requeued_after_restart": len(status["pending_retrains"])})
    print(f"trial {i}: kill during {at_kill}, {len(acknowledged)} acknowledged, lost {len(result['lost_acknowledged'])}, "
          f"audit {'ok' if result['audit_ok'] else 'FAILED'}", file=sys.stderr, flush=True)
    shutil.rmtree(ws.parent, ignore_errors=True)
    return result


def load_test(template: Path, root: Path, requests: int, clients: int, rng: random.Random, record_ids: list[str]) -> dict:
    ws = root / "load" / "ws"
    shutil.copytree(template, ws)
    server = Server(ws, background=False)
    distinct = rng.sample(record_ids, min(len(record_ids), int(requests * 0.8)))
    plan = [[d] for d in distinct]
    plan += [[rng.choice(distinct)] for _ in range(requests - len(plan))]  # duplicates mixed in
    rng.shuffle(plan)
    latencies: list[float] = []
    receipts: dict[str, set[str]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    cursor = iter(range(len(plan)))

    def client_loop() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while True:
                with lock:
                    k = next(cursor, None)
                if k is None:
                    return
                t = time.perf_counter()
                r = client.post("/forget", json={"record_ids": plan[k]}, headers=headers())
                dt = time.perf_counter() - t
                with lock:
                    latencies.append(dt)
                    if r.status_code != 202:
                        errors.append(f"{r.status_code} {r.text[:100]}")
                    else:
                        receipts.setdefault(plan[k][0], set()).add(r.json()["request_id"])

    try:
        server.wait_ready()
        threads = [threading.Thread(target=client_loop) for _ in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        wall = time.perf_counter() - start
    finally:
        server.stop()
    before = audit_before_recovery(ws)
    lat = sorted(latencies)
    q = lambda p: 1000 * lat[min(len(lat) - 1, int(p * len(lat)))]  # noqa: E731
    result = check_workspace(ws, set(receipts), before)
    result.update({
        "requests": len(latencies), "distinct": len(distinct), "clients": clients, "errors": errors[:5],
        "each_acknowledged_once": all(len(v) == 1 for v in receipts.values()) and len(receipts) == len(distinct),
        "p50_ms": q(0.50), "p99_ms": q(0.99), "throughput_rps": len(latencies) / wall,
    })
    return result


def write_result(out: Path, trials: list[dict], load: dict | None, complete: bool) -> dict:
    result = {
        "complete": complete,
        "trials": trials,
        "trials_ok": all(t["audit_ok"] and t["history_before_recovery_ok"] and not t["lost_acknowledged"]
                         and t["served_after_restart"] for t in trials),
        "lost_acknowledged_total": sum(len(t["lost_acknowledged"]) for t in trials),
        "acknowledged_total": sum(t["acknowledged"] for t in trials),
        "kills_by_state": {k: sum(t["at_kill"] == k for t in trials) for k in sorted({t["at_kill"] for t in trials})},
        "load": load,
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "fault.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out / "fault.json")
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--records", type=int, default=1600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="s3t-fault-"))
    try:
        template = make_workspace(root, args.records)
        from s3t import S3T

        record_ids = [r.id for r in S3T.load(template).ws_.ledger.records("train")]
        trials: list[dict] = []
        for i in range(args.trials):
            trials.append(crash_trial(template, root, i, rng, record_ids))
            write_result(args.out, trials, None, complete=False)  # a cut-off run still leaves its evidence
        load = load_test(template, root, args.requests, args.clients, rng, record_ids)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = write_result(args.out, trials, load, complete=True)
    print(json.dumps({"trials_ok": result["trials_ok"], "trials": len(trials),
                      **{k: load[k] for k in ("requests", "each_acknowledged_once", "p50_ms", "p99_ms", "audit_ok")}}))
    return result


if __name__ == "__main__":
    main()
