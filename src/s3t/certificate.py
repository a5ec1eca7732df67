"""Deletion certificates: signed evidence about one forget request that anyone can check offline.

A certificate states, for one request: the records (keyed fingerprints, never texts or ids),
when the deletion was committed (receipt sequence, hash and manifest version), the served
manifest before and after that commit and at issue time, and for every shard served at issue
time the checkpoint's sha256 and its lineage: each slice version it was trained on, with the
keyed fingerprints of that slice version's members and their digest. The deleted fingerprints
are in none of them. It adds the history audit at issue time (no manifest version ever served a
lineage holding a record deleted before it) and, when ``s3t verify`` has been run for the
request, its bit-exact comparison with a training from scratch. The whole is canonical JSON,
signed with the workspace's Ed25519 key (:mod:`s3t.store.signing`).

:func:`verify_certificate` needs only the certificate and the public key: the signature, then
the certificate's own consistency (digests, disjointness, served entries matching the manifest).
Given the workspace, it also re-hashes the certified checkpoint files.

What it proves, and what not: what THIS deployment serves and stores, as recorded by its ledger
and signed by its key. Not what copies exist elsewhere (backups, exports, other machines).

Example
-------
>>> cert = issue_certificate(model, receipt.request_id)                # doctest: +SKIP
>>> verify_certificate(cert, public_pem(model.ws_.path)).ok            # doctest: +SKIP
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UnknownRecordError

if TYPE_CHECKING:
    from .estimator import S3T

FORMAT = "s3t-deletion-certificate/1"
VERIFICATIONS = "verifications"  # WORKSPACE/verifications/<request id>.json: the last verify's summary


def canonical_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_fingerprint(key: bytes, record_id: str) -> str:
    """Keyed fingerprint of a record id (128 bits): only the workspace's key holder can link it to an id."""
    return hmac.new(key, b"s3t-record-id\x00" + record_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def members_digest(fingerprints: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(fingerprints)).encode()).hexdigest()


def issue_certificate(model: "S3T", request_id: str) -> dict[str, Any]:
    """The signed certificate of ``request_id`` (see the module docstring)."""
    from sqlalchemy import select

    from .audit import history_violations
    from .store.schema import Checkpoint, CheckpointLineage, Manifest, Receipt, SliceMember, SliceVersion
    from .store.secret import key_check, resolve
    from .store.signing import key_id, load_signing_key

    ws, ledger = model.ws_, model.ws_.ledger
    secret = resolve(ws.path, ledger)
    fp = lambda rid: record_fingerprint(secret, rid)  # noqa: E731
    with ledger.Session() as s:
        row = s.get(Receipt, request_id)
        if row is None:
            raise UnknownRecordError(f"unknown request id {request_id!r}")
        receipt = json.loads(row.body)
        manifests = {v: json.loads(b) for v, b in s.execute(select(Manifest.version, Manifest.body).where(
            Manifest.version.in_([receipt["manifest_version"] - 1, receipt["manifest_version"]])))}
        latest_version, latest = ledger.latest_manifest(s)
        violations = history_violations(ledger, s)
        served: dict[str, Any] = {}
        for shard, entry in sorted(latest["shards"].items(), key=lambda kv: int(kv[0])):
            if entry is None:
                served[shard] = None
                continue
            ckpt = s.get(Checkpoint, entry["checkpoint"])
            lineage = []
            q = (select(SliceVersion).join(CheckpointLineage, CheckpointLineage.slice_version_id == SliceVersion.id)
                 .where(CheckpointLineage.checkpoint_id == ckpt.id).order_by(CheckpointLineage.position))
            for sv in s.scalars(q):
                members = sorted(fp(r) for r in s.scalars(select(SliceMember.record_id).where(
                    SliceMember.slice_version_id == sv.id)))
                lineage.append({"slice": sv.slice, "version": sv.version, "members": members,
                                "members_digest": members_digest(members)})
            served[shard] = {"checkpoint": ckpt.id, "sha256": ckpt.sha256, "path": ckpt.path, "stage": ckpt.stage,
                             "sequence": entry["sequence"], "lineage": lineage}
    payload = {
        "format": FORMAT,
        "issued_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint_key": key_check(secret),
        "request": {
            "request_id": request_id, "seq": receipt["seq"], "receipt_hash": row.hash,
            "committed_at": receipt["created_at"], "manifest_version": receipt["manifest_version"],
            "records": sorted(fp(r) for r in receipt["record_ids"]), "by_subject": receipt["subject"] is not None,
            "affected_shards": receipt["affected_shards"],
        },
        "manifest_before": {"version": receipt["manifest_version"] - 1,
                            "shards": _entries(manifests.get(receipt["manifest_version"] - 1))},
        "manifest_after": {"version": receipt["manifest_version"],
                           "shards": _entries(manifests.get(receipt["manifest_version"]))},
        "served": {"manifest_version": latest_version, "shards": served},
        "history_audit": {"ok": not violations, "manifest_versions": latest_version, "violations": len(violations)},
        "verify": _last_verify(ws.path, request_id),
    }
    key = load_signing_key(ws.path, create=True)
    return {**payload, "signature": {"algorithm": "Ed25519", "key_id": key_id(key.public_key()),
                                     "value": base64.b64encode(key.sign(canonical_bytes(payload))).decode()}}


