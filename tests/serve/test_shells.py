"""Spare member shells: a retired member's model is reloaded instead of rebuilt, exactly, and
never while anything (a reader's snapshot, a held model, a prediction in flight) still uses it."""

from __future__ import annotations

import threading

import torch

from s3t.serve.shells import ShellPool
from s3t.train.model import AdaptedEncoder
from tests.fitted_copy import fitted_template, fitted_ws, record_in  # noqa: F401  (fixtures)
from tests.serve.test_standby import TEXTS, served_lineage_slices


def quiet(est):
    """The ensemble with its standby thread stopped (it would take shells too)."""
    ens = est.ensemble_
    ens.standby.close()
    ens.standby = None
    return ens


def stage_checkpoints(est, shard: int, stage: int) -> list[str]:
    return [c.id for c in est.ws_.ledger.checkpoints() if c.shard == shard and c.stage == stage]


def logits_of(ens, member) -> torch.Tensor:
    saved, ens.members = ens.members, {member.shard: member}
    try:
        return ens.shard_logits(TEXTS)[member.shard]
    finally:
        ens.members = saved


def test_a_reused_shell_answers_exactly_as_a_fresh_build(fitted_ws):
    ens = quiet(fitted_ws)
    a_id, b_id = stage_checkpoints(fitted_ws, 0, 2)[:2]
    a = ens.build_member(0, a_id, 2, fitted_ws._load_state(a_id))
    shell = id(a.model)
    before = logits_of(ens, a)
    ens.shells.retire([a])
    del a
    b = ens.build_member(0, b_id, 2, fitted_ws._load_state(b_id))
    assert id(b.model) == shell and ens.shells.reused == 1 and len(ens.shells) == 0
    fresh = ens.build_member(0, b_id, 2, fitted_ws._load_state(b_id))  # the pool is empty: built anew
    assert fresh.model is not b.model
    assert torch.equal(logits_of(ens, b), logits_of(ens, fresh))
    assert not torch.equal(logits_of(ens, b), before)  # another checkpoint's weights, all of them
    # a shell is only handed out for its own stage (the same adapted layers)
    ens.shells.retire([fresh])
    del fresh
    other = stage_checkpoints(fitted_ws, 0, 3)[0]
    assert ens.build_member(0, other, 3, fitted_ws._load_state(other)).model is not None
    assert ens.shells.reused == 1 and len(ens.shells) == 1


def test_a_shell_held_by_a_snapshot_or_by_its_model_is_not_reused(fitted_ws):
    ens = quiet(fitted_ws)
    ids = stage_checkpoints(fitted_ws, 0, 2)
    for hold in ("snapshot", "model"):
        a = ens.build_member(0, ids[0], 2, fitted_ws._load_state(ids[0]))
        held = {0: a} if hold == "snapshot" else a.model  # a reader's member table / an evaluator's model
        shell = id(a.model)
        ens.shells.retire([a])
        del a
        b = ens.build_member(0, ids[1], 2, fitted_ws._load_state(ids[1]))
        assert id(b.model) != shell and ens.shells.held >= 1, hold
        del held  # the reader is done: now the shell is free
        c = ens.build_member(0, ids[1], 2, fitted_ws._load_state(ids[1]))
        assert id(c.model) == shell, hold
        ens.shells.clear()


def test_a_prediction_in_flight_keeps_its_members_through_a_swap(fitted_ws, monkeypatch):
    ens = quiet(fitted_ws)
    old = ens.members[0]
    expected = ens.shard_logits(TEXTS)
    inside, release = threading.Event(), threading.Event()
    target = id(old.model)
    forward_from = AdaptedEncoder.forward_from

    def slow(self, level, hidden, mask):
        if id(self) == target and not release.is_set():
            inside.set()
            assert release.wait(30)
        return forward_from(self, level, hidden, mask)

    stage = old.stage  # every checkpoint of this stage is cut below: read another one's weights now
    other = [c for c in stage_checkpoints(fitted_ws, 0, stage) if c != old.checkpoint_id][0]
    other_state = fitted_ws._load_state(other)
    monkeypatch.setattr(AdaptedEncoder, "forward_from", slow)
    got = {}
    reader = threading.Thread(target=lambda: got.update(ens.shard_logits(TEXTS)))
    reader.start()
    assert inside.wait(30)
    # a forget cuts shard 0's served checkpoint while the prediction runs on it
    rid = record_in(fitted_ws, 0, served_lineage_slices(fitted_ws, 0)[0])
    fitted_ws.forget(record_ids=[rid])
    assert ens.members[0] is not old and any(m is old for m in ens.shells._entries)
    built = ens.build_member(0, other, stage, other_state)
    assert id(built.model) != target  # in use by the prediction: not reused
    release.set()
    reader.join(30)
    assert all(torch.equal(got[s], expected[s]) for s in expected)  # the old ensemble's answer, unchanged
    del old, reader, got
    again = ens.build_member(0, other, stage, other_state)
    assert id(again.model) == target


