"""SISA: every layer trained at every stage, from the previous stage's state; forget retrains the right suffix."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from s3t.baselines import SISA
from s3t.data import to_records
from s3t.errors import NoLiveModelError, UnknownRecordError
from s3t.store.checkpoints import state_digest
from s3t.train.stage import StageSpec
from tests.conftest import tiny_config, toy_rows

N_LAYERS = 6


def layer_of(name: str) -> int | None:
    return int(name.split("layer.")[1].split(".")[0]) if "layer." in name else None


@pytest.fixture(scope="module")
def train():
    return to_records(toy_rows(90, seed=1))


@pytest.fixture(scope="module")
def sisa(tiny_model, train):
    return SISA(tiny_config(tiny_model, shards=2, slices=3, budget=1)).fit(train)


def test_sisa_spec_adapts_and_trains_every_layer():
    every = tuple(range(N_LAYERS))
    for stage in (1, 2, 3):
        spec = StageSpec(shard=0, prefix=tuple(range(stage)), seed=1, groups=tuple(every for _ in range(3)))
        assert spec.layers == list(every), "each layer adapted once, whatever the stage"
        assert spec.trained_layers == list(every)
        assert spec.level == 0


def test_runner_specs_are_sisa_specs(sisa):
    spec = sisa.runner_.spec(1, (0, 1))
    assert spec.layers == list(range(N_LAYERS)) and spec.trained_layers == list(range(N_LAYERS))
    assert sisa.runner_.cache is None or sisa.runner_.cache.levels == [0]


def test_stage_k_changes_every_adapter_and_the_head(sisa):
    for shard in (0, 1):
        states = sisa.states_[shard]
        first = states[0]
        lora_b = [n for n in first if "lora_B" in n]
        assert {layer_of(n) for n in lora_b} == set(range(N_LAYERS)), "stage 1 adapts every layer"
        assert all(first[n].abs().sum() > 0 for n in lora_b), "stage 1 trained every layer (lora_B starts at 0)"
        for k in (1, 2):
            parent, child = states[k - 1], states[k]
            assert set(parent) == set(child), "every stage holds the adapters of every layer"
            for name in child:
                assert not torch.equal(parent[name], child[name]), f"stage {k + 1} did not train {name}"


def test_stage_k_starts_from_stage_k_minus_1(tiny_model, train):
    """With a vanishing learning rate each stage must end where its parent ended — not at a fresh init."""
    cfg = tiny_config(tiny_model, shards=1, slices=3, budget=1)
    cfg = replace(cfg, train=replace(cfg.train, lr=1e-12))
    states = SISA(cfg).fit(train).states_[0]
    for k in (1, 2):
        lora_a = [n for n in states[k] if "lora_A" in n]
        assert lora_a
        for name in states[k]:
            assert torch.allclose(states[k][name], states[k - 1][name], atol=1e-6), name


def test_forget_retrains_from_the_checkpoint_before_the_hit_slice(tiny_model, train):
    cfg = tiny_config(tiny_model, shards=2, slices=3, budget=1)
    sisa = SISA(cfg).fit(train)
    victim = next(r for r in train.ids if sisa.locate(r) == (0, 1))
    before = {s: list(sisa.states_[s]) for s in (0, 1)}
    report = sisa.forget([victim])
    assert report.retrained == {0: [2, 3]} and report.seconds > 0
    assert sisa.states_[0][0] is before[0][0], "stage 1 never saw slice 1: kept"
    assert all(sisa.states_[0][k] is not before[0][k] for k in (1, 2))
    assert all(sisa.states_[1][k] is before[1][k] for k in range(3)), "the other shard is untouched"
    assert victim not in sisa.members_[(0, 1)]
    # exact: equal, bit for bit, to SISA trained from scratch on the data without the record
    keep = [i for i, r in enumerate(train.ids) if r != victim]
    rest = train.subset(keep)
    fresh = SISA(cfg).fit(rest, assignment=[sisa.where_[r] for r in rest.ids])
    for shard in (0, 1):
        for k in range(3):
            assert state_digest(fresh.states_[shard][k]) == state_digest(sisa.states_[shard][k]), (shard, k)


def test_forget_in_first_slice_retrains_the_whole_shard(tiny_model, train):
    sisa = SISA(tiny_config(tiny_model, shards=2, slices=3, budget=1)).fit(train)
    victim = next(r for r in train.ids if sisa.locate(r) == (1, 0))
    old = list(sisa.states_[1])
    assert sisa.forget([victim]).retrained == {1: [1, 2, 3]}
    assert all(new is not o for new, o in zip(sisa.states_[1], old))
    assert sisa.forget([victim]).retrained == {}, "a repeated request retrains nothing"
    with pytest.raises(UnknownRecordError):
        sisa.forget(["no-such-record"])


def test_served_stages_without_retraining(sisa, train):
    in_01 = next(r for r in train.ids if sisa.locate(r) == (0, 1))
    in_10 = next(r for r in train.ids if sisa.locate(r) == (1, 0))
    assert sisa.served_stages([]) == {0: 3, 1: 3}
    assert sisa.served_stages([in_01]) == {0: 1, 1: 3}
    assert sisa.served_stages([in_01, in_10]) == {0: 1, 1: 0}


def test_predict_uses_the_requested_stages(sisa, train):
    texts = list(train.texts[:7])
    full = sisa.predict_proba(texts)
    assert full.shape == (7, 2) and abs(full.sum(1) - 1).max() < 1e-5
    logits = sisa.checkpoint_logits(texts)
    assert sorted(logits) == [(s, k) for s in (0, 1) for k in (1, 2, 3)]
    only = sisa.predict_proba(texts, {0: 1, 1: 0})
    assert torch.allclose(torch.tensor(only), torch.softmax(logits[(0, 1)], -1), atol=1e-6)
    assert 0.0 <= sisa.score(train) <= 1.0
    with pytest.raises(NoLiveModelError):
        sisa.predict_proba(texts, {0: 0, 1: 0})
    assert all(t > 0 for s in sisa.stage_seconds_.values() for t in s)


def test_save_and_restore_give_the_same_model_without_training(sisa, train, tmp_path):
    from s3t.errors import DataError

    sisa.save(tmp_path / "sisa.pt")
    back = SISA.restore(sisa.config, train, tmp_path / "sisa.pt", backbone=sisa.backbone)
    assert back.stage_seconds_ == sisa.stage_seconds_ and back.fit_seconds_ == sisa.fit_seconds_
    assert all(state_digest(a) == state_digest(b) for s in sisa.states_ for a, b in zip(sisa.states_[s], back.states_[s]))
    texts = list(train.texts[:5])
    assert torch.equal(torch.tensor(back.predict_proba(texts)), torch.tensor(sisa.predict_proba(texts)))
    in_02 = next(r for r in train.ids if back.locate(r) == (0, 2))
    back.forget([in_02])
    with pytest.raises(DataError, match="forgotten"):
        back.save(tmp_path / "again.pt")
