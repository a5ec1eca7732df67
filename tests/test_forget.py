"""Tests of forgetting (s3t.forget through S3T.forget): receipts, the cut, idempotency, erasure, serving."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from sqlalchemy import select
import torch

from s3t.errors import DataError, NoLiveModelError, NotFittedError, UnknownRecordError
from s3t.forget import GENESIS, verify_chain
from tests.fitted_copy import expected_entry, fitted_template, fitted_ws, record_in, snapshot  # noqa: F401  (fixtures)

PROBE = ["a really great film", "the plot was awful", "boring acting", "superb story", "film", "quite fun"]


def manual_proba(est, model_dir: str, texts: list[str]) -> np.ndarray:
    """Mean-logit ensemble of the served checkpoints, built by hand: full forward from token ids, one text at a time."""
    from transformers import AutoModel, AutoTokenizer

    from s3t.store.checkpoints import load_checkpoint
    from s3t.train.layers import adapted_layers, layer_groups
    from s3t.train.model import AdaptedEncoder

    base = AutoModel.from_pretrained(model_dir, local_files_only=True, add_pooling_layer=False).eval()
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    groups = layer_groups(base.config.num_hidden_layers, est.config.plan.slices)
    _, manifest = est.ws_.ledger.latest_manifest()
    per_shard = []
    for _, entry in sorted(manifest["shards"].items()):
        if entry is None:
            continue
        c = est.ws_.ledger.checkpoint(entry["checkpoint"])
        state, meta = load_checkpoint(est.ws_.resolve(c.path), sha256=c.sha256)
        assert int(meta["stage"]) == c.stage == entry["stage"]
        model = AdaptedEncoder(base, est.config.train.lora, adapted_layers(groups, c.stage), len(est.classes_))
        model.load_state(state)
        model.eval()
        rows = []
        with torch.no_grad():
            for t in texts:
                ids = torch.tensor([tok(t, truncation=True, max_length=est.config.train.max_length)["input_ids"]])
                rows.append(model(ids, torch.ones_like(ids))[0])
        per_shard.append(torch.stack(rows))
    assert per_shard, "no live shard"
    return torch.softmax(torch.stack(per_shard).mean(0), -1).numpy()


# -- the receipt ---------------------------------------------------------------------------------


def test_forget_one_record_receipt(fitted):
    led = fitted.ws_.ledger
    rid = record_in(fitted, shard=0, sl=1)
    shard = next(r.shard for r in led.records("train") if r.id == rid)
    before = {k: (0 if v is None else v["stage"]) for k, v in led.latest_manifest()[1]["shards"].items()}
    old_other = led.latest_manifest()[1]["shards"]["1"]

    receipt = fitted.forget(record_ids=[rid])

    assert receipt.created is True
    assert receipt.request_id.startswith("req-")
    assert receipt.body["record_ids"] == [rid]
    assert receipt.affected_shards == [shard]
    assert receipt.body["newly_deleted"] == 1 and receipt.body["subject"] is None
    assert receipt.prev_hash == GENESIS == "0" * 64 and receipt.body["seq"] == 1
    assert receipt.before == before
    version, manifest = led.latest_manifest()
    assert receipt.body["manifest_version"] == version
    want = expected_entry(fitted, shard, {rid})
    assert receipt.after[str(shard)] == want[0] < before[str(shard)]
    assert receipt.after["1"] == before["1"] and manifest["shards"]["1"] == old_other
    # the hash is the sha256 of the canonical JSON of the body
    canon = json.dumps(receipt.body, sort_keys=True, separators=(",", ":"))
    assert receipt.hash == hashlib.sha256(canon.encode()).hexdigest()
    assert receipt.to_dict()["hash"] == receipt.hash
    # and it is stored: the request, the deletion, the receipt
    assert led.deleted_ids() == {rid}
    assert [r.hash for r in fitted.receipts()] == [receipt.hash]
    assert fitted.status()["requests"] == 1 and fitted.status()["deleted_records"] == 1


@pytest.mark.parametrize("shard", [0, 1])
@pytest.mark.parametrize("sl", [0, 1, 2])
def test_served_stage_drops_to_the_longest_clean_prefix(fitted_ws, shard, sl):
    led = fitted_ws.ws_.ledger
    _, old = led.latest_manifest()
    rid = record_in(fitted_ws, shard, sl)
    receipt = fitted_ws.forget([rid])
    _, new = led.latest_manifest()
    stage, seq, prefix = expected_entry(fitted_ws, shard, {rid})
    entry = new["shards"][str(shard)]
    assert (entry["stage"], entry["sequence"]) == (stage, seq)
    assert led.checkpoint(entry["checkpoint"]).prefix == prefix
    assert str(sl) not in prefix.split(",")
    assert receipt.after[str(shard)] == stage
    other = str(1 - shard)
    assert new["shards"][other] == old["shards"][other]
    assert fitted_ws.status()["served"] == {str(shard): stage, other: old["shards"][other]["stage"]}


def test_two_slices_of_one_shard_in_one_request(fitted_ws):
    ids = [record_in(fitted_ws, 0, 0), record_in(fitted_ws, 0, 1), record_in(fitted_ws, 0, 1, n=1)]
    receipt = fitted_ws.forget(ids)
    stage, seq, _ = expected_entry(fitted_ws, 0, set(ids))
    entry = fitted_ws.ws_.ledger.latest_manifest()[1]["shards"]["0"]
    assert (entry["stage"], entry["sequence"]) == (stage, seq)
    assert receipt.after["0"] == stage and receipt.affected_shards == [0]
    assert receipt.body["record_ids"] == sorted(ids) and receipt.body["newly_deleted"] == 3


def test_successive_forgets_accumulate(fitted_ws):
    first, second = record_in(fitted_ws, 1, 2), record_in(fitted_ws, 1, 0)
    r1 = fitted_ws.forget([first])
    r2 = fitted_ws.forget([second])
    assert r2.before == r1.after
    stage, _, _ = expected_entry(fitted_ws, 1, {first, second})
    assert r2.after["1"] == stage
    assert fitted_ws.ws_.ledger.latest_manifest()[1]["shards"]["1"]["stage"] == stage


# -- idempotency -----------------------------------------------------------------------------------


def test_same_request_again_returns_the_same_receipt_and_changes_nothing(fitted_ws):
    a, b = record_in(fitted_ws, 0, 2), record_in(fitted_ws, 1, 1)
    first = fitted_ws.forget([a, b])
    assert fitted_ws.flush()  # the first request's background file steps
    state = snapshot(fitted_ws)
    for again in ([a, b], [b, a], [b, a, b, a]):
        r = fitted_ws.forget(again)
        assert r.created is False
        assert r.hash == first.hash and r.body == first.body and r == first
        assert snapshot(fitted_ws) == state


def test_subject_request_again_returns_the_same_receipt(fitted_ws):
    first = fitted_ws.forget(subject="user4")
    assert fitted_ws.flush()
    state = snapshot(fitted_ws)
    again = fitted_ws.forget(subject="user4")
    assert again.created is False and again.hash == first.hash
    assert snapshot(fitted_ws) == state


def test_forget_a_single_string_id(fitted_ws):
    rid = record_in(fitted_ws, 0, 0)
    receipt = fitted_ws.forget(rid)
    assert receipt.body["record_ids"] == [rid]
    assert fitted_ws.ws_.ledger.deleted_ids() == {rid}


def test_single_string_ids_with_the_same_characters_are_different_requests(fitted_ws):
    ids = {r.id for r in fitted_ws.ws_.ledger.records("train")}
    assert {"r1-12", "r1-21"} <= ids
    fitted_ws.forget("r1-12")
    second = fitted_ws.forget("r1-21")
    assert second.created is True
    assert "r1-21" in fitted_ws.ws_.ledger.deleted_ids()


def test_string_and_list_forms_are_the_same_request(fitted_ws):
    rid = record_in(fitted_ws, 0, 0)
    first = fitted_ws.forget(rid)
    assert fitted_ws.flush()
    state = snapshot(fitted_ws)
    again = fitted_ws.forget([rid])
    assert again.created is False and again.hash == first.hash
    assert snapshot(fitted_ws) == state


# -- invalid requests change nothing ------------------------------------------------------------------


def test_unknown_id_raises_and_changes_nothing(fitted_ws):
    state = snapshot(fitted_ws)
    with pytest.raises(UnknownRecordError) as info:
        fitted_ws.forget(["no-such-record"])
    assert isinstance(info.value, KeyError)
    assert "no-such-record" in str(info.value)
    assert snapshot(fitted_ws) == state


def test_known_and_unknown_ids_together_delete_nothing(fitted_ws):
    known = record_in(fitted_ws, 0, 0)
    state = snapshot(fitted_ws)
    with pytest.raises(UnknownRecordError, match="ghost-7"):
        fitted_ws.forget([known, "ghost-7"])
    assert snapshot(fitted_ws) == state
    assert known not in fitted_ws.ws_.ledger.deleted_ids()


def test_unknown_subject_raises_and_changes_nothing(fitted_ws):
    state = snapshot(fitted_ws)
    with pytest.raises(UnknownRecordError, match="nobody"):
        fitted_ws.forget(subject="nobody")
    assert snapshot(fitted_ws) == state


@pytest.mark.parametrize("kwargs,match", [
    ({"record_ids": []}, "empty"),
    ({}, "exactly one"),
    ({"record_ids": ["x"], "subject": "user1"}, "exactly one"),
    ({"subject": ""}, "subject"),
])
def test_malformed_request_is_a_data_error_and_changes_nothing(fitted_ws, kwargs, match):
    state = snapshot(fitted_ws)
    with pytest.raises(DataError, match=match):
        fitted_ws.forget(**kwargs)
    assert snapshot(fitted_ws) == state


def test_validation_record_is_a_data_error_and_changes_nothing(fitted_ws, fitted_template):
    val_id = fitted_template.val[0]["id"]
    assert val_id in {r.id for r in fitted_ws.ws_.ledger.records("validation")}
    state = snapshot(fitted_ws)
    with pytest.raises(DataError, match=val_id):
        fitted_ws.forget([val_id])
    assert snapshot(fitted_ws) == state


def test_forget_before_fit_is_not_fitted_error(tmp_path):
    from s3t import S3T

    with pytest.raises(NotFittedError):
        S3T(workspace=tmp_path / "ws").forget(["a"])


# -- subject -----------------------------------------------------------------------------------------


def test_subject_erases_every_row_of_the_subject_and_cuts_only_its_training_lineages(fitted_ws, fitted_template):
    train_ids = sorted(r["id"] for r in fitted_template.train if r.get("subject") == "user3")
    val_ids = sorted(r["id"] for r in fitted_template.val if r.get("subject") == "user3")
    assert train_ids and val_ids  # the fixture makes the test meaningful
    receipt = fitted_ws.forget(subject="user3")
    led = fitted_ws.ws_.ledger
    assert sorted(led.deleted_ids()) == sorted(train_ids + val_ids)
    assert receipt.body["record_ids"] == sorted(train_ids + val_ids) and receipt.body["subject"] == "user3"
    assert receipt.body["validation_records"] == len(val_ids)
    shard_of = {r.id: r.shard for r in led.records("train")}
    assert receipt.affected_shards == sorted({shard_of[i] for i in train_ids})
    texts = {r.id: r.text for r in led.records("validation")}
    assert all(texts[i] is None for i in val_ids)  # validation rows of the subject erased too
    others = [r["id"] for r in fitted_template.val if r.get("subject") != "user3"]
    assert all(texts[i] == fitted_template.texts[i] for i in others)
    for shard in (0, 1):  # the cut follows the training rows only (scores re-ranked: see the rescoring test)
        expected = expected_entry(fitted_ws, shard, set(train_ids))
        entry = led.latest_manifest()[1]["shards"][str(shard)]
        assert (None if entry is None else entry["stage"]) == (None if expected is None else expected[0])


def _scores(led) -> tuple[dict[str, float | None], dict[str, dict[str, bool]]]:
    from s3t.store.schema import ValidationScore

    with led.Session() as s:
        rows: dict[str, dict[str, bool]] = {}
        for r in s.scalars(select(ValidationScore)):
            rows.setdefault(r.checkpoint_id, {})[r.record_id] = bool(r.correct)
    return {c.id: c.val_accuracy for c in led.checkpoints()}, rows


def test_subject_validation_rows_stop_scoring_checkpoints(fitted_ws, fitted_template):
    """Tie-breaks and status use val_accuracy: after a subject's validation rows are erased,
    every checkpoint's score is the mean over the remaining validation records only."""
    led = fitted_ws.ws_.ledger
    acc_before, rows_before = _scores(led)
    val_ids = {r["id"] for r in fitted_template.val if r.get("subject") == "user3"}
    assert rows_before and all(set(r) >= val_ids for r in rows_before.values())  # every checkpoint scored them
    for cid, rows in rows_before.items():  # the stored outcomes are what training scored
        assert acc_before[cid] == pytest.approx(sum(rows.values()) / len(rows), abs=1e-12)
    receipt = fitted_ws.forget(subject="user3")
    acc_after, rows_after = _scores(led)
    changed = 0
    for cid, rows in rows_before.items():
        keep = {k: v for k, v in rows.items() if k not in val_ids}
        assert rows_after[cid] == keep  # the erased records' outcomes are gone, the rest untouched
        assert acc_after[cid] == pytest.approx(sum(keep.values()) / len(keep), abs=1e-12)
        changed += acc_after[cid] != acc_before[cid]
    assert changed  # the erasure really moved some score
    # the manifest was recomputed on the new scores, in every shard
    with led.Session() as s:
        assert led.latest_manifest(s)[1] == led.compute_manifest(s)
    assert receipt.manifest == led.latest_manifest()[1]
    assert fitted_ws.audit().ok


