"""An interrupted ``s3t tune`` continues from its journal and ends with the result of an
uninterrupted run; a journal never lends a point to another method, base setting or split.
Trainings run on the tiny random model: what is asserted is which points were trained and that
the numbers agree bit for bit, never an accuracy."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import s3t.tune
from s3t.tune import Grid, tune
from s3t.tune_journal import TuneJournal
from tests.conftest import tiny_config, toy_rows

GRID = Grid(lrs=(5e-3, 3e-2), ranks=(2, 4), epochs=(1,))


def _numbers(result: dict) -> dict:
    """Per method, each point's settings and validation numbers (timings and bookkeeping differ)."""
    return {m: {"points": [{k: v for k, v in p.items() if k not in ("cpu_seconds", "seconds")} for p in x["points"]],
                "chosen": x["chosen"]} for m, x in result["methods"].items()}


class Interrupt(Exception):
    pass


@pytest.fixture
def counted(monkeypatch):
    """Count trained points; ``stop_after`` n raises on the (n+1)-th, as a crash mid-tune would."""
    real = s3t.tune._train_point
    state = {"trained": [], "stop_after": None}

    def train_point(method, backbone, conf, *a, **kw):
        if state["stop_after"] is not None and len(state["trained"]) >= state["stop_after"]:
            raise Interrupt("killed")
        state["trained"].append((method, conf.train.lr, conf.train.lora.rank))
        return real(method, backbone, conf, *a, **kw)

    monkeypatch.setattr(s3t.tune, "_train_point", train_point)
    return state


# -- the journal itself (no training) ---------------------------------------------------------


def test_journal_round_trip_contexts_and_a_torn_line(tmp_path):
    path = tmp_path / "t.points.jsonl"
    j = TuneJournal(path)
    a = TuneJournal.context("s3t", {"train": {"batch_size": 8}}, {"train_ids_sha256": "x"})
    assert a != TuneJournal.context("sisa", {"train": {"batch_size": 8}}, {"train_ids_sha256": "x"})
    assert a != TuneJournal.context("s3t", {"train": {"batch_size": 16}}, {"train_ids_sha256": "x"})
    assert a != TuneJournal.context("s3t", {"train": {"batch_size": 8}}, {"train_ids_sha256": "y"})
    j.add(a, {"lr": 0.01, "rank": 2}, {"val_accuracy": 0.5, "val_loss": 0.7})
    j.add(a, {"lr": 0.03, "rank": 2}, {"val_accuracy": 0.6, "val_loss": 0.6})
    # a crash mid-write leaves half a line: it is dropped, and what is added next reads back
    with open(path, "a") as f:
        f.write('{"context": "' + a + '", "point": {"lr"')
    k = TuneJournal(path)
    assert len(k) == 2 and k.get(a, {"rank": 2, "lr": 0.03}) == {"val_accuracy": 0.6, "val_loss": 0.6}
    assert k.get(a, {"lr": 0.05, "rank": 2}) is None and path.read_text().endswith("}\n")
    k.add(a, {"lr": 0.05, "rank": 2}, {"val_accuracy": 0.7, "val_loss": 0.5})
    assert TuneJournal(path).get(a, {"lr": 0.05, "rank": 2}) == {"val_accuracy": 0.7, "val_loss": 0.5}
    # a line that is not a journal entry (another file given by mistake) is refused, not skipped
    path.write_text('{"context": "c", "point": {}, "row": {}}\n[1, 2]\n{"context": "c", "point": {}, "row": {}}\n')
    with pytest.raises(ValueError, match="line 2"):
        TuneJournal(path)
    k.remove()
    assert not path.exists()


# -- resuming a real tune ---------------------------------------------------------------------


def test_an_interrupted_tune_continues_to_the_uninterrupted_result(tmp_path, tiny_model, counted):
    from s3t.train.backbone import load_backbone

    train, val = toy_rows(120, seed=1), toy_rows(40, seed=2)
    base = tiny_config(tiny_model)
    kw = dict(grid=GRID, methods=["s3t", "full"])
    whole = tune(train, val, base, backbone=load_backbone(tiny_model), **kw)
    assert len(counted["trained"]) == 8
    counted["trained"].clear()

    path = tmp_path / "t.points.jsonl"
    counted["stop_after"] = 5  # all four S3T points and the first full fine-tune point, then the crash
    with pytest.raises(Interrupt):
        tune(train, val, base, backbone=load_backbone(tiny_model), journal=TuneJournal(path), **kw)
    assert len(TuneJournal(path)) == 5
    counted.update(trained=[], stop_after=None)
    resumed = tune(train, val, base, backbone=load_backbone(tiny_model), journal=TuneJournal(path), **kw)
    # only the three missing full points were trained, and every number is the uninterrupted run's
    assert [m for m, *_ in counted["trained"]] == ["full"] * 3
    assert _numbers(resumed) == _numbers(whole)
    assert resumed["methods"]["s3t"]["points_from_journal"] == 4 and resumed["methods"]["full"]["points_from_journal"] == 1
    assert resumed["methods"]["s3t"]["cpu_seconds"] == pytest.approx(sum(
        p["cpu_seconds"] for p in resumed["methods"]["s3t"]["points"]))

    # the same journal lends nothing to another base setting or another split
    counted["trained"].clear()
    other = tiny_config(tiny_model, max_length=24)
    tune(train, val, other, backbone=load_backbone(tiny_model), journal=TuneJournal(path), grid=GRID, methods=["s3t"])
    assert len(counted["trained"]) == 4
    counted["trained"].clear()
    tune(train, toy_rows(40, seed=3), base, backbone=load_backbone(tiny_model), journal=TuneJournal(path), grid=GRID,
         methods=["s3t"])
    assert len(counted["trained"]) == 4


def test_cli_tune_continues_after_a_crash_and_removes_its_journal(tmp_path, tiny_model, counted):
    import pandas as pd

    from s3t.cli import app

    pd.DataFrame(toy_rows(90, seed=1)).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(toy_rows(30, seed=2)).to_csv(tmp_path / "val.csv", index=False)
    out = tmp_path / "tune.json"
    args = ["tune", "--out", str(out), "--data", str(tmp_path / "train.csv"), "--validation", str(tmp_path / "val.csv"),
            "--model", tiny_model, "-m", "2", "-L", "3", "--batch-size", "8", "--grid-lr", "0.005,0.03",
            "--grid-rank", "2", "--grid-epochs", "1", "--method", "s3t", "--json"]
    journal = out.with_name("tune.json.points.jsonl")
    counted["stop_after"] = 1
    crashed = CliRunner().invoke(app, args)
    assert crashed.exit_code != 0 and isinstance(crashed.exception, Interrupt)
    assert not out.exists() and len(TuneJournal(journal)) == 1
    counted.update(trained=[], stop_after=None)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "continuing: 1 finished point" in res.output and "kept from the journal" in res.output
    assert len(counted["trained"]) == 1 and not journal.exists()
    r = json.loads(out.read_text())["datasets"]["train.csv"]["methods"]["s3t"]
    assert r["points_from_journal"] == 1 and len(r["points"]) == 2
    # a journal that is not one is a clear error, and nothing is written
    out.unlink()
    journal.write_text("not json\n")
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code != 0 and "not a tune journal entry" in bad.output and not out.exists()
