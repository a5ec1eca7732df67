"""The benchmark harness, run end to end on the tiny random model through the CLI (``s3t bench``).

Wall-clock targets are never asserted; what is asserted is that every part ran and its
numbers are internally consistent (percentiles ordered, simulation matching the formula,
accuracy at 0 deletions equal to the accuracy before deletions, plots written).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from s3t.bench.plan_parts import cache_saving_model, padded_fraction, random_batches, skewed_priors
from s3t.cli import app
from s3t.data import load_builtin
from s3t.plan import assign_shards, cyclic, deletion_rate, served_prefix

PARTS = ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("bench") / "out"
    result = CliRunner().invoke(app, ["bench", "--out", str(out), "--quick", "--json", "--model", tiny_model, "--limit", "200",
                                      "--deletions", "60"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    written = json.loads((out / "results.json").read_text())
    assert printed["summary"] == written["summary"]
    return written, out


def test_every_part_and_the_machine_are_recorded(bench):
    r, out = bench
    assert all(p in r for p in PARTS)
    assert r["mode"] == "quick" and r["data"]["train"] == 130 and r["data"]["test"] == 60
    m = r["machine"]
    assert m["cpu_count"] >= 1 and m["torch"].startswith("2.") and m["torch_threads"] == r["config"]["threads"]
    assert 0 < m["fsync_ms"]["p50"] <= m["fsync_ms"]["p99"]
    assert 0 < r["cpu_seconds"] and r["total_seconds"] > 0 and all(v > 0 for v in r["timings"].values())
    assert {row["part"] for row in r["summary"]} >= {"P1", "P2", "P3", "P4", "P5a", "P5b", "P5c", "P6", "P7"}
    table = (out / "summary.md").read_text().splitlines()
    assert len(table) == 2 + len(r["summary"]) and "| P1 |" in table[2]
    assert all(re.sub(r"\\\|", "", line).count("|") == 6 for line in table), "5 cells per row; pipes in cells escaped"


def test_plots_are_written(bench):
    r, out = bench
    assert len(r["plots"]) == 7 and {"p8_deletion_traffic.png", "p3_accuracy.png"} <= set(r["plots"])
    for name in r["plots"]:
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name


def test_p1_forget_latency(bench):
    p1 = bench[0]["P1"]
    s, sisa, full = p1["s3t_ms"], p1["sisa_ms"], p1["full_ms"]
    assert s["n"] == sisa["n"] == full["n"] == 60
    for x in (s, sisa, full):
        assert 0 < x["p50"] <= x["p99"] <= x["max"]
    assert p1["workspace_copies"] >= 2, "m=2, L=3, B=3 dies after ~15 deletions: 60 need fresh copies"
    for k in ("ratio_sisa_p50", "ratio_sisa_p99", "ratio_full_p50", "ratio_full_p99"):
        assert p1[k] > 0
    # SISA's latency per deletion = its measured stages from the hit slice to the end of that shard
    stages = p1["sisa_stage_seconds"]
    expected = sorted(1000 * sum(stages[str(sh)][sl:]) for sh, sl in p1["hits"])
    assert len(expected) == 60 and sisa["p50"] == pytest.approx(float(np.percentile(expected, 50)))
    assert sisa["max"] == pytest.approx(expected[-1]) and full["p50"] == pytest.approx(1000 * bench[0]["fits"]["full"]["stage_sum"])
    real = p1["sisa_real_forget"]
    assert real["retrained"] == {"0": [3]} and real["measured_seconds"] > 0 and real["estimate_seconds"] > 0


def test_p2_simulation_matches_formula(bench):
    p2 = bench[0]["P2"]
    rows = p2["formula_check"]["rows"]
    assert [x["budget"] for x in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["formula"] == pytest.approx(68.5, abs=0.05) and rows[-1]["formula"] == pytest.approx(119.8, abs=0.05)
    assert all(abs(x["simulated"] / x["formula"] - 1) <= 0.05 for x in rows)
    skew = p2["skewed"]
    assert sum(skew["priors"]) == pytest.approx(1) and len(skew["hot_slices"]) == 2
    for row in skew["rows"]:
        for sel in ("cyclic", "bms", "bms_relaxed"):
            assert 0 < row[sel]["mean_prefix_fraction"] <= 1 and row[sel]["deletion_rate"] > 0
        assert row["prefix_gain_relaxed"] == pytest.approx(
            row["bms_relaxed"]["mean_prefix_fraction"] / row["cyclic"]["mean_prefix_fraction"] - 1)
        # both BMS forms keep distinct first slices, so the all-dead count is the cyclic one's
        assert row["bms_relaxed"]["deletion_rate"] == pytest.approx(row["cyclic"]["deletion_rate"], rel=0.05)


def test_p3_p4_accuracy(bench):
    r = bench[0]
    p3, p4 = r["P3"], r["P4"]
    assert all(0 <= p3[k] <= 1 for k in ("s3t_B3", "s3t_B1", "sisa", "full"))
    assert set(p3["datasets"]) == {"movie_reviews", "trec"}, "P3 reports a second, 6-class dataset"
    assert {k: p3["datasets"]["movie_reviews"][k] for k in ("s3t_B3", "sisa", "full")} == {
        k: p3[k] for k in ("s3t_B3", "sisa", "full")}
    trec = p3["datasets"]["trec"]
    assert trec["n_classes"] == 6 and trec["n_test"] == 60 and all(0 <= trec[k] <= 1 for k in ("s3t_B3", "s3t_B1", "sisa", "full"))
    assert not p3["tuned"] and all(st["source"] == "default" for st in trec["settings"].values())
    assert [row["metric"].split(":")[0] for row in r["summary"] if row["part"] == "P3"] == ["movie_reviews", "trec"]
    pts = p4["points"]
    assert pts[0]["deletions"] == 0 and pts[-1]["deletions"] == round(0.5 * deletion_rate(2, 3, 3)) == p4["max_deletions"]
    assert pts[0]["s3t"] == pytest.approx(p3["s3t_B3"]), "no deletion yet: the served ensemble is the fitted one"
    assert pts[0]["sisa"] == pytest.approx(p3["sisa"])
    assert all(x is None or 0 <= x <= 1 for p in pts for x in (p["s3t"], p["sisa"]))
    n = len(p4["streams"])
    assert n == 3 and pts[0]["s3t_dead_streams"] == pts[0]["sisa_dead_streams"] == 0
    for p in pts:
        for key in ("s3t", "sisa"):
            assert (p[key] is None) == (p[f"{key}_dead_streams"] == n)
    served = [sum(s["s3t_served"].values()) for s in p4["streams"][0]]
    assert served == sorted(served, reverse=True) and served[0] == 6, "served prefixes only shrink without retraining"


def test_p4_served_prefixes_follow_the_deletions(bench):
    """Recompute, from the dataset split and the plan alone, what each method may serve after each deletion."""
    p4 = bench[0]["P4"]
    train = load_builtin("movie_reviews", seed=0, limit=200, fractions=(0.65, 0.05, 0.30)).train
    where = dict(zip(train.ids, assign_shards(list(train.ids), 2, 3, 0)))
    for order, rows in zip(p4["orders"], p4["streams"]):
        for row in rows:
            dead = {s: {where[r][1] for r in order[: row["deletions"]] if where[r][0] == s} for s in (0, 1)}
            assert row["s3t_served"] == {str(s): served_prefix(cyclic(3, 3), dead[s]) for s in (0, 1)}
            assert row["sisa_served"] == {str(s): min(dead[s], default=3) for s in (0, 1)}


def test_p5_training_cost(bench):
    p5 = bench[0]["P5"]
    ps = p5["per_sequence"]
    assert ps["s3t"] > 0 and ps["sisa"] > 0 and ps["ratio"] > 0 and ps["ratio_cpu"] > 0
    assert ps["ratio_cpu"] == pytest.approx(ps["s3t_cpu"] / ps["sisa_cpu"])
    pair = p5["pair"]
    assert len(pair["runs"]["s3t"]) == len(pair["runs"]["sisa"]) == pair["repeats"] == 2
    assert all(r[k] > 0 for rs in pair["runs"].values() for r in rs for k in ("cpu_seconds", "seconds", "stage_sum"))
    assert pair["ratio_cpu"] == pytest.approx(pair["median"]["s3t"]["cpu_seconds"] / pair["median"]["sisa"]["cpu_seconds"])
    train = load_builtin("movie_reviews", seed=0, limit=200, fractions=(0.65, 0.05, 0.30)).train
    assert pair["shard_records"] == sum(1 for sh, _ in assign_shards(list(train.ids), 2, 3, 0) if sh == 0)
    assert any(r["part"] == "P5a" and "side by side" in r["metric"] for r in bench[0]["summary"])
    c = p5["cache"]
    assert c["prefixes"] == 9
    assert all(c[mode][k] > 0 for mode in ("cache", "no_cache") for k in ("seconds", "cpu_seconds"))
    assert c["accuracy_gap_pts"] <= 100 / 60 + 1e-9, "cache and full forward train the same model (≤ 1 test example apart)"
    assert c["max_abs_weight_diff"] < 1e-3
    cpu = p5["cpu"]
    assert 0 <= cpu["padded_fraction_bucketed"] < cpu["padded_fraction_random"] < 1
    assert cpu["tokenize_every_pass_seconds"] > cpu["tokenize_once_seconds"] > 0
    assert p5["prefix_sharing"]["saving"] == 0, "cyclic B <= L: no shared prefixes"


def test_p6_p7(bench):
    r = bench[0]
    p6, p7 = r["P6"], r["P7"]
    thr = p6["throughput"]
    assert all(v > 0 for v in thr.values())
    assert p6["m_forward_limit"] == pytest.approx(thr["single"] / 2)
    assert 0 < p6["single_request_ms"]["p50"] <= p6["single_request_ms"]["p99"]
    assert [x["records"] for x in p7["vs_records"]] == [65, 130]
    assert [x["budget"] for x in p7["vs_budget"]] == [1, 3]
    assert all(x["seconds"] > 0 and x["cpu_seconds"] > 0 for x in p7["vs_records"] + p7["vs_budget"])
    assert p7["vs_budget"][1]["checkpoints"] == 18 and p7["vs_budget"][0]["checkpoints"] == 6


def test_p8_deletion_traffic(bench):
    """Every method saw the same stream; timelines are consistent; subject placement with
    progressive restore is dark only after the burst."""
    p8 = bench[0]["P8"]
    methods = p8["methods"]
    assert set(methods) == {f"s3t-{p}-{r}" for p in ("subject", "record") for r in ("progressive", "naive")} | {
        "sisa-subject", "sisa-record", "full"}
    events = p8["events"]
    assert sum(e["burst"] for e in events) == 1 and len(events) == 7  # quick: 6 singles and one burst of 6
    assert p8["deleted_subjects"] == sum(e["subjects"] for e in events) == 12
    assert p8["placement"]["subject"]["placement"] == "subject" and p8["placement"]["record"]["placement"] == "record"
    for name, m in methods.items():
        tl = m["timeline"]
        assert tl[0][0] == 0 and tl[0][1] >= 1 and tl[0][2] is not None, name
        assert [t for t, _, _ in tl] == sorted(t for t, _, _ in tl), name
        assert all((n == 0) == (a is None) for _, n, a in tl), name
        assert tl[-1][1] >= 1, f"{name} ends without a live model"
        assert 0 <= m["availability"] <= m["availability_outside_bursts"] <= 1
        assert m["cpu_seconds"] > 0 and m["jobs"] >= 1 and m["cpu_per_deletion"] == pytest.approx(m["cpu_seconds"] / 12)
        dark = sum(b - a for a, b in m["dark_periods"])
        assert m["availability"] == pytest.approx(1 - dark / p8["horizon"], abs=1e-3)
    best = methods["s3t-subject-progressive"]
    assert all(abs(a - p8["burst_at"]) <= 1e-3 for a, _ in best["dark_periods"]), best["dark_periods"]
    assert best["availability_outside_bursts"] == 1.0
    assert methods["full"]["dark_periods"][0][0] == pytest.approx(events[0]["t"], abs=1e-3)  # dark from the first deletion
    assert any(row["part"] == "P8" for row in bench[0]["summary"])


def test_bench_help_is_listed():
    result = CliRunner().invoke(app, ["bench", "--help"])
    assert result.exit_code == 0 and "--quick" in result.output and "--out" in result.output


def test_padding_helpers():
    assert padded_fraction([2, 4, 4, 2], [[0, 1], [2, 3]]) == pytest.approx(0.25)
    assert padded_fraction([3, 3], [[0, 1]]) == 0
    assert sorted(i for b in random_batches(10, 3, 0) for i in b) == list(range(10))
    priors, hot = skewed_priors(10, 0)
    assert sum(priors[h] for h in hot) == pytest.approx(0.8) and len(hot) == 2


def test_cache_saving_model():
    assert cache_saving_model(6, 3, 3, 1) == pytest.approx(12 / 276)  # frozen 24, cache 12, trained 252 layer passes
    assert cache_saving_model(6, 6, 6, 2) == pytest.approx(390 / 3696)
    assert cache_saving_model(6, 6, 6, 4) > cache_saving_model(6, 6, 6, 2), "the cache pays off more with more epochs"
    assert cache_saving_model(6, 3, 1, 1) < 0, "B=1, one epoch: caching every level costs more than it saves"


class _Cut(Exception):
    """Stands for a run stopped from outside (crash, Ctrl-C)."""


def test_an_interrupted_run_continues_where_it_stopped(bench, tiny_model, tmp_path, monkeypatch):
    """Stopped in the middle of the second S3T fit, the run is continued by the same call: the
    first fit is reloaded, the cut-off fit is finished from the stages it had, and the result
    equals the uninterrupted run's (same accuracies: training is deterministic)."""
    from s3t.bench import run_bench
    from s3t.store.ledger import Ledger

    real, calls = Ledger.register_checkpoint, []

    def register(self, **kw):
        calls.append(kw["id"])
        if len(calls) == 21:  # B=3 registers 18 checkpoints (2 shards x 9), B=1 then 2 of its 6
            raise _Cut()
        return real(self, **kw)

    out, args = tmp_path / "out", {"model": tiny_model, "limit": 200, "deletions": 20}
    monkeypatch.setattr(Ledger, "register_checkpoint", register)
    with pytest.raises(_Cut):
        run_bench(out, quick=True, say=lambda m: None, **args)
    monkeypatch.setattr(Ledger, "register_checkpoint", real)
    assert (out / "work" / "parts" / "fit-s3t-B3.json").exists() and not (out / "results.json").exists()
    with pytest.raises(Exception, match="other settings"):
        run_bench(out, quick=True, say=lambda m: None, **{**args, "deletions": 21})
    said = []
    r = run_bench(out, quick=True, say=said.append, **args)
    assert r["resumed"] and any("s3t-B3: fitted in the interrupted run" in m for m in said)
    assert any("s3t-B1: finishing the fit" in m for m in said)
    assert any(m.strip().startswith("s3t-B1: training 100%") for m in said), "long fits report their progress"
    assert r["fits"]["s3t_B1"]["resumed"] and not r["fits"]["s3t_B3"]["resumed"]
    first = bench[0]
    assert r["fits"]["s3t_B1"]["checkpoints"] == first["fits"]["s3t_B1"]["checkpoints"] == 6
    for key in ("s3t_B1", "s3t_B3", "sisa", "full"):
        assert r["P3"][key] == first["P3"][key], f"{key}: the continued run's accuracy differs"
    assert r["P1"]["s3t_ms"]["n"] == 20 and all(p in r for p in PARTS)
    assert not (out / "work").exists(), "the kept pieces are removed once the run completes"
