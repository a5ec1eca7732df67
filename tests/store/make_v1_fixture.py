"""Make ``tests/store/fixtures/v1-workspace``: a workspace written by s3t's schema-version-1 code.

The migration test (``test_migration.py``) opens a copy of it with today's code. It was made
with the code of commit 606daef (the last schema-1 ledger), not with a reconstruction of it::

    mkdir -p /tmp/v1 && git archive 606daef src/s3t | tar -x -C /tmp/v1
    HF_HUB_OFFLINE=1 .venv/bin/python -m tests.store.make_v1_fixture /tmp/v1/src tests/store/fixtures/v1-workspace

What it holds: the tiny random BERT plan (m=2, L=3, B=2, 1 epoch) on 60 training and 20
validation rows given WITHOUT ids (so every id is schema 1's ``sha256(position, text)``), texts
with unique marker words, then two forgets in one slice: two single records, and one subject (one
training and two validation rows); the other shard keeps serving its full prefix. The WAL is checkpointed into the file; the model directory it names is
gone (nothing the test does loads the model).
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "v1-workspace"


def marked_rows(n: int, seed: int, user2: set[int]) -> list[dict]:
    """Toy rows without ids; subject ``user2`` owns the rows at ``user2``, ``user0``/``user1`` the rest."""
    from tests.conftest import toy_rows

    # no id column: schema 1 derives every id from (position, text); a marker makes each text unique
    return [{"text": f"{r['text']} zq{seed}x{i:03d}", "label": r["label"],
             "subject": "user2" if i in user2 else f"user{i % 2}"} for i, r in enumerate(toy_rows(n, seed=seed))]


def make(v1_src: str, out: Path) -> None:
    sys.path.insert(0, v1_src)
    import s3t
    from s3t import S3T
    from s3t.store.schema import SCHEMA_VERSION

    assert Path(s3t.__file__).resolve().is_relative_to(Path(v1_src).resolve()), s3t.__file__
    assert SCHEMA_VERSION == 1, SCHEMA_VERSION
    from tests.conftest import make_tiny_model, tiny_config

    tmp = Path(tempfile.mkdtemp(prefix="s3t-v1-"))
    try:
        model = make_tiny_model(tmp / "tiny-bert", 6)
        train, val = marked_rows(60, 31, {7}), marked_rows(20, 32, {0, 3})
        est = S3T(tiny_config(model, budget=2, epochs=1), workspace=tmp / "ws").fit(train, validation=val)
        rows = est.ws_.ledger.records("train")
        target = next(r for r in rows if r.subject == "user2")  # its slice is cut by both requests
        singles = [r.id for r in rows if (r.shard, r.slice) == (target.shard, target.slice) and r.subject != "user2"][:2]
        est.forget(record_ids=singles)
        est.forget(subject="user2")
        assert est.flush(60) and est.audit().ok
        est.ws_.ledger.close()
        con = sqlite3.connect(tmp / "ws" / "ledger.sqlite")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tmp / "ws", out, ignore=shutil.ignore_patterns("*.lock", "ledger.sqlite-*"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    make(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else FIXTURE)
