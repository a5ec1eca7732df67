"""The operator dashboard's data endpoint and page (TestClient over the tiny fitted workspace).

Expectations come from the raw ledger (sequences, slice placement) and the library, not from
the dashboard's own code.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from sqlalchemy import update

from s3t.forget import receipt_hash
from s3t.plan import deletion_rate, harmonic
from s3t.service.dashboard import ACCURACY_FILE
from s3t.service.plots import _ticks, accuracy_chart, capacity_chart
from s3t.store.schema import Receipt as ReceiptRow
from tests.fitted_copy import expected_entry, snapshot
from tests.service.conftest import AUTH, READ, READ_TOKEN, TOKEN, train_ids

E0 = deletion_rate(2, 3, 3)  # m=2, L=3, B=3


def cells(data: dict) -> dict[tuple[int, int, int], dict]:
    return {(sh["shard"], q["index"], c["stage"]): c for sh in data["grid"] for q in sh["sequences"] for c in q["cells"]}


def served_lineage(est, shard: int, deleted: set[str]) -> set[tuple[int, int, int]]:
    """Cells in the lineage of the shard's served checkpoint: every (seq, stage) sharing its prefixes."""
    entry = expected_entry(est, shard, deleted)
    if entry is None:
        return set()
    stage, _, prefix = entry
    order = [int(x) for x in prefix.split(",")]
    seqs = est.ws_.ledger.sequences()[shard]
    return {(shard, j, k) for j, o in enumerate(seqs) for k in range(1, stage + 1) if list(o[:k]) == order[:k]}


def val_accuracy(est) -> float:
    val = est.ws_.ledger.records("validation")
    pred = est.predict_proba([r.text for r in val]).argmax(-1)
    return float((pred == np.array([r.label for r in val])).mean())


def test_data_of_a_fresh_workspace(client, fitted_ws):
    r = client.get("/dashboard/data", headers=READ)
    assert r.status_code == 200, r.text
    d = r.json()
    grid = cells(d)
    assert len(grid) == 2 * 3 * 3 and d["counts"]["cut"] == d["counts"]["retraining"] == d["counts"]["missing"] == 0
    assert d["counts"]["served"] + d["counts"]["trained"] == 18
    for shard in (0, 1):
        served = {k for k, c in grid.items() if k[0] == shard and c["state"] == "served"}
        assert served == served_lineage(fitted_ws, shard, set())
        heads = [k for k, c in grid.items() if c["head"] and k[0] == shard]
        stage, seq, _ = expected_entry(fitted_ws, shard, set())
        assert heads == [(shard, seq, stage)]
    for sh in d["grid"]:
        assert [q["order"] for q in sh["sequences"]] == [list(o) for o in fitted_ws.ws_.ledger.sequences()[sh["shard"]]]
    s = d["summary"]
    assert s["live_shards"] == 2 and s["served"] == {"0": 3, "1": 3} and s["deleted_records"] == 0 and s["validation_records"] == 40
    assert s["validation_accuracy"] == pytest.approx(val_accuracy(fitted_ws), abs=1e-9)
    assert d["capacity"]["expected_total"] == pytest.approx(E0) and d["capacity"]["first_slices"] == 6
    assert d["capacity"]["remaining"] == pytest.approx(E0) and d["capacity"]["live_first_slices"] == 6
    assert d["log"] == {"chain_ok": True, "problems": [], "total": 0, "entries": [],
                        "states": {"served-exact": 0, "retraining": 0, "retrained": 0}}
    [point] = d["history"]
    assert point["reason"] == "fit" and point["deleted_records"] == 0 and point["remaining_capacity"] == pytest.approx(E0)
    assert point["ensemble_accuracy"] == s["validation_accuracy"]