def _entries(body: dict | None) -> dict[str, Any]:
    if body is None:
        return {}
    return {k: None if v is None else {"checkpoint": v["checkpoint"], "stage": v["stage"]} for k, v in body["shards"].items()}


def save_verification(workspace: str | Path, report: dict[str, Any]) -> None:
    """Keep the summary of ``s3t verify`` for a request (counts and checkpoint ids only)."""
    from .store.atomic import atomic_write_bytes

    d = Path(workspace) / VERIFICATIONS
    d.mkdir(exist_ok=True)
    summary = {"ok": report["ok"], "compared": report["compared"], "mismatches": len(report["mismatches"]),
               "incomparable": len(report.get("incomparable", [])),
               "shards": report["shards"], "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_bytes(d / f"{report['request_id']}.json", canonical_bytes(summary))


def _last_verify(workspace: Path, request_id: str) -> dict[str, Any] | None:
    try:
        return json.loads((workspace / VERIFICATIONS / f"{request_id}.json").read_text())
    except (OSError, ValueError):
        return None


@dataclass
class CertificateCheck:
    ok_signature: bool = False
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.ok_signature and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "signature": self.ok_signature, "problems": self.problems,
                "files_checked": self.files_checked}


def verify_certificate(cert: dict[str, Any], public_pem: str | bytes, workspace: str | Path | None = None
                       ) -> CertificateCheck:
    """Check ``cert`` with nothing but the public key (and, given, the workspace's files)."""
    from .store.signing import key_id, load_public, verify_signature

    out = CertificateCheck()
    try:
        sig = cert["signature"]
        payload = {k: v for k, v in cert.items() if k != "signature"}
        if sig.get("key_id") != key_id(load_public(public_pem)):
            out.problems.append(f"signed with key {sig.get('key_id')}, not with the key given ({key_id(load_public(public_pem))})")
        out.ok_signature = verify_signature(public_pem, base64.b64decode(sig["value"]), canonical_bytes(payload))
        if not out.ok_signature:
            out.problems.append("the signature does not match the certificate's content (changed, or another key)")
        _consistency(cert, out.problems)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        out.problems.append(f"not a well-formed certificate: {type(exc).__name__}: {exc}")
        return out
    if workspace is not None:
        from .store.atomic import sha256_file

        for shard, entry in cert["served"]["shards"].items():
            if entry is None:
                continue
            path = Path(workspace) / entry["path"]
            if not path.exists():
                out.problems.append(f"shard {shard}: certified checkpoint {entry['checkpoint']} is not in the workspace "
                                    "(cut or replaced since the certificate was issued)")
                continue
            out.files_checked += 1
            if sha256_file(path) != entry["sha256"]:
                out.problems.append(f"shard {shard}: checkpoint file {entry['path']} differs from the certified sha256")
    return out


