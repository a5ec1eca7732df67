"""`s3t simulate` with subject requests: --subjects / --zipf / --records / --placement."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from s3t.cli import app
from s3t.plan import cyclic, deletion_rate, simulate
from s3t.plan.subject_rate import pack_subjects, packed_deletion_rate, subject_deletion_rate, zipf_sizes

runner = CliRunner()
ARGS = ["simulate", "-m", "4", "-L", "4", "-B", "4", "--subjects", "100", "--zipf", "1.0", "--records", "4000",
        "--trials", "400"]


def test_subjects_json_has_both_placements_in_subjects():
    result = runner.invoke(app, [*ARGS, "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    sizes = zipf_sizes(100, 4000, 1.0, seed=0)
    assert (d["subjects"], d["records"], d["zipf"], d["unit"], d["placement"]) == (100, 4000, 1.0, "subjects", "subject")
    assert (d["largest_subject"], d["smallest_subject"], d["slice_capacity"]) == (max(sizes), min(sizes), 250)
    rec, sub = d["by_placement"]["record"], d["by_placement"]["subject"]
    assert rec["placement"] == "record" and sub["placement"] == "subject" and rec["unit"] == sub["unit"] == "subjects"
    assert d["deletion_rate"] == sub["deletion_rate"]  # subject placement heads by default
    # the same numbers as the library with the same sizes and seed
    lib = simulate(4, 4, cyclic(4, 4), trials=400, seed=0, subject_sizes=sizes, placement="subject")
    assert sub["deletion_rate"] == lib.deletion_rate
    assert sub["theory"] == pytest.approx(packed_deletion_rate(pack_subjects(sizes, 4, 4)[0], 4, 4, 4))
    assert d["even_spread_theory"] == pytest.approx(subject_deletion_rate(4, 4, 4, 100))
    # a skewed population: record placement dies within a few people, subject placement lasts
    assert rec["deletion_rate"] < 6 < 30 < sub["deletion_rate"]
    assert rec["theory"] is None and rec["horizon"] == sub["horizon"]  # compared over the same requests
    assert abs(sub["deletion_rate"] - sub["theory"]) < 4 * sub["std"] / math.sqrt(400)
    assert d["record_requests_theory"] == deletion_rate(4, 4, 4)
    assert d["split_subjects"] and all(k >= 2 for k in d["split_subjects"])


def test_placement_record_heads_the_json():
    d = json.loads(runner.invoke(app, [*ARGS, "--placement", "record", "--json"]).stdout)
    assert d["placement"] == "record" and d["deletion_rate"] == d["by_placement"]["record"]["deletion_rate"]


def test_equal_sizes_and_the_default_record_count():
    d = json.loads(runner.invoke(app, ["simulate", "-m", "2", "-L", "3", "-B", "3", "--subjects", "60", "--zipf", "0",
                                       "--json"]).stdout)
    assert d["records"] == 2400 and d["largest_subject"] == d["smallest_subject"] == 40
    assert d["split_subjects"] == []


def test_subjects_text_output_shows_both_placements_side_by_side():
    result = runner.invoke(app, ARGS, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "100 subjects, 4000 records" in text and "Subject deletions until every shard is dead" in text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│")}
    assert set(rows) == {"record", "subject *"}
    assert "split over" in text


def test_simulate_help_teaches_the_subject_options():
    result = runner.invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--subjects", "--zipf", "--records", "--placement"):
        assert option in result.output
    assert "whole subject" in result.output and "Zipf" in result.output


def test_subject_options_without_subjects_are_an_error():
    for args in (["--zipf", "2"], ["--records", "100"], ["--placement", "subject"]):
        result = runner.invoke(app, ["simulate", *args])
        assert result.exit_code != 0
        assert "need --subjects" in str(result.exception)
    bad = runner.invoke(app, ["simulate", "--subjects", "10", "--records", "5"])
    assert bad.exit_code != 0 and "--records" in str(bad.exception)
    bad = runner.invoke(app, ["simulate", "--subjects", "10", "--placement", "person"])
    assert bad.exit_code != 0 and "--placement" in str(bad.exception)