def test_grid_log_and_history_after_a_forget(client, fitted_ws):
    victim = train_ids(fitted_ws, 0, 1)[0]
    rc = client.post("/forget", json={"record_ids": [victim]}, headers=AUTH).json()
    d = client.get("/dashboard/data", headers=READ).json()
    grid = cells(d)
    seqs = fitted_ws.ws_.ledger.sequences()
    cut = {(0, j, k) for j, o in enumerate(seqs[0]) for k in range(1, 4) if 1 in o[:k]}
    assert {k for k, c in grid.items() if c["state"] == "cut"} == cut and len(cut) == 6
    assert all(grid[k]["cut_by"] == [rc["request_id"]] for k in cut)
    assert all(c["cut_by"] == [] for k, c in grid.items() if k not in cut)
    for shard in (0, 1):
        assert {k for k, c in grid.items() if k[0] == shard and c["state"] == "served"} == served_lineage(fitted_ws, shard, {victim})
    assert d["summary"]["served"] == rc["served_after"] and d["summary"]["deleted_records"] == 1
    assert d["summary"]["pending_retrains"] == [rc["request_id"]]
    [entry] = d["log"]["entries"]
    assert entry["request_id"] == rc["request_id"] and entry["hash"] == rc["hash"] and entry["chain_ok"] is True
    assert entry["state"] == "served-exact" and entry["record_ids"] == [victim] and entry["served_after"] == rc["served_after"]
    assert d["log"]["states"]["served-exact"] == 1
    first_slices_hit = sum(1 for o in seqs[0] if o[0] == 1)
    assert d["capacity"]["live_first_slices"] == 6 - first_slices_hit == 5
    assert d["capacity"]["remaining"] == pytest.approx(6 * harmonic(5))
    before, after = d["history"]
    assert (before["deleted_records"], after["deleted_records"], after["requests"]) == (0, 1, 1)
    assert after["manifest_version"] == rc["manifest_version"] and after["served"] == rc["served_after"]
    assert after["remaining_capacity"] == pytest.approx(d["capacity"]["remaining"])
    assert after["ensemble_accuracy"] == pytest.approx(val_accuracy(fitted_ws), abs=1e-9)


def test_retraining_then_retrained(client, fitted_ws):
    rc = client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 1, 2)[0]]}, headers=AUTH).json()
    fitted_ws.ws_.ledger.set_request_state([rc["request_id"]], "retraining")  # as a running retrain does
    d = client.get("/dashboard/data", headers=READ).json()
    states = {k: c["state"] for k, c in cells(d).items()}
    assert d["counts"]["retraining"] > 0 and d["counts"]["cut"] == 0
    assert {k for k, st in states.items() if st == "retraining"} == {
        (1, j, k) for j, o in enumerate(fitted_ws.ws_.ledger.sequences()[1]) for k in range(1, 4) if 2 in o[:k]}
    assert d["log"]["entries"][0]["state"] == "retraining"
    client.app.state.model.retrain()
    d = client.get("/dashboard/data", headers=READ).json()
    assert d["counts"]["cut"] == d["counts"]["retraining"] == 0 and d["summary"]["served"] == {"0": 3, "1": 3}
    assert d["log"]["entries"][0]["state"] == "retrained" and d["log"]["states"]["retrained"] == 1
    assert d["capacity"]["live_first_slices"] == 6 and d["history"][-1]["remaining_capacity"] == pytest.approx(E0)
    assert d["history"][-1]["reason"] == "retrain" and min(p["remaining_capacity"] for p in d["history"]) < E0


def test_a_dead_shard_and_the_page(client, fitted_ws):
    ids = [train_ids(fitted_ws, 0, sl)[0] for sl in range(3)]  # every first slice of shard 0
    client.post("/forget", json={"record_ids": ids}, headers=AUTH)
    d = client.get("/dashboard/data", headers=READ).json()
    shard0 = d["grid"][0]
    assert shard0["served_stage"] == 0 and shard0["served_sequence"] is None
    assert all(c["state"] == "cut" for q in shard0["sequences"] for c in q["cells"])
    assert d["summary"]["live_shards"] == 1 and d["capacity"]["live_first_slices"] == 3
    page = client.get("/dashboard/view", headers=READ).text
    assert "dead — retrain needed" in page and 'id="live-shards">1 / 2' in page
    assert page.count('data-state="cut"') == 9  # shard 0's cells; shard 1 is untouched


