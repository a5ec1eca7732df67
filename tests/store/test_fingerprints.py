"""Keyed fingerprints (issue 15, finding 3): nothing the ledger stores lets a guessed text be
confirmed without the workspace secret.

A plain sha256 of a short text is a dictionary attack's answer key, so the ledger keeps an
HMAC-SHA256 under the per-workspace secret (``WORKSPACE/secret``, mode 0600) for live texts and
no fingerprint at all for erased ones; rotation re-keys the live ones in one transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat

import pytest

from s3t.errors import WorkspaceError
from s3t.store import secret as secret_mod
from s3t.store.secret import ENV_VAR, SECRET_FILE, fingerprint, load_secret, rotate_secret
from tests.fitted_copy import fitted_template, fitted_ws, record_in  # noqa: F401  (fixtures)


def ledger_bytes(ws_path) -> bytes:
    """The SQLite ledger and its WAL / shared memory, as raw bytes."""
    return b"".join(p.read_bytes() for p in sorted(ws_path.glob("ledger.sqlite*")) if p.is_file())


def plain_fingerprints(text: str) -> list[bytes]:
    """The unkeyed sha256 of ``text``, as hex (lower and upper case) and raw bytes."""
    digest = hashlib.sha256(text.encode("utf-8"))
    return [digest.hexdigest().encode(), digest.hexdigest().upper().encode(), digest.digest()]


def test_no_plain_sha256_of_any_text_in_the_ledger_after_a_forget(fitted_ws, fitted_template):
    rid = record_in(fitted_ws, 1, 1)
    fitted_ws.forget([rid])
    fitted_ws.forget(subject="user3")  # training and validation rows
    assert fitted_ws.flush(timeout=60)
    data = ledger_bytes(fitted_ws.ws_.path)
    forgotten = [t for i, t in fitted_template.texts.items() if i == rid or i in {
        r["id"] for r in fitted_template.train + fitted_template.val if r.get("subject") == "user3"}]
    assert len(forgotten) > 2
    found = [t for t in fitted_template.texts.values() for fp in plain_fingerprints(t) if fp in data]
    assert found == [], found[:3]
    # the grep can find what is there: a kept text is in the same bytes
    kept = next(t for i, t in fitted_template.texts.items() if t not in forgotten)
    assert kept.encode() in data


def test_live_fingerprints_are_hmacs_under_the_workspace_secret_and_erased_rows_keep_none(fitted_ws, fitted_template):
    ws = fitted_ws.ws_
    path = ws.path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = bytes.fromhex(path.read_text().strip())
    assert len(key) == 32
    rid = record_in(fitted_ws, 0, 2)
    fitted_ws.forget([rid])
    rows = ws.ledger.records("train") + ws.ledger.records("validation")
    assert len(rows) == len(fitted_template.texts)
    for r in rows:
        if r.id == rid:
            assert r.text is None and r.text_hmac is None
        else:
            text = fitted_template.texts[r.id]
            expected = hmac.new(key, b"s3t-text\x00" + text.encode("utf-8"), hashlib.sha256).hexdigest()
            assert r.text_hmac == expected == fingerprint(key, text)
            assert r.text_hmac != hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_audit_fails_when_a_forgotten_record_still_has_a_fingerprint(fitted_ws):
    from s3t.store.schema import Record

    rid = record_in(fitted_ws, 0, 1)
    fitted_ws.forget([rid])
    assert fitted_ws.audit().ok
    with fitted_ws.ws_.ledger.write() as s:  # what schema 1 kept as a tombstone, keyed or not
        s.get(Record, rid).text_hmac = "0" * 64
    erasure = next(c for c in fitted_ws.audit().checks if c.name == "erasure")
    assert not erasure.ok and rid in erasure.detail and "fingerprint" in erasure.detail


def test_a_copied_workspace_keeps_its_secret_and_two_workspaces_differ(tmp_path, fitted_ws, fitted_template):
    other = tmp_path / "other"
    other.mkdir()
    a = load_secret(fitted_ws.ws_.path)
    b = load_secret(other, create=True)
    assert a == load_secret(fitted_template.path) and a != b and len(b) == 32
    text = fitted_template.train[0]["text"]
    assert fingerprint(a, text) != fingerprint(b, text)


def test_secret_file_is_created_once_exclusively_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(os, "umask", os.umask)  # restored even if an assertion fails
    old = os.umask(0)  # the mode must not depend on the umask
    try:
        first = load_secret(tmp_path, create=True)
    finally:
        os.umask(old)
    path = tmp_path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(tmp_path, create=True) == first  # never overwritten
    assert path.read_text().strip() == first.hex()
    with pytest.raises(WorkspaceError, match="no secret"):
        load_secret(tmp_path / "nowhere")


def test_env_override_wins_and_bad_values_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "ab" * 32)
    assert load_secret(tmp_path, create=True) == bytes.fromhex("ab" * 32)
    assert not (tmp_path / SECRET_FILE).exists()  # the variable is the secret: no file is made
    for bad in ("zz" * 32, "ab" * 8):
        monkeypatch.setenv(ENV_VAR, bad)
        with pytest.raises(WorkspaceError, match=ENV_VAR):
            load_secret(tmp_path)


def test_rotation_rekeys_live_fingerprints_and_replaces_the_secret(fitted_ws, fitted_template):
    ws = fitted_ws.ws_
    rid = record_in(fitted_ws, 1, 0)
    fitted_ws.forget([rid])
    old = load_secret(ws.path)
    report = rotate_secret(ws)
    new = load_secret(ws.path)
    assert new != old and report.rekeyed == len(fitted_template.texts) - 1
    assert ws.ledger.meta("secret_rotated_at")
    assert not (ws.path / (SECRET_FILE + ".new")).exists()
    for r in ws.ledger.records("train") + ws.ledger.records("validation"):
        assert r.text_hmac == (None if r.id == rid else fingerprint(new, fitted_template.texts[r.id]))
    assert fitted_ws.audit().ok


def test_rotate_secret_command(fitted_ws, fitted_template):
    from typer.testing import CliRunner

    from s3t.cli import app

    ws = fitted_ws.ws_
    old = load_secret(ws.path)
    result = CliRunner().invoke(app, ["rotate-secret", "-w", str(ws.path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"rekeyed": len(fitted_template.texts), "cleared": 0, "source": "file"}
    new = load_secret(ws.path)
    assert new != old
    r = ws.ledger.records("validation")[0]
    assert r.text_hmac == fingerprint(new, fitted_template.texts[r.id])


def test_rotation_with_the_environment_variable_rekeys_and_leaves_the_file(fitted_ws, fitted_template, monkeypatch):
    ws = fitted_ws.ws_
    on_disk = (ws.path / SECRET_FILE).read_bytes()
    monkeypatch.setenv(ENV_VAR, "ef" * 32)
    report = rotate_secret(ws)
    assert report.source == ENV_VAR and (ws.path / SECRET_FILE).read_bytes() == on_disk
    r = ws.ledger.records("train")[3]
    assert r.text_hmac == fingerprint(bytes.fromhex("ef" * 32), fitted_template.texts[r.id])


@pytest.mark.parametrize("crash_after_commit", [True, False])
def test_a_rotation_cut_short_is_finished_or_dropped_by_the_next_open(fitted_ws, fitted_template, monkeypatch,
                                                                      crash_after_commit):
    ws = fitted_ws.ws_
    old = load_secret(ws.path)

    class Crash(RuntimeError):
        pass

    def crash(*_a, **_k):
        raise Crash("simulated crash")

    # after the ledger commit the new secret is moved into place; before it the ledger is re-keyed
    monkeypatch.setattr(secret_mod, "_install" if crash_after_commit else "_rekey", crash)
    with pytest.raises(Crash):
        rotate_secret(ws)
    monkeypatch.undo()
    assert (ws.path / (SECRET_FILE + ".new")).exists()
    key = ws.secret()  # resolves the pending rotation against the ledger
    assert not (ws.path / (SECRET_FILE + ".new")).exists()
    assert (key != old) == crash_after_commit
    assert load_secret(ws.path) == key
    r = ws.ledger.records("train")[0]
    assert r.text_hmac == fingerprint(key, fitted_template.texts[r.id])


def test_opening_with_another_secret_warns_and_changes_nothing(fitted_ws, monkeypatch, caplog):
    from s3t import S3T

    ws_path = fitted_ws.ws_.path
    before = [(r.id, r.text_hmac) for r in fitted_ws.ws_.ledger.records("train")]
    fitted_ws.ws_.ledger.close()
    monkeypatch.setenv(ENV_VAR, "cd" * 32)
    with caplog.at_level("WARNING", logger="s3t"):
        again = S3T.load(ws_path)
        again.ws_.secret()
    assert "another secret" in caplog.text and "rotate-secret" in caplog.text
    assert [(r.id, r.text_hmac) for r in again.ws_.ledger.records("train")] == before
    assert again.audit().ok  # a lost or different secret breaks nothing else
    again.ws_.ledger.close()
