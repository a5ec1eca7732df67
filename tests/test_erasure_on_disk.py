"""Physical erasure: after a forget (and ``flush``), no byte under the workspace holds a forgotten
text — not the ledger file, not its WAL or shared memory, not a checkpoint, log or cache.

Each text carries a unique marker word, so a hit can only be the forgotten record itself.
"""

from __future__ import annotations

import secrets

import pytest

from s3t import S3T
from tests.conftest import tiny_config, toy_rows
from tests.fitted_copy import fitted_template, fitted_ws  # noqa: F401  (fixtures)


def marked(rows: list[dict]) -> list[dict]:
    return [{**r, "text": f"{r['text']} zq{secrets.token_hex(6)}"} for r in rows]


def every_file_bytes(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_forgotten_texts_leave_no_byte_under_the_workspace(tmp_path, tiny_model):
    train, val = marked(toy_rows(120, seed=21, subjects=10)), marked(toy_rows(40, seed=22, subjects=10))
    est = S3T(tiny_config(tiny_model, epochs=1), workspace=tmp_path / "ws").fit(train, validation=val)
    est.forget(subject="user4")  # training and validation rows of one person
    singles = [r["id"] for r in train if r.get("subject") not in ("user4",)][:3]
    est.forget(record_ids=singles)
    assert est.flush(60)
    gone = [r["text"] for r in train + val if r.get("subject") == "user4" or r["id"] in singles]
    kept = [r["text"] for r in train if r.get("subject") != "user4" and r["id"] not in singles]
    files = every_file_bytes(est.ws_.path)
    assert "ledger.sqlite" in files
    found = [(name, text) for text in gone for name, data in files.items() if text.encode() in data]
    assert found == [], found[:5]
    # the grep can find a text: the ones still held are in the ledger
    assert any(kept[0].encode() in data for data in files.values())
    report = est.audit()
    assert report.ok and "physical" in {c.name for c in report.checks}, report.to_dict()
    est.ws_.ledger.close()


def test_erasing_residue_runs_once_per_new_receipt_not_once_per_call(fitted_ws, monkeypatch):
    """On PostgreSQL a residue erasure is a VACUUM FULL (a table rewrite): when an earlier run already
    covered every committed forget, the step is skipped, so a burst of forgets costs about one."""
    from tests.service.conftest import train_ids

    ws = fitted_ws.ws_
    calls = []
    real = type(ws.ledger).erase_residue
    monkeypatch.setattr(type(ws.ledger), "erase_residue", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    fitted_ws.forget(record_ids=[train_ids(fitted_ws, 0, 0)[0]])
    assert fitted_ws.flush() and len(calls) == 1 and ws.erased_through() == ws.last_receipt_seq()
    assert ws.erase_residue() and len(calls) == 1  # nothing new to erase: not run again
    fitted_ws.forget(record_ids=[train_ids(fitted_ws, 1, 1)[0]])
    assert fitted_ws.flush() and len(calls) == 2 and ws.erased_through() == ws.last_receipt_seq() == 2


def test_paced_erasure_covers_a_storm_with_one_run_per_interval(fitted_ws, monkeypatch):
    """``min_interval`` (serve.erasure_interval): a call sooner than that after this workspace's last
    run waits for its turn, then covers every forget committed by then, including those committed
    while it waited; a call with nothing new runs nothing; 0 never waits."""
    from s3t.forget import record_forget
    from s3t.store.workspace import Workspace
    from tests.service.conftest import train_ids

    ws = fitted_ws.ws_
    ids = iter(train_ids(fitted_ws, 0, 0) + train_ids(fitted_ws, 1, 1))
    calls, slept, clock = [], [], {"t": 1000.0}
    real = type(ws.ledger).erase_residue
    monkeypatch.setattr(type(ws.ledger), "erase_residue", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    ws._clock = lambda: clock["t"]
    during_wait = []  # what a fake sleep does while "waiting": a forget commits, or another process erases

    def sleep(seconds):
        slept.append(seconds)
        clock["t"] += seconds
        for step in during_wait:
            step()
        during_wait.clear()

    ws._sleep = sleep
    forget = lambda: record_forget(ws.ledger, record_ids=[next(ids)])  # noqa: E731  (the commit only)
    forget()
    assert ws.erase_residue(min_interval=5) and (len(calls), slept, ws.erased_through()) == (1, [], 1)  # first: at once
    clock["t"] += 1
    forget()
    during_wait.append(forget)  # a third forget commits while the second waits for its turn
    assert ws.erase_residue(min_interval=5)
    assert slept == [4.0] and len(calls) == 2 and ws.erased_through() == ws.last_receipt_seq() == 3
    assert ws.erase_residue(min_interval=5) and len(calls) == 2 and slept == [4.0]  # nothing new: nothing run
    forget()
    assert ws.erase_residue(min_interval=0) and len(calls) == 3 and slept == [4.0]  # 0: no wait
    # another process covers the forget while this one waits: nothing left to run here
    forget()
    other = Workspace(ws.path)
    during_wait.append(other.erase_residue)
    assert ws.erase_residue(min_interval=5) and len(slept) == 2 and len(calls) == 4
    assert ws.erased_through() == ws.last_receipt_seq() == 5
    other.ledger.close()


def test_the_estimator_paces_erasure_by_serve_erasure_interval(fitted_ws, monkeypatch):
    import dataclasses

    from s3t.config import ServeConfig
    from s3t.errors import ConfigError

    assert fitted_ws.ws_.ledger.dialect == "sqlite" and fitted_ws._erasure_interval() == 0.0  # WAL truncate: cheap
    monkeypatch.setattr(fitted_ws, "config", dataclasses.replace(
        fitted_ws.config, serve=dataclasses.replace(fitted_ws.config.serve, erasure_interval=0.25)))
    assert fitted_ws._erasure_interval() == 0.25
    # a forget's background file step paces its erasure by it
    from tests.service.conftest import train_ids

    asked = []
    real = type(fitted_ws.ws_).erase_residue
    monkeypatch.setattr(fitted_ws.ws_, "erase_residue", lambda **kw: asked.append(kw) or real(fitted_ws.ws_, **kw))
    fitted_ws.forget(record_ids=[train_ids(fitted_ws, 0, 0)[0]])
    assert fitted_ws.flush(30) and asked == [{"min_interval": 0.25}]
    assert fitted_ws.ws_.erased_through() == fitted_ws.ws_.last_receipt_seq() == 1
    for bad in (-1, "1", 7200, True):
        with pytest.raises(ConfigError, match="serve.erasure_interval"):
            ServeConfig(erasure_interval=bad)