def test_a_tampered_receipt_breaks_the_chain_status(client, fitted_ws):
    first = client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 0, 0)[0]]}, headers=AUTH).json()
    client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 1, 0)[0]]}, headers=AUTH)
    led = fitted_ws.ws_.ledger
    body = {k: v for k, v in first.items() if k not in ("hash", "created", "state")}
    assert receipt_hash(body) == first["hash"]
    with led.Session.begin() as s:
        s.execute(update(ReceiptRow).where(ReceiptRow.request_id == first["request_id"])
                  .values(body=json.dumps({**body, "record_ids": ["someone-else"]})))
    d = client.get("/dashboard/data", headers=READ).json()
    assert d["log"]["chain_ok"] is False and any(first["request_id"] in p for p in d["log"]["problems"])
    by_id = {e["request_id"]: e for e in d["log"]["entries"]}
    assert by_id[first["request_id"]]["chain_ok"] is False and by_id[first["request_id"]]["chain_problems"]
    assert [e["chain_ok"] for e in d["log"]["entries"]].count(True) == 1
    page = client.get("/dashboard/view", headers=READ).text
    assert 'id="chain-status">BROKEN' in page and 'data-chain="broken"' in page


def test_forget_from_the_page_needs_the_token_and_the_page_never_holds_it(client, fitted_ws):
    page = client.get("/")
    assert page.status_code == 200 and TOKEN not in page.text and 'type="password" id="token"' in page.text
    assert 'type="password" id="read-token"' in page.text and READ_TOKEN not in page.text
    js = client.get("/dashboard/static/dashboard.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert '"Bearer " + token' in js.text and TOKEN not in js.text and READ_TOKEN not in js.text
    before = snapshot(fitted_ws)
    r = client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 0, 0)[0]]})  # what the page sends without a token
    assert r.status_code == 401 and snapshot(fitted_ws) == before
    assert client.get("/dashboard/data", headers=READ).json()["log"]["total"] == 0


def test_the_page_loads_nothing_from_elsewhere(client):
    page, view = client.get("/"), client.get("/dashboard/view", headers=READ)
    for r in (page, view):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert r.headers["cache-control"] == "no-store" and r.headers["referrer-policy"] == "no-referrer"
        refs = re.findall(r'(?:src|href)="([^"]*)"', r.text)
        assert all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs
        assert "http://" not in r.text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in r.text
        assert "<script" not in r.text or r is page
    refs = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert {"/dashboard/static/dashboard.js", "/dashboard/static/dashboard.css"} <= set(refs)
    for ref in refs:
        if ref.startswith("/dashboard/static/"):
            assert client.get(ref).status_code == 200
    bad = client.get("/dashboard/static/../app.py")
    assert bad.status_code == 404
    assert client.get("/dashboard/static/nope.js").json()["error"]["type"] == "NotFound"
    assert len(re.findall(r"<svg ", view.text)) == 2 and 'id="chart-accuracy"' in view.text and 'id="chart-capacity"' in view.text
    assert "<svg " not in page.text and "<table" not in page.text  # the shell shows nothing before the token


def test_openapi_documents_the_data_endpoint(client):
    spec = client.get("/openapi.json").json()
    assert "/dashboard/data" in spec["paths"] and "/" not in spec["paths"]
    ref = spec["paths"]["/dashboard/data"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/DashboardData")
    for name in ("DashboardData", "GridShard", "GridCell", "LogEntry", "HistoryPoint", "Capacity", "EnsembleSummary"):
        assert name in spec["components"]["schemas"], name
    assert set(spec["components"]["schemas"]["GridCell"]["properties"]["state"]["enum"]) == {
        "served", "trained", "cut", "retraining", "missing"}
    bad = client.get("/dashboard/data", params={"accuracy": "maybe"}, headers=READ)
    assert bad.status_code == 422 and bad.json()["error"]["type"] == "ValidationError"


def test_accuracy_is_cached_per_manifest_and_persisted(make_client, fitted_ws):
    client = make_client()
    v1 = client.get("/dashboard/data", headers=READ).json()["history"][0]
    cache = json.loads((fitted_ws.ws_.path / ACCURACY_FILE).read_text())["accuracy"]
    assert cache == {"1": v1["ensemble_accuracy"]} and v1["ensemble_accuracy"] is not None
    client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 0, 2)[0]]}, headers=AUTH)
    lazy = client.get("/dashboard/data", params={"accuracy": "false"}, headers=READ).json()
    assert lazy["history"][-1]["ensemble_accuracy"] is None and lazy["summary"]["validation_accuracy"] is None
    assert len(json.loads((fitted_ws.ws_.path / ACCURACY_FILE).read_text())["accuracy"]) == 1  # not measured
    again = make_client().get("/dashboard/data", params={"accuracy": "false"}, headers=READ).json()  # a restarted service
    assert again["history"][0]["ensemble_accuracy"] == v1["ensemble_accuracy"]


