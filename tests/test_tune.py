"""``s3t tune``: the grid, the fair budget, the choice, and that only one shard's training records
and the validation records are ever read (never test data, never forgotten records).

Trainings run on the tiny random model (tests/conftest.py): what is asserted is what was read,
what was chosen and that the result is consistent, never an accuracy or a time."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from s3t.config import S3TConfig
from s3t.errors import ConfigError
from s3t.tune import Grid, choose, grids_for, ids_digest, shard_slices, tune
from tests.conftest import tiny_config, toy_rows

SMALL = Grid(lrs=(5e-3, 3e-2), ranks=(2, 4), epochs=(1,))


# -- the grid (pure python) -------------------------------------------------------------------


def test_grid_points_and_budget():
    g = Grid(lrs=(1e-2, 2e-3), ranks=(16, 8), epochs=(2, 1))
    pts = g.points()
    assert len(pts) == 8 and g.budget == sum(p.epochs for p in pts) == 12
    assert [(p.lr, p.rank, p.epochs) for p in pts[:3]] == [(2e-3, 8, 1), (2e-3, 8, 2), (2e-3, 16, 1)]
    assert all(p.alpha == 2 * p.rank for p in pts)
    assert Grid(ranks=(4,), alpha_per_rank=4).points()[0].alpha == 16
    assert Grid.from_dict(g.to_dict()) == g
    assert pts[0].settings() == {"train.lr": 2e-3, "train.epochs": 1, "train.lora.rank": 8, "train.lora.alpha": 16.0,
                                 "train.first_stage_epochs": 0, "train.warmup": 0.0, "train.head_init": "warm"}


@pytest.mark.parametrize("kw", [{"lrs": ()}, {"lrs": (1e-3, 1e-3)}, {"lrs": (-1e-3,)}, {"ranks": (2.5,)},
                                {"ranks": (0,)}, {"epochs": (True,)}, {"alpha_per_rank": 0}])
def test_bad_grids_are_refused(kw):
    with pytest.raises(ConfigError):
        Grid(**kw)


def test_every_method_gets_the_same_budget():
    grids = grids_for(["s3t", "sisa", "full"])
    assert set(grids) == {"s3t", "sisa", "full"} and len({g.budget for g in grids.values()}) == 1
    # different grids are fine when their budgets (points x epochs) agree: 2 lrs x 1 epoch vs 1 lr x 2 epochs
    ok = grids_for(["s3t", "sisa"], {"s3t": Grid(lrs=(1e-2, 2e-2), ranks=(8,), epochs=(1,)),
                                     "sisa": Grid(lrs=(5e-3,), ranks=(8,), epochs=(2,))})
    assert ok["s3t"].budget == ok["sisa"].budget == 2
    with pytest.raises(ConfigError, match="same tuning budget"):
        grids_for(["s3t", "sisa"], {"s3t": Grid(epochs=(1, 2, 3)), "sisa": Grid()})
    with pytest.raises(ConfigError, match="no grid"):
        grids_for(["s3t", "full"], {"s3t": Grid()})
    with pytest.raises(ConfigError, match="methods"):
        grids_for(["s3t", "retrain"])


def test_choice_accuracy_then_loss_then_cost():
    row = lambda acc, loss, lr=1e-3, rank=8, ep=1: {"val_accuracy": acc, "val_loss": loss, "lr": lr, "rank": rank,  # noqa: E731
                                                    "epochs": ep}
    assert choose([row(0.7, 0.1), row(0.8, 0.9), row(0.75, 0.2)])["val_accuracy"] == 0.8
    assert choose([row(0.8, 0.5), row(0.8, 0.4)])["val_loss"] == 0.4
    assert choose([row(0.8, 0.4, ep=2), row(0.8, 0.4, rank=16), row(0.8, 0.4, lr=2e-3)]) == row(0.8, 0.4, lr=2e-3)
    with pytest.raises(ConfigError):
        choose([])


# -- tuning on the tiny model -------------------------------------------------------------------


class SpyTokenizer:
    """The backbone's tokenizer, recording every text it is asked to encode."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __call__(self, texts, *a, **kw):
        self.seen += [texts] if isinstance(texts, str) else list(texts)
        return self.inner(texts, *a, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def backbone(tiny_model):
    from s3t.train.backbone import load_backbone

    return load_backbone(tiny_model)


@pytest.fixture
def spy(backbone):
    real = backbone.tokenizer
    backbone.tokenizer = SpyTokenizer(real)
    yield backbone.tokenizer
    backbone.tokenizer = real


def _strip(result: dict) -> dict:
    """A tune result without its timings (they differ from run to run)."""
    if isinstance(result, dict):
        return {k: _strip(v) for k, v in result.items() if k not in ("cpu_seconds", "seconds")}
    if isinstance(result, list):
        return [_strip(v) for v in result]
    return result


def test_tune_reads_one_shard_and_validation_and_picks_the_best(tiny_model, backbone, spy):
    train, val = toy_rows(120, seed=1), toy_rows(40, seed=2)
    base = tiny_config(tiny_model)
    r = tune(train, val, base, grid=SMALL, backbone=backbone)
    slices = shard_slices(train, base, 0)
    shard_ids = {i for v in slices.values() for i in v}
    assert 0 < len(shard_ids) < len(train)
    assert r["data"]["train_ids_sha256"] == ids_digest(shard_ids) and r["data"]["shard_records"] == len(shard_ids)
    assert r["data"]["validation_ids_sha256"] == ids_digest(row["id"] for row in val)
    by_id = {row["id"]: row["text"] for row in train}
    allowed = {by_id[i] for i in shard_ids} | {row["text"] for row in val}
    assert set(spy.seen) <= allowed, "tokenised something outside shard 0 and the validation set"
    assert {by_id[i] for i in shard_ids} <= set(spy.seen)
    assert set(r["methods"]) == {"s3t", "sisa", "full"} and r["budget_epochs"] == SMALL.budget
    for m, x in r["methods"].items():
        assert [(p["lr"], p["rank"], p["epochs"]) for p in x["points"]] == [(p.lr, p.rank, p.epochs) for p in SMALL.points()]
        assert all(0 <= p["val_accuracy"] <= 1 and p["val_loss"] > 0 and p["cpu_seconds"] > 0 for p in x["points"])
        best = max(p["val_accuracy"] for p in x["points"])
        c = x["chosen"]
        assert c["val_accuracy"] == best and c in [{k: p[k] for k in c} for p in x["points"]], m
        assert x["cpu_seconds"] == pytest.approx(sum(p["cpu_seconds"] for p in x["points"]))
    cfg = S3TConfig.from_dict(r["s3t_config"])
    c = r["methods"]["s3t"]["chosen"]
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.lora.rank, cfg.train.lora.alpha) == (
        c["lr"], c["epochs"], c["rank"], c["alpha"])
    assert cfg.plan == base.plan and cfg.train.batch_size == base.train.batch_size
    # deterministic: the same call chooses the same from the same numbers
    again = tune(train, val, base, grid=SMALL, methods=["sisa"], backbone=backbone)
    assert _strip(again["methods"]["sisa"]) == _strip(r["methods"]["sisa"])


