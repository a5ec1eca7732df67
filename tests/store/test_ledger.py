"""Tests of s3t.store.ledger / schema / workspace: durability, crash recovery, reopen, versioning."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from s3t.errors import WorkspaceError
from s3t.forget import GENESIS
from s3t.store.ledger import Ledger, canonical
from s3t.store.schema import SCHEMA_VERSION, DeletionRequest, Manifest, Meta, Receipt as ReceiptRow, SliceVersion
from s3t.store.workspace import Workspace
from tests.fitted_copy import fitted_template, fitted_ws, record_in, snapshot  # noqa: F401  (fixtures)


def cut_ids(est, shard: int, sl: int) -> set[str]:
    """Checkpoints of ``shard`` whose prefix holds slice ``sl`` (independent of the ledger's taint query)."""
    return {c.id for c in est.ws_.ledger.checkpoints() if c.shard == shard and str(sl) in c.prefix.split(",")}


class Crash(RuntimeError):
    pass


def crash(*args, **kwargs):
    raise Crash("simulated crash")


# -- crash during forget ---------------------------------------------------------------------


@pytest.mark.parametrize("step", ["write_served", "erase_files"])
def test_crash_after_commit_is_recovered_on_load(fitted_ws, monkeypatch, step):
    from s3t import S3T

    ws_path = fitted_ws.ws_.path
    old_mirror = fitted_ws.ws_.read_served()
    rid = record_in(fitted_ws, 0, 2)
    cut = cut_ids(fitted_ws, 0, 2)
    with monkeypatch.context() as m:
        m.setattr(Workspace, step, crash)
        fitted_ws.forget([rid])  # returns once committed and swapped: the file steps run after it
        assert fitted_ws.flush(timeout=60)
    assert "simulated crash" in fitted_ws._files.last_error
    # the failed file step left the files behind the ledger
    led = fitted_ws.ws_.ledger
    assert rid in led.deleted_ids()
    if step == "write_served":
        assert fitted_ws.ws_.read_served() == old_mirror
    assert all(fitted_ws.ws_.resolve(c.path).exists() for c in led.checkpoints() if c.id in cut)
    led.close()

    recovered = S3T.load(ws_path)
    version, manifest = recovered.ws_.ledger.latest_manifest()
    assert recovered.ws_.read_served() == {"version": version, **manifest}
    assert version == old_mirror["version"] + 1
    for c in recovered.ws_.ledger.checkpoints():
        assert recovered.ws_.resolve(c.path).exists() == (c.id not in cut), c.id
        assert c.purged == (c.id in cut), c.id
    assert recovered.ws_.ledger.deleted_ids() == {rid}  # never lost
    [receipt] = recovered.receipts()
    assert receipt.body["record_ids"] == [rid] and receipt.prev_hash == GENESIS
    report = recovered.audit()
    assert report.ok, report.to_dict()
    # a retry of the same request after recovery returns the committed receipt
    again = recovered.forget([rid])
    assert again.created is False and again.hash == receipt.hash


def test_retry_in_the_same_process_after_a_failed_file_step_completes_the_forget(fitted_ws, monkeypatch):
    rid = record_in(fitted_ws, 1, 0)
    with monkeypatch.context() as m:
        m.setattr(Workspace, "write_served", crash)
        fitted_ws.forget([rid])
        assert fitted_ws.flush(timeout=60)
    assert "simulated crash" in fitted_ws._files.last_error
    assert fitted_ws.ws_.read_served()["version"] < fitted_ws.ws_.ledger.latest_manifest()[0]
    receipt = fitted_ws.forget([rid])  # the client retries; the transient fault is gone
    assert receipt.created is False
    report = fitted_ws.audit()
    assert report.ok, report.to_dict()


def test_crash_before_commit_leaves_no_trace(fitted_ws, monkeypatch, fitted_template):
    rid = record_in(fitted_ws, 1, 1)
    before = snapshot(fitted_ws)
    from s3t.forget_batch import ForgetBatch

    write = ForgetBatch.flush

    def write_then_crash(self):  # every row of the request sent, then the process "dies" before commit
        write(self)
        crash()

    with monkeypatch.context() as m:
        m.setattr(ForgetBatch, "flush", write_then_crash)
        with pytest.raises(Crash):
            fitted_ws.forget([rid])
    after = snapshot(fitted_ws)
    assert after == before
    assert after["deleted"] == [] and after["requests"] == [] and after["receipts"] == []
    assert after["texts"][rid] == fitted_template.texts[rid]
    with fitted_ws.ws_.ledger.Session() as s:
        assert s.scalars(select(DeletionRequest)).first() is None
    # the ledger is usable afterwards and the request works normally
    receipt = fitted_ws.forget([rid])
    assert receipt.created and receipt.prev_hash == GENESIS and receipt.body["seq"] == 1
    assert fitted_ws.audit().ok


def test_load_removes_half_written_temp_files(fitted_ws):
    from s3t import S3T

    ws = fitted_ws.ws_.path
    stray = [ws / ".served.json.tmp-4242", ws / "checkpoints" / "shard-0" / ".x.safetensors.tmp-7"]
    for p in stray:
        p.write_bytes(b"partial")
    fitted_ws.ws_.ledger.close()
    S3T.load(ws)
    assert not any(p.exists() for p in stray)


# -- reopen ----------------------------------------------------------------------------------


def ledger_state(led: Ledger) -> dict:
    with led.Session() as s:
        manifests = [(m.version, m.reason, m.body) for m in s.scalars(select(Manifest).order_by(Manifest.version))]
        receipts = [(r.request_id, r.seq, r.body, r.hash) for r in s.scalars(select(ReceiptRow).order_by(ReceiptRow.seq))]
        slices = [(v.shard, v.slice, v.version, v.size, v.members_sha256) for v in s.scalars(select(SliceVersion))]
        lineage = dict(led.lineage(s))
    return {
        "records": [(r.id, r.split, r.label, r.subject, r.text, r.text_hmac, r.shard, r.slice)
                    for r in led.records("train") + led.records("validation")],
        "checkpoints": [(c.id, c.shard, c.prefix, c.stage, c.parent_id, c.path, c.sha256, c.val_accuracy, c.purged)
                        for c in led.checkpoints()],
        "lineage": lineage,
        "manifests": manifests,
        "receipts": receipts,
        "slices": slices,
        "deleted": sorted(led.deleted_ids()),
        "sequences": led.sequences(),
        "labels": led.label_names(),
        "config": led.meta("config"),
    }


def test_reopen_keeps_everything(fitted_ws, fitted_template):
    fitted_ws.forget([record_in(fitted_ws, 0, 0)])
    fitted_ws.forget(subject="user2")
    led = fitted_ws.ws_.ledger
    state = ledger_state(led)
    assert len(state["records"]) == len(fitted_template.train) + len(fitted_template.val)
    # one checkpoint per distinct prefix of each shard's sequences (shared prefixes are trained once)
    prefixes = {(sh, order[:k]) for sh, seqs in state["sequences"].items() for order in seqs for k in range(1, len(order) + 1)}
    assert len(state["checkpoints"]) == len(prefixes)
    assert len(state["receipts"]) == 2 and state["deleted"]
    led.close()
    reopened = Ledger(led.url)
    try:
        assert ledger_state(reopened) == state
        assert reopened.initialised
    finally:
        reopened.close()


def test_initialise_twice_is_refused(fitted_ws):
    with pytest.raises(WorkspaceError, match="already"):
        fitted_ws.ws_.ledger.initialise("{}", ["a"], [], [], {})


def test_refresh_without_change_adds_no_manifest_version(fitted_ws):
    led = fitted_ws.ws_.ledger
    version, body = led.latest_manifest()
    assert led.refresh_manifest("noop") == (version, body)
    assert led.latest_manifest()[0] == version


def test_tainted_checkpoints_are_exactly_the_lineages_holding_the_deleted_record(fitted_ws):
    rid = record_in(fitted_ws, 1, 2)
    led = fitted_ws.ws_.ledger
    assert led.tainted_checkpoints() == set()
    fitted_ws.forget([rid])
    assert led.tainted_checkpoints() == cut_ids(fitted_ws, 1, 2)


# -- versioning and wrong directories ----------------------------------------------------------


def test_schema_version_mismatch_is_a_workspace_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    led = Ledger(url)
    assert led.meta("schema_version") == str(SCHEMA_VERSION)
    with led.Session.begin() as s:
        s.merge(Meta(key="schema_version", value=str(SCHEMA_VERSION + 98)))
    led.close()
    with pytest.raises(WorkspaceError) as info:
        Ledger(url)
    assert str(SCHEMA_VERSION + 98) in str(info.value) and str(SCHEMA_VERSION) in str(info.value)


def test_load_of_a_workspace_with_another_schema_version_fails(fitted_ws):
    from s3t import S3T

    led = fitted_ws.ws_.ledger
    with led.Session.begin() as s:
        s.merge(Meta(key="schema_version", value="999"))
    led.close()
    with pytest.raises(WorkspaceError, match="999"):
        S3T.load(fitted_ws.ws_.path)


@pytest.mark.parametrize("kind", ["empty", "missing", "other-files"])
def test_workspace_on_a_non_workspace_dir_is_a_helpful_error(tmp_path, kind):
    path = tmp_path / "not-a-ws"
    if kind != "missing":
        path.mkdir()
    if kind == "other-files":
        (path / "notes.txt").write_text("hello")
    before = sorted(p.name for p in path.iterdir()) if path.exists() else None
    with pytest.raises(WorkspaceError) as info:
        Workspace(path)
    message = str(info.value)
    assert str(path) in message and "workspace.json" in message and "not an s3t workspace" in message
    assert "s3t train" in message  # tells the user what to do
    # nothing was created
    assert (sorted(p.name for p in path.iterdir()) if path.exists() else None) == before


def test_load_of_a_non_workspace_dir_is_a_workspace_error(tmp_path):
    from s3t import S3T

    with pytest.raises(WorkspaceError, match="not an s3t workspace"):
        S3T.load(tmp_path)


def test_created_workspace_without_a_plan(tmp_path):
    ws = Workspace(tmp_path / "ws", create=True)
    # null = the SQLite ledger inside the workspace, so the directory can be moved or copied
    assert json.loads((tmp_path / "ws" / "workspace.json").read_text())["db"] is None
    assert ws.db_url == f"sqlite:///{(tmp_path / 'ws').resolve() / 'ledger.sqlite'}"
    assert not ws.ledger.initialised
    with pytest.raises(WorkspaceError, match="no trained plan"):
        ws.load_config()
    assert ws.ledger.latest_manifest() == (0, {"shards": {}})
    assert canonical(ws.ledger.compute_manifest(ws.ledger.Session())) == canonical({"shards": {}})
