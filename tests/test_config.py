"""Tests of s3t.config: validation (errors name the field), JSON round trip, digest."""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import json

import pytest

import s3t.config as config_module
from s3t.config import LoraSettings, PlanConfig, S3TConfig, ServeConfig, TrainConfig
from s3t.errors import ConfigError


def custom_config() -> S3TConfig:
    """A config where every section differs from the defaults (incl. tuples)."""
    return S3TConfig(
        plan=PlanConfig(shards=4, slices=2, budget=5, selection="bms", priors=[0.25, 0.75], seed=7),
        train=TrainConfig(
            model="/some/dir", epochs=3, lr=2e-4, weight_decay=0.01, batch_size=16, max_length=64, threads=1,
            cache=False, lora=LoraSettings(rank=16, alpha=32, dropout=0.1, targets=["query", "key", "value"]),
        ),
        serve=ServeConfig(aggregate="probs", batch_size=8),
    )


# -- round trip ------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [S3TConfig(), custom_config()], ids=["defaults", "custom"])
def test_dict_and_json_round_trip(cfg):
    assert S3TConfig.from_dict(cfg.to_dict()) == cfg
    assert S3TConfig.from_dict(json.loads(cfg.to_json())) == cfg
    # to_dict is plain JSON (lists, not tuples), so it survives json.dumps unchanged
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()


def test_round_trip_keeps_values_and_types():
    back = S3TConfig.from_dict(json.loads(custom_config().to_json()))
    assert back.plan.priors == (0.25, 0.75) and isinstance(back.plan.priors, tuple)
    assert back.train.lora.targets == ("query", "key", "value") and isinstance(back.train.lora.targets, tuple)
    assert isinstance(back.train.lora, LoraSettings)
    assert back.train.lr == 2e-4 and back.train.cache is False
    assert back.serve.aggregate == "probs" and back.plan.selection == "bms"


def test_save_and_load_file(tmp_path):
    cfg = custom_config()
    path = tmp_path / "s3t.json"
    cfg.save(path)
    assert S3TConfig.load(path) == cfg
    on_disk = json.loads(path.read_text())
    assert on_disk["plan"]["shards"] == 4 and on_disk["train"]["lora"]["rank"] == 16


def test_load_fills_missing_sections_and_fields_with_defaults(tmp_path):
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"plan": {"shards": 5}}))
    cfg = S3TConfig.load(path)
    assert cfg.plan.shards == 5
    assert cfg.plan.slices == PlanConfig().slices
    assert cfg.train == TrainConfig() and cfg.serve == ServeConfig()


def test_sections_given_as_dicts_are_built():
    cfg = S3TConfig(plan={"shards": 2}, train={"lora": {"rank": 4}}, serve={"aggregate": "probs"})
    assert cfg.plan == PlanConfig(shards=2)
    assert cfg.train.lora == LoraSettings(rank=4)
    assert cfg.serve.aggregate == "probs"


def test_config_is_frozen():
    cfg = S3TConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.plan.shards = 9  # type: ignore[misc]


# -- validation ------------------------------------------------------------------------------

INVALID = [
    (PlanConfig, {"shards": 0}, "plan.shards"),
    (PlanConfig, {"shards": 2.5}, "plan.shards"),
    (PlanConfig, {"slices": 0}, "plan.slices"),
    (PlanConfig, {"budget": -1}, "plan.budget"),
    (PlanConfig, {"selection": "random"}, "plan.selection"),
    (PlanConfig, {"slices": 3, "priors": [0.5, 0.5]}, "plan.priors"),
    (LoraSettings, {"rank": 0}, "lora.rank"),
    (LoraSettings, {"alpha": 0}, "lora.alpha"),
    (LoraSettings, {"dropout": 1.0}, "lora.dropout"),
    (LoraSettings, {"dropout": -0.1}, "lora.dropout"),
    (LoraSettings, {"targets": []}, "lora.targets"),
    (TrainConfig, {"epochs": 0}, "train.epochs"),
    (TrainConfig, {"lr": 0}, "train.lr"),
    (TrainConfig, {"lr": -1e-3}, "train.lr"),
    (TrainConfig, {"batch_size": 0}, "train.batch_size"),
    (TrainConfig, {"max_length": 4}, "train.max_length"),
    (TrainConfig, {"threads": 0}, "train.threads"),
    (ServeConfig, {"aggregate": "max"}, "serve.aggregate"),
    (ServeConfig, {"batch_size": 0}, "serve.batch_size"),
]


