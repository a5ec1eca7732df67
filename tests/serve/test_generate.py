"""Ensemble generation on a tiny random Llama: the KV cache equals full recomputation, members are
combined as documented, sampling is seeded, answers come from one manifest and follow forgets."""

from __future__ import annotations

import pytest
import torch

from s3t import S3T
from s3t.errors import ConfigError, DataError
from s3t.serve.generate import EnsembleLM
from s3t.train.model import embed
from s3t.train.objectives import prompt_ids
from tests.conftest import chat_rows, tiny_config

PROMPT = "where does person1 live ?"


@pytest.fixture
def chat_model(tmp_path, tiny_llama):
    cfg = tiny_config(tiny_llama, shards=2, slices=2, budget=1, epochs=2, task="causal-lm")
    return S3T(cfg, workspace=tmp_path / "chat-ws").fit(chat_rows(12))


def full_logits(member, ids):
    """Next-token logits at the last position, recomputed from scratch (no cache)."""
    x = torch.tensor([ids], device=member.model.device)  # the serving device (a GPU where there is one)
    with torch.no_grad():
        states = member.model.states_from(0, embed(member.model.encoder, x), torch.ones_like(x))
        return member.model.lm_logits(states[0, -1])


def test_cached_decoding_equals_recomputing_every_step(chat_model):
    lm = chat_model.ensemble_lm()
    out = lm.generate_one(PROMPT, max_new_tokens=8)
    members = dict(chat_model.ensemble_.members)
    ids = prompt_ids(lm.tokenizer, PROMPT)
    for token in out.tokens:  # replay greedily without a cache: the same tokens, step by step
        logits = {s: full_logits(m, ids) for s, m in members.items()}
        assert int(lm.mix(logits, "probs").argmax()) == token
        ids = ids + [token]
    assert out.finish_reason in ("stop", "length") and len(out.tokens) <= 8
    assert out.served == {"0": 2, "1": 2} and out.manifest_version == chat_model.ensemble_.manifest_version


def test_combine_rules_match_their_definitions():
    lm = EnsembleLM.__new__(EnsembleLM)
    logits = {0: torch.tensor([2.0, 0.0, -1.0]), 1: torch.tensor([-1.0, 3.0, 0.0])}
    p = [torch.softmax(logits[s], -1) for s in (0, 1)]
    assert torch.allclose(lm.mix(logits, "probs").exp(), (p[0] + p[1]) / 2)
    geo = (p[0].log() + p[1].log()) / 2
    assert torch.allclose(lm.mix(logits, "logprobs"), torch.log_softmax(geo, -1))
    assert torch.allclose(lm.mix(logits, "probs", temperature=2.0).exp(),
                          (torch.softmax(logits[0] / 2, -1) + torch.softmax(logits[1] / 2, -1)) / 2)


def test_score_is_the_sum_of_response_token_logprobs(chat_model):
    (score,) = chat_model.score_responses([(PROMPT, "person1 lives in rome .")])
    members = dict(chat_model.ensemble_.members)
    lm = chat_model.ensemble_lm()
    from s3t.train.objectives import chat_tokens

    ids, start = chat_tokens(lm.tokenizer, PROMPT, "person1 lives in rome .", 256)
    assert score.tokens == len(ids) - start
    for shard, member in members.items():
        want = sum(float(torch.log_softmax(full_logits(member, ids[:j]), -1)[ids[j]]) for j in range(start, len(ids)))
        assert score.shards[shard] == pytest.approx(want, abs=1e-4)
    assert min(score.shards.values()) <= score.ensemble <= max(score.shards.values())


def test_sampling_is_seeded(chat_model):
    a = chat_model.generate([PROMPT], max_new_tokens=12, temperature=1.5, seed=3, details=True)[0]
    b = chat_model.generate([PROMPT], max_new_tokens=12, temperature=1.5, seed=3, details=True)[0]
    others = {chat_model.generate([PROMPT], max_new_tokens=12, temperature=1.5, seed=s, details=True)[0].tokens
              for s in range(4, 8)}
    assert a.tokens == b.tokens
    assert others - {a.tokens}, "other seeds never gave another answer"
    top1 = chat_model.generate([PROMPT], max_new_tokens=6, temperature=1.5, top_k=1, seed=9, details=True)[0]
    assert top1.tokens == chat_model.generate([PROMPT], max_new_tokens=6, details=True)[0].tokens  # top-1 = greedy


def test_answers_follow_a_forget_and_name_their_manifest(chat_model):
    before = chat_model.generate([PROMPT], max_new_tokens=4, details=True)[0]
    receipt = chat_model.forget(subject="person1")
    after = chat_model.generate([PROMPT], max_new_tokens=4, details=True)[0]
    assert after.manifest_version > before.manifest_version
    assert after.served == {k: v for k, v in receipt.after.items() if v > 0}
    assert sum(after.served.values()) < sum(before.served.values())


def test_bad_generation_requests_are_clear_errors(chat_model, fitted):
    with pytest.raises(DataError, match="list of prompts"):
        chat_model.generate(PROMPT)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        chat_model.generate([PROMPT], max_new_tokens=0)
    with pytest.raises(ConfigError, match="combine"):
        chat_model.generate([PROMPT], combine="median")
    with pytest.raises(ConfigError, match="temperature"):
        chat_model.generate([PROMPT], temperature=-1)
    with pytest.raises(ConfigError, match="predict"):
        fitted.generate(["a film"])


def test_layers_get_their_cache_by_the_keyword_their_transformers_version_reads():
    """A layer whose forward reads ``past_key_values`` (transformers 5.17) silently ignores a
    ``cache=`` keyword and decodes each step without history (seen on 5.17); one that reads
    ``cache`` (5.25) gets it so. A layer taking neither is a clear error."""
    from s3t.errors import ConfigError
    from s3t.serve.generate import KVCache, cache_keyword, run_layer

    class Old(torch.nn.Module):
        def forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_values=None,
                    use_cache=False, position_embeddings=None, **kwargs):
            past_key_values.update(hidden_states, hidden_states, 0)
            return (hidden_states + 1,)

    class New(torch.nn.Module):
        def forward(self, hidden_states, attention_mask=None, position_ids=None, cache=None, use_cache=False,
                    position_embeddings=None, **kwargs):
            cache.update(hidden_states, hidden_states, 0)
            return hidden_states + 2

    class NoCache(torch.nn.Module):
        def forward(self, hidden_states, **kwargs):
            return hidden_states

    assert (cache_keyword(Old), cache_keyword(New)) == ("past_key_values", "cache")
    x = torch.zeros(1, 1, 2)
    for layer, plus in ((Old(), 1), (New(), 2)):
        kv = KVCache()
        assert torch.equal(run_layer(layer, x, None, None, kv, None), x + plus)
        run_layer(layer, x, None, None, kv, None)
        assert kv.update(x, x, 0)[0].shape == (1, 3, 2)  # both calls reached the cache: two steps held
    with pytest.raises(ConfigError, match="no KV cache"):
        cache_keyword(NoCache)
