"""Replicas on one PostgreSQL ledger (issue 19): what the version fence costs a prediction, and
forget throughput through 1 vs 3 replicas, measured side by side in one run.

A throwaway PostgreSQL cluster on 127.0.0.1 (tests/pg.py) and one fitted workspace (tiny random
encoder, m=4, L=3, B=3 on toy texts: the fence and the forget path do not depend on the encoder's
size; a real encoder only adds the same forward pass to both sides). Each part gets a fresh copy
of the ledger (``CREATE DATABASE ... TEMPLATE``). Servers are real processes on loopback.

1. **Fence cost.** One server process (``create_app`` as ``s3t serve --no-background`` runs it,
   with its LISTEN connection) answers single-text predictions alternately with its fence on and
   off (switched over stdin between requests; the order flips every pair), so both modes share the
   process, its connections and the machine's load at that moment. ``idle``: no forgets.
   ``forgets``: before each pair, a forget through a second server is acknowledged, then both
   modes are asked; an answer is *stale* if its manifest version is older than that acknowledged
   forget's (what the fence rules out; without it only the listener's NOTIFY keeps the server
   current). In process, the fence query itself is timed against reading the whole latest
   manifest (what each prediction did before the fence).
2. **Forget throughput.** ``--clients`` threads send ``--forgets`` single-record forgets as fast
   as they can, round-robin over the servers of a setup; then one client sends ``--lone`` forgets
   one at a time. Setups, alternated within each of ``--rounds`` rounds, each on a fresh ledger
   copy: ``1 alone`` (one replica, ``--forget-batch 1``: every forget its own transaction, as
   before group commit), ``1 group`` and ``3 group`` (group commit, the default).

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/replicas_bench.py --out results/replicas

Writes OUT/replicas.json. Every loop is bounded; every server is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.service.replicas import AUTH, READ_TOKEN, TOKEN, Replica, _admin, db_url, free_port  # noqa: E402

TEXT = ["a gorgeous, moving film with a weak plot"]
# a server like `s3t serve --no-background` whose fence a line on stdin switches ("on"/"off"; it
# answers "ok"): the same process, connections and caches answer with and without the fence
LAUNCH = """
import sys, threading, uvicorn
from s3t.service import create_app
app = create_app(sys.argv[1], db=sys.argv[2], background=False)
fence = app.state.fence
def control():
    for line in sys.stdin:
        app.state.fence = fence if line.strip() == "on" else None
        print("ok", flush=True)
threading.Thread(target=control, daemon=True).start()
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
"""


class Probe(Replica):
    """The server measured: one process, its fence switched per request over stdin."""

    def __init__(self, workspace: Path, db: str, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "S3T_TOKEN": TOKEN, "S3T_READ_TOKEN": READ_TOKEN, "HF_HUB_OFFLINE": "1"}
        self.log_path = log_dir / f"probe-{self.port}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCH, str(workspace), db, str(self.port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env,
                                     start_new_session=True, cwd=ROOT, text=True, bufsize=1)

    def fence(self, on: bool) -> None:
        self.proc.stdin.write("on\n" if on else "off\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"


def pct(xs: list[float]) -> dict:
    a = np.array(xs)
    return {"n": len(xs), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


# the template fit, run by this tree or (``--baseline-tree``) by another checkout's code and tests
FIT = """
import sys
from pathlib import Path
from s3t import S3T
from tests.conftest import make_tiny_model, tiny_config, toy_rows
root, name, url, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
model = make_tiny_model(root / ("tiny-" + name), 6)
est = S3T(tiny_config(model, shards=4, epochs=1), workspace=root / name, db=url)
est.fit(toy_rows(n, seed=1, subjects=50), validation=toy_rows(40, seed=2))
est.ws_.ledger.close()
"""


def tree_env(tree: Path | None) -> dict[str, str]:
    """Environment that runs ``tree``'s s3t (and its tests' helpers) instead of this checkout's."""
    return {} if tree is None else {"PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}


def fit(cluster, root: Path, n_train: int, name: str = "tmpl", tree: Path | None = None) -> tuple[Path, str]:
    _admin(cluster, f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "-c", FIT, str(root), name, db_url(cluster, name), str(n_train)],
                   env={**os.environ, "HF_HUB_OFFLINE": "1", **tree_env(tree)}, cwd=tree or ROOT, check=True)
    return root / name, name


