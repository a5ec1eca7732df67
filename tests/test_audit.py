"""Tests of s3t.audit: passes on honest workspaces, each check catches its kind of tampering."""

from __future__ import annotations

import json

import pytest

from s3t.audit import audit
from s3t.store.ledger import canonical
from s3t.store.schema import Receipt as ReceiptRow, Record
from tests.fitted_copy import fitted_template, fitted_ws, record_in  # noqa: F401  (fixtures)

CHECKS = ["lineage", "history", "rule", "mirror", "files", "erasure", "receipts", "physical"]


def by_name(report) -> dict:
    return {c.name: c for c in report.checks}


def failed(report) -> set[str]:
    return {c.name for c in report.failures()}


def flip_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def served_checkpoint(est, shard: int):
    _, manifest = est.ws_.ledger.latest_manifest()
    return est.ws_.ledger.checkpoint(manifest["shards"][str(shard)]["checkpoint"])


def test_audit_passes_on_a_fresh_fit(fitted_ws):
    report = fitted_ws.audit()
    assert [c.name for c in report.checks] == CHECKS
    assert report.ok and report.failures() == []
    d = report.to_dict()
    assert d["ok"] is True and [c["name"] for c in d["checks"]] == CHECKS
    assert json.loads(json.dumps(d)) == d  # JSON-ready


def test_audit_passes_after_forgets(fitted_ws):
    fitted_ws.forget([record_in(fitted_ws, 0, 0)])
    fitted_ws.forget(subject="user5")
    fitted_ws.forget([record_in(fitted_ws, 1, 1), record_in(fitted_ws, 0, 2)])
    report = fitted_ws.audit()
    assert report.ok, report.to_dict()
    assert "3 receipt(s)" in by_name(report)["receipts"].detail


def test_tampered_live_checkpoint_fails_files(fitted_ws):
    c = served_checkpoint(fitted_ws, 1)
    flip_byte(fitted_ws.ws_.resolve(c.path))
    report = fitted_ws.audit()
    assert not report.ok
    assert failed(report) == {"files"}
    assert c.id in by_name(report)["files"].detail and "sha256" in by_name(report)["files"].detail
    # and the served ensemble refuses to load it: only that shard goes out of service
    fitted_ws.predict(["good film"])
    assert fitted_ws.ensemble_.out_of_service == {1: c.id} and sorted(fitted_ws.ensemble_.members) == [0]


def test_missing_live_checkpoint_fails_files(fitted_ws):
    c = fitted_ws.ws_.ledger.checkpoints()[0]
    fitted_ws.ws_.resolve(c.path).unlink()
    report = audit(fitted_ws.ws_)
    assert failed(report) == {"files"}
    assert c.id in by_name(report)["files"].detail and "missing" in by_name(report)["files"].detail


@pytest.mark.parametrize("edit", ["other-checkpoint", "old-version", "deleted"])
def test_edited_served_json_fails_mirror(fitted_ws, edit):
    ws = fitted_ws.ws_
    fitted_ws.forget([record_in(fitted_ws, 0, 1)])
    assert fitted_ws.flush()
    served = ws.read_served()
    path = ws.path / "served.json"
    if edit == "other-checkpoint":
        other = next(c.id for c in ws.ledger.checkpoints()
                     if c.shard == 0 and not c.purged and c.id != served["shards"]["0"]["checkpoint"])
        served["shards"]["0"]["checkpoint"] = other
        path.write_text(json.dumps(served))
    elif edit == "old-version":
        served["version"] -= 1
        path.write_text(json.dumps(served))
    else:
        path.unlink()
    report = audit(ws)
    assert failed(report) == {"mirror"}
    assert "served.json" in by_name(report)["mirror"].detail


def test_edited_receipt_body_fails_receipts(fitted_ws):
    fitted_ws.forget([record_in(fitted_ws, 0, 0)])
    second = fitted_ws.forget([record_in(fitted_ws, 1, 0)])
    assert fitted_ws.flush()
    with fitted_ws.ws_.ledger.Session.begin() as s:
        row = s.get(ReceiptRow, second.request_id)
        body = json.loads(row.body)
        body["record_ids"] = ["someone-else"]
        row.body = canonical(body)
    report = audit(fitted_ws.ws_)
    assert failed(report) == {"receipts"}
    assert second.request_id in by_name(report)["receipts"].detail


