"""The config digest stored in checkpoints covers exactly the settings that can change a bit."""

from __future__ import annotations

import pytest
import torch

from s3t.config import S3TConfig, settings, with_settings

# settings that cannot change a bit of a checkpoint: where and in how many processes jobs run, and serving
NO_BITS = {"train.executor", "train.workers", "train.ray_address", "train.device"}  # the device: recorded apart
OTHER_VALUES = {  # a valid non-default value for the fields that are neither numbers nor booleans
    "plan.selection": "bms", "plan.placement": "record", "plan.priors": (1.0, 2.0, 3.0), "train.model": "/x",
    "train.executor": "ray", "train.ray_address": "auto", "train.lora.targets": ("query",),
    "serve.aggregate": "probs", "serve.restore": "naive", "serve.retrain": "accuracy", "train.task": "causal-lm",
    "train.device": "cpu", "serve.device": "cpu", "train.head_init": "fresh", "train.warmup": 0.1,
    "serve.erasure_interval": 0.5,
}


def changed(st):
    if st.path in OTHER_VALUES:
        return OTHER_VALUES[st.path]
    if st.kind is bool:
        return not st.default
    return st.default + (1 if st.kind is int else 0.5)


@pytest.mark.parametrize("st", settings(), ids=lambda st: st.path)
def test_training_digest_changes_exactly_for_settings_that_can_change_bits(st):
    base = S3TConfig()
    other = with_settings(base, {st.path: changed(st)})
    assert other != base and other.digest() != base.digest()
    can_change_bits = not (st.path in NO_BITS or st.path.startswith("serve."))
    assert (other.training_digest() != base.training_digest()) == can_change_bits
    assert present(other.training_dict(), st.path) == can_change_bits


def present(data: dict, path: str) -> bool:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def test_training_dict_is_the_config_without_serve_and_executor_fields():
    data = S3TConfig().training_dict()
    assert set(data) == {"plan", "train"}
    assert not NO_BITS & {f"train.{k}" for k in data["train"]}
    assert data["train"]["lora"] == S3TConfig().to_dict()["train"]["lora"]


def test_checkpoint_files_are_byte_identical_for_the_same_state_and_metadata(tmp_path):
    """safetensors writes its header maps in hash order (a new order on every call): the files
    s3t writes must not depend on it."""
    from safetensors.torch import save

    from s3t.store.checkpoints import load_checkpoint, save_checkpoint

    state = {"adapter.b": torch.ones(3, 2), "adapter.a": torch.zeros(5), "head.weight": torch.arange(4.0).reshape(2, 2),
             "empty": torch.zeros(0), "half": torch.ones(3, dtype=torch.float16)}
    meta = {"shard": 0, "prefix": "1,2", "stage": 2, "seed": 5, "threads": 1, "training_config_sha256": "ab" * 32}
    raw = {save(state, metadata={k: str(v) for k, v in meta.items()}) for _ in range(10)}
    assert len(raw) > 1, "safetensors alone is expected to vary its header order"
    digests = {save_checkpoint(tmp_path / f"c{i}.safetensors", state, meta) for i in range(10)}
    assert len(digests) == 1
    loaded, loaded_meta = load_checkpoint(tmp_path / "c0.safetensors", sha256=digests.pop())
    assert loaded_meta == {k: str(v) for k, v in meta.items()}
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], v) for k, v in state.items())