# -- receipts chain ------------------------------------------------------------------------------------


def test_receipts_are_hash_chained(fitted_ws):
    r1 = fitted_ws.forget([record_in(fitted_ws, 0, 0)])
    r2 = fitted_ws.forget(subject="user7")
    r3 = fitted_ws.forget([record_in(fitted_ws, 1, 2)])
    assert r1.prev_hash == GENESIS
    assert r2.prev_hash == r1.hash and r3.prev_hash == r2.hash
    assert [r.body["seq"] for r in (r1, r2, r3)] == [1, 2, 3]
    stored = fitted_ws.receipts()
    assert [r.hash for r in stored] == [r1.hash, r2.hash, r3.hash]
    assert [r.body for r in stored] == [r1.body, r2.body, r3.body]
    assert verify_chain(stored) == []
    # a chain with a receipt removed no longer verifies
    assert verify_chain([stored[0], stored[2]]) != []


# -- erasure -----------------------------------------------------------------------------------------


def test_record_text_and_its_fingerprint_are_erased_and_the_others_keep_keyed_ones(fitted_ws, fitted_template):
    """The forgotten text leaves no fingerprint at all; every kept text keeps its HMAC under the
    workspace secret (never a plain sha256: issue 15, a guessed text could be confirmed from it)."""
    from s3t.store.secret import fingerprint

    rid = record_in(fitted_ws, 1, 1)
    before = {r.id: r.text_hmac for r in fitted_ws.ws_.ledger.records("train")}
    assert before[rid] is not None
    fitted_ws.forget([rid])
    rows = {r.id: r for r in fitted_ws.ws_.ledger.records("train")}
    assert rows[rid].text is None and rows[rid].text_hmac is None
    others = {i: r.text for i, r in rows.items() if i != rid}
    assert others == {i: fitted_template.texts[i] for i in others}
    key = fitted_ws.ws_.secret()
    for i in others:
        assert rows[i].text_hmac == before[i] == fingerprint(key, fitted_template.texts[i])
        assert rows[i].text_hmac != hashlib.sha256(fitted_template.texts[i].encode("utf-8")).hexdigest()