def test_forgotten_records_are_never_read(tiny_model, backbone, spy):
    """Poisoned (relabelled, rewritten) excluded records give exactly the result of clean ones, and
    their texts never reach the tokenizer."""
    train, val = toy_rows(120, seed=1), toy_rows(40, seed=2)
    base = tiny_config(tiny_model)
    shard0 = [i for v in shard_slices(train, base, 0).values() for i in v]
    gone = set(shard0[::3]) | {val[5]["id"]}
    poisoned = [{**row, "text": f"poison {n} awful superb", "label": ["pos", "neg"][row["label"] == "pos"]}
                if row["id"] in gone else row for n, row in enumerate(train)]
    bad_val = [{**row, "text": "poison validation"} if n == 5 else row for n, row in enumerate(val)]
    kw = dict(grid=Grid(lrs=(3e-2,), ranks=(4,), epochs=(1,)), methods=["s3t", "full"], exclude=gone, backbone=backbone)
    clean = tune(train, val, base, **kw)
    spy.seen.clear()
    dirty = tune(poisoned, bad_val, base, **kw)
    assert not any("poison" in t for t in spy.seen)
    assert _strip(dirty) == _strip(clean)
    assert clean["data"]["shard_records"] == len(shard0) - len(gone & set(shard0))
    assert clean["data"]["validation_records"] == 39 and clean["data"]["excluded"] == len(gone)
    # and the exclusion matters: the same poisoned data without it is read
    spy.seen.clear()
    tune(poisoned, bad_val, base, **{**kw, "exclude": ()})
    assert any("poison" in t for t in spy.seen)


