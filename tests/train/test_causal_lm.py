"""The causal-LM task on a tiny randomly initialised Llama: the decoder trunk run layer by layer,
loss on response tokens only, layer isolation, the cache, and bit-exact forget/retrain/verify."""

from __future__ import annotations

import inspect

import pytest
import torch

from s3t.data.chat import encode_chat
from s3t.errors import ConfigError
from s3t.train.backbone import load_backbone
from s3t.train.batches import pad_ids
from s3t.train.model import embed, finish, run_layers
from s3t.train.objectives import chat_tokens, objective_for
from s3t.train.trainer import SliceData, StageRunner
from tests.conftest import chat_rows, tiny_config


def causal_config(model, **kw):
    cfg = tiny_config(model, task="causal-lm", **kw)
    return cfg


def runner_with_chat(model, slices=2, rows=None):
    bb = load_backbone(model, "causal-lm")
    runner = StageRunner(bb, causal_config(model, shards=1, slices=slices, budget=slices), 1)
    rows = rows or chat_rows(12)
    ids = [r["id"] for r in rows]
    runner.add_records(ids, [encode_chat(r["prompt"], r["response"]) for r in rows], [0] * len(rows))
    parts = {s: SliceData(100 + s, tuple(ids[s::slices])) for s in range(slices)}
    return bb, runner, parts


def test_decoder_trunk_layer_by_layer_equals_the_model_forward(tiny_llama):
    bb = load_backbone(tiny_llama, "causal-lm")
    toks = [chat_tokens(bb.tokenizer, p, r, 64)[0] for p, r in [("where does ann live ?", "in rome ."),
                                                                 ("hi", "hello there , how are you today ?")]]
    ids, mask = pad_ids(toks, 0)  # right padding: real positions never see it
    with torch.no_grad():
        want = bb.model(input_ids=ids, attention_mask=mask).logits
        got = bb.model.lm_head(finish(bb.model, run_layers(bb.model, embed(bb.model, ids), mask, 0, bb.n_layers)))
        alone = bb.model(input_ids=torch.tensor([toks[0]])).logits[0]
    for row, t in enumerate(toks):
        assert torch.allclose(got[row, : len(t)], want[row, : len(t)], atol=1e-5)
    assert torch.allclose(got[0, : len(toks[0])], alone, atol=1e-5), "padding on the right changed a real position"


def test_chat_tokens_put_the_response_after_the_generation_prompt(tiny_llama):
    tok = load_backbone(tiny_llama, "causal-lm").tokenizer
    ids, start = chat_tokens(tok, "where does ann live ?", "ann lives in rome .", 64)
    assert tok.decode(ids[:start]).endswith("assistant :")
    assert tok.decode(ids[start:]) == "ann lives in rome. [SEP]"
    response = chat_tokens(tok, "x", "ann lives in rome .", 64)
    response = response[0][response[1]:]
    ids, start = chat_tokens(tok, "word " * 100, "ann lives in rome .", 16)  # the prompt keeps its last 8 tokens
    assert start == 8 and ids[start:] == response and tok.decode(ids[:start]).endswith("assistant :")
    ids, start = chat_tokens(tok, "x", "word " * 100, 16)  # a long answer is cut to fill the limit
    assert len(ids) == 16 and 0 < start < 16


def test_loss_is_on_response_tokens_only(tiny_llama):
    """Changing the prompt's tokens moves the loss only through context; changing a response token
    moves it directly: a target is never a prompt token."""
    from s3t.train.objectives import response_positions
    from s3t.train.stage import Examples

    bb, runner, _ = runner_with_chat(tiny_llama)
    rid = "p0-colour"
    data = Examples([runner.labels[rid]], tokens=[runner.tokens[rid]], pad_id=runner.pad_id)
    rows, cols, targets = response_positions(data, [0])
    start, tokens = runner.labels[rid], runner.tokens[rid]
    assert cols.tolist() == list(range(start - 1, len(tokens) - 1))
    assert targets.tolist() == tokens[start:]


def test_stage_trains_only_its_group_keeps_the_lm_head_frozen(tiny_llama):
    bb, runner, parts = runner_with_chat(tiny_llama)
    base_before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    got = {}
    runner.train_prefixes(0, [(0,), (0, 1)], parts, lambda spec, res, lin: got.__setitem__(spec.prefix, res))
    assert runner.groups == [[3, 4, 5], [0, 1, 2]]
    parent, child = got[(0,)].state, got[(0, 1)].state
    assert not any(k.startswith("head.") for k in child), "a decoder's checkpoint is its adapters only"
    assert set(parent) < set(child)

    def layer(name):
        return int(name.split("layers.")[1].split(".")[0])

    for name, tensor in child.items():
        if name in parent:
            assert layer(name) in (3, 4, 5) and torch.equal(parent[name], tensor), name
        else:
            assert layer(name) in (0, 1, 2), name
    assert all(v.abs().sum() > 0 for n, v in child.items() if "lora_B" in n and layer(n) in (0, 1, 2))
    for k, v in bb.model.state_dict().items():
        assert torch.equal(base_before[k], v), f"pretrained weight {k} changed"
    assert got[(0, 1)].val_accuracy is None  # no validation set given