def test_cut_checkpoint_files_are_deleted(fitted_ws):
    ws, led = fitted_ws.ws_, fitted_ws.ws_.ledger
    rid = record_in(fitted_ws, 0, 1)
    fitted_ws.forget([rid])
    assert fitted_ws.flush(timeout=60)  # files are erased by the background file steps
    cut = {c.id for c in led.checkpoints() if c.shard == 0 and "1" in c.prefix.split(",")}
    assert cut  # the cut is not empty: every sequence holds slice 1 somewhere
    for c in led.checkpoints():
        path = ws.resolve(c.path)
        if c.id in cut:
            assert not path.exists(), c.id
            assert c.purged, c.id
        else:
            assert path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == c.sha256, c.id
            assert not c.purged, c.id


# -- serving after forget ------------------------------------------------------------------------------


def test_forgetting_every_first_slice_kills_every_shard(fitted_ws):
    assert fitted_ws.predict(PROBE).shape == (len(PROBE),)  # ensemble loaded before the forget
    doomed = [record_in(fitted_ws, shard, sl) for shard in (0, 1) for sl in (0, 1, 2)]
    receipt = fitted_ws.forget(doomed)
    assert receipt.after == {"0": 0, "1": 0}
    status = fitted_ws.status()
    assert status["live_shards"] == 0 and status["served"] == {"0": 0, "1": 0}
    with pytest.raises(NoLiveModelError, match="retrain") as info:
        fitted_ws.predict(PROBE)
    assert "no model" in str(info.value).lower()
    with pytest.raises(NoLiveModelError):
        fitted_ws.predict_proba(PROBE)
    assert fitted_ws.audit().ok
    # every checkpoint file is gone
    assert list(fitted_ws.ws_.path.rglob("*.safetensors")) == []