def test_charts_are_svg_with_the_series():
    from s3t.service.dashboard_schemas import Capacity, HistoryPoint

    hist = [HistoryPoint(manifest_version=v, created_at=f"t{v}", reason="x", deleted_records=d, requests=d, served={},
                         mean_member_accuracy=0.8 - 0.01 * d, ensemble_accuracy=0.82 - 0.01 * d if v != 2 else None,
                         live_first_slices=6 - d, remaining_capacity=6 * harmonic(6 - d)) for v, d in ((1, 0), (2, 1), (3, 2))]
    cap = Capacity(formula="f", expected_total=E0, first_slices=6, live_first_slices=4, remaining=6 * harmonic(4))
    for svg, n_lines in ((accuracy_chart(hist, 0.8), 2), (capacity_chart(hist, cap), 3)):
        root = ET.fromstring(svg)
        polylines = root.findall("{http://www.w3.org/2000/svg}polyline")
        assert len(polylines) == n_lines
        assert all(len(p.get("points").split()) >= 2 for p in polylines)
    assert _ticks(0, 2, 6, integer=True) == [0, 1, 2] and _ticks(0, 1, 5) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_accuracy_measured_on_since_erased_validation_rows_is_dropped(make_client, fitted_ws):
    """A subject forget erases the subject's validation rows: every ensemble accuracy measured while
    they were live leaves the dashboard and the cache file; the next one is measured without them."""
    client = make_client()
    client.get("/dashboard/data", headers=READ)  # measures manifest version 1
    client.post("/forget", json={"record_ids": [train_ids(fitted_ws, 1, 2)[0]]}, headers=AUTH)
    client.get("/dashboard/data", headers=READ)  # and version 2 (the same validation rows)
    path = fitted_ws.ws_.path / ACCURACY_FILE
    assert set(json.loads(path.read_text())["accuracy"]) == {"1", "2"}
    subject = next(r.subject for r in fitted_ws.ws_.ledger.records("validation") if r.subject is not None)
    rc = client.post("/forget", json={"subject": subject}, headers=AUTH).json()
    assert rc["validation_records"] > 0

    lazy = client.get("/dashboard/data", params={"accuracy": "false"}, headers=READ).json()
    assert [p["ensemble_accuracy"] for p in lazy["history"]] == [None, None, None]
    assert json.loads(path.read_text())["accuracy"] == {}  # dropped from the file, not only hidden
    restarted = make_client().get("/dashboard/data", params={"accuracy": "false"}, headers=READ).json()
    assert [p["ensemble_accuracy"] for p in restarted["history"]] == [None, None, None]

    d = client.get("/dashboard/data", headers=READ).json()  # measured again, on the live rows only
    live = [r for r in fitted_ws.ws_.ledger.records("validation") if r.text is not None]
    assert 0 < len(live) < 40 and d["summary"]["validation_records"] == len(live)
    pred = fitted_ws.predict_proba([r.text for r in live]).argmax(-1)
    expected = float((pred == np.array([r.label for r in live])).mean())
    assert d["summary"]["validation_accuracy"] == pytest.approx(expected, abs=1e-9)
    assert [p["ensemble_accuracy"] for p in d["history"]][:2] == [None, None]
    assert json.loads(path.read_text())["accuracy"] == {str(rc["manifest_version"]): d["summary"]["validation_accuracy"]}