def test_recreated_cut_checkpoint_fails_erasure(fitted_ws):
    ws = fitted_ws.ws_
    before = served_checkpoint(fitted_ws, 0)
    fitted_ws.forget([record_in(fitted_ws, 0, 0)])
    assert fitted_ws.flush()
    cut = ws.ledger.checkpoint(before.id)
    assert cut.purged and not ws.resolve(cut.path).exists()
    ws.resolve(cut.path).write_bytes(b"resurrected weights")
    report = audit(ws)
    assert failed(report) == {"erasure"}
    assert cut.id in by_name(report)["erasure"].detail


def test_unerased_text_fails_erasure(fitted_ws, fitted_template):
    rid = record_in(fitted_ws, 1, 2)
    fitted_ws.forget([rid])
    assert fitted_ws.flush()  # the cut files are erased in the background: only the text is left to find
    with fitted_ws.ws_.ledger.Session.begin() as s:
        s.get(Record, rid).text = fitted_template.texts[rid]
    report = audit(fitted_ws.ws_)
    assert failed(report) == {"erasure"}
    assert rid in by_name(report)["erasure"].detail


def test_manifest_serving_a_tainted_checkpoint_fails_lineage_and_rule(fitted_ws):
    ws, led = fitted_ws.ws_, fitted_ws.ws_.ledger
    old = served_checkpoint(fitted_ws, 1)
    fitted_ws.forget([record_in(fitted_ws, 1, 1)])
    assert fitted_ws.flush()
    assert old.id in led.tainted_checkpoints()
    _, manifest = led.latest_manifest()
    manifest["shards"]["1"] = {"sequence": 0, "stage": old.stage, "checkpoint": old.id, "val_accuracy": old.val_accuracy}
    with led.Session.begin() as s:
        version = led.add_manifest(s, manifest, reason="tampered")
    ws.write_served(version, manifest)  # keep the mirror consistent: only lineage and rule are wrong
    report = audit(ws)
    assert failed(report) == {"lineage", "history", "rule"}  # the latest version is also history
    assert old.id in by_name(report)["lineage"].detail
    assert f"v{version}" in by_name(report)["rule"].detail


def test_audit_reports_several_problems_at_once(fitted_ws):
    ws = fitted_ws.ws_
    fitted_ws.forget([record_in(fitted_ws, 0, 0)])
    assert fitted_ws.flush()
    live = [c for c in ws.ledger.checkpoints() if not c.purged]
    flip_byte(ws.resolve(live[0].path))
    (ws.path / "served.json").unlink()
    report = audit(ws)  # never raises
    assert failed(report) == {"files", "mirror"}
    assert not report.ok


def test_a_past_manifest_that_served_a_cut_checkpoint_fails_history_even_when_the_latest_is_clean(fitted_ws):
    """The promise covers every version ever served, not only the latest: a version committed
    after a deletion that still served a checkpoint holding the record fails ``history``."""
    from s3t.store.schema import Manifest

    led = fitted_ws.ws_.ledger
    _, clean_before = led.latest_manifest()
    receipt = fitted_ws.forget([record_in(fitted_ws, 0, 0)])
    fitted_ws.flush()
    assert fitted_ws.audit().ok
    with led.write() as s:  # a stale writer's manifest (the pre-forget body), then a correct one again
        led.add_manifest(s, clean_before, reason="stale writer")
        bad_version = led.add_manifest(s, receipt.manifest, reason="corrected")
    fitted_ws.ws_.sync_served()
    report = fitted_ws.audit()
    assert failed(report) == {"history"}
    detail = by_name(report)["history"].detail
    assert f"manifest v{bad_version - 1} shard 0" in detail and f"v{receipt.body['manifest_version']}" in detail
    # versions before the deletion served the same checkpoint legitimately
    with led.Session() as s:
        assert s.get(Manifest, receipt.body["manifest_version"] - 1).body == canonical(clean_before)
    assert f"manifest v{receipt.body['manifest_version'] - 1} " not in detail


def test_a_forget_whose_wal_was_not_truncated_fails_physical(fitted_ws):
    fitted_ws.forget([record_in(fitted_ws, 0, 0)])
    assert fitted_ws.flush()
    assert audit(fitted_ws.ws_).ok
    (fitted_ws.ws_.path / "erasure.json").unlink()  # as if the background step never ran
    report = audit(fitted_ws.ws_)
    assert failed(report) == {"physical"}
    assert "WAL was not truncated after receipt 1" in by_name(report)["physical"].detail
