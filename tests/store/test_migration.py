"""Schema 1 -> 2 (keyed fingerprints): a workspace written by schema-1 code is migrated on open,
once, in one transaction, and afterwards holds nothing that confirms a guessed text.

The fixture ``fixtures/v1-workspace`` was written by the schema-1 code itself
(``make_v1_fixture.py``): ids derived as ``sha256(position, text)``, a plain ``text_sha256`` per
record, two forgets (single records, and a subject with validation rows) in its receipts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest

from s3t import S3T
from s3t.errors import WorkspaceError
from s3t.forget import request_key, verify_chain
from s3t.store import migrate as migrate_mod
from s3t.store.ledger import Ledger
from s3t.store.secret import ENV_VAR, SECRET_FILE, fingerprint, load_secret
from tests.pg import Cluster, pg_bin

FIXTURE = Path(__file__).parent / "fixtures" / "v1-workspace"


@pytest.fixture(autouse=True)
def _no_env_secret(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def v1_copy(tmp_path: Path) -> tuple[Path, dict]:
    """A private copy of the schema-1 workspace, and what schema 1 stored in it (read with sqlite3)."""
    ws = shutil.copytree(FIXTURE, tmp_path / "ws")
    con = sqlite3.connect(ws / "ledger.sqlite")
    try:
        rows = con.execute("SELECT id, position, split, text, text_sha256 FROM records").fetchall()
        state = {
            "version": con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0],
            "records": {r[0]: {"position": r[1], "split": r[2], "text": r[3], "sha256": r[4]} for r in rows},
            "receipts": [(json.loads(b), h) for b, h in con.execute("SELECT body, hash FROM receipts ORDER BY seq")],
            # idempotency keys of requests by record ids (a subject request's key hashes the subject: no text)
            "keys": [k for (k,) in con.execute("SELECT d.key FROM deletion_requests d JOIN receipts r ON "
                                               "r.request_id = d.id WHERE d.subject IS NULL ORDER BY r.seq")],
        }
    finally:
        con.close()
    return ws, state


def ledger_bytes(ws: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(ws.glob("ledger.sqlite*")) if p.is_file())


def schema1_fingerprints(state: dict) -> list[bytes]:
    """Everything schema 1 stored that confirms a guessed text: plain text hashes (hex and raw),
    text-derived ids, and the receipt hashes and request keys computed over them."""
    out = []
    for rid, r in state["records"].items():
        out += [r["sha256"].encode(), bytes.fromhex(r["sha256"]), rid.encode()]
    out += [h.encode() for _, h in state["receipts"]] + [k.encode() for k in state["keys"]]
    return out


def test_the_fixture_is_what_schema_1_wrote(tmp_path):
    _, v1 = v1_copy(tmp_path)
    assert v1["version"] == "1" and len(v1["records"]) == 80 and len(v1["receipts"]) == 2
    for rid, r in v1["records"].items():
        assert rid == migrate_mod.v1_derived_id(r["position"], r["text"]) if r["text"] else len(rid) == 16
        if r["text"] is not None:
            assert r["sha256"] == hashlib.sha256(r["text"].encode()).hexdigest()
    assert sum(r["text"] is None for r in v1["records"].values()) == 5


def test_a_schema_1_workspace_is_migrated_on_open_and_keeps_no_plain_fingerprint(tmp_path, caplog):
    ws, v1 = v1_copy(tmp_path)
    assert any(fp in ledger_bytes(ws) for fp in schema1_fingerprints(v1))  # the grep finds them before
    with caplog.at_level("WARNING", logger="s3t"):
        est = S3T.load(ws)
    led = est.ws_.ledger
    assert "migrated the ledger" in caplog.text and "from schema version 1 to 2" in caplog.text
    assert led.meta("schema_version") == "2"
    record = json.loads(led.meta("migrated_1_to_2"))
    assert record["at"] and {k: record[k] for k in ("fingerprints", "fingerprints_dropped", "ids_renamed",
                                                     "receipts_rechained")} == {
        "fingerprints": 75, "fingerprints_dropped": 5, "ids_renamed": 80, "receipts_rechained": 2}
    assert stat.S_IMODE((ws / SECRET_FILE).stat().st_mode) == 0o600
    key = load_secret(ws)

    # no plain text hash, no text-derived id, no hash over them: anywhere in the database's bytes
    data = ledger_bytes(ws)
    assert [fp for fp in schema1_fingerprints(v1) if fp in data] == []
    con = sqlite3.connect(ws / "ledger.sqlite")
    assert "text_sha256" not in {c[1] for c in con.execute("PRAGMA table_info(records)")}
    con.close()

    # ids are positions; live texts keep an HMAC under the workspace secret, erased ones none
    by_pos = {(r["split"], r["position"]): r for r in v1["records"].values()}
    rows = led.records("train") + led.records("validation")
    assert len(rows) == 80
    for r in rows:
        old = by_pos[(r.split, r.position)]
        assert r.id == ("row-" if r.split == "train" else "val-") + str(r.position)
        assert r.text == old["text"]
        assert r.text_hmac == (None if old["text"] is None else fingerprint(key, old["text"]))
        assert old["text"] is None or old["text"].encode() in data  # the grep can find what is there

    # receipts: same requests, new ids, a chain that verifies
    chain = est.receipts()
    assert verify_chain(chain) == []
    new_id = {rid: ("row-" if r["split"] == "train" else "val-") + str(r["position"]) for rid, r in v1["records"].items()}
    for r, (old_body, _) in zip(chain, v1["receipts"]):
        assert r.body["record_ids"] == sorted(new_id[i] for i in old_body["record_ids"])
        assert {k: v for k, v in r.body.items() if k not in ("record_ids", "prev_hash")} == \
            {k: v for k, v in old_body.items() if k not in ("record_ids", "prev_hash")}
    assert est.audit().ok, est.audit().to_dict()

    # the same request again is still recognised (its key was recomputed over the new ids) ...
    again = est.forget(record_ids=chain[0].body["record_ids"])
    assert not again.created and again.hash == chain[0].hash
    assert request_key(chain[0].body["record_ids"], None) != v1["keys"][0]
    # ... and a new forget works and erases its record's fingerprint
    live = next(r.id for r in led.records("train") if r.text is not None)
    est.forget(record_ids=[live])
    assert est.flush(60)
    assert next(r for r in led.records("train") if r.id == live).text_hmac is None
    assert est.audit().ok
    led.close()

    again = S3T.load(ws)  # migrated once: opening again changes nothing
    assert json.loads(again.ws_.ledger.meta("migrated_1_to_2")) == record
    again.ws_.ledger.close()


def test_migrated_ids_are_what_a_new_fit_of_the_same_rows_gives(tmp_path, tiny_model):
    from s3t.data import to_records
    from s3t.errors import DataError
    from tests.conftest import tiny_config

    ws, v1 = v1_copy(tmp_path)
    # the schema-1 rows in their order (a forgotten row's text is gone: any text holds its place)
    ordered = sorted((r["split"], r["position"], r["text"] or "a forgotten review") for r in v1["records"].values())
    rows = {split: [{"text": t, "label": ["neg", "pos"][p % 2]} for s, p, t in ordered if s == split]
            for split in ("train", "validation")}
    est = S3T(tiny_config(tiny_model, budget=1, epochs=1), workspace=tmp_path / "fresh").fit(
        rows["train"], validation=rows["validation"])
    fresh = [(r.split, r.position, r.id) for r in est.ws_.ledger.records("train") + est.ws_.ledger.records("validation")]
    est.ws_.ledger.close()
    migrated = S3T.load(ws)
    led = migrated.ws_.ledger
    assert fresh == [(r.split, r.position, r.id) for r in led.records("train") + led.records("validation")]
    assert fresh[0][2] == "row-0" and fresh[-1][2] == "val-19"
    led.close()
    # two RecordSets built without ids share row-N ids: refused before anything is written, with the way out
    with pytest.raises(DataError, match="id_prefix='val-'"):
        S3T(tiny_config(tiny_model), workspace=tmp_path / "never").fit(
            to_records(rows["train"]), validation=to_records(rows["validation"]))
    assert not (tmp_path / "never").exists()


def test_a_failed_migration_changes_nothing(tmp_path, monkeypatch):
    ws, v1 = v1_copy(tmp_path)

    def boom(_key):
        raise RuntimeError("crash at the end of the migration")

    monkeypatch.setattr(migrate_mod, "key_check", boom)  # runs after every other statement
    with pytest.raises(RuntimeError, match="crash at the end"):
        S3T.load(ws)
    monkeypatch.undo()
    con = sqlite3.connect(ws / "ledger.sqlite")
    try:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
        rows = {r[0]: r[1] for r in con.execute("SELECT id, text_sha256 FROM records")}
        assert rows == {rid: r["sha256"] for rid, r in v1["records"].items()}
        assert [h for (h,) in con.execute("SELECT hash FROM receipts ORDER BY seq")] == [h for _, h in v1["receipts"]]
    finally:
        con.close()
    est = S3T.load(ws)  # the next open migrates
    assert est.ws_.ledger.meta("schema_version") == "2" and est.audit().ok
    est.ws_.ledger.close()


def test_a_schema_1_ledger_opened_without_its_workspace_is_refused_unchanged(tmp_path):
    ws, _ = v1_copy(tmp_path)
    before = (ws / "ledger.sqlite").read_bytes()
    with pytest.raises(WorkspaceError, match="schema version 1"):
        Ledger(f"sqlite:///{ws / 'ledger.sqlite'}")
    con = sqlite3.connect(ws / "ledger.sqlite")
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
    con.close()
    assert not (ws / SECRET_FILE).exists() and len(before) > 0


needs_pg = pytest.mark.skipif(
    pg_bin() is None and os.environ.get("CI") != "true",  # CI installs the server: there it must run
    reason="PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed on this machine")


@needs_pg
def test_a_schema_1_postgres_ledger_is_migrated_and_its_tables_keep_no_plain_fingerprint(tmp_path):
    """The schema-1 rows, copied table by table into a PostgreSQL ledger with schema 1's own tables
    (reflected from the SQLite file), migrate the same way; the secret stays in the workspace."""
    from sqlalchemy import MetaData, create_engine

    ws, v1 = v1_copy(tmp_path)
    pg = Cluster().start()
    try:
        src, dst = create_engine(f"sqlite:///{ws / 'ledger.sqlite'}"), create_engine(pg.url)
        tables = MetaData()
        tables.reflect(src)
        tables.create_all(dst)
        with src.connect() as r, dst.begin() as w:
            for t in tables.sorted_tables:
                rows = [dict(row._mapping) for row in r.execute(t.select())]
                if rows:
                    w.execute(t.insert(), rows)
        src.dispose()
        (ws / "ledger.sqlite").unlink()
        est = S3T.load(ws, db=pg.url)
        assert est.ws_.ledger.meta("schema_version") == "2"
        assert (ws / SECRET_FILE).exists()
        assert verify_chain(est.receipts()) == [] and est.audit().ok
        with dst.connect() as c:
            assert "text_sha256" not in {n for (n,) in c.exec_driver_sql(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'records'::regclass AND NOT attisdropped")}
            c.exec_driver_sql("CHECKPOINT")  # shared buffers to disk: the files hold what the server holds
        est.ws_.ledger.close()
        dst.dispose()
        files = {p: p.read_bytes() for p in (pg.dir / "data" / "base").rglob("*") if p.is_file()}
        assert [fp for fp in schema1_fingerprints(v1) for b in files.values() if fp in b] == []
        kept = next(r["text"] for r in v1["records"].values() if r["text"])
        assert any(kept.encode() in b for b in files.values())  # the grep can find what is there
    finally:
        pg.stop()