def _consistency(cert: dict[str, Any], problems: list[str]) -> None:
    if cert.get("format") != FORMAT:
        problems.append(f"unknown format {cert.get('format')!r}")
    deleted = set(cert["request"]["records"])
    for shard, entry in cert["served"]["shards"].items():
        if entry is None:
            continue
        for sv in entry["lineage"]:
            if members_digest(sv["members"]) != sv["members_digest"]:
                problems.append(f"shard {shard} slice {sv['slice']} v{sv['version']}: member list and digest disagree")
            hit = deleted & set(sv["members"])
            if hit:
                problems.append(f"shard {shard}: served checkpoint {entry['checkpoint']} was trained on slice "
                                f"{sv['slice']} v{sv['version']}, which holds {len(hit)} deleted record(s)")
        if len(entry["lineage"]) != entry["stage"]:
            problems.append(f"shard {shard}: a stage-{entry['stage']} checkpoint with {len(entry['lineage'])} lineage slices")
    if cert["served"]["manifest_version"] < cert["request"]["manifest_version"]:
        problems.append("the served manifest is older than the deletion's commit")
    after = cert["manifest_after"]["shards"]
    if cert["served"]["manifest_version"] == cert["request"]["manifest_version"]:
        for shard, entry in cert["served"]["shards"].items():
            if (entry and entry["checkpoint"]) != ((after.get(shard) or {}).get("checkpoint")):
                problems.append(f"shard {shard}: served entry differs from the manifest the deletion committed")
    if not cert["history_audit"]["ok"]:
        problems.append(f"the history audit at issue time found {cert['history_audit']['violations']} violation(s)")
    v = cert.get("verify")
    if v is not None and not v["ok"]:
        problems.append(f"verify found {v['mismatches']} checkpoint(s) differing from training from scratch"
                        + (f" and could not compare {v['incomparable']} made on another kind of machine"
                           if v.get("incomparable") else ""))


def render_html(cert: dict[str, Any]) -> str:
    """A human-readable page of the same certificate (the JSON stays the signed original)."""
    from html import escape

    r = cert["request"]
    rows = []
    for shard, e in cert["served"]["shards"].items():
        if e is None:
            rows.append(f"<tr><td>{escape(shard)}</td><td colspan=4>no live checkpoint</td></tr>")
            continue
        lin = ", ".join(f"slice {sv['slice']} v{sv['version']} ({len(sv['members'])} records)" for sv in e["lineage"])
        rows.append(f"<tr><td>{escape(shard)}</td><td>{e['stage']}</td><td><code>{escape(e['sha256'][:16])}…</code></td>"
                    f"<td>{escape(lin)}</td><td>none of the {len(r['records'])} deleted</td></tr>")
    v = cert.get("verify")
    verify = "not run" if v is None else (f"{'bit-identical' if v['ok'] else 'MISMATCH'}: {v['compared']} checkpoint(s) "
                                          f"compared with a training from scratch ({escape(v['at'])})")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>s3t deletion certificate</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{border:1px solid #ccc;padding:.3em}}
table{{border-collapse:collapse}}</style></head><body>
<h1>Deletion certificate</h1>
<p>Request <code>{escape(r['request_id'])}</code> ({len(r['records'])} record(s){', by subject' if r['by_subject'] else ''})
was committed at {escape(r['committed_at'])} as receipt #{r['seq']} (<code>{escape(r['receipt_hash'][:16])}…</code>),
manifest version {r['manifest_version']}. Issued {escape(cert['issued_at'])}, signed with Ed25519 key
<code>{escape(cert['signature']['key_id'])}</code>.</p>
<h2>Served at issue time (manifest v{cert['served']['manifest_version']})</h2>
<table><tr><th>shard</th><th>stage</th><th>checkpoint sha256</th><th>trained on</th><th>deleted records in it</th></tr>
{''.join(rows)}</table>
<p>History audit: {'clean' if cert['history_audit']['ok'] else 'VIOLATIONS'} over
{cert['history_audit']['manifest_versions']} manifest version(s). Verify: {verify}.</p>
<p>This proves what this deployment serves and stores, as its ledger records and its key signs; not what
copies exist elsewhere. Check it offline: <code>s3t certificate verify cert.json --key key.pem</code>.</p>
</body></html>"""
