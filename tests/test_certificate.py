"""Deletion certificates (issue 22): signed, checkable offline, and failing for the right reason."""

from __future__ import annotations

import copy
import json
import stat

import pytest

from s3t.certificate import issue_certificate, members_digest, record_fingerprint, render_html, verify_certificate
from s3t.errors import UnknownRecordError
from s3t.store.secret import resolve
from s3t.store.signing import KEY_FILE, public_keys, public_pem, rotate_signing_key
from tests.fitted_copy import fitted_template, fitted_ws  # noqa: F401  (fixtures)
from tests.service.conftest import train_ids


def _forget_subject(est, subject="user4"):
    receipt = est.forget(subject=subject)
    assert est.flush()
    return receipt


def test_a_certificate_verifies_offline_and_names_no_id_or_text(fitted_ws, fitted_template):
    est = fitted_ws
    receipt = _forget_subject(est)
    cert = issue_certificate(est, receipt.request_id)
    pem = public_pem(est.ws_.path)
    check = verify_certificate(cert, pem)
    assert check.ok, check.problems
    assert verify_certificate(cert, pem, est.ws_.path).files_checked == sum(
        1 for v in cert["served"]["shards"].values() if v is not None) >= 1
    key = resolve(est.ws_.path, est.ws_.ledger)
    assert cert["request"]["records"] == sorted(record_fingerprint(key, r) for r in receipt.body["record_ids"])
    text = json.dumps(cert)
    assert "user4" not in text and not any(r in text for r in receipt.body["record_ids"])
    assert not any(t in text for t in fitted_template.texts.values())
    assert cert["manifest_after"]["version"] == receipt.body["manifest_version"] == cert["manifest_before"]["version"] + 1
    assert cert["history_audit"]["ok"] and cert["verify"] is None
    assert stat.S_IMODE((est.ws_.path / KEY_FILE).stat().st_mode) == 0o600
    html = render_html(cert)
    assert receipt.request_id in html and "bit-identical" not in html and "user4" not in html


def test_every_tampering_fails_with_its_reason(fitted_ws):
    est = fitted_ws
    receipt = _forget_subject(est)
    cert = issue_certificate(est, receipt.request_id)
    pem = public_pem(est.ws_.path)

    changed = copy.deepcopy(cert)
    changed["request"]["committed_at"] = "2020-01-01T00:00:00+00:00"
    assert "signature does not match" in " ".join(verify_certificate(changed, pem).problems)

    raw = json.dumps(cert, sort_keys=True)  # any one byte changed in the signed content
    flipped = json.loads(raw.replace('"seq": ', '"seq": 1', 1))
    assert not verify_certificate(flipped, pem).ok

    other = issue_certificate(est, receipt.request_id)
    rotate_signing_key(est.ws_.path)
    new_pem = public_pem(est.ws_.path)
    wrong = verify_certificate(other, new_pem)
    assert not wrong.ok and any("not with the key given" in p for p in wrong.problems)
    old_pem = next(k["public_pem"] for k in public_keys(est.ws_.path) if k["key_id"] == other["signature"]["key_id"])
    assert verify_certificate(other, old_pem).ok  # rotation keeps old public keys, with their period
    assert [k["valid_until"] is None for k in public_keys(est.ws_.path)] == [False, True]


def test_a_lineage_holding_a_deleted_record_fails_even_when_signed(fitted_ws):
    """The consistency check is not only the signature: a (validly signed) certificate whose served
    lineage holds a deleted record's slice version is refused."""
    from s3t.certificate import _consistency

    est = fitted_ws
    receipt = _forget_subject(est)
    cert = issue_certificate(est, receipt.request_id)
    shard, entry = next((k, v) for k, v in cert["served"]["shards"].items() if v is not None)
    bad = copy.deepcopy(cert)
    sv = bad["served"]["shards"][shard]["lineage"][0]
    sv["members"] = sorted(sv["members"] + [cert["request"]["records"][0]])
    sv["members_digest"] = members_digest(sv["members"])
    problems: list[str] = []
    _consistency(bad, problems)
    assert any("holds 1 deleted record" in p for p in problems), problems


def test_a_checkpoint_file_that_differs_from_the_certified_hash_fails(fitted_ws):
    est = fitted_ws
    receipt = est.forget(record_ids=[train_ids(est, 0, 1)[0]])
    assert est.flush()
    cert = issue_certificate(est, receipt.request_id)
    shard, entry = next((k, v) for k, v in cert["served"]["shards"].items() if v is not None)
    path = est.ws_.path / entry["path"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    check = verify_certificate(cert, public_pem(est.ws_.path), est.ws_.path)
    assert check.ok_signature and any(f"shard {shard}: checkpoint file" in p for p in check.problems)


def test_verify_summary_is_cited_and_unknown_requests_are_refused(fitted_ws):
    est = fitted_ws
    receipt = est.forget(record_ids=[train_ids(est, 1, 2)[0]])
    est.retrain()
    assert est.verify(receipt.request_id).ok
    cert = issue_certificate(est, receipt.request_id)
    assert cert["verify"]["ok"] is True and cert["verify"]["compared"] == 9 and cert["verify"]["mismatches"] == 0
    assert verify_certificate(cert, public_pem(est.ws_.path), est.ws_.path).ok
    assert "bit-identical" in render_html(cert)
    with pytest.raises(UnknownRecordError, match="req-nope"):
        issue_certificate(est, "req-nope")


def test_cli_issue_key_verify(fitted_ws, tmp_path):
    from typer.testing import CliRunner

    from s3t.cli import app

    est = fitted_ws
    receipt = _forget_subject(est, "user7")
    ws = str(est.ws_.path)
    runner = CliRunner()
    cert, key, html = tmp_path / "cert.json", tmp_path / "key.pem", tmp_path / "cert.html"
    r = runner.invoke(app, ["certificate", "issue", receipt.request_id, "-w", ws, "--out", str(cert), "--html", str(html)])
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["certificate", "key", "-w", ws, "--out", str(key)]).exit_code == 0
    ok = runner.invoke(app, ["certificate", "verify", str(cert), "--key", str(key), "-w", ws, "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True
    data = json.loads(cert.read_text())
    data["served"]["manifest_version"] += 1
    cert.write_text(json.dumps(data))
    bad = runner.invoke(app, ["certificate", "verify", str(cert), "--key", str(key)])
    assert bad.exit_code == 1 and "INVALID" in bad.stdout


def test_http_certificate_and_public_key(fitted_ws):
    from tests.service.conftest import AUTH, READ, TOKEN  # noqa: F401
    from fastapi.testclient import TestClient

    from s3t.service import create_app

    with TestClient(create_app(fitted_ws.ws_.path, token=TOKEN, read_token="read-token-0123456789",
                               background=False)) as client:
        rc = client.post("/forget", json={"subject": "user2"}, headers=AUTH).json()
        assert client.get(f"/forget/{rc['request_id']}/certificate").status_code == 401
        cert = client.get(f"/forget/{rc['request_id']}/certificate",
                          headers={"Authorization": "Bearer read-token-0123456789"})
        assert cert.status_code == 200, cert.text
        key = client.get("/certificates/key")
        assert key.status_code == 200 and key.json()["keys"][-1]["public_pem"] == key.json()["current"]
        check = verify_certificate(cert.json(), key.json()["current"], fitted_ws.ws_.path)
        assert check.ok, check.problems
        assert cert.json()["request"]["request_id"] == rc["request_id"] and "user2" not in cert.text
        missing = client.get("/forget/req-0000000000000000/certificate", headers={"Authorization": "Bearer read-token-0123456789"})
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "UnknownRecordError"
