"""Stage design options (issue 18): more epochs for the top group, warm-up, a fresh head per stage.
Each keeps layer isolation and bit-exact retrain/verify; at their defaults nothing changes."""

from __future__ import annotations

import pytest
import torch

from s3t.config import S3TConfig, TrainConfig
from s3t.store.checkpoints import state_digest
from s3t.train.backbone import load_backbone
from s3t.train.stage import build_model, lr_factor
from s3t.train.trainer import SliceData, StageRunner
from tests.conftest import tiny_config, toy_rows


def run(model_path, **train):
    from dataclasses import replace

    cfg = tiny_config(model_path, shards=1, slices=3, budget=1)
    cfg = replace(cfg, train=replace(cfg.train, **train))
    runner = StageRunner(load_backbone(model_path), cfg, 2)
    rows = toy_rows(36, seed=7)
    ids = [r["id"] for r in rows]
    runner.add_records(ids, [r["text"] for r in rows], [int(r["label"] == "pos") for r in rows])
    slices = {s: SliceData(100 + s, tuple(ids[s::3])) for s in range(3)}
    got, steps = {}, {}
    for prefix in [(0,), (0, 1)]:
        count = []
        runner.train_prefixes(0, [prefix], slices, lambda spec, res, lin: got.__setitem__(spec.prefix, res),
                              parent_states={p: got[p].state for p in got}, on_step=count.append)
        steps[prefix] = len(count)
    return runner, got, steps


def test_lr_factor_warms_up_then_decays():
    f = [lr_factor(s, 20, 0.25) for s in range(21)]
    assert f[0] == 0.0 and f[5] == 1.0 and f[20] == 0.0
    assert all(a < b for a, b in zip(f[:5], f[1:6])) and all(a > b for a, b in zip(f[5:20], f[6:21]))
    assert [lr_factor(s, 8) for s in range(9)] == [1 - s / 8 for s in range(9)]  # warmup 0: the old schedule


def test_first_stage_epochs_train_the_top_group_longer(tiny_model):
    _, _, plain = run(tiny_model, epochs=1)
    _, _, longer = run(tiny_model, epochs=1, first_stage_epochs=3)
    assert longer[(0,)] == 3 * plain[(0,)] and longer[(0, 1)] == plain[(0, 1)]


def test_fresh_head_starts_from_the_prefix_seed_not_the_parent(tiny_model):
    lr = 1e-9  # adam steps of ~lr: the trained head stays within ~1e-8 of where it started
    runner, warm, _ = run(tiny_model, lr=lr)
    _, fresh, _ = run(tiny_model, lr=lr, head_init="fresh")
    parent_head = warm[(0,)].state["head.weight"]
    own_init = build_model(runner.backbone.model, runner.config.train, runner.spec(0, (0, 1)), 2).head.weight.detach()
    assert torch.allclose(warm[(0, 1)].state["head.weight"], parent_head, atol=1e-6)
    assert torch.allclose(fresh[(0, 1)].state["head.weight"], own_init, atol=1e-6)
    assert not torch.allclose(own_init, parent_head, atol=1e-3)
    for name, tensor in fresh[(0, 1)].state.items():  # isolation holds: the parent's adapters are kept as saved
        if name in warm[(0,)].state and not name.startswith("head."):
            assert torch.equal(tensor, fresh[(0,)].state[name]), name


def test_defaults_leave_the_digest_and_the_bits_alone(tiny_model):
    base = S3TConfig()
    assert not {"first_stage_epochs", "warmup", "head_init", "task"} & set(base.training_dict()["train"])
    _, a, _ = run(tiny_model)
    _, b, _ = run(tiny_model, first_stage_epochs=0, warmup=0.0, head_init="warm")
    assert all(state_digest(a[p].state) == state_digest(b[p].state) for p in a)
    _, c, _ = run(tiny_model, warmup=0.3)
    assert state_digest(c[(0,)].state) != state_digest(a[(0,)].state)


@pytest.mark.parametrize("bad", [{"first_stage_epochs": -1}, {"warmup": 1.0}, {"head_init": "cold"}])
def test_bad_options_are_config_errors(bad):
    from s3t.errors import ConfigError

    with pytest.raises(ConfigError, match=next(iter(bad))):
        TrainConfig(**bad)


def test_options_keep_forget_retrain_verify_bit_exact(tmp_path, tiny_model, toy_data):
    from s3t import S3T

    train, val = toy_data
    cfg = tiny_config(tiny_model, shards=2, slices=3, budget=2, epochs=1, first_stage_epochs=2, warmup=0.2,
                      head_init="fresh")
    est = S3T(cfg, workspace=tmp_path / "ws").fit(train, validation=val)
    rid = next(r.id for r in est.ws_.ledger.records("train") if r.shard == 1)
    receipt = est.forget(record_ids=[rid])
    est.retrain()
    report = est.verify(receipt.request_id)
    assert report.ok and report.compared > 0, report.mismatches
    assert est.audit().ok
