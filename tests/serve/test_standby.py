"""Standby members: the fallbacks a next deletion could switch to are pre-built, and exact."""

from __future__ import annotations

import shutil

import torch

from s3t import S3T
from s3t.serve.shells import ShellPool
from tests.fitted_copy import expected_entry, fitted_template, fitted_ws, record_in  # noqa: F401  (fixtures)

TEXTS = ["a great film", "an awful plot", "the acting was dull", "lovely story"]


def served_lineage_slices(est, shard: int) -> list[int]:
    """Slice indices (in training order) of the checkpoint ``shard`` serves, from the raw ledger."""
    _, body = est.ws_.ledger.latest_manifest()
    entry = body["shards"][str(shard)]
    seq = est.ws_.ledger.sequences()[shard][entry["sequence"]]
    return list(seq[: entry["stage"]])


def test_fallbacks_predict_the_rule_for_every_slice_of_the_served_lineage(fitted_ws, tmp_path):
    fallbacks = fitted_ws.ws_.ledger.fallbacks()
    by_id = {c.id: c for c in fitted_ws.ws_.ledger.checkpoints()}
    for shard in (0, 1):
        slices = served_lineage_slices(fitted_ws, shard)
        assert len(slices) == 3  # nothing deleted yet: full prefixes
        for sl in slices:
            rid = record_in(fitted_ws, shard, sl)
            stage, _, prefix = expected_entry(fitted_ws, shard, {rid})
            # the rule's choice after deleting rid (computed from raw rows) is pre-announced as a fallback
            match = [cid for cid, (sh, st) in fallbacks.items() if sh == shard and by_id[cid].prefix == prefix]
            assert len(match) == 1 and fallbacks[match[0]] == (shard, stage)
    assert {sh for sh, _ in fallbacks.values()} == {0, 1}


def test_forget_swaps_in_a_prebuilt_member_identical_to_a_fresh_build(fitted_ws):
    ens = fitted_ws.ensemble_
    assert ens.standby is not None and ens.standby.wait(60)
    assert ens.standby.ready() == set(fitted_ws.ws_.ledger.fallbacks()) - {m.checkpoint_id for m in ens.members.values()}
    shard = 0
    rid = record_in(fitted_ws, shard, served_lineage_slices(fitted_ws, shard)[0])
    ready = ens.standby.ready()
    hits = ens.standby.hits
    receipt = fitted_ws.forget(record_ids=[rid])
    assert receipt.after[str(shard)] < receipt.before[str(shard)]
    member = ens.members[shard]
    assert member.checkpoint_id in ready and ens.standby.hits == hits + 1
    # the pre-built member is exactly the checkpoint: same logits as a member built now from its file
    fresh = ens.build_member(shard, member.checkpoint_id, member.stage, fitted_ws._load_state(member.checkpoint_id))
    ids = fitted_ws.ensemble_.shard_logits(TEXTS)[shard]
    ens.members = {**ens.members, shard: fresh}
    assert torch.equal(ids, ens.shard_logits(TEXTS)[shard])
    # after the swap the standby set is refreshed for the new served lineage
    assert ens.standby.wait(60)
    assert ens.standby.ready() == set(fitted_ws.ws_.ledger.fallbacks()) - {m.checkpoint_id for m in ens.members.values()}


def test_standby_off_builds_on_the_request_path(fitted_template, tmp_path):
    ws = shutil.copytree(fitted_template.path, tmp_path / "ws")
    cfg = (ws / "s3t.json").read_text().replace('"standby": true', '"standby": false')
    (ws / "s3t.json").write_text(cfg)
    est = S3T.load(ws)
    try:
        assert est.config.serve.standby is False and est.ensemble_.standby is None
        rid = record_in(est, 0, served_lineage_slices(est, 0)[0])
        before = est.predict_proba(TEXTS)
        est.forget(record_ids=[rid])
        assert est.ensemble_.members[0].stage < 3 and not (est.predict_proba(TEXTS) == before).all()
    finally:
        est.ws_.ledger.close()