def test_bench_tuning_never_reads_the_test_split(tiny_model, backbone, spy, monkeypatch):
    """tune_bench loads the bench's split; a poisoned test split changes nothing and is never tokenised."""
    import s3t.data
    from s3t.bench.config import BenchConfig
    from s3t.bench.tuned import tune_bench

    real = s3t.data.load_builtin

    def poisoned(name, **kw):
        sp = real(name, **kw)
        test = sp.test
        bad = type(test)(ids=test.ids, texts=tuple(f"poison {i}" for i in range(len(test))),
                         labels=tuple((y + 1) % len(test.label_names) for y in test.labels),
                         label_names=test.label_names, subjects=test.subjects)
        return type(sp)(train=sp.train, validation=sp.validation, test=bad, name=sp.name, description=sp.description)

    cfg = BenchConfig.quick(model=tiny_model, limit=160, fractions=(0.6, 0.2, 0.2))
    kw = dict(datasets=["trec"], grid=Grid(lrs=(3e-2,), ranks=(4,), epochs=(1,)), methods=["s3t", "sisa"],
              say=lambda m: None, backbone=backbone)
    clean = tune_bench(cfg, **kw)
    monkeypatch.setattr(s3t.data, "load_builtin", poisoned)
    spy.seen.clear()
    dirty = tune_bench(cfg, **kw)
    assert spy.seen and not any(t.startswith("poison") for t in spy.seen)
    assert _strip(dirty) == _strip(clean)
    sp = real("trec", seed=0, limit=160, fractions=(0.6, 0.2, 0.2))
    assert dirty["datasets"]["trec"]["data"]["validation_ids_sha256"] == ids_digest(sp.validation.ids)
    assert set(spy.seen) <= set(sp.train.texts) | set(sp.validation.texts)


def test_tune_refuses_too_small_or_missing_data(tiny_model, backbone):
    base = tiny_config(tiny_model)
    val = toy_rows(10, seed=2)
    with pytest.raises(ConfigError, match="validation"):
        tune(toy_rows(60, seed=1), val, base, grid=SMALL, exclude={row["id"] for row in val}, backbone=backbone)
    with pytest.raises(ConfigError, match="shard"):
        tune(toy_rows(60, seed=1), val, base, grid=SMALL, shard=2, backbone=backbone)


# -- the command ---------------------------------------------------------------------------------