def train_ids(n_train: int) -> list[str]:
    """The template's training record ids (the same rows in every tree)."""
    from tests.conftest import toy_rows

    return [r["id"] for r in toy_rows(n_train, seed=1, subjects=50)]


class Copies:
    def __init__(self, cluster, root: Path, template: Path, db: str):
        self.cluster, self.root, self.template, self.db, self.n = cluster, root, template, db, 0

    def make(self) -> tuple[Path, str]:
        self.n += 1
        name = f"{self.db}_copy{self.n}"
        _admin(self.cluster, f'CREATE DATABASE "{name}" TEMPLATE "{self.db}"')
        dest = self.root / name
        shutil.copytree(self.template, dest)
        url = db_url(self.cluster, name)
        (dest / "workspace.json").write_text(json.dumps({"db": url}))
        return dest, url


def slice_ids(url: str) -> dict[tuple[int, int], list[str]]:
    from s3t.store.ledger import Ledger

    led = Ledger(url)
    out: dict[tuple[int, int], list[str]] = {}
    for r in led.records("train"):
        out.setdefault((r.shard, r.slice), []).append(r.id)
    led.close()
    return out


def fence_cost(copies: Copies, root: Path, pairs: int, forgets: int) -> dict:
    import httpx

    ws, url = copies.make()
    probe, writer = Probe(ws, url, root), Replica(ws, url, root, background=False)
    try:
        for s in (probe, writer):
            s.wait_ready()
        client = httpx.Client(base_url=probe.url, timeout=60)
        forgetter = httpx.Client(base_url=writer.url, timeout=60)
        for on in (True, False) * 10:  # warm both paths
            probe.fence(on)
            client.post("/predict", json={"texts": TEXT})

        def ask(on: bool) -> tuple[float, dict]:
            probe.fence(on)
            t = time.perf_counter()
            r = client.post("/predict", json={"texts": TEXT})
            dt = 1000 * (time.perf_counter() - t)
            assert r.status_code == 200, r.text
            return dt, r.json()

        def order(i: int) -> tuple[bool, bool]:
            return (True, False) if i % 2 == 0 else (False, True)

        out: dict = {}
        lat: dict[bool, list[float]] = {True: [], False: []}
        for i in range(pairs):
            for on in order(i):
                lat[on].append(ask(on)[0])
        out["idle"] = {"fenced": pct(lat[True]), "unfenced": pct(lat[False]),
                       "paired_difference_ms": pct([a - b for a, b in zip(lat[True], lat[False])])}

        # one slice per shard keeps every shard live: each forget commits a new version, the first
        # per shard swaps a member (from the standby), the rest swap the version only
        ids = [i for (shard, sl), v in sorted(slice_ids(url).items()) if sl == 2 for i in v]
        ids = [ids[k] for k in np.random.default_rng(0).permutation(len(ids))][:forgets]
        lat = {True: [], False: []}
        first: dict[bool, list[float]] = {True: [], False: []}  # asked right after the acknowledgement
        stale = {True: 0, False: 0}
        for i, rid in enumerate(ids):
            r = forgetter.post("/forget", json={"record_ids": [rid]}, headers=AUTH)
            assert r.status_code == 202, r.text
            floor = r.json()["manifest_version"]
            for k, on in enumerate(order(i)):
                dt, body = ask(on)
                lat[on].append(dt)
                if k == 0:
                    first[on].append(dt)
                stale[on] += body["manifest_version"] < floor
        out["forgets"] = {"fenced": pct(lat[True]), "unfenced": pct(lat[False]),
                          "paired_difference_ms": pct([a - b for a, b in zip(lat[True], lat[False])]),
                          "first_after_ack": {"fenced": pct(first[True]), "unfenced": pct(first[False])},
                          "stale_answers": {"fenced": stale[True], "unfenced": stale[False]}}
        client.close()
        forgetter.close()
    finally:
        for s in (probe, writer):
            s.stop()
    out["query"] = fence_query(url)
    return out


