"""P3 on two datasets with settings chosen by ``s3t tune --bench``, end to end on the tiny random model.

What is asserted: the tuning reads the bench's own split, each method trains with its chosen
settings, P3 reports movie_reviews and trec before and after, and a tune result made on another
split is refused. No accuracy or time is asserted."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from s3t.bench.config import BenchConfig
from s3t.bench.train_parts import method_config
from s3t.bench.tuned import bench_tuned
from s3t.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tuned_p3(tmp_path_factory, tiny_model):
    from s3t.cli import app

    root = tmp_path_factory.mktemp("p3")
    args = ["tune", "--bench", "quick", "--model", tiny_model, "--limit", "200", "--grid-lr", "0.005,0.03",
            "--grid-rank", "2,4", "--grid-epochs", "1", "--out", str(root / "tune.json"), "--p3", str(root / "p3"), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return json.loads((root / "tune.json").read_text()), root


def test_tune_covers_both_p3_datasets_with_equal_budgets(tuned_p3):
    tune, _ = tuned_p3
    assert set(tune["datasets"]) == {"movie_reviews", "trec"} and tune["cpu_seconds"] > 0
    for name, d in tune["datasets"].items():
        assert set(d["methods"]) == {"s3t", "sisa", "full"}
        assert {x["grid"]["budget_epochs"] for x in d["methods"].values()} == {4}
        assert d["split"] == {"dataset": name, "seed": 0, "limit": 200, "fractions": [0.65, 0.05, 0.30]}
        assert len(d["data"]["label_names"]) == (2 if name == "movie_reviews" else 6)


def test_p3_before_and_after_on_both_datasets(tuned_p3):
    tune, root = tuned_p3
    out = root / "p3"
    r = json.loads((out / "p3_tuned.json").read_text())
    assert (out / "p3_before_after.png").read_bytes().startswith(PNG)
    assert set(r["datasets"]) == {"movie_reviews", "trec"}
    for name, d in r["datasets"].items():
        for run in ("defaults", "tuned"):
            assert all(0 <= d[run][k] <= 1 for k in ("s3t_B3", "s3t_B1", "sisa", "full"))
            assert d["gap_to_sisa_pts"][run] == pytest.approx(100 * (d[run]["s3t_B3"] - d[run]["sisa"]))
        chosen = tune["datasets"][name]["methods"]
        for m in ("s3t", "sisa", "full"):
            st = d["settings"]["tuned"][m]
            assert st["source"] == "tuned" and {k: st[k] for k in ("lr", "rank", "alpha", "epochs")} == {
                k: chosen[m]["chosen"][k] for k in ("lr", "rank", "alpha", "epochs")}
            assert d["settings"]["defaults"][m] == {"lr": 5e-3, "rank": 8, "alpha": 16, "epochs": 1, "source": "default"}
        assert d["tune_cpu_seconds"] > 0 and d["n_classes"] == (2 if name == "movie_reviews" else 6)
    for run in ("defaults", "tuned"):
        res = json.loads((out / run / "results.json").read_text())
        assert set(res["P3"]["datasets"]) == {"movie_reviews", "trec"} and "P1" not in res
        assert res["P3"]["tuned"] == (run == "tuned") and "p3_accuracy.png" in res["plots"]
        assert [row["part"] for row in res["summary"]].count("P3") == (2 if run == "defaults" else 4)
        assert not (out / run / "work").exists()


def test_each_method_trains_with_its_own_settings(tuned_p3, tiny_model, tmp_path):
    from s3t.bench import run_bench

    tune, _ = tuned_p3
    cfg = BenchConfig.quick(model=tiny_model, limit=200, tuned=bench_tuned(tune))
    for m in ("s3t", "sisa", "full"):
        c = tune["datasets"]["movie_reviews"]["methods"][m]["chosen"]
        t = method_config(cfg, m, 1).train
        assert (t.lr, t.lora.rank, t.lora.alpha, t.epochs) == (c["lr"], c["rank"], c["alpha"], c["epochs"])
        assert t.batch_size == cfg.batch_size and t.model == tiny_model
    untuned = BenchConfig.quick(model=tiny_model, limit=200)
    assert method_config(untuned, "s3t", 1).train.lr == untuned.lr
    # the S3T workspace the bench fitted holds the chosen settings
    r = run_bench(tmp_path / "out", quick=True, say=lambda m: None, only="P3", tuned=tune, model=tiny_model, limit=200,
                  p3_datasets=("movie_reviews",), keep_work=True)
    c = tune["datasets"]["movie_reviews"]["methods"]["s3t"]["chosen"]
    ws = json.loads((tmp_path / "out" / "work" / "s3t-B3" / "s3t.json").read_text())
    assert (ws["train"]["lr"], ws["train"]["lora"]["rank"]) == (c["lr"], c["rank"])
    assert set(r["P3"]["datasets"]) == {"movie_reviews"}


def test_a_tune_result_from_another_split_is_refused(tuned_p3, tiny_model, tmp_path):
    from s3t.bench import run_bench

    tune, _ = tuned_p3
    with pytest.raises(ConfigError, match="not chosen on this run's split"):
        run_bench(tmp_path / "a", quick=True, say=lambda m: None, only="P3", tuned=tune, model=tiny_model, limit=190)
    with pytest.raises(ConfigError, match="not chosen on this run's split"):
        run_bench(tmp_path / "b", quick=True, say=lambda m: None, only="P3", tuned=tune, model=tiny_model, limit=200,
                  fractions=(0.6, 0.1, 0.3))
    with pytest.raises(ConfigError, match="s3t tune"):
        bench_tuned({"methods": {}})


def test_a_tune_result_that_chose_stage_options_is_refused_not_dropped(tuned_p3):
    """The bench applies lr, rank, alpha and epochs; a chosen stage option would be lost without a word."""
    import copy

    tune, _ = tuned_p3
    bench_tuned(tune)  # the defaults: accepted
    changed = copy.deepcopy(tune)
    name = next(iter(changed["datasets"]))
    changed["datasets"][name]["methods"]["s3t"]["chosen"]["warmup"] = 0.1
    with pytest.raises(ConfigError, match="warmup"):
        bench_tuned(changed)