def _csv(path, rows):
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_cli_tune_writes_the_result_and_a_train_config(tmp_path, tiny_model):
    from s3t.cli import app

    train, val = _csv(tmp_path / "train.csv", toy_rows(90, seed=1)), _csv(tmp_path / "val.csv", toy_rows(30, seed=2))
    out, conf = tmp_path / "tune.json", tmp_path / "tuned.json"
    args = ["tune", "--out", str(out), "--data", train, "--validation", val, "--model", tiny_model, "-m", "2", "-L", "3",
            "--batch-size", "8", "--grid-lr", "0.005,0.03", "--grid-rank", "2", "--grid-epochs", "1",
            "--method", "s3t", "--method", "full", "--config-out", str(conf), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    d = r["datasets"]["train.csv"]
    assert set(d["methods"]) == {"s3t", "full"} and len(d["methods"]["s3t"]["points"]) == 2
    assert d["data"]["validation_records"] == 30 and r["cpu_seconds"] > 0
    cfg = S3TConfig.load(conf)
    c = d["methods"]["s3t"]["chosen"]
    assert (cfg.train.lr, cfg.train.lora.rank, cfg.train.epochs, cfg.train.model) == (c["lr"], 2, 1, tiny_model)
    assert (cfg.plan.shards, cfg.plan.slices, cfg.train.batch_size) == (2, 3, 8)
    # options the grid sets are refused, --p3 needs --bench
    bad = CliRunner().invoke(app, ["tune", "--out", str(out), "--data", train, "--validation", val, "--lr", "0.1"])
    assert bad.exit_code != 0 and "--grid-lr" in bad.output
    bad = CliRunner().invoke(app, ["tune", "--out", str(out), "--p3", str(tmp_path / "p3")])
    assert bad.exit_code != 0 and "--bench" in bad.output


def test_cli_tune_leaves_out_what_a_workspace_forgot(tmp_path, tiny_model, fitted, toy_data):
    from s3t.cli import app

    train_rows, val_rows = toy_data
    gone = [train_rows[0]["id"], train_rows[3]["id"], train_rows[8]["id"]]
    fitted.forget(record_ids=gone)
    fitted.flush()
    ws = str(fitted.ws_.path)
    fitted.ws_.ledger.close()
    train, val = _csv(tmp_path / "train.csv", train_rows), _csv(tmp_path / "val.csv", val_rows)
    out = tmp_path / "tune.json"
    base = ["tune", "--out", str(out), "--data", train, "--validation", val, "--model", tiny_model, "-m", "2", "-L", "3",
            "--grid-lr", "0.03", "--grid-rank", "2", "--grid-epochs", "1", "--method", "full"]
    assert CliRunner().invoke(app, base).exit_code == 0
    full = json.loads(out.read_text())["datasets"]["train.csv"]["data"]
    res = CliRunner().invoke(app, base + ["-w", ws])
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())["datasets"]["train.csv"]["data"]
    shard0 = {i for v in shard_slices(train_rows, tiny_config(tiny_model), 0).values() for i in v}
    assert d["excluded"] == 3 and d["shard_records"] == full["shard_records"] - len(shard0 & set(gone))
    assert d["train_ids_sha256"] == ids_digest(shard0 - set(gone))


# -- stage options (issue 18): optional axes, the S3T-only rule, the honest budget ---------------


def test_default_grid_is_unchanged_by_the_stage_axes():
    g = Grid()
    assert (g.first_stage_epochs, g.warmup, g.head_init) == ((None,), (0.0,), ("warm",))
    assert len(g.points()) == 12 and g.budget == g.budget_for(3) == g.budget_for(1) == 18
    assert all(p.stage_options == {} for p in g.points()) and g.varies() == []
    assert g.to_dict() == {"lrs": [2e-3, 5e-3, 1e-2], "ranks": [8, 16], "epochs": [1, 2], "alpha_per_rank": 2.0,
                           "points": 12, "budget_epochs": 18}
    assert Grid.from_dict({"lrs": [2e-3, 5e-3, 1e-2], "ranks": [8, 16], "epochs": [1, 2]}) == g  # an older result's grid


