"""The batched forget transaction (s3t.forget_batch) gives each request exactly what it gets in a
transaction of its own: random request sequences are replayed both ways on copies of one fitted
workspace, and every receipt, manifest, deletion, erasure, purge and score must agree."""

from __future__ import annotations

import json
import random
import shutil

import pytest
from sqlalchemy import select

from s3t import S3T
from s3t.forget import Receipt, record_forgets, verify_chain
from s3t.store.schema import Checkpoint, Deletion, Manifest, Record, Receipt as ReceiptRow
from tests.conftest import tiny_config, toy_rows

# receipt fields that name the request or the moment, not what it did
_VOLATILE = ("request_id", "created_at", "prev_hash")


@pytest.fixture(scope="module", params=["fitted", "retrained"])
def template(request, tmp_path_factory, tiny_model):
    """m=2, L=3, B=3; subjects user0..user11 have training rows, only user0..user4 validation rows.
    ``retrained``: after forgets in both shards and a retrain (rebuilt slices, new checkpoints,
    purged old ones), so records belong to several slice versions."""
    root = tmp_path_factory.mktemp("batch-template")
    train, val = toy_rows(120, seed=1, subjects=12), toy_rows(40, seed=2, subjects=5)
    est = S3T(tiny_config(tiny_model), workspace=root / "ws").fit(train, validation=val)
    gone: list[str] = []
    if request.param == "retrained":
        gone = [train[3]["id"], train[50]["id"], train[77]["id"]]
        est.forget(gone)
        est.retrain()
        est.flush()
    est.ws_.ledger.close()
    return root / "ws", [r["id"] for r in train if r["id"] not in gone] + gone[:1], [r["id"] for r in val]


def requests_for(seed: int, train: list[str], val: list[str]) -> list[tuple]:
    """A mix of what arrives in practice: single and multi-record forgets, repeats of earlier
    requests, subjects (with and without validation rows), unknown ids and validation ids."""
    rng = random.Random(seed)
    out: list[tuple] = []
    for _ in range(30):
        kind = rng.random()
        if kind < 0.45:
            out.append(([rng.choice(train)], None))
        elif kind < 0.6:
            out.append((rng.sample(train, rng.randint(2, 5)), None))
        elif kind < 0.7 and out:
            out.append(rng.choice(out))  # the same request again
        elif kind < 0.82:
            out.append((None, f"user{rng.randrange(5, 12)}"))  # training rows only
        elif kind < 0.88:
            out.append((None, f"user{rng.randrange(0, 5)}"))  # training and validation rows
        elif kind < 0.94:
            out.append(([rng.choice(train), "no-such-record"], None))
        else:
            out.append(([rng.choice(val)], None))
    return out


def outcome(r) -> tuple:
    if not isinstance(r, Receipt):
        return ("error", type(r).__name__, str(r))
    return ("receipt", r.created, {k: v for k, v in r.body.items() if k not in _VOLATILE}, sorted(r.cut_paths))


def state(ws) -> dict:
    """Everything a forget writes, without request ids and times."""
    est = S3T.load(ws)
    with est.ws_.ledger.Session() as s:
        receipts = [json.loads(b) for b in s.scalars(select(ReceiptRow.body).order_by(ReceiptRow.seq))]
        seq_of = {b["request_id"]: b["seq"] for b in receipts}
        out = {
            "receipts": [{k: v for k, v in b.items() if k not in _VOLATILE} for b in receipts],
            "manifests": [(v, b) for v, b in s.execute(select(Manifest.version, Manifest.body).order_by(Manifest.version))],
            "deletions": sorted((d.record_id, seq_of[d.request_id]) for d in s.scalars(select(Deletion))),
            "erased": sorted(s.scalars(select(Record.id).where(Record.text.is_(None)))),
            "fingerprints_left": sorted(s.scalars(select(Record.id).where(Record.text_hmac.is_not(None)))),
            "checkpoints": sorted((c.id, c.purged, c.val_accuracy) for c in s.scalars(select(Checkpoint))),
        }
    assert verify_chain(est.receipts()) == []
    est.ws_.ledger.close()
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_batch_gives_each_request_what_its_own_transaction_gives(tmp_path, template, seed):
    ws, train, val = template
    asked = requests_for(seed, train, val)
    one, batch = shutil.copytree(ws, tmp_path / "one"), shutil.copytree(ws, tmp_path / "batch")

    ledger = S3T.load(one).ws_.ledger
    want = [outcome(record_forgets(ledger, [req], batched=False)[0]) for req in asked]
    ledger.close()

    ledger, rng, got, i = S3T.load(batch).ws_.ledger, random.Random(seed), [], 0
    while i < len(asked):  # random batch sizes, a whole-sequence batch among them
        n = len(asked) if seed == 0 else rng.randint(1, 12)
        got += [outcome(r) for r in record_forgets(ledger, asked[i:i + n])]
        i += n
    ledger.close()

    assert [o[0] for o in want].count("error") >= 1 and [o[0] for o in want].count("receipt") >= 10
    assert got == want
    assert state(batch) == state(one)


def test_a_batch_is_a_few_statements_not_a_few_per_request(tmp_path, template):
    """The point of the batch: its statement count does not grow with the number of requests."""
    from sqlalchemy import event

    ws, train, _ = template
    counts = []
    for n in (1, 16):
        est = S3T.load(shutil.copytree(ws, tmp_path / f"ws{n}"))
        seen = []
        event.listen(est.ws_.ledger.engine, "before_cursor_execute", lambda *a, **k: seen.append(1))
        out = record_forgets(est.ws_.ledger, [([rid], None) for rid in train[n:2 * n]])
        assert all(isinstance(r, Receipt) and r.created for r in out)
        counts.append(len(seen))
        est.ws_.ledger.close()
    assert counts[1] <= counts[0] + 2, counts  # one request or sixteen: about the same statements
