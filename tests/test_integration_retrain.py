"""Retrain + verify on the real pretrained model (all-MiniLM-L6-v2) and the real movie-review data.

The bit-exactness certificate is otherwise shown only on a tiny random BERT; here a small plan
(m=2, L=3, B=2, a few hundred records, one epoch, one thread) is fitted on the real model,
records of both shards are forgotten, the cut stages are retrained, and every checkpoint of the
affected shards is compared bit for bit with training from scratch on the data without them.
"""

from __future__ import annotations

import pytest

from s3t import S3T
from s3t.config import LoraSettings, PlanConfig, S3TConfig, TrainConfig
from s3t.data import load_builtin
from s3t.store.checkpoints import load_checkpoint, state_digest

pytestmark = pytest.mark.integration


def test_real_model_forget_retrain_verifies_bit_for_bit(tmp_path):
    splits = load_builtin("movie_reviews", seed=0, limit=250)
    cfg = S3TConfig(
        plan=PlanConfig(shards=2, slices=3, budget=2),
        train=TrainConfig(epochs=1, lr=2e-3, batch_size=32, threads=1, workers=1, lora=LoraSettings(rank=8, alpha=16)),
    )
    model = S3T(cfg, workspace=tmp_path / "ws").fit(splits.train, validation=splits.validation)
    assert model.status()["served"] == {"0": 3, "1": 3}
    ledger = model.ws_.ledger
    before = {(c.shard, c.prefix): state_digest(load_checkpoint(model.ws_.resolve(c.path), sha256=c.sha256)[0])
              for c in ledger.checkpoints()}  # read now: forget erases the cut checkpoints' files
    assert len(before) == 12  # per shard, the trie of (0,1,2) and (1,2,0): 6 prefixes

    def record(shard: int, sl: int) -> str:
        return next(r.id for r in ledger.records("train") if r.shard == shard and r.slice == sl)

    forgotten = [record(0, 1), record(0, 2), record(1, 0)]
    receipt = model.forget(record_ids=forgotten)
    assert receipt.affected_shards == [0, 1]
    assert receipt.after["0"] < 3 and receipt.after["1"] < 3

    report = model.retrain()
    assert report.requests == [receipt.request_id]
    assert sorted(report.rebuilt_slices) == [(0, 1), (0, 2), (1, 0)]
    assert report.served_after == {"0": 3, "1": 3}
    assert ledger.request_state(receipt.request_id) == "retrained"
    # the cut stages were retrained on other data, so their weights changed: shard 0 every prefix
    # but (0,), shard 1 every prefix holding slice 0
    retrained = [c for c in ledger.checkpoints() if c.id in set(report.checkpoints)]
    assert sorted((c.shard, c.prefix) for c in retrained) == sorted(
        [(0, p) for p in ("1", "0,1", "1,2", "0,1,2", "1,2,0")] + [(1, p) for p in ("0", "0,1", "0,1,2", "1,2,0")])
    for c in retrained:
        new_state, _ = load_checkpoint(model.ws_.resolve(c.path), sha256=c.sha256)
        assert state_digest(new_state) != before[(c.shard, c.prefix)], f"shard {c.shard} prefix {c.prefix} unchanged"
    assert model.audit().ok

    cert = model.verify(receipt.request_id)
    assert cert.mismatches == []
    assert cert.compared == 12  # every prefix of both shards' tries, retrained or untouched
    assert cert.ok