def test_forgets_on_the_service_path_reuse_shells(fitted_ws):
    """With the standby on (its default), swaps and standby refreshes retire members, and a later
    build of the same stage (here: the retrain's swap back to full prefixes) reuses them: the
    reference count a free entry has is what the pool expects."""
    ens = fitted_ws.ensemble_
    for shard in (0, 1):
        assert ens.standby.wait(60)
        rid = record_in(fitted_ws, shard, served_lineage_slices(fitted_ws, shard)[-1])
        fitted_ws.forget(record_ids=[rid])
    assert ens.standby.wait(60)
    retired = {e.stage for e in ens.shells._entries}
    assert 3 in retired and ens.shells.reused == 0  # the lineages only got shorter so far
    fitted_ws.retrain()
    assert {m.stage for m in ens.members.values()} == {3}
    assert ens.standby.wait(60)
    assert ens.shells.reused > 0
    for shard, member in ens.members.items():  # and what is served is exactly each checkpoint
        fresh = ens.build_member(shard, member.checkpoint_id, member.stage, fitted_ws._load_state(member.checkpoint_id))
        assert torch.equal(logits_of(ens, member), logits_of(ens, fresh))


def test_capacity_keeps_the_newest_and_zero_keeps_nothing():
    class Probe:
        def __init__(self, stage):
            self.stage, self.model = stage, object()

    pool = ShellPool(capacity=2)
    pool.retire([Probe(1), Probe(2), Probe(3)])
    assert [e.stage for e in pool._entries] == [2, 3]
    assert pool.take(1) is None and pool.take(3) is not None and len(pool) == 1
    off = ShellPool(capacity=0)
    off.retire([Probe(1)])
    assert len(off) == 0 and off.take(1) is None


def test_new_members_are_copies_of_one_template_per_stage_and_answer_as_built_from_scratch(fitted_ws, monkeypatch):
    """Without a spare shell, a member is a copy of the stage's template (built once, never served):
    the same answers as an AdaptedEncoder built from scratch for the checkpoint."""
    import s3t.serve.ensemble as ensemble_mod
    from s3t.train.layers import adapted_layers

    ens = quiet(fitted_ws)
    built = []
    real = ensemble_mod.AdaptedEncoder

    class Counting(real):
        def __init__(self, *a, **k):
            built.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(ensemble_mod, "AdaptedEncoder", Counting)
    ens._templates.clear()
    members = []
    for shard in range(2):
        for cid in stage_checkpoints(fitted_ws, shard, 2):
            members.append(ens.build_member(shard, cid, 2, fitted_ws._load_state(cid)))
    assert len(members) >= 4 and len(built) == 1  # one template for stage 2, then copies
    assert all(m.model is not ens._templates[2] for m in members)
    assert len({id(m.model) for m in members}) == len(members)
    for m in members:
        scratch = real(ens.backbone.model, fitted_ws.config.train.lora, adapted_layers(ens.groups, 2), ens.n_labels)
        scratch.load_state(fitted_ws._load_state(m.checkpoint_id))
        scratch.eval()
        assert torch.equal(logits_of(ens, m), logits_of(ens, type(m)(m.shard, m.checkpoint_id, 2, scratch)))
    # the template's own (random) weights never reached a member
    tmpl = type(members[0])(0, "template", 2, ens._templates[2])
    assert not torch.equal(logits_of(ens, tmpl), logits_of(ens, members[0]))