def test_stage_axes_points_and_the_epochs_actually_trained():
    from fractions import Fraction

    g = Grid(lrs=(1e-2,), ranks=(8,), epochs=(2,), first_stage_epochs=(4, None), warmup=(0.1, 0), head_init=("fresh", "warm"))
    pts = g.points()
    assert [(p.first_stage_epochs, p.warmup, p.head_init) for p in pts] == [
        (None, 0.0, "warm"), (None, 0.0, "fresh"), (None, 0.1, "warm"), (None, 0.1, "fresh"),
        (4, 0.0, "warm"), (4, 0.0, "fresh"), (4, 0.1, "warm"), (4, 0.1, "fresh")]
    assert pts[-1].settings() == {"train.lr": 1e-2, "train.epochs": 2, "train.lora.rank": 8, "train.lora.alpha": 16.0,
                                  "train.first_stage_epochs": 4, "train.warmup": 0.1, "train.head_init": "fresh"}
    assert pts[-1].stage_options == {"first_stage_epochs": 4, "warmup": 0.1, "head_init": "fresh"}
    # stage 1 at 4 epochs and stages 2..L at 2: 2 + 2/L epochs per stage, not 2 (nor 4)
    assert pts[0].budget(3) == 2 and pts[4].budget(3) == Fraction(8, 3)
    assert g.budget_for(3) == pytest.approx(4 * 2 + 4 * (2 + 2 / 3)) and g.budget_for(2) == 4 * 2 + 4 * 3
    assert Grid(lrs=(1e-2,), ranks=(8,), epochs=(2,), first_stage_epochs=(1,)).budget_for(2) == 1.5  # shorter counts less
    with pytest.raises(ConfigError, match="budget_for"):
        g.budget
    d = g.to_dict(3)
    assert d["budget_epochs"] == g.budget_for(3) and d["first_stage_epochs"] == [4, None] and Grid.from_dict(d) == g
    assert Grid(first_stage_epochs=(0, 3)).first_stage_epochs == (None, 3)  # 0: the config's spelling of None


@pytest.mark.parametrize("kw", [{"warmup": (1.0,)}, {"warmup": (-0.1,)}, {"warmup": ()}, {"warmup": (0.1, 0.1)},
                                {"warmup": (True,)}, {"head_init": ("cold",)}, {"head_init": ()},
                                {"head_init": ("warm", "warm")}, {"first_stage_epochs": (-1,)},
                                {"first_stage_epochs": (2.5,)}, {"first_stage_epochs": (True,)},
                                {"first_stage_epochs": ()}, {"first_stage_epochs": (None, 0)},
                                {"first_stage_epochs": (None, 2), "epochs": (2,)}])
def test_bad_stage_axes_are_refused(kw):
    with pytest.raises(ConfigError):
        Grid(**kw)


def test_s3t_only_options_are_never_varied_for_sisa_or_full():
    one = dict(lrs=(1e-2,), ranks=(8,), epochs=(1,))
    for g in (Grid(**one, head_init=("warm", "fresh")), Grid(**one, first_stage_epochs=(3,)), Grid(**one, head_init="fresh")):
        assert grids_for(["s3t"], g, stages=3)["s3t"] == g
        for m in ("sisa", "full"):
            with pytest.raises(ConfigError, match=f"S3T-only.*not varied for {m}"):
                grids_for(["s3t", m], g, stages=3)
            with pytest.raises(ConfigError, match="S3T-only"):
                grids_for([m], g, stages=3)
    # warm-up is every method's: a shared axis
    warm = Grid(**one, warmup=(0.0, 0.1))
    assert set(grids_for(["s3t", "sisa", "full"], warm)) == {"s3t", "sisa", "full"}
    # per-method grids: S3T's longer first stage is paid for with the others' points, counted for L stages
    s3t = Grid(lrs=(1e-2,), ranks=(8,), epochs=(2,), first_stage_epochs=(None, 5))  # 2 + (2 + 3/L)
    other = Grid(lrs=(1e-2,), ranks=(8,), epochs=(2, 3))  # 5
    assert len(grids_for(["s3t", "sisa", "full"], {"s3t": s3t, "sisa": other, "full": other}, stages=3)) == 3
    with pytest.raises(ConfigError, match="same tuning budget"):
        grids_for(["s3t", "sisa"], {"s3t": s3t, "sisa": other}, stages=2)  # 2 + 3.5 = 5.5, not 5
    with pytest.raises(ConfigError, match="budget_for"):
        grids_for(["s3t", "sisa"], {"s3t": s3t, "sisa": other})  # without the stages it cannot be counted