def fence_query(url: str, n: int = 2000) -> dict:
    """In process: one fence query vs one read of the whole latest manifest (the old per-prediction read)."""
    from s3t.service.fence import ManifestFence
    from s3t.store.ledger import Ledger

    led = Ledger(url)
    fence = ManifestFence(led)
    try:
        fence.latest(), led.latest_manifest()
        rounds = {"fence_query": [], "full_manifest_read": []}
        for i in range(n):
            for name in (("fence_query", "full_manifest_read") if i % 2 == 0 else ("full_manifest_read", "fence_query")):
                t = time.perf_counter()
                fence.latest() if name == "fence_query" else led.latest_manifest()
                rounds[name].append(1000 * (time.perf_counter() - t))
        return {k: pct(v) for k, v in rounds.items()}
    finally:
        fence.close()
        led.close()


SETUPS = (("1 alone", 1, 1), ("1 group", 1, None), ("3 group", 3, None))  # name, replicas, --forget-batch
BASELINE = "before group commit"  # --baseline-tree: one replica of that checkout's code


class Poster:
    """One keep-alive HTTP/1.1 connection (the standard library's): the load generator shares the
    machine's cores with the servers and PostgreSQL, so it should take as little CPU as it can
    (0.3 ms of CPU per forget here, against 2 ms with an httpx client)."""

    def __init__(self, url: str, timeout: float = 120.0):
        from urllib.parse import urlsplit

        u = urlsplit(url)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.conn = None

    def post(self, path: str, body: dict) -> tuple[int, str]:
        import http.client

        data = json.dumps(body).encode()
        headers = {**AUTH, "Content-Type": "application/json"}
        for attempt in (0, 1):  # a keep-alive connection the server closed: reconnect once (a forget is
            # idempotent: sent again, it gets the same receipt)
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", path, body=data, headers=headers)
                r = self.conn.getresponse()
                return r.status, r.read().decode(errors="replace")
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def throughput(copies: Copies, root: Path, replicas: int, clients: int, n: int, lone: int, seed: int,
               ids: list[str], forget_batch: int | None = None, tree: Path | None = None) -> dict:
    ws, url = copies.make()
    args = ("--forget-batch", str(forget_batch)) if forget_batch is not None else ()
    servers = [Replica(ws, url, root, background=False, args=args, env=tree_env(tree)) for _ in range(replicas)]
    try:
        for s in servers:
            s.wait_ready()
        ids = [ids[k] for k in np.random.default_rng(seed).permutation(len(ids))]
        todo, lock, lat, errors = list(ids[:n]), threading.Lock(), [], []
        turn = iter(range(10 ** 9))

        def client() -> None:
            conns = [Poster(s.url) for s in servers]
            try:
                while True:
                    with lock:
                        if not todo:
                            return
                        rid, k = todo.pop(), next(turn)
                    t = time.perf_counter()
                    status, text = conns[k % len(conns)].post("/forget", {"record_ids": [rid]})
                    dt = 1000 * (time.perf_counter() - t)
                    with lock:
                        (lat if status == 202 else errors).append(dt if status == 202 else text[:200])
            finally:
                for c in conns:
                    c.close()

        start = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        wall = time.perf_counter() - start
        alone = []
        c = Poster(servers[0].url)
        try:
            for k, rid in enumerate(ids[n:n + lone]):
                t = time.perf_counter()
                status, text = c.post("/forget", {"record_ids": [rid]})
                alone.append(1000 * (time.perf_counter() - t))
                assert status == 202, text
        finally:
            c.close()
        loaded = pct(lat)
        return {"replicas": replicas, "forget_batch": forget_batch, "clients": clients, "forgets": len(lat), "errors": errors[:5],
                "seconds": wall, "per_second": len(lat) / wall, "p50": loaded["p50"], "p99": loaded["p99"],
                "lone_p50": pct(alone)["p50"], "lone_p99": pct(alone)["p99"]}
    finally:
        for s in servers:
            s.stop()