@pytest.mark.parametrize("doomed_slices", [[(0, 0)], [(1, 0), (1, 1), (1, 2)]], ids=["shard0-cut", "shard1-dead"])
def test_predictions_equal_the_mean_logit_ensemble_of_the_served_checkpoints(fitted_ws, fitted_template, doomed_slices):
    from s3t import S3T

    before = fitted_ws.predict_proba(PROBE)  # the ensemble is loaded and must be swapped by forget
    np.testing.assert_allclose(before, manual_proba(fitted_ws, fitted_template.model, PROBE), atol=1e-5)
    fitted_ws.forget([record_in(fitted_ws, sh, sl) for sh, sl in doomed_slices])
    after = fitted_ws.predict_proba(PROBE)
    expected = manual_proba(fitted_ws, fitted_template.model, PROBE)
    np.testing.assert_allclose(after, expected, atol=1e-5)
    assert not np.allclose(after, before, atol=1e-5)  # the served ensemble did change
    np.testing.assert_allclose(after.sum(-1), 1.0, atol=1e-6)
    assert list(fitted_ws.predict(PROBE)) == list(fitted_ws.classes_[expected.argmax(-1)])
    reloaded = S3T.load(fitted_ws.ws_.path)
    np.testing.assert_allclose(reloaded.predict_proba(PROBE), expected, atol=1e-5)


