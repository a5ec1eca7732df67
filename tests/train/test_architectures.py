"""Every supported encoder family: exact LoRA placement, layer isolation, the trunk (run layer by
layer, cached) equal to the model's own forward, and bit-exact retrain/verify after a forget."""

from __future__ import annotations

import pytest
import torch

from s3t.config import LoraSettings
from s3t.errors import ConfigError
from s3t.train.architectures import architecture_for, supported_text
from s3t.train.backbone import load_backbone
from s3t.train.batches import pad_ids, tokenize
from s3t.train.layers import attach_lora
from s3t.train.model import embed, finish, run_layers
from s3t.train.trainer import SliceData, StageRunner
from tests.conftest import tiny_config, toy_rows
from tests.train.families import FAMILIES, N_LAYERS, tiny_family_config

# what each family's default targets ("query", "value") must become: written out here, not read from the registry
EXPECTED_MODULES = {
    "bert": {"query", "value"}, "roberta": {"query", "value"}, "xlm-roberta": {"query", "value"},
    "electra": {"query", "value"}, "distilbert": {"q_lin", "v_lin"}, "deberta-v2": {"query_proj", "value_proj"},
    "modernbert": {"Wqkv"},
}
LAYER_PATH = {"distilbert": "transformer.layer.", "modernbert": "layers."}  # others: encoder.layer.
TEXTS = ["a good film", "the plot was really quite dull and the acting was weak", "fun", "the story was moving"]


def layer_of(name: str, family: str) -> int | None:
    path = LAYER_PATH.get(family, "encoder.layer.")
    if "." + path not in "." + name:
        return None
    return int(("." + name).split("." + path)[1].split(".")[0])


