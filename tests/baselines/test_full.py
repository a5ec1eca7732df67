"""Full retrain: one all-layer model; forget retrains everything from scratch without the records."""

from __future__ import annotations

import pytest
import torch

from s3t.baselines import FullRetrain
from s3t.data import to_records
from s3t.errors import DataError, UnknownRecordError
from s3t.store.checkpoints import state_digest
from tests.conftest import tiny_config, toy_rows


def test_full_trains_every_layer_and_forget_retrains_from_scratch(tiny_model, tmp_path):
    train = to_records(toy_rows(80, seed=3))
    cfg = tiny_config(tiny_model, shards=1, slices=3, budget=1)
    full = FullRetrain(cfg).fit(train)
    assert full.n_examples_ == 80 and full.seconds_ > 0
    lora_b = [n for n in full.state_ if "lora_B" in n]
    assert {int(n.split("layer.")[1].split(".")[0]) for n in lora_b} == set(range(6))
    assert all(full.state_[n].abs().sum() > 0 for n in lora_b)
    full.save(tmp_path / "full.pt")
    back = FullRetrain.restore(cfg, train, tmp_path / "full.pt", backbone=full.backbone)
    assert state_digest(back.state_) == state_digest(full.state_) and back.seconds_ == full.seconds_
    texts = list(train.texts[:6])
    assert torch.equal(torch.tensor(back.predict_proba(texts)), torch.tensor(full.predict_proba(texts))), \
        "the restored model predicts exactly like the trained one"
    old = full.state_
    victims = [train.ids[5], train.ids[40]]
    report = full.forget(victims)
    assert report.retrained == {0: [1]} and report.seconds > 0
    assert full.n_examples_ == 78, "retrained on everything that is left"
    assert any(not torch.equal(old[n], full.state_[n]) for n in old)
    fresh = FullRetrain(cfg).fit(train.subset([i for i, r in enumerate(train.ids) if r not in victims]))
    assert state_digest(fresh.state_) == state_digest(full.state_), "forget == training from scratch without them"
    assert full.forget(victims).retrained == {}, "already forgotten: nothing to retrain"
    with pytest.raises(UnknownRecordError):
        full.forget(["nope"])
    with pytest.raises(DataError, match="forgotten"):
        full.save(tmp_path / "again.pt")
    proba = full.predict_proba(list(train.texts[:4]))
    assert proba.shape == (4, 2)
    assert 0.0 <= full.score(train) <= 1.0