def test_training_lowers_the_response_loss_and_cache_equals_full_forward(tiny_llama):
    from s3t.train.stage import Examples

    _, runner, parts = runner_with_chat(tiny_llama, slices=2)
    got = {}
    runner.train_prefixes(0, [(0,)], parts, lambda spec, res, lin: got.__setitem__(spec.prefix, res))
    model, objective = got[(0,)].model, objective_for("causal-lm")
    ids = list(parts[0].record_ids)
    cached = runner.examples_for([parts[0]], 3)
    full = Examples([runner.labels[i] for i in ids], tokens=[runner.tokens[i] for i in ids], pad_id=runner.pad_id)
    batch = list(range(len(ids)))
    with torch.no_grad():
        a, b = objective.loss(model, 3, cached, batch), objective.loss(model, 3, full, batch)
        fresh = runner_with_chat(tiny_llama, slices=2)[1]
        from s3t.train.stage import build_model

        untrained = build_model(fresh.backbone.model, fresh.config.train, fresh.spec(0, (0,)), 1)
        before = objective.loss(untrained, 3, cached, batch)
    assert torch.allclose(a, b, atol=1e-5)
    assert float(a) < float(before)


def test_tasks_refuse_the_other_kind_of_model(tiny_llama, tiny_model):
    with pytest.raises(ConfigError, match="causal-lm"):
        load_backbone(tiny_llama, "classification")
    with pytest.raises(ConfigError, match="classification"):
        load_backbone(tiny_model, "causal-lm")
    with pytest.raises(ConfigError, match="train.task"):
        tiny_config(tiny_model, task="translation")


def test_fit_forget_subject_retrain_verify_is_bit_exact(tmp_path, tiny_llama):
    from s3t import S3T

    rows = chat_rows(12)
    val = [{"id": f"v-{r['id']}", "prompt": r["prompt"], "response": r["response"]} for r in rows[:6]]
    est = S3T(causal_config(tiny_llama, shards=2, slices=2, budget=2, epochs=1), workspace=tmp_path / "ws")
    est.fit(rows, validation=val)
    assert est.status()["live_shards"] == 2
    scored = [c for c in est.ws_.ledger.checkpoints() if c.val_accuracy is not None]
    assert scored, "checkpoints are scored on validation (teacher-forced response tokens)"
    receipt = est.forget(subject="person3")
    assert receipt.body["record_ids"] == ["p3-city", "p3-colour"]
    shard = next(r.shard for r in est.ws_.ledger.records("train") if r.id == "p3-city")
    assert receipt.after[str(shard)] < 2
    est.retrain()
    assert est.status()["served"] == {"0": 2, "1": 2}
    cert = est.verify(receipt.request_id)
    assert cert.ok and cert.compared > 0, cert.mismatches
    assert est.audit().ok
    with pytest.raises(ConfigError, match="generate"):
        est.predict(["where does person1 live ?"])


def test_causal_mask_arguments_follow_each_transformers_5_signature():
    """create_causal_mask changed its parameters within transformers 5; a wrong keyword is a
    TypeError (seen with 5.17 on a GPU machine), so the call is built from the signature."""
    from s3t.train.architectures import causal_mask_arguments

    def v5_0(config, input_embeds, attention_mask, cache_position, past_key_values, position_ids=None,
             or_mask_function=None, and_mask_function=None): ...

    def v5_17(config, inputs_embeds, attention_mask, past_key_values, position_ids=None, or_mask_function=None,
              and_mask_function=None, block_sequence_ids=None, layer_idx=None, allow_is_causal_skip=True): ...

    def v5_25(config, inputs_embeds, attention_mask, cache, position_ids=None, or_mask_function=None,
              and_mask_function=None, block_sequence_ids=None, layer_idx=None, allow_is_causal_skip=True, *,
              past_key_values=None): ...

    hidden, mask2d, positions = torch.zeros(1, 3, 4), torch.ones(1, 3, dtype=torch.long), torch.arange(3)[None]
    for create, embeds, cache in ((v5_0, "input_embeds", "past_key_values"), (v5_17, "inputs_embeds", "past_key_values"),
                                  (v5_25, "inputs_embeds", "cache")):
        args = causal_mask_arguments(create, "cfg", hidden, mask2d, positions)
        inspect.signature(create).bind(**args)  # every required parameter given, no unknown one
        assert args[embeds] is hidden and args[cache] is None and args["position_ids"] is positions
        assert ("past_key_values" in args) == (cache == "past_key_values")
    assert torch.equal(causal_mask_arguments(v5_0, "cfg", hidden, mask2d, positions)["cache_position"], torch.arange(3))
