"""The dashboard's deletion capacity says what it counts: subjects under subject placement, else records.

Expectations come from the raw ledger rows (which records belong to which subject), not from the
dashboard's own code.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest
from sqlalchemy import update

from s3t.plan import deletion_rate, harmonic
from s3t.service.dashboard import capacity_unit
from s3t.service.dashboard_schemas import Capacity, HistoryPoint
from s3t.service.plots import capacity_chart
from s3t.store.schema import Record
from tests.service.conftest import AUTH, READ

E0 = deletion_rate(2, 3, 3)  # the fitted workspace: m=2, L=3, B=3


def set_placement(model, placement: str | None) -> None:
    """Give the served model's plan this placement (None: a plan that has no placement field)."""
    plan = model.config.plan
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan) if f.name != "placement"}
    new = SimpleNamespace(**fields) if placement is None else SimpleNamespace(**fields, placement=placement)
    model.config = dataclasses.replace(model.config, plan=new)


def train_subjects(est) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in est.ws_.ledger.records("train"):
        out.setdefault(r.subject, []).append(r.id)
    return out


def test_subject_placement_counts_subjects(client, fitted_ws):
    set_placement(client.app.state.model, "subject")
    subjects = train_subjects(fitted_ws)
    assert None not in subjects and len(subjects) == 10
    d = client.get("/dashboard/data", headers=READ).json()
    assert d["capacity"]["capacity_unit"] == "subjects"
    assert d["capacity"]["expected_total"] == pytest.approx(E0)
    assert d["history"][0]["deleted_subjects"] == 0

    client.post("/forget", json={"subject": "user3"}, headers=AUTH)
    one_record = subjects["user5"][0]
    client.post("/forget", json={"record_ids": [one_record]}, headers=AUTH)
    d = client.get("/dashboard/data", headers=READ).json()
    every_user3 = [r.id for split in ("train", "validation") for r in fitted_ws.ws_.ledger.records(split)
                   if r.subject == "user3"]
    points = d["history"]
    assert [p["deleted_subjects"] for p in points] == [0, 1, 2]
    assert [p["deleted_records"] for p in points] == [0, len(every_user3), len(every_user3) + 1]
    assert len(every_user3) > 2  # so the two counts really differ
    assert points[-1]["remaining_capacity"] == pytest.approx(d["capacity"]["remaining"])

    svg = re.search(r'<svg [^>]*id="chart-capacity".*?</svg>', client.get("/dashboard/view", headers=READ).text, re.S)
    assert svg is not None
    texts = [t.text for t in ET.fromstring(svg.group(0)).iter("{http://www.w3.org/2000/svg}text")]
    assert "Remaining deletion capacity (subjects)" in texts and "deleted subjects" in texts
    assert "expected subject deletions left" in texts and "deleted records" not in texts


def test_record_placement_counts_records(client, fitted_ws):
    set_placement(client.app.state.model, "record")
    client.post("/forget", json={"subject": "user1"}, headers=AUTH)
    d = client.get("/dashboard/data", headers=READ).json()
    assert d["capacity"]["capacity_unit"] == "records"
    assert d["history"][-1]["deleted_subjects"] == 1  # still reported; the plot's x axis is records
    svg = client.get("/dashboard/view", headers=READ).text
    assert "Remaining deletion capacity (records)" in svg and ">deleted records<" in svg and ">deleted subjects<" not in svg


@pytest.mark.parametrize(("placement", "unit"), [("subject", "subjects"), ("auto", "subjects"), ("record", "records"),
                                                  (None, "records")])
def test_capacity_unit_from_the_plan_and_the_records(fitted_ws, placement, unit):
    plan = SimpleNamespace() if placement is None else SimpleNamespace(placement=placement)
    ledger = fitted_ws.ws_.ledger
    with ledger.Session() as s:
        assert capacity_unit(plan, s) == unit
    with ledger.Session() as s, s.begin():  # no training record has a subject (validation rows keep theirs)
        s.execute(update(Record).where(Record.split == "train").values(subject=None))
    with ledger.Session() as s:
        assert capacity_unit(plan, s) == "records"


def test_capacity_chart_plots_against_the_unit():
    hist = [HistoryPoint(manifest_version=v, created_at=f"t{v}", reason="x", deleted_records=40 * d, deleted_subjects=d,
                         requests=d, served={}, live_first_slices=6 - d, remaining_capacity=6 * harmonic(6 - d))
            for v, d in ((1, 0), (2, 1), (3, 2))]

    def ticks(svg: str) -> list[float]:
        root = ET.fromstring(svg)
        return [float(t.text) for t in root.iter("{http://www.w3.org/2000/svg}text")
                if t.get("text-anchor") == "middle" and t.text and t.text.replace(".", "").isdigit()]

    by_unit = {}
    for unit in ("subjects", "records"):
        cap = Capacity(formula="f", expected_total=E0, first_slices=6, live_first_slices=4, remaining=6 * harmonic(4),
                       capacity_unit=unit)
        svg = capacity_chart(hist, cap)
        assert f"Remaining deletion capacity ({unit})" in svg and f">deleted {unit}<" in svg
        by_unit[unit] = max(ticks(svg))
    assert by_unit["subjects"] <= 10 < 80 <= by_unit["records"]  # x reaches 2 subjects vs 80 records
    assert Capacity(formula="f", expected_total=1, first_slices=1, live_first_slices=1, remaining=1).capacity_unit == "records"


def test_the_live_view_names_the_unit_of_the_capacity(make_client):
    client = make_client()
    view = client.get("/dashboard/view", headers=READ)
    assert view.status_code == 200
    assert re.search(r"capacity left ≈ [\d.]+ of [\d.]+ subjects deleted", view.text), view.text[:2000]
    set_placement(client.app.state.model, "record")
    view = client.get("/dashboard/view", headers=READ)
    assert re.search(r"capacity left ≈ [\d.]+ of [\d.]+ records deleted", view.text)