def test_forget_recomputes_only_the_hit_shards_and_matches_a_full_recompute(fitted_ws):
    """A forget recomputes the serving rule for its records' shards and copies the others; the
    result must equal the rule run over every shard from scratch."""
    led = fitted_ws.ws_.ledger
    for shard, sl in [(0, 1), (1, 0), (0, 2), (1, 2)]:
        receipt = fitted_ws.forget([record_in(fitted_ws, shard, sl)])
        version, body = led.latest_manifest()
        assert receipt.affected_shards == [shard] and receipt.manifest == body
        with led.Session() as s:
            assert led.compute_manifest(s) == body
            assert led.tainted_checkpoints(s, [shard]) == {c for c in led.tainted_checkpoints(s)
                                                            if c.startswith(f"s{shard}-")}
        assert fitted_ws.ensemble_.manifest_version == version
    with led.Session() as s, pytest.raises(ValueError, match="both"):
        led.compute_manifest(s, shards=[0])


def test_forget_returns_before_its_file_steps_and_flush_waits_for_them(fitted_ws, monkeypatch):
    """The commit and the ensemble swap are on the request path; erasing the cut files is not."""
    import threading

    from s3t.store.workspace import Workspace

    ws = fitted_ws.ws_
    old = ws.ledger.latest_manifest()[1]["shards"]["0"]["checkpoint"]
    fitted_ws.ensemble_  # serving
    gate, real = threading.Event(), Workspace.erase_files
    monkeypatch.setattr(Workspace, "erase_files", lambda self, paths: (gate.wait(30), real(self, paths)))
    receipt = fitted_ws.forget([record_in(fitted_ws, 0, 0)])
    assert receipt.after["0"] < receipt.before["0"]
    assert fitted_ws.ensemble_.manifest_version == receipt.body["manifest_version"], "swapped before returning"
    cut = ws.ledger.checkpoint(old)
    assert cut.purged and ws.resolve(cut.path).exists(), "the erasure waits on the background thread"
    assert not fitted_ws.flush(timeout=0.2)
    gate.set()
    assert fitted_ws.flush(timeout=30)
    assert not ws.resolve(cut.path).exists()
    assert ws.read_served()["version"] == receipt.body["manifest_version"]