def main() -> None:
    from tests.pg import Cluster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--records", type=int, default=1200)
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--fence-forgets", type=int, default=150)
    ap.add_argument("--forgets", type=int, default=400)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--lone", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline-tree", type=Path, help="A checkout of the code before group commit (e.g. `git worktree "
                    "add --detach /tmp/base 564d1a6^`): one more setup, one replica of that code, side by side")
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                    help="One more setup (repeatable): one replica of another checkout's code with group commit, "
                         "e.g. the previous commit, to measure one change side by side")
    ap.add_argument("--skip-fence", action="store_true", help="Throughput only (the fence part takes a few minutes)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="s3t-replicas-"))
    cluster = Cluster().start()
    try:
        template, db = fit(cluster, tmp, args.records)
        copies = Copies(cluster, tmp, template, db)
        setups = [(name, replicas, batch, copies, None) for name, replicas, batch in SETUPS]
        if args.baseline_tree is not None:
            tree = args.baseline_tree.resolve()
            old_template, old_db = fit(cluster, tmp, args.records, name="tmpl_base", tree=tree)
            setups.insert(0, (BASELINE, 1, None, Copies(cluster, tmp, old_template, old_db), tree))
        for k, spec in enumerate(args.tree):
            label, _, path = spec.partition("=")
            if not path:
                ap.error(f"--tree takes LABEL=PATH; got {spec!r}")
            tree = Path(path).resolve()
            t_template, t_db = fit(cluster, tmp, args.records, name=f"tmpl_tree{k}", tree=tree)
            setups.append((label, 1, None, Copies(cluster, tmp, t_template, t_db), tree))
        ids = train_ids(args.records)
        result: dict = {"config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                                   "plan": "m=4 L=3 B=3, tiny random BERT (6 layers, hidden 32)",
                                   "cpus": os.cpu_count(), "postgres": str(cluster.bin)}}
        if not args.skip_fence:
            result["fence"] = fence_cost(copies, tmp, args.pairs, args.fence_forgets)
            print(json.dumps({"fence": result["fence"]}, indent=1), flush=True)
        rounds = []
        for r in range(args.rounds):
            for name, replicas, batch, source, tree in setups:
                rounds.append({"round": r, "setup": name, **throughput(source, tmp, replicas, args.clients, args.forgets,
                                                                       args.lone, seed=r, forget_batch=batch, ids=ids,
                                                                       tree=tree)})
                print(json.dumps(rounds[-1]), flush=True)
        med = {name: {k: float(np.median([x[k] for x in rounds if x["setup"] == name]))
                      for k in ("per_second", "p50", "p99", "lone_p50", "lone_p99")} for name, *_ in setups}
        base = med["1 alone"]["per_second"]
        result["throughput"] = {"rounds": rounds, "median": med,
                                "speedup_vs_alone": {name: m["per_second"] / base for name, m in med.items()}}
        if args.baseline_tree is not None:
            before = med[BASELINE]["per_second"]
            result["throughput"]["speedup_vs_before"] = {name: m["per_second"] / before for name, m in med.items()}
            result["config"]["baseline_commit"] = subprocess.run(
                ["git", "-C", str(args.baseline_tree), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        result["load_average"] = os.getloadavg()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "replicas.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({"throughput_median": med}, indent=1))
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