def test_apply_sets_the_stage_options_the_grid_owns(tiny_model):
    from dataclasses import replace

    from s3t.tune import apply

    base = tiny_config(tiny_model)
    base = replace(base, train=replace(base.train, first_stage_epochs=3, warmup=0.3, head_init="fresh"))
    plain = apply(base, Grid(lrs=(1e-2,), ranks=(4,), epochs=(1,)).points()[0]).train
    assert (plain.first_stage_epochs, plain.warmup, plain.head_init) == (0, 0.0, "warm")
    assert apply(base, {"lr": 1e-2, "rank": 4, "alpha": 8.0, "epochs": 1}).train == plain  # an older result's row
    row = {"lr": 1e-2, "rank": 4, "alpha": 8.0, "epochs": 1, "first_stage_epochs": 4, "warmup": 0.1, "head_init": "fresh"}
    got = apply(base, row).train
    assert (got.first_stage_epochs, got.warmup, got.head_init, got.lr, got.epochs) == (4, 0.1, "fresh", 1e-2, 1)


def test_choice_prefers_fewer_epochs_trained_then_the_defaults():
    def row(**kw):
        return {"val_accuracy": 0.8, "val_loss": 0.4, "lr": 1e-3, "rank": 8, "epochs": 2, "budget_epochs": 2,
                "first_stage_epochs": None, "warmup": 0.0, "head_init": "warm", **kw}

    longer = row(first_stage_epochs=4, budget_epochs=8 / 3)
    assert choose([longer, row()]) == row()
    assert choose([row(warmup=0.1), row(head_init="fresh"), row()]) == row()
    assert choose([row(warmup=0.1), row(head_init="fresh")]) == row(head_init="fresh")
    assert choose([longer, row(val_loss=0.41)]) is longer  # the loss before the cost
    assert choose([row(val_accuracy=0.7), row(warmup=0.1, first_stage_epochs=4, budget_epochs=3)])["warmup"] == 0.1


@pytest.fixture
def confs(monkeypatch):
    """Every config a grid point is trained with: (method, first_stage_epochs, warmup, head_init)."""
    import s3t.tune as tune_module

    seen, real = [], tune_module._train_point

    def spy(method, bb, conf, *a, **kw):
        seen.append((method, conf.train.first_stage_epochs, conf.train.warmup, conf.train.head_init))
        return real(method, bb, conf, *a, **kw)

    monkeypatch.setattr(tune_module, "_train_point", spy)
    return seen


def test_tune_trains_every_stage_option_and_writes_the_chosen_one(tiny_model, backbone, confs):
    train, val = toy_rows(120, seed=1), toy_rows(40, seed=2)
    base = tiny_config(tiny_model)
    L = base.plan.slices
    g = Grid(lrs=(3e-2,), ranks=(4,), epochs=(1,), first_stage_epochs=(None, 3), warmup=(0.0, 0.25),
             head_init=("warm", "fresh"))
    r = tune(train, val, base, grid=g, methods=["s3t"], backbone=backbone)
    pts = r["methods"]["s3t"]["points"]
    assert confs == [("s3t", p.first_stage_epochs or 0, p.warmup, p.head_init) for p in g.points()]
    assert [(p["first_stage_epochs"], p["warmup"], p["head_init"]) for p in pts] == [
        (q.first_stage_epochs, q.warmup, q.head_init) for q in g.points()]
    assert r["budget_epochs"] == pytest.approx(g.budget_for(L)) == pytest.approx(4 * 1 + 4 * (1 + 2 / L))
    assert [p["budget_epochs"] for p in pts] == pytest.approx([float(q.budget(L)) for q in g.points()])
    assert len({p["val_loss"] for p in pts}) == len(pts), "an option did not change what was trained"
    assert r["methods"]["s3t"]["chosen"] == {k: choose(pts)[k] for k in r["methods"]["s3t"]["chosen"]}
    assert r["methods"]["s3t"]["grid"]["head_init"] == ["warm", "fresh"]
    # the chosen options reach the config s3t train takes
    one = Grid(lrs=(3e-2,), ranks=(4,), epochs=(1,), first_stage_epochs=(3,), warmup=(0.25,), head_init=("fresh",))
    cfg = S3TConfig.from_dict(tune(train, val, base, grid=one, methods=["s3t"], backbone=backbone)["s3t_config"]).train
    assert (cfg.first_stage_epochs, cfg.warmup, cfg.head_init, cfg.epochs) == (3, 0.25, "fresh", 1)


