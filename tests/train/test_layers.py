"""Layer groups are top-first and LoRA lands on exactly the requested layers."""

from __future__ import annotations

import re

import pytest

from s3t.config import LoraSettings
from s3t.errors import ConfigError
from s3t.train.backbone import load_backbone
from s3t.train.layers import adapted_layers, attach_lora, layer_groups

LORA_NAME = re.compile(r"encoder\.layer\.(\d+)\.attention\.self\.(query|value)\.lora_[AB]\.")


def adapter_layers(peft_model) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for name, _ in peft_model.named_parameters():
        if "lora_" in name:
            m = LORA_NAME.search(name)
            assert m, f"adapter outside the attention query/value modules: {name}"
            found.setdefault(int(m.group(1)), set()).add(m.group(2))
    return found


def test_groups_are_top_first():
    assert layer_groups(6, 3) == [[4, 5], [2, 3], [0, 1]]
    assert layer_groups(6, 6) == [[5], [4], [3], [2], [1], [0]]
    assert layer_groups(12, 2) == [list(range(6, 12)), list(range(0, 6))]
    assert adapted_layers(layer_groups(6, 3), 2) == [2, 3, 4, 5]


def test_groups_must_divide_layers():
    with pytest.raises(ConfigError, match="plan.slices"):
        layer_groups(6, 4)


@pytest.mark.parametrize("layers", [[1], [0, 1], [10, 11], [2, 11]])
def test_adapters_on_exact_layers_of_12(tiny_model_12, layers):
    """With 12 layers, substring matching of 'layer.1' would also hit layers 10 and 11."""
    base = load_backbone(tiny_model_12).model
    peft_model = attach_lora(base, LoraSettings(rank=2, alpha=4), layers)
    found = adapter_layers(peft_model)
    assert sorted(found) == sorted(layers)
    assert all(mods == {"query", "value"} for mods in found.values())


def test_structural_copy_shares_frozen_base(tiny_model):
    base = load_backbone(tiny_model).model
    peft_model = attach_lora(base, LoraSettings(rank=2, alpha=4), [5])
    wrapped = peft_model.base_model.model
    assert wrapped.embeddings.word_embeddings.weight is base.embeddings.word_embeddings.weight
    assert not any("lora_" in n for n, _ in base.named_parameters()), "the pristine backbone must stay unadapted"


def test_a_strict_load_refuses_a_checkpoint_that_lacks_adapters_even_after_a_good_load(tiny_model):
    """``load_state`` checks the state covers every adapter of the model (serving reloads spare
    shells: a partial state would leave another checkpoint's weights in the missing layers)."""
    from s3t.train.model import ADAPTER_PREFIX, AdaptedEncoder

    backbone = load_backbone(tiny_model)
    model = AdaptedEncoder(backbone.model, LoraSettings(rank=4), [2, 3], 2)
    state = model.state()
    model.load_state(state)  # complete: fine
    partial = {k: v for k, v in state.items() if not (k.startswith(ADAPTER_PREFIX) and "layer.3." in k)}
    assert len(partial) < len(state)
    with pytest.raises(ValueError, match="lacks adapters"):
        model.load_state(partial)
    model.load_state(partial, strict_layers=False)  # a parent's state may cover fewer layers


def test_a_spare_copy_shares_the_frozen_base_and_owns_its_adapters_and_head(tiny_model):
    """``AdaptedEncoder.spare``: the copy serving builds members from. Frozen tensors by reference
    (as ``attach_lora``), adapters and head its own, and once a state is loaded it answers bit for
    bit as a model built from scratch with that state."""
    import torch

    from s3t.train.model import AdaptedEncoder

    backbone = load_backbone(tiny_model)
    base = backbone.model
    torch.manual_seed(0)
    template = AdaptedEncoder(base, LoraSettings(rank=4), [4, 5], 3)
    rng = torch.random.get_rng_state()
    copy = template.spare(base)
    assert torch.equal(torch.random.get_rng_state(), rng)  # a copy draws nothing
    frozen = {id(p) for p in base.parameters()}
    own = [(n, p) for n, p in copy.named_parameters() if id(p) not in frozen]
    assert own and all("lora_" in n or n.startswith("head.") for n, _ in own)
    assert {n for n, _ in own} == {n for n, p in template.named_parameters() if id(p) not in frozen}
    tmpl_params = {id(p) for p in template.parameters()}
    assert not any(id(p) in tmpl_params for _, p in own), "the copy's adapters are its own tensors"
    assert sum(1 for p in copy.parameters() if id(p) in frozen) == sum(1 for _ in base.parameters())
    # a checkpoint loaded into the copy: the answers of a model built on it from scratch
    torch.manual_seed(1)
    trained = AdaptedEncoder(base, LoraSettings(rank=4), [4, 5], 3)
    with torch.no_grad():
        for p in trained.lora_parameters([4, 5]):
            p.add_(torch.randn_like(p))
    state = trained.state()
    copy.load_state(state)
    fresh = AdaptedEncoder(base, LoraSettings(rank=4), [4, 5], 3)
    fresh.load_state(state)
    ids = torch.randint(5, 90, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    copy.eval(), fresh.eval(), template.eval()
    assert torch.equal(copy(ids, mask), fresh(ids, mask))
    assert not torch.equal(template(ids, mask), copy(ids, mask))  # the template kept its own weights
    assert all(torch.equal(copy.state()[k], v) for k, v in state.items())