@pytest.mark.parametrize("cls,kwargs,name", INVALID, ids=[f"{n}={list(k.values())[-1]!r}" for _, k, n in INVALID])
def test_invalid_value_names_the_field(cls, kwargs, name):
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    message = str(info.value)
    assert name in message
    assert "got" in message  # the given value is shown


@pytest.mark.parametrize("cls,kwargs,name", INVALID[:: 3], ids=[n for _, _, n in INVALID[:: 3]])
def test_invalid_value_from_dict_names_the_field(cls, kwargs, name):
    section = {PlanConfig: "plan", TrainConfig: "train", ServeConfig: "serve", LoraSettings: "train"}[cls]
    data = {"train": {"lora": kwargs}} if cls is LoraSettings else {section: kwargs}
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
        S3TConfig.from_dict(data)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        PlanConfig(shards=0)


def test_priors_are_checked_against_the_slice_count():
    assert PlanConfig(slices=2, priors=[0.1, 0.9]).priors == (0.1, 0.9)
    with pytest.raises(ConfigError, match="plan.priors"):
        PlanConfig(slices=2, priors=[0.1, 0.2, 0.7])


@pytest.mark.parametrize("cls,kwargs,name", [
    (TrainConfig, {"epochs": "2"}, "train.epochs"),
    (LoraSettings, {"rank": "8"}, "lora.rank"),
    (ServeConfig, {"batch_size": None}, "serve.batch_size"),
    (TrainConfig, {"epochs": 1.5}, "train.epochs"),
    (LoraSettings, {"rank": 2.5}, "lora.rank"),
])
def test_wrong_type_is_a_config_error_naming_the_field(cls, kwargs, name):
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
        cls(**kwargs)


def test_unknown_section_is_named():
    with pytest.raises(ConfigError) as info:
        S3TConfig.from_dict({"plan": {}, "trian": {"lr": 0.1}})
    assert "trian" in str(info.value)


@pytest.mark.parametrize("data,names", [
    ({"plan": {"shard": 2}}, ["shard", "plan"]),
    ({"train": {"learning_rate": 0.1}}, ["learning_rate", "train"]),
    ({"serve": {"aggregation": "probs"}}, ["aggregation", "serve"]),
    ({"train": {"lora": {"rnk": 4}}}, ["rnk", "lora"]),
])
def test_unknown_field_is_named(data, names):
    with pytest.raises(ConfigError) as info:
        S3TConfig.from_dict(data)
    for n in names:
        assert n in str(info.value)


def test_unknown_field_in_file_is_a_config_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"plan": {"shards": 2, "colour": "red"}}))
    with pytest.raises(ConfigError, match="colour"):
        S3TConfig.load(path)


def test_section_that_is_not_a_mapping_is_named():
    with pytest.raises(ConfigError, match="plan"):
        S3TConfig.from_dict({"plan": 3})


# -- digest ----------------------------------------------------------------------------------


def test_digest_is_stable_and_is_sha256_of_the_canonical_json():
    a, b = custom_config(), custom_config()
    assert a.digest() == b.digest()
    assert S3TConfig.from_dict(json.loads(a.to_json())).digest() == a.digest()
    expected = hashlib.sha256(json.dumps(json.loads(a.to_json()), sort_keys=True).encode()).hexdigest()
    assert a.digest() == expected


@pytest.mark.parametrize("section,change", [
    ("plan", {"shards": 5}), ("plan", {"seed": 1}), ("plan", {"selection": "bms"}),
    ("train", {"lr": 1.1e-3}), ("train", {"threads": 2}), ("train", {"cache": False}),
    ("train", {"lora": LoraSettings(rank=9)}), ("train", {"lora": LoraSettings(targets=("query",))}),
    ("serve", {"aggregate": "probs"}),
])
def test_digest_changes_when_a_field_changes(section, change):
    base = S3TConfig()
    changed = dataclasses.replace(base, **{section: dataclasses.replace(getattr(base, section), **change)})
    assert changed != base
    assert changed.digest() != base.digest()


def test_module_doctest_runs():
    result = doctest.testmod(config_module)
    assert result.attempted > 0 and result.failed == 0