def test_sisa_and_full_never_get_s3t_only_options(tiny_model, backbone, confs):
    """Warm-up is varied for every method; a base config's first_stage_epochs/head_init reach none of them."""
    from dataclasses import replace

    base = tiny_config(tiny_model)
    base = replace(base, train=replace(base.train, first_stage_epochs=3, head_init="fresh", warmup=0.5))
    g = Grid(lrs=(3e-2,), ranks=(4,), epochs=(1,), warmup=(0.0, 0.25))
    r = tune(toy_rows(120, seed=1), toy_rows(40, seed=2), base, grid=g, backbone=backbone)
    assert confs == [(m, 0, w, "warm") for m in ("s3t", "sisa", "full") for w in (0.0, 0.25)]
    assert all(len(x["points"]) == 2 for x in r["methods"].values()) and r["budget_epochs"] == 2


def test_cli_tune_stage_options(tmp_path, tiny_model):
    from s3t.cli import app

    train, val = _csv(tmp_path / "train.csv", toy_rows(90, seed=1)), _csv(tmp_path / "val.csv", toy_rows(30, seed=2))
    out, conf = tmp_path / "tune.json", tmp_path / "tuned.json"
    data = ["tune", "--out", str(out), "--data", train, "--validation", val, "--model", tiny_model, "-m", "2", "-L", "3",
            "--batch-size", "8", "--grid-lr", "0.03", "--grid-rank", "2", "--grid-epochs", "1"]
    stage = ["--grid-first-stage-epochs", "none,2", "--grid-warmup", "0.2", "--grid-head-init", "fresh"]
    res = CliRunner().invoke(app, data + stage + ["--method", "s3t", "--config-out", str(conf)])
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())["datasets"]["train.csv"]
    pts = d["methods"]["s3t"]["points"]
    assert [(p["first_stage_epochs"], p["warmup"], p["head_init"]) for p in pts] == [(None, 0.2, "fresh"), (2, 0.2, "fresh")]
    assert d["budget_epochs"] == pytest.approx(1 + 1 + 1 / 3)
    c, cfg = d["methods"]["s3t"]["chosen"], S3TConfig.load(conf).train
    assert (cfg.first_stage_epochs or None, cfg.warmup, cfg.head_init) == (c["first_stage_epochs"], 0.2, "fresh")
    wide = {"COLUMNS": "400", "TERM": "dumb"}
    # S3T-only axes with SISA/full in the run, the stage options as plain config options, bad values, --p3
    for args, why in [(data + stage, "--method s3t"), (data + stage + ["--method", "s3t", "--method", "full"], "--method s3t"),
                      (data + ["--warmup", "0.1"], "--grid-warmup"), (data + ["--head-init", "fresh"], "--grid-head-init"),
                      (data + ["--first-stage-epochs", "3"], "--grid-first-stage-epochs"),
                      (data + ["--grid-warmup", "1.0"], "warmup"), (data + ["--grid-head-init", "cold"], "head_init"),
                      (data + ["--grid-first-stage-epochs", "two"], "--grid-first-stage-epochs"),
                      (["tune", "--out", str(out), "--bench", "quick", "--model", tiny_model, "--limit", "160", "--dataset",
                        "trec", "--method", "s3t", "--grid-lr", "0.03", "--grid-rank", "2", "--grid-epochs", "1",
                        "--grid-warmup", "0,0.1", "--p3", str(tmp_path / "p3")], "stage options")]:
        bad = CliRunner().invoke(app, args, env=wide)
        assert bad.exit_code != 0 and why in bad.output, (args, bad.output)
