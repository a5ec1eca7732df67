"""Several real processes write one workspace at once, as in a deployment: three processes
forgetting, one retraining in a loop, and CLI ``status`` / ``predict`` calls (each ``S3T.load``
runs recovery, which refreshes the manifest). Afterwards every manifest version ever committed
is checked against the deletions committed before it, every acknowledged forget is in the
ledger, and the audit passes. Bounded: each process does a fixed amount of work.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from s3t.store.ledger import Ledger
from tests.fitted_copy import copy_workspace, fitted_template  # noqa: F401  (fixture)

FORGETTERS, FORGETS_EACH, RETRAINS = 3, 4, 3
DEADLINE_S = 600


def _forgetter(ws: str, batches: list[list[str]], out: str) -> None:
    from s3t import S3T

    est = S3T.load(ws)
    acknowledged = []
    for ids in batches:
        acknowledged.append(est.forget(record_ids=ids).request_id)
        Path(out).write_text(json.dumps(acknowledged))  # what was acknowledged so far
        time.sleep(0.05)
    est.flush()


def _retrainer(ws: str, out: str) -> None:
    from s3t import S3T

    est = S3T.load(ws)
    done = []
    for _ in range(RETRAINS):
        done.append(est.retrain().to_dict()["checkpoints"])
        time.sleep(0.1)
    Path(out).write_text(json.dumps(done))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "s3t.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_forgets_retrains_and_cli_loads_from_many_processes_keep_every_manifest_exact(tmp_path, fitted_template):
    from s3t import S3T
    from s3t.audit import history_violations

    ws = copy_workspace(fitted_template.path, tmp_path / "ws")
    ids = [r["id"] for r in fitted_template.train]
    random.Random(7).shuffle(ids)
    per = [[[ids[(p * FORGETS_EACH + k)]] for k in range(FORGETS_EACH)] for p in range(FORGETTERS)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_forgetter, args=(str(ws), per[p], str(tmp_path / f"forget-{p}.json")))
             for p in range(FORGETTERS)]
    procs.append(ctx.Process(target=_retrainer, args=(str(ws), str(tmp_path / "retrain.json"))))
    for p in procs:
        p.start()
    cli_codes = []
    deadline = time.monotonic() + DEADLINE_S
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        status = _cli("status", "-w", str(ws), "--json")
        predict = _cli("predict", "-w", str(ws), "a really great film", "--json")
        cli_codes.append((status.returncode, predict.returncode))
        assert status.returncode == 0, status.stderr
        # predict may find every shard dead between a burst of forgets and the retrain: exit 2, said clearly
        assert predict.returncode == 0 or "no model available" in predict.stderr.lower(), predict.stderr
    for p in procs:
        p.join(max(1.0, deadline - time.monotonic()))
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    assert cli_codes  # the CLI really ran while the writers did

    acknowledged = [rid for p in range(FORGETTERS) for rid in json.loads((tmp_path / f"forget-{p}.json").read_text())]
    assert len(acknowledged) == FORGETTERS * FORGETS_EACH
    led = Ledger(f"sqlite:///{ws / 'ledger.sqlite'}")
    try:
        with led.Session() as s:
            assert history_violations(led, s) == []
        deleted = led.deleted_ids()
        assert deleted == {i for batch in per for ids_ in batch for i in ids_}
        assert set(led.requests_in_state("served-exact", "retraining", "retrained")) >= set(acknowledged)
    finally:
        led.close()
    est = S3T.load(ws)
    report = est.audit()
    assert report.ok, report.to_dict()
    est.ws_.ledger.close()
