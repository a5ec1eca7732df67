"""``s3t tune --merge``: tune results made in parallel (per dataset, per method) united.

What is asserted: tuning each method in its own run and merging gives the same choices and
grid points as one run tuning all of them (the tune is deterministic), and the bench accepts
the merged result; parts that disagree on the data, the settings or that tuned one method
twice are refused with a clear error and nothing is written."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from s3t.bench.tuned import bench_tuned
from s3t.errors import ConfigError
from s3t.tune_merge import merge_tune_results

GRID = ["--grid-lr", "0.005,0.03", "--grid-rank", "2", "--grid-epochs", "1"]


def _tune(tmp, tiny_model, name, *extra):
    from s3t.cli import app

    out = tmp / f"{name}.json"
    res = CliRunner().invoke(app, ["tune", "--bench", "quick", "--model", tiny_model, "--limit", "160",
                                   "--dataset", "trec", *GRID, *extra, "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def tunes(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("merge")
    whole = _tune(tmp, tiny_model, "whole")
    parts = [_tune(tmp, tiny_model, m, "--method", m) for m in ("s3t", "sisa", "full")]
    return tmp, whole, parts


def _strip_times(d):
    if isinstance(d, dict):
        return {k: _strip_times(v) for k, v in d.items() if k not in ("cpu_seconds", "seconds")}
    if isinstance(d, list):
        return [_strip_times(v) for v in d]
    return d


def test_merged_parts_choose_what_one_run_chooses(tunes):
    from s3t.cli import app

    tmp, whole, parts = tunes
    res = CliRunner().invoke(app, ["tune", *[a for p in parts for a in ("--merge", str(p))], "--out", str(tmp / "m.json")])
    assert res.exit_code == 0, res.output
    merged, one = json.loads((tmp / "m.json").read_text()), json.loads(whole.read_text())
    assert merged["parts"] == 3 and set(merged["datasets"]["trec"]["methods"]) == {"s3t", "sisa", "full"}
    assert _strip_times({k: v for k, v in merged.items() if k != "parts"}) == _strip_times(one)
    per = [json.loads(p.read_text()) for p in parts]
    assert merged["cpu_seconds"] == pytest.approx(sum(p["cpu_seconds"] for p in per))
    assert bench_tuned(merged) == bench_tuned(one)


def test_parts_made_on_other_data_or_settings_are_refused(tunes):
    _, _, parts = tunes
    a, b = (json.loads(p.read_text()) for p in parts[:2])
    other = copy.deepcopy(b)
    other["datasets"]["trec"]["data"]["validation_ids_sha256"] = "0" * 64
    with pytest.raises(ConfigError, match="trec: part 2 was tuned on other data or settings .*data"):
        merge_tune_results([a, other])
    other = copy.deepcopy(b)
    other["bench"]["seed"] = 7
    with pytest.raises(ConfigError, match=r"part 2 was tuned with other settings than part 1 \(bench\)"):
        merge_tune_results([a, other])
    with pytest.raises(ConfigError, match="s3t tuned in more than one part"):
        merge_tune_results([a, copy.deepcopy(a)])
    with pytest.raises(ConfigError, match="at least two"):
        merge_tune_results([a])
    with pytest.raises(ConfigError, match="part 2 is not a s3t tune result"):
        merge_tune_results([a, {"datasets": []}])


def test_merge_parts_per_dataset_keeps_each_dataset(tunes):
    _, _, parts = tunes
    a = json.loads(parts[0].read_text())
    b = copy.deepcopy(a)
    b["datasets"] = {"movie_reviews": b["datasets"].pop("trec")}
    m = merge_tune_results([a, b])
    assert list(m["datasets"]) == ["trec", "movie_reviews"]
    assert m["datasets"]["movie_reviews"] == b["datasets"]["movie_reviews"]
    assert m["cpu_seconds"] == pytest.approx(a["cpu_seconds"] + b["cpu_seconds"])


def test_cli_merge_refuses_training_options_and_writes_nothing(tunes, tmp_path):
    from s3t.cli import app

    _, _, parts = tunes
    res = CliRunner().invoke(app, ["tune", "--merge", str(parts[0]), "--merge", str(parts[1]), "--grid-lr", "0.1",
                                   "--out", str(tmp_path / "m.json")])
    assert res.exit_code != 0 and "--merge trains nothing" in res.output
    res = CliRunner().invoke(app, ["tune", "--merge", str(parts[0]), "--merge", str(parts[0]),
                                   "--out", str(tmp_path / "m.json")])
    assert isinstance(res.exception, ConfigError) and "tuned in more than one part" in str(res.exception)
    assert not (tmp_path / "m.json").exists()
