"""Every config field is a `s3t train` option (generated from the dataclass metadata, with help),
options override --config, and `s3t config show` prints a workspace's effective config."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest
import typer
from typer.testing import CliRunner

from s3t.cli import app
from s3t.config import S3TConfig
from tests.fitted_copy import fitted_template, fitted_ws  # noqa: F401  (fixtures)

runner = CliRunner()

# one non-default, valid value per config field, as typed on the command line and as expected in the config
VALUES = {
    "plan.shards": ("2", 2), "plan.slices": ("2", 2), "plan.budget": ("1", 1), "plan.selection": ("bms", "bms"),
    "plan.priors": ("0.2,0.8", (0.2, 0.8)), "plan.seed": ("7", 7), "plan.placement": ("record", "record"),
    "train.model": ("/some/encoder", "/some/encoder"), "train.task": ("causal-lm", "causal-lm"), "train.first_stage_epochs": ("4", 4),
    "train.warmup": ("0.1", 0.1), "train.head_init": ("fresh", "fresh"), "train.device": ("cpu", "cpu"), "serve.device": ("cuda:1", "cuda:1"),
    "train.epochs": ("3", 3), "train.lr": ("0.01", 0.01),
    "train.weight_decay": ("0.1", 0.1), "train.batch_size": ("4", 4), "train.max_length": ("16", 16),
    "train.threads": ("2", 2), "train.workers": ("3", 3), "train.cache": (None, False),
    "train.executor": ("ray", "ray"), "train.ray_address": ("auto", "auto"), "train.val_limit": ("5", 5),
    "train.lora.rank": ("2", 2), "train.lora.alpha": ("3", 3), "train.lora.dropout": ("0.1", 0.1),
    "train.lora.targets": ("query,key", ("query", "key")),
    "serve.aggregate": ("probs", "probs"), "serve.batch_size": ("7", 7), "serve.standby": (None, False),
    "serve.forget_batch": ("16", 16), "serve.erasure_interval": ("0.5", 0.5),
    "serve.restore": ("naive", "naive"), "serve.retrain": ("interval", "interval"),
    "serve.retrain_delta": ("0.1", 0.1), "serve.retrain_every": ("30", 30.0),
}
FLAGS = {"train.cache": "--no-cache", "serve.standby": "--no-serve-standby"}  # booleans: set to False by these


def leaf_fields(cls=S3TConfig, path=""):
    """(path, field) of every leaf field, walking nested dataclasses: independent of s3t.config.settings()."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            yield from leaf_fields(hints[f.name], name)
        else:
            yield name, f


def train_options():
    return [p for p in typer.main.get_command(app).commands["train"].params if "(config: " in (p.help or "")]


def option_for(path: str):
    found = [p for p in train_options() if f"(config: {path};" in p.help]
    assert len(found) == 1, f"config field {path} has {len(found)} `s3t train` options"
    return found[0]


def test_every_config_field_is_a_train_option_with_help():
    leaves = dict(leaf_fields())
    assert {p.split(".")[0] for p in leaves} == {"plan", "train", "serve"}
    for path, f in leaves.items():
        assert len(f.metadata.get("help", "").strip()) > 5, f"config field {path} has no help"
        option = option_for(path)
        assert f.metadata["help"] in option.help
        assert option.opts[0].startswith("--"), option.opts
    assert len(train_options()) == len(leaves)
    flags = [o for p in train_options() for o in p.opts + p.secondary_opts]
    assert len(flags) == len(set(flags)), "two config fields share a flag"
    assert set(VALUES) == set(leaves), "VALUES must give every config field a value"


def test_short_aliases_and_flag_names():
    assert set(option_for("plan.shards").opts) == {"--shards", "-m"}
    assert set(option_for("plan.slices").opts) == {"--slices", "-L"}
    assert set(option_for("plan.budget").opts) == {"--budget", "-B"}
    assert option_for("train.lora.rank").opts == ["--lora-rank"]
    assert option_for("serve.batch_size").opts == ["--serve-batch-size"]
    assert option_for("train.batch_size").opts == ["--batch-size"]


class Captured(Exception):
    pass


@pytest.fixture
def capture_fit(monkeypatch):
    """`s3t train` up to fit: the S3T config it would train with (fit is not run)."""
    from s3t.estimator import S3T

    seen = []

    def fit(self, *args, **kwargs):
        seen.append(self.config)
        raise Captured

    monkeypatch.setattr(S3T, "fit", fit)
    return seen


def invoke_train(tmp_path, *args, chat: bool = False):
    data = tmp_path / "train.csv"  # the data of the task the options name (causal-lm refuses text/label rows)
    data.write_text("prompt,response\nq,a\nr,b\n" if chat else "text,label\na,pos\nb,neg\n")
    return runner.invoke(app, ["train", "-w", str(tmp_path / "ws"), "--data", str(data), *args])


def test_every_option_reaches_the_config_and_overrides_the_file(tmp_path, capture_fit):
    from_file = tmp_path / "cfg.json"
    S3TConfig(plan={"shards": 5}, train={"epochs": 4, "lora": {"rank": 16}}, serve={"aggregate": "logits"}).save(from_file)
    args = ["--config", str(from_file)]
    for path, (text, _) in VALUES.items():
        args += [FLAGS[path]] if text is None else [option_for(path).opts[0], text]
    result = invoke_train(tmp_path, *args, chat=VALUES["train.task"][1] == "causal-lm")
    assert isinstance(result.exception, Captured), result.output
    got = capture_fit[0].to_dict()
    for path, (_, value) in VALUES.items():
        node = got
        for part in path.split("."):
            node = node[part]
        assert node == (list(value) if isinstance(value, tuple) else value), path


def test_options_not_given_keep_the_file_values(tmp_path, capture_fit):
    from_file = tmp_path / "cfg.json"
    S3TConfig(plan={"shards": 5, "seed": 3}, train={"epochs": 4, "lora": {"rank": 16}}, serve={"aggregate": "probs"}).save(from_file)
    result = invoke_train(tmp_path, "--config", str(from_file), "-m", "2", "--lora-alpha", "4", "--no-serve-standby")
    assert isinstance(result.exception, Captured), result.output
    cfg = capture_fit[0]
    assert (cfg.plan.shards, cfg.plan.seed, cfg.train.epochs) == (2, 3, 4)
    assert (cfg.train.lora.rank, cfg.train.lora.alpha) == (16, 4)
    assert cfg.serve.aggregate == "probs" and cfg.serve.standby is False
    assert cfg.train.lr == S3TConfig().train.lr


@pytest.mark.parametrize("args,name", [
    (["--lora-rank", "0"], "lora.rank"), (["--priors", "0.5,x"], "plan.priors"), (["--executor", "gpu"], "train.executor"),
    (["--serve-retrain", "never"], "serve.retrain"),
])
def test_invalid_option_values_name_the_field(tmp_path, capture_fit, args, name):
    from s3t.errors import ConfigError

    result = invoke_train(tmp_path, *args)
    assert isinstance(result.exception, ConfigError) and name in str(result.exception), result.output
    assert capture_fit == []


def test_config_show_prints_the_workspace_config(fitted_ws):
    ws = str(fitted_ws.ws_.path)
    result = runner.invoke(app, ["config", "show", "-w", ws, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert S3TConfig.from_dict(shown) == fitted_ws.config
    assert shown["train"]["lora"]["rank"] == 4  # tiny_config's, not the default 8
    table = runner.invoke(app, ["config", "show", "-w", ws], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    for text in ("train.lora.rank", "--lora-rank", "serve.retrain_every", "plan.shards", fitted_ws.config.training_digest()):
        assert text in table.stdout