# -- dry runs (previews) and the warm-up that uses one -------------------------------------------------


def test_dry_run_previews_the_real_receipt_and_changes_nothing(fitted_ws):
    rid = record_in(fitted_ws, 1, 0)
    fitted_ws.predict_proba(PROBE)  # serving ready (and warmed): the preview must not swap it either
    served = dict(fitted_ws.ensemble_.members)
    state = snapshot(fitted_ws)
    preview = fitted_ws.forget([rid], dry_run=True)
    assert preview.dry_run is True and preview.created is False and preview.to_dict()["dry_run"] is True
    assert snapshot(fitted_ws) == state
    assert fitted_ws.ensemble_.members == served
    real = fitted_ws.forget([rid])
    assert real.created is True and real.dry_run is False and "dry_run" not in real.to_dict()
    for key in ("record_ids", "affected_shards", "served_before", "served_after", "newly_deleted", "seq", "prev_hash"):
        assert preview.body[key] == real.body[key], key
    assert preview.after != preview.before  # a first-slice record of shard 1 cuts its served prefix
    assert fitted_ws.audit().ok


def test_dry_run_of_a_recorded_request_returns_its_receipt(fitted_ws):
    rid = record_in(fitted_ws, 0, 1)
    first = fitted_ws.forget([rid])
    assert fitted_ws.flush()
    state = snapshot(fitted_ws)
    again = fitted_ws.forget([rid], dry_run=True)
    assert again.hash == first.hash and again.created is False
    assert snapshot(fitted_ws) == state


def test_dry_run_of_an_unknown_id_raises_and_changes_nothing(fitted_ws):
    state = snapshot(fitted_ws)
    with pytest.raises(UnknownRecordError, match="ghost-9"):
        fitted_ws.forget(["ghost-9"], dry_run=True)
    assert snapshot(fitted_ws) == state


def test_serving_warms_the_forget_path_with_a_dry_run_that_changes_nothing(fitted_ws, monkeypatch):
    import s3t.estimator as est_mod

    calls = []
    real = est_mod.record_forget

    def spy(*args, **kwargs):
        calls.append(kwargs.get("dry_run", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(est_mod, "record_forget", spy)
    state = snapshot(fitted_ws)
    fitted_ws.predict_proba(PROBE)  # builds the served ensemble
    assert calls == [True]
    assert snapshot(fitted_ws) == state
    fitted_ws.predict_proba(PROBE)  # built once: no second warm-up
    assert calls == [True]


def test_warm_up_skips_when_every_training_record_is_forgotten(fitted_ws):
    ids = [r.id for r in fitted_ws.ws_.ledger.records("train")]
    fitted_ws.forget(ids)
    assert fitted_ws.ws_.ledger.live_training_record() is None
    assert fitted_ws.flush()
    state = snapshot(fitted_ws)
    fitted_ws._warm_forget()  # nothing to warm with: returns without a request
    assert snapshot(fitted_ws) == state


def test_subject_placement_keeps_each_person_in_one_slice_so_a_forget_cuts_one_slice(fitted_ws, fitted_template):
    """Issue 16: with subjects in the data, fit places by subject; forgetting one person cuts
    exactly the lineages of the one slice that holds them and leaves every shard live."""
    led = fitted_ws.ws_.ledger
    assert fitted_ws.config.plan.placement == "subject"  # "auto" resolved and recorded
    assert fitted_ws.status()["placement"] == "subject"
    where: dict[str, set] = {}
    for r in led.records("train"):
        where.setdefault(r.subject, set()).add((r.shard, r.slice))
    assert len(where) == 10 and all(len(v) == 1 for v in where.values())
    for subject in sorted(where):
        (shard, sl), = where[subject]
        dry = fitted_ws.forget(subject=subject, dry_run=True)
        assert dry.affected_shards == [shard]
        assert all(v > 0 for v in dry.after.values()), (subject, dry.after)  # nobody takes a shard down
        sequences = led.sequences()[shard]
        assert dry.after[str(shard)] == max(list(seq).index(sl) for seq in sequences)
