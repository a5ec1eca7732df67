"""``s3t evaluate --quick`` end to end on the tiny random model (one run serves every test).

Accuracies of a random tiny encoder mean nothing; what is asserted is that every scenario
and method ran, the forget sets follow their rules, the metrics are consistent with their
definitions, and the report and plots were written.
"""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from s3t.cli import app
from s3t.data import load_builtin
from s3t.evaluate.config import APPROXIMATE, EXACT, SCENARIOS, EvaluateConfig

PNG = b"\x89PNG\r\n\x1a\n"
LIMIT = 200


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("evaluate") / "out"
    result = CliRunner().invoke(app, ["evaluate", "--out", str(out), "--quick", "--json", "--model", tiny_model,
                                      "--limit", str(LIMIT), "--sequential", "4", "--threads", "1"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    written = json.loads((out / "results.json").read_text())
    assert printed["scenarios"].keys() == written["scenarios"].keys()
    assert written["config"]["threads"] == 1, "--threads overrides the preset"
    return written, out


def test_every_scenario_and_method_ran(run):
    r, _ = run
    assert list(r["scenarios"]) == list(SCENARIOS) + ["sequential"]
    for name, sc in r["scenarios"].items():
        assert list(sc["rows"]) == list(EXACT + APPROXIMATE), name
        for method, row in sc["rows"].items():
            assert row["RTE"] >= 0, (name, method)
            for k in ("UA", "RA", "TA", "MIA", "MIA_loss"):
                assert math.isnan(row[k]) or 0.0 <= row[k] <= 1.0, (name, method, k)


def test_the_original_model_and_accuracy_before_deletions_are_reported(run):
    r, out = run
    for name in ("full", "sisa", "s3t"):
        assert 0.0 <= r["fits"][name]["test_accuracy"] <= 1.0
    for sc in r["scenarios"].values():
        o = sc["original"]
        assert o["RTE"] == 0.0 and "original" not in sc["rows"]
        assert sc["original_gaps"]["UA"] == pytest.approx(abs(o["UA"] - sc["rows"]["retrain"]["UA"]))
    assert "original (no unlearning)" in (out / "summary.md").read_text()


def test_forget_sets_follow_their_rules(run):
    r, _ = run
    cfg = EvaluateConfig.quick(limit=LIMIT)
    splits = load_builtin(cfg.dataset, seed=cfg.seed, limit=LIMIT, fractions=cfg.fractions)
    n = len(splits.train)
    assert r["data"]["train"] == n
    sc = r["scenarios"]
    assert sc["random_1pct"]["forget_size"] == max(1, round(0.01 * n))
    assert sc["random_10pct"]["forget_size"] == round(0.10 * n)
    cls = sc["class"]["detail"]["class"]
    assert sc["class"]["forget_size"] == sum(1 for y in splits.train.labels if splits.train.label_names[y] == cls)
    assert sc["subject"]["detail"]["synthetic"] is True
    assert sc["sequential"]["requests"] == 4 and sc["sequential"]["forget_size"] == 4 * sc["sequential"]["detail"]["per_request"]


def test_gaps_are_measured_against_retrain(run):
    r, _ = run
    for sc in r["scenarios"].values():
        ref = sc["rows"]["retrain"]
        assert sc["gaps"]["retrain"]["avg"] == 0.0
        for method, row in sc["rows"].items():
            g = sc["gaps"][method]
            if not math.isnan(row["UA"]):
                assert g["UA"] == pytest.approx(abs(row["UA"] - ref["UA"]))
                assert g["avg"] == pytest.approx(sum(g[k] for k in ("UA", "RA", "TA", "MIA")) / 4)


def test_exact_methods_report_their_serving_state(run):
    r, _ = run
    for sc in r["scenarios"].values():
        s3t = sc["rows"]["s3t"]
        assert 0 <= s3t["live_shards"] <= r["config"]["shards"]
        if s3t["live_shards"] == 0:  # nothing to serve: reported, not crashed
            assert math.isnan(s3t["UA"]) and "no live model" in s3t["note"]
        assert 1 <= sc["rows"]["sisa"]["shards_retrained"] <= r["config"]["shards"]
    assert "once" in r["scenarios"]["sequential"]["rows"]["retrain"]["note"]


def test_s3t_after_its_retrain_serves_full_prefixes_everywhere(run):
    r, _ = run
    L, m = r["config"]["slices"], r["config"]["shards"]
    for name, sc in r["scenarios"].items():
        s3t, after = sc["rows"]["s3t"], sc["rows"]["s3t_retrain"]
        assert after["live_shards"] == m and set(after["served"].values()) == {L}, name
        assert not math.isnan(after["UA"]) and after["RTE"] >= s3t["RTE"], name
        assert "training seed 1" in sc["rows"]["retrain_seed1"]["note"] and sc["rows"]["retrain_seed1"]["RTE"] > 0


def test_within_noise_is_a_paired_bootstrap_test_against_retrain(run):
    r, out = run
    for name, sc in r["scenarios"].items():
        assert set(sc["noise"]) == set(sc["rows"]), name
        for method, check in sc["noise"].items():
            for metric in ("UA", "MIA"):
                c = check[metric]
                if math.isnan(sc["rows"][method]["UA"]):
                    assert c["within"] is None
                    continue
                assert c["diff"] == pytest.approx(sc["rows"][method][metric] - sc["rows"]["retrain"][metric])
                assert c["lo"] <= c["diff"] + 1e-12 and c["diff"] <= c["hi"] + 1e-12
                assert c["within"] == (c["lo"] <= 0.0 <= c["hi"])
        assert sc["noise"]["retrain"]["UA"]["within"] is True
    assert "within noise of Retrain in" in (out / "summary.md").read_text()


def test_report_and_plots_written(run):
    r, out = run
    md = (out / "summary.md").read_text()
    for name in r["scenarios"]:
        assert f"{r['scenarios'][name]['forget_size']} records" in md
    for method in EXACT + APPROXIMATE:
        assert f"| {method} |" in md
    overview = md.split("Average gap to Retrain per forget set")[1].split("###")[0]
    for method in EXACT + APPROXIMATE:  # one overview row per method, one cell per scenario + RTE
        row = next(line for line in overview.splitlines() if line.startswith(f"| {method} |"))
        assert row.count("|") == len(r["scenarios"]) + 3, row
    assert r["plots"] == ["gaps.png", "ua_vs_rte.png"]
    for name in r["plots"]:
        assert (out / name).read_bytes()[:8] == PNG


def test_help_teaches():
    result = CliRunner().invoke(app, ["evaluate", "--help"])
    assert result.exit_code == 0
    for word in ("--quick", "SalUn", "MIA", "Retrain", "Example"):
        assert word in result.output