def test_close_stops_the_thread_and_later_requests_do_nothing(fitted_ws):
    standby = fitted_ws.ensemble_.standby
    assert standby.wait(60) and standby.ready()
    standby.close()
    assert standby._thread is not None and not standby._thread.is_alive() and standby.ready() == set()
    standby.request()
    assert standby._thread is None or not standby._thread.is_alive()
    # forgetting still works: the member is built on the request path
    shard = 0
    rid = record_in(fitted_ws, shard, served_lineage_slices(fitted_ws, shard)[0])
    hits = standby.hits
    receipt = fitted_ws.forget(record_ids=[rid])
    assert receipt.after[str(shard)] < receipt.before[str(shard)] and standby.hits == hits
    assert fitted_ws.ensemble_.members[shard].stage == receipt.after[str(shard)]


def test_a_burst_of_swaps_is_one_refresh_at_its_start_and_one_after_it(monkeypatch):
    """Each swap asks for a refresh; a refresh re-reads every shard's fallbacks from the ledger. The
    first swap after a quiet spell refreshes at once; the rest of a burst waits until the swaps pause
    (bounded), then runs once."""
    import time
    from types import SimpleNamespace

    from s3t.serve import standby as standby_module
    from s3t.serve.standby import Standby

    monkeypatch.setattr(standby_module, "SETTLE_S", 0.3)  # a settle is long: whether one happened is plain
    calls = []

    def candidates():
        calls.append(time.monotonic())
        time.sleep(0.005)
        return {}

    standby = Standby(SimpleNamespace(members={}, shells=ShellPool(0)), candidates, lambda cid: {})
    try:
        for _ in range(50):  # one swap every millisecond for 50 ms
            standby.request()
            time.sleep(0.001)
        assert standby.wait(10)
        assert 1 <= len(calls) <= 2, len(calls)
        quiet = time.monotonic()
        time.sleep(0.3)  # a quiet spell: the next swap refreshes at once, without settling
        standby.request()
        assert standby.wait(10)
        assert len(calls) <= 3 and calls[-1] - quiet < 0.3 + 0.2, calls[-1] - quiet  # no 0.3 s settle
        assert standby.last_error is None  # every refresh ran to its end
    finally:
        standby.close()


def test_a_storm_of_swaps_settles_longer_each_time_and_a_pause_resets_it(monkeypatch):
    """A storm that outlasts the settle bound doubles it (members built mid-storm are discarded by its
    next swaps and take CPU from the forgets): a 1.5 s storm gets at most 5 refreshes, where a fixed
    0.2 s bound gives 8 or 9; after a quiet spell the bound is back to 0.2 s."""
    import time
    from types import SimpleNamespace

    from s3t.serve import standby as standby_module
    from s3t.serve.standby import Standby

    monkeypatch.setattr(standby_module, "SETTLE_S", 0.1)  # a pause is 100 ms: a slow sleep on a busy CI is none
    calls = []

    def candidates():
        calls.append(time.monotonic())
        return {}

    standby = Standby(SimpleNamespace(members={}, shells=ShellPool(0)), candidates, lambda cid: {})
    try:
        end = time.monotonic() + 1.5
        while time.monotonic() < end:  # one swap every 5 ms: no pause
            standby.request()
            time.sleep(0.005)
        assert standby.wait(10)
        assert 2 <= len(calls) <= 5, len(calls)
        time.sleep(0.3)  # quiet
        standby.request()
        assert standby.wait(10)
        assert standby._settle_max == standby_module.MAX_SETTLE_S
        start = time.monotonic()
        for _ in range(20):  # a short burst after the quiet spell: settled within the base bound
            standby.request()
            time.sleep(0.005)
        assert standby.wait(10)
        assert calls[-1] - start < 0.1 + standby_module.MAX_SETTLE_S + 0.2
        assert standby.last_error is None  # every refresh ran to its end
    finally:
        standby.close()
