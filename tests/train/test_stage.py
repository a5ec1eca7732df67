"""Stage training: layer isolation, earlier adapters kept bit-exact, reproducibility, the cache."""

from __future__ import annotations

import torch

from s3t.store.checkpoints import state_digest
from s3t.train.backbone import load_backbone
from s3t.train.trainer import SliceData, StageRunner, trie
from tests.conftest import tiny_config, toy_rows


def runner_with_data(model_path, n=60, **train):
    cfg = tiny_config(model_path, shards=1, slices=3, budget=3, **train)
    bb = load_backbone(model_path)
    runner = StageRunner(bb, cfg, 2)
    rows = toy_rows(n, seed=7)
    runner.add_records([r["id"] for r in rows], [r["text"] for r in rows], [int(r["label"] == "pos") for r in rows])
    ids = [r["id"] for r in rows]
    slices = {s: SliceData(100 + s, tuple(ids[s::3])) for s in range(3)}
    return bb, runner, slices


def train_all(runner, slices, prefixes):
    got = {}
    runner.train_prefixes(0, prefixes, slices, lambda spec, res, lin: got.__setitem__(spec.prefix, (spec, res, lin)))
    return got


def test_only_group_k_and_head_change(tiny_model):
    bb, runner, slices = runner_with_data(tiny_model)
    base_before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    got = train_all(runner, slices, [(0,), (0, 1), (0, 1, 2)])
    groups = runner.groups  # [[4,5],[2,3],[0,1]]
    for k in (2, 3):
        parent = got[(0, 1, 2)[: k - 1]][1].state
        child = got[(0, 1, 2)[:k]][1].state
        assert set(parent) < set(child)
        for name, tensor in child.items():
            layer = int(name.split("layer.")[1].split(".")[0]) if "layer." in name else None
            if name in parent and (layer is None or layer not in groups[k - 1]):
                if name.startswith("head."):
                    assert not torch.equal(parent[name], tensor), "the head is trained at every stage"
                else:
                    assert torch.equal(parent[name], tensor), f"stage {k} changed an earlier adapter: {name}"
            else:
                assert layer in groups[k - 1], f"new tensor outside group {k}: {name}"
        # the group-k adapters did train (lora_B starts at zero)
        trained = [v for n, v in child.items() if "lora_B" in n and int(n.split("layer.")[1].split(".")[0]) in groups[k - 1]]
        assert trained and all(v.abs().sum() > 0 for v in trained)
    for k, v in bb.model.state_dict().items():
        assert torch.equal(base_before[k], v), f"pretrained weight {k} changed"


def test_lineage_and_prefix_sharing(tiny_model):
    _, runner, slices = runner_with_data(tiny_model)
    prefixes = trie([(0, 1, 2), (0, 2, 1), (1, 2, 0)])
    got = train_all(runner, slices, prefixes)
    assert sorted(got) == sorted(prefixes) and len(got) == 8  # (0,) is shared by two sequences
    for prefix, (spec, res, lineage) in got.items():
        assert lineage == [slices[s].version_id for s in prefix]
        assert res.n_examples == sum(len(slices[s].record_ids) for s in prefix)


def test_training_is_bit_reproducible(tiny_model):
    _, r1, slices = runner_with_data(tiny_model)
    _, r2, _ = runner_with_data(tiny_model)
    a = train_all(r1, slices, [(2,), (2, 0)])
    b = train_all(r2, slices, [(2,), (2, 0)])
    for p in a:
        assert state_digest(a[p][1].state) == state_digest(b[p][1].state)


def test_seed_depends_on_prefix(tiny_model):
    _, runner, slices = runner_with_data(tiny_model)
    got = train_all(runner, slices, [(0,), (1,)])
    assert got[(0,)][0].seed != got[(1,)][0].seed
    assert state_digest(got[(0,)][1].state) != state_digest(got[(1,)][1].state)


def test_cache_equals_full_forward(tiny_model):
    from s3t.train.batches import pad_ids
    from s3t.train.model import embed, run_layers

    bb, runner, slices = runner_with_data(tiny_model)
    ids = slices[0].record_ids[:5]
    runner.examples(("slice", 100), slices[0].record_ids, 0)
    for level in runner.levels:
        cached = runner.cache.get(("slice", 100), level)[:5]
        for rid, c in zip(ids, cached):
            toks, mask = pad_ids([runner.tokens[rid]], runner.pad_id)
            with torch.no_grad():
                h = run_layers(bb.model, embed(bb.model, toks), mask, 0, level)[0]
            assert torch.allclose(h, c, atol=1e-5)


def test_other_slices_cache_unaffected_by_deletion(tiny_model):
    """A record's cached states depend only on its own slice version: slice 1's states, computed
    in a fresh cache after slice 0 lost a record, are bit-identical to those computed next to the
    full slice 0 (the same key in two caches, so neither read can come from the other's entry)."""
    long_text = " ".join(["the film was really quite a moving story"] * 6)  # the longest record anywhere
    runners = []
    for _ in range(2):
        _, runner, slices = runner_with_data(tiny_model)
        runner.add_records(["long"], [long_text], [1])
        runners.append(runner)
    full, other = ("long",) + slices[0].record_ids, slices[1].record_ids
    assert len(runners[0].tokens["long"]) > max(len(runners[0].tokens[i]) for i in other)
    before_run, after_run = runners
    before_run.examples(("slice", 100), full, 0)  # slice 0 with the record, cached first
    after_run.examples(("slice", 200), full[1:], 0)  # slice 0 after deleting it, cached first
    for level in before_run.levels:
        before = before_run.examples(("slice", 101), other, level).hidden
        after = after_run.examples(("slice", 101), other, level).hidden
        assert len(before) == len(after) == len(other)
        for rid, x, y in zip(other, before, after):
            assert torch.equal(x, y), f"level {level}: {rid}'s cached states changed when slice 0 lost a record"


def test_uncached_mode_trains(tiny_model):
    _, runner, slices = runner_with_data(tiny_model, cache=False)
    assert runner.cache is None
    got = train_all(runner, slices, [(0,), (0, 1)])
    assert got[(0, 1)][1].n_examples == 40


def test_seeded_init_is_not_disturbed_by_members_built_on_another_thread(tiny_model):
    """A serving thread building members (standby, swaps) while a stage is initialised must not
    change the stage's random init: checkpoints are compared bit for bit with a retraining."""
    import threading

    from s3t.serve.ensemble import Ensemble
    from s3t.train.stage import build_model

    cfg = tiny_config(tiny_model, shards=1, slices=3, budget=3)
    bb = load_backbone(tiny_model)
    runner = StageRunner(bb, cfg, 2)
    spec = runner.spec(0, (0, 1))
    reference = state_digest(build_model(bb.model, cfg.train, spec, 2).state())
    ens = Ensemble(bb, cfg, 2)
    saved = build_model(bb.model, cfg.train, runner.spec(0, (0,)), 2).state()
    stop, built = threading.Event(), []

    def serve() -> None:
        while not stop.is_set():
            built.append(ens.build_member(0, "c", 1, saved))

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        digests = [state_digest(build_model(bb.model, cfg.train, spec, 2).state()) for _ in range(25)]
    finally:
        stop.set()
        thread.join()
    assert len(built) > 3, "the serving thread ran alongside"
    assert digests == [reference] * 25