def test_required_families_are_registered():
    names = supported_text()
    for required in ("BERT", "RoBERTa", "XLM-R", "DistilBERT", "DeBERTa-v2", "ELECTRA", "ModernBERT"):
        assert required in names
    for family in FAMILIES:
        assert family in architecture_for(tiny_family_config(family)).model_types


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    from transformers import AlbertConfig, AlbertModel

    AlbertModel(AlbertConfig(vocab_size=100, hidden_size=16, embedding_size=8, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=32)).save_pretrained(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_backbone(str(tmp_path))
    message = str(info.value)
    assert "'albert'" in message and "not supported" in message
    for name in ("BERT", "DistilBERT", "DeBERTa-v2", "ELECTRA", "ModernBERT", "xlm-roberta"):
        assert name in message


@pytest.mark.parametrize("family", FAMILIES)
def test_trunk_layer_by_layer_equals_the_model_forward(family_models, family):
    """embed + each layer on its own (+ the final norm) = the family's own forward, at every level,
    on the real positions of a padded batch; the trunk cache holds the same states."""
    from s3t.train.cache import TrunkCache

    bb = load_backbone(family_models[family])
    assert bb.n_layers == N_LAYERS
    tokens = tokenize(bb.tokenizer, TEXTS, 64)
    ids, mask = pad_ids(tokens, bb.tokenizer.pad_token_id)
    assert mask.sum(1).min() < mask.shape[1], "the batch must hold padding"
    real = mask.bool()
    with torch.no_grad():
        reference = bb.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hidden = embed(bb.model, ids)
        for level in range(N_LAYERS):
            assert torch.allclose(hidden[real], reference.hidden_states[level][real], atol=1e-5), f"level {level}"
            hidden = run_layers(bb.model, hidden, mask, level, level + 1)
        top = finish(bb.model, hidden)
    assert torch.allclose(top[real], reference.last_hidden_state[real], atol=1e-5)
    cache = TrunkCache(bb.model, [1, 2, 3], bb.tokenizer.pad_token_id, batch_size=3)
    cache.add("group", tokens)
    for level in (1, 2, 3):
        for row, state in enumerate(cache.get("group", level)):
            assert torch.allclose(state, reference.hidden_states[level][row, : len(tokens[row])], atol=1e-5)


@pytest.mark.parametrize("layers", [[1], [0, 3]])
@pytest.mark.parametrize("family", FAMILIES)
def test_adapters_on_exact_layers_and_modules(family_models, family, layers):
    base = load_backbone(family_models[family]).model
    peft_model = attach_lora(base, LoraSettings(rank=2, alpha=4), layers)
    found: dict[int, set[str]] = {}
    for name, _ in peft_model.named_parameters():
        if "lora_" in name:
            layer = layer_of(name, family)
            assert layer is not None, f"adapter outside the layer stack: {name}"
            found.setdefault(layer, set()).add(name.split(".lora_")[0].rsplit(".", 1)[-1])
    assert sorted(found) == layers
    assert all(mods == EXPECTED_MODULES[family] for mods in found.values()), found
    assert not any("lora_" in n for n, _ in base.named_parameters()), "the pristine backbone must stay unadapted"


def test_unknown_target_module_is_a_config_error_naming_the_modules(family_models):
    base = load_backbone(family_models["distilbert"]).model
    with pytest.raises(ConfigError, match="q_lin") as info:
        attach_lora(base, LoraSettings(rank=2, alpha=4, targets=("query", "Wqkv")), [1])
    assert "'Wqkv'" in str(info.value) and "layer 1" in str(info.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_stage_trains_only_its_group_and_cache_equals_full_forward(family_models, family):
    from s3t.train.stage import Examples, logits

    bb = load_backbone(family_models[family])
    base_before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    runner = StageRunner(bb, tiny_config(family_models[family], shards=1, slices=2, budget=2), 2)
    rows = toy_rows(24, seed=7)
    ids = [r["id"] for r in rows]
    runner.add_records(ids, [r["text"] for r in rows], [int(r["label"] == "pos") for r in rows])
    slices = {s: SliceData(100 + s, tuple(ids[s::2])) for s in range(2)}
    got = {}
    runner.train_prefixes(0, [(0,), (0, 1)], slices, lambda spec, res, lin: got.__setitem__(spec.prefix, res))
    assert runner.groups == [[2, 3], [0, 1]]
    parent, child = got[(0,)].state, got[(0, 1)].state
    assert set(parent) < set(child)
    for name, tensor in child.items():
        layer = layer_of(name, family)
        if name.startswith("head."):
            assert not torch.equal(parent[name], tensor), "the head is trained at every stage"
        elif name in parent:
            assert layer in (2, 3) and torch.equal(parent[name], tensor), f"stage 2 changed an earlier adapter: {name}"
        else:
            assert layer in (0, 1), f"new tensor outside group 2: {name}"
    trained = [v for n, v in child.items() if "lora_B" in n and layer_of(n, family) in (0, 1)]
    assert trained and all(v.abs().sum() > 0 for v in trained)
    for k, v in bb.model.state_dict().items():
        assert torch.equal(base_before[k], v), f"pretrained weight {k} changed"
    model, every = got[(0, 1)].model, slices[0].record_ids + slices[1].record_ids
    cached = logits(model, 0, runner.examples_for([slices[0], slices[1]], 0))
    full = logits(model, 0, Examples([0] * len(every), tokens=[runner.tokens[i] for i in every], pad_id=runner.pad_id))
    assert torch.allclose(cached, full, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_forget_retrain_verify_is_bit_exact(tmp_path, family_models, family):
    from s3t import S3T

    cfg = tiny_config(family_models[family], shards=2, slices=2, budget=2, epochs=1)
    est = S3T(cfg, workspace=tmp_path / "ws").fit(toy_rows(40, seed=4), validation=toy_rows(10, seed=5))
    rid = next(r.id for r in est.ws_.ledger.records("train") if r.shard == 0 and r.slice == 1)
    receipt = est.forget(record_ids=[rid])
    assert receipt.after["0"] < 2
    report = est.retrain()
    assert report.served_after == {"0": 2, "1": 2}
    cert = est.verify(receipt.request_id)
    assert cert.ok, cert.mismatches
    assert cert.compared == 4  # every prefix of shard 0's trie: (0,), (1,), (0, 1), (1, 0), bit for bit
    assert est.audit().ok
    assert est.predict_proba(["a great film"]).shape == (1, 2)
