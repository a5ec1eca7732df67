"""Export of a chat-model ensemble: standard peft adapters on the base causal LM that reproduce
each served member's next-token distribution."""

from __future__ import annotations

import json

import torch

from s3t import S3T
from tests.conftest import chat_rows, tiny_config


def test_exported_adapters_reproduce_each_member(tmp_path, tiny_llama):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from s3t.train.export import export_served
    from s3t.train.model import embed
    from s3t.train.objectives import prompt_ids

    est = S3T(tiny_config(tiny_llama, shards=2, slices=2, budget=1, epochs=1, task="causal-lm"),
              workspace=tmp_path / "ws").fit(chat_rows(12))
    est.forget(subject="person2")
    card = export_served(est, tmp_path / "out")
    assert card["task"] == "causal-lm" and "classes" not in card and "combine" in card
    saved = json.loads((tmp_path / "out" / "ensemble.json").read_text())
    assert saved["served"] == json.loads(json.dumps(card["served"]))
    text = (tmp_path / "out" / "README.md").read_text()
    assert "AutoModelForCausalLM" in text and "person2" not in text
    members = dict(est.ensemble_.members)
    ids = torch.tensor([prompt_ids(est.ensemble_.backbone.tokenizer, "where does person1 live ?")])
    for m in card["served"]:
        directory = tmp_path / "out" / m["directory"]
        assert not (directory / "head.safetensors").exists()
        member = members[m["shard"]].model
        loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), str(directory))
        loaded = loaded.to(member.device).eval()  # both on the serving device (a GPU where there is one)
        on = ids.to(member.device)
        with torch.no_grad():
            want = member.lm_logits(member.states_from(0, embed(member.encoder, on), torch.ones_like(on)))
            got = loaded(input_ids=on).logits
        assert torch.allclose(got, want, atol=1e-5), m["shard"]
