"""Audit a workspace from the ledger and the files alone (no model needed, torch-free).

Checks
------
lineage      no served checkpoint's lineage holds a deleted record
history      no manifest version ever committed served a checkpoint whose lineage holds a record
             deleted before (or with) that version
rule         the latest served manifest is what the serving rule gives now
mirror       served.json equals the latest manifest in the ledger
files        every live checkpoint file exists and matches its sha256
erasure      no file of a cut checkpoint remains; deleted records' texts and fingerprints are erased
receipts     the receipt hash chain verifies
physical     SQLite: secure_delete is on and the WAL was truncated after the last forget (no page
             image from before an erasure is left); PostgreSQL: reported, not checked at byte level
"""

from __future__ import annotations

from dataclasses import dataclass, field

import json
from typing import Any

from sqlalchemy import func, or_, select

from .forget import receipts, verify_chain
from .store.atomic import sha256_file
from .store.ledger import canonical
from .store.schema import CheckpointLineage, Deletion, Manifest, Receipt as ReceiptRow, Record, SliceMember
from .store.workspace import Workspace


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class AuditReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checks": [c.__dict__ for c in self.checks]}

    def add(self, name: str, problems: list[str], ok_detail: str) -> None:
        shown = "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        self.checks.append(Check(name, not problems, shown if problems else ok_detail))


def history_violations(ledger: Any, s: Any) -> list[str]:
    """Every manifest version ever committed, checked against the deletions committed before it.

    A deletion is committed together with the manifest version its receipt names, so version
    ``v`` must not serve a checkpoint whose lineage holds a record deleted by a request whose
    receipt names a version ``<= v``. Returns one line per (version, shard) that did.
    """
    deleted_at: dict[str, int] = {}  # request id -> manifest version committed with it
    for rid, body in s.execute(select(ReceiptRow.request_id, ReceiptRow.body)):
        deleted_at[rid] = int(json.loads(body)["manifest_version"])
    first_by_slice: dict[int, int] = {}  # slice version -> first manifest version at which it holds a deletion
    q = select(SliceMember.slice_version_id, Deletion.request_id).join(Deletion, Deletion.record_id == SliceMember.record_id)
    for sv, rid in s.execute(q):
        v = deleted_at.get(rid, 0)  # a deletion without a receipt is older than every manifest
        first_by_slice[sv] = min(v, first_by_slice.get(sv, v))
    first_by_ckpt: dict[str, int] = {}
    for cid, sv in s.execute(select(CheckpointLineage.checkpoint_id, CheckpointLineage.slice_version_id)):
        if sv in first_by_slice:
            first_by_ckpt[cid] = min(first_by_slice[sv], first_by_ckpt.get(cid, first_by_slice[sv]))
    problems = []
    for version, body in s.execute(select(Manifest.version, Manifest.body).order_by(Manifest.version)):
        for shard, entry in json.loads(body)["shards"].items():
            if entry is not None and first_by_ckpt.get(entry["checkpoint"], version + 1) <= version:
                problems.append(f"manifest v{version} shard {shard} served {entry['checkpoint']}, whose lineage holds a "
                                f"record deleted at v{first_by_ckpt[entry['checkpoint']]}")
    return problems


def physical_problems(ws: Workspace, last_seq: int) -> tuple[list[str], str]:
    """Problems with the physical erasure of forgotten content in the ledger's own files."""
    ledger = ws.ledger
    if ledger.dialect != "sqlite":
        return [], (f"{ledger.dialect}: forgets are followed by a VACUUM FULL of the tables holding texts (at most one per "
                    "serve.erasure_interval, covering every forget before it); the server's own WAL and backups are "
                    "outside s3t (README: Guarantees and threat model)")
    problems = []
    with ledger.engine.connect() as conn:
        if conn.exec_driver_sql("PRAGMA secure_delete").scalar() != 1:
            problems.append("SQLite secure_delete is off: freed pages may keep erased text")
    done = ws.erased_through()
    if done < last_seq:
        problems.append(f"the ledger's WAL was not truncated after receipt {last_seq} (last done after {done}): "
                        "page images from before the erasure may remain")
    return problems, (f"secure_delete on; WAL truncated after the last of {last_seq} forget(s)"
                      if last_seq else "secure_delete on; nothing forgotten yet")


def audit(ws: Workspace) -> AuditReport:
    """Run every check; never raises on a failed check (see ``AuditReport.ok``)."""
    report = AuditReport()
    ledger = ws.ledger
    with ledger.Session() as s:
        version, manifest = ledger.latest_manifest(s)
        tainted = ledger.tainted_checkpoints(s)
        checkpoints = ledger.checkpoints(s)
        served = {k: v for k, v in manifest["shards"].items() if v is not None}
        report.add(
            "lineage",
            [f"shard {k} serves {v['checkpoint']} whose lineage holds a deleted record" for k, v in served.items() if v["checkpoint"] in tainted],
            f"{len(served)} served checkpoint(s), none trained on any of {len(ledger.deleted_ids(s))} deleted record(s)",
        )
        n_versions = s.scalar(select(func.count()).select_from(Manifest))
        report.add(
            "history",
            history_violations(ledger, s),
            f"all {n_versions} manifest version(s) ever committed served no checkpoint trained on a record deleted before it",
        )
        expected = ledger.compute_manifest(s)
        report.add(
            "rule",
            [] if canonical(expected) == canonical(manifest) else [f"manifest v{version} is not what the serving rule gives now"],
            f"manifest v{version} matches the serving rule",
        )
        erased_texts = list(s.scalars(select(Record.id).join(Deletion, Deletion.record_id == Record.id)
                                      .where(or_(Record.text.is_not(None), Record.text_hmac.is_not(None)))))
    mirror = ws.read_served()
    mirror_problems = []
    if version and (mirror is None or mirror.get("version") != version or canonical({"shards": mirror.get("shards")}) != canonical(manifest)):
        mirror_problems.append(f"served.json does not equal ledger manifest v{version}")
    report.add("mirror", mirror_problems, "served.json equals the ledger's manifest")

    file_problems, erase_problems = [], []
    for c in checkpoints:
        path = ws.resolve(c.path)
        if c.id in tainted or c.purged:
            if path.exists():
                erase_problems.append(f"cut checkpoint {c.id} still on disk")
            continue
        if not path.exists():
            file_problems.append(f"{c.id}: file missing")
        elif sha256_file(path) != c.sha256:
            file_problems.append(f"{c.id}: sha256 mismatch (file changed on disk)")
    live = sum(1 for c in checkpoints if c.id not in tainted and not c.purged)
    report.add("files", file_problems, f"{live} live checkpoint file(s) match their sha256")
    erase_problems += [f"record {rid}: text or its fingerprint not erased" for rid in erased_texts]
    report.add("erasure", erase_problems,
               f"{len(checkpoints) - live} cut checkpoint file(s) erased; deleted texts and their fingerprints erased")
    chain = receipts(ledger)
    report.add("receipts", verify_chain(chain), f"{len(chain)} receipt(s), hash chain verifies")
    report.add("physical", *physical_problems(ws, len(chain)))
    return report
