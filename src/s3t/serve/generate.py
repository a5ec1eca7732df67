"""Ensemble generation (task ``causal-lm``): the live shards decode one answer together.

At each step every live shard's member gives a next-token distribution; the ensemble's is
their mean — of probabilities (``combine='probs'``, default: a mixture, the generative
counterpart of averaging a classifier's probabilities) or of log-probabilities
(``combine='logprobs'``: a renormalised geometric mean, sharper where members agree). The
next token is its arg-max (``temperature=0``, greedy) or a draw from it after temperature and
optional top-k, from a generator seeded per prompt (same seed, same text).

Shared trunk, as in :class:`~s3t.serve.ensemble.Ensemble`: below its lowest adapted layer a
member is the pretrained model, so each step runs the pristine layers once for all members
(keeping the states at each member's level) and then only each member's adapted layers. Keys
and values are cached per step: one cache for the pristine trunk, one per member for its own
layers, so a step costs one position, not the whole prefix. The members are a snapshot of the
served table taken when a prompt starts: an answer comes entirely from one manifest, never a
mix, and :attr:`Generation.manifest_version` says which.

Prompts are decoded one at a time (no padding, so a prompt's answer never depends on the
other prompts of a request).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import torch

from ..errors import ConfigError, NoLiveModelError
from ..train.model import finish
from ..train.objectives import chat_tokens, end_of_turn, prompt_ids

COMBINES = ("probs", "logprobs")


class KVCache:
    """Keys and values per layer index, grown by one step at a time (what a Llama attention
    layer asks of its ``cache``: ``update(key, value, layer_idx)`` returns the whole history)."""

    def __init__(self):
        self._kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        if layer_idx in self._kv:
            old_k, old_v = self._kv[layer_idx]
            key, value = torch.cat([old_k, key], dim=-2), torch.cat([old_v, value], dim=-2)
        self._kv[layer_idx] = (key, value)
        return key, value


@lru_cache(maxsize=None)
def cache_keyword(layer_type: type) -> str:
    """The keyword by which a decoder layer takes its KV cache: ``cache`` (transformers 5.25) or
    ``past_key_values`` (earlier 5.x). The other keyword would land in ``**kwargs`` unread, and
    each step would then attend to its own position only."""
    params = inspect.signature(layer_type.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    raise ConfigError(f"{layer_type.__name__}.forward takes no KV cache (neither 'cache' nor 'past_key_values'): "
                      "this transformers version is not supported for generation")


def run_layer(layer, hidden: torch.Tensor, mask, positions: torch.Tensor, cache: KVCache | None, rotary
              ) -> torch.Tensor:
    """One decoder layer on new positions, reading and growing ``cache`` (None: no cache)."""
    out = layer(hidden, attention_mask=mask, position_ids=positions, use_cache=cache is not None,
                position_embeddings=rotary, **{cache_keyword(type(layer)): cache})
    return out[0] if isinstance(out, tuple) else out


@dataclass(frozen=True)
class Generation:
    """One answer: its text and tokens, why it stopped, and the manifest whose members wrote it."""

    prompt: str
    text: str
    tokens: tuple[int, ...]
    finish_reason: str  # "stop" (end-of-turn token) or "length" (max_new_tokens)
    manifest_version: int
    served: dict[str, int] = field(default_factory=dict)  # shard -> stage of the member that took part


@dataclass(frozen=True)
class ResponseScore:
    """Teacher-forced log-probability of a response: per shard and under the ensemble."""

    tokens: int
    shards: dict[int, float]  # summed log-prob of the response tokens under each member
    ensemble: float  # summed log-prob under the combined distribution


def _check_generation_args(max_new_tokens: int, combine: str, temperature: float, top_k: int) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= 4096:
        raise ConfigError(f"max_new_tokens must be an integer in 1..4096; got {max_new_tokens!r}")
    if combine not in COMBINES:
        raise ConfigError(f"combine must be one of {list(COMBINES)}; got {combine!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 100:
        raise ConfigError(f"temperature must be a number in [0, 100] (0 = greedy); got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ConfigError(f"top_k must be an integer >= 0 (0 = no limit); got {top_k!r}")


class EnsembleLM:
    """Generation and response scoring over an :class:`~s3t.serve.ensemble.Ensemble` of decoders."""

    def __init__(self, ensemble):
        self.ensemble = ensemble
        self.lm = ensemble.backbone.model
        self.tokenizer = ensemble.backbone.tokenizer
        self.arch = ensemble.backbone.architecture
        self.device = ensemble.backbone.device
        if self.arch.kind != "decoder":
            raise ConfigError("generation needs a causal-LM model (train.task 'causal-lm')")

    def _snapshot(self):
        members = dict(self.ensemble.members)  # one manifest for the whole answer
        if not members:
            raise NoLiveModelError("no model available: every shard's lineages hold deleted records; retraining is needed")
        return members, self.ensemble.manifest_version

    def _step(self, members, ids: torch.Tensor, start: int, trunk: KVCache | None, caches: dict | None
              ) -> dict[int, torch.Tensor]:
        """Per member, top states of the new positions ``start..start+len(ids)-1`` (one row)."""
        ids = ids.to(self.device)
        hidden = self.arch.embed(self.lm, ids)
        if start == 0:  # the prompt: the causal mask of a full block (None where the kernel does it itself)
            ctx = self.arch.context(self.lm, hidden, torch.ones(ids.shape, dtype=torch.long, device=self.device))
            mask, positions, rotary = ctx.mask, ctx.positions, ctx.rotary
        else:  # one new position attends to every cached one: no mask
            positions = torch.arange(start, start + ids.shape[1], device=self.device).unsqueeze(0)
            mask, rotary = None, self.lm.model.rotary_emb(hidden, positions)
        layers_of = self.arch.layer_list
        stack = layers_of(self.lm)
        at_level: dict[int, torch.Tensor] = {}
        level = 0
        for target in sorted({m.level for m in members.values()}):
            for index in range(level, target):
                hidden = run_layer(stack[index], hidden, mask, positions, trunk, rotary)
            at_level[target], level = hidden, target
        out = {}
        for shard, member in members.items():
            encoder = member.model.encoder
            own = layers_of(encoder)
            h = at_level[member.level]
            cache = caches[shard] if caches is not None else None
            for index in range(member.level, len(own)):
                h = run_layer(own[index], h, mask, positions, cache, rotary)
            out[shard] = finish(encoder, h)
        return out

    def mix(self, logits: dict[int, torch.Tensor], combine: str, temperature: float = 1.0) -> torch.Tensor:
        """The ensemble's next-token log-probabilities from the members' logits [..., V]."""
        scaled = torch.stack([logits[s] for s in sorted(logits)]) / max(temperature, 1e-6)
        logp = torch.log_softmax(scaled, dim=-1)
        if combine == "probs":
            return torch.logsumexp(logp, dim=0) - torch.log(torch.tensor(float(len(logits))))
        return torch.log_softmax(logp.mean(0), dim=-1)

    @torch.no_grad()
    def generate_one(self, prompt: str, max_new_tokens: int = 64, combine: str = "probs", temperature: float = 0.0,
                     top_k: int = 0, seed: int = 0) -> Generation:
        _check_generation_args(max_new_tokens, combine, temperature, top_k)
        members, version = self._snapshot()
        ids = prompt_ids(self.tokenizer, prompt)
        limit = int(getattr(self.lm.config, "max_position_embeddings", 0) or 0)
        if limit and len(ids) + max_new_tokens > limit:
            raise ConfigError(f"the prompt ({len(ids)} tokens) + max_new_tokens ({max_new_tokens}) exceed the model's "
                              f"{limit} positions")
        eot = end_of_turn(self.tokenizer)
        gen = torch.Generator().manual_seed(int(seed))
        trunk, caches = KVCache(), {s: KVCache() for s in members}
        step_ids, start, out, reason = torch.tensor([ids]), 0, [], "length"
        for _ in range(max_new_tokens):
            states = self._step(members, step_ids, start, trunk, caches)
            start += step_ids.shape[1]
            logits = {s: member.model.lm_logits(states[s][0, -1]).cpu() for s, member in members.items()}
            if temperature == 0:
                token = int(self.mix(logits, combine).argmax())
            else:
                logp = self.mix(logits, combine, temperature)
                if top_k:
                    kth = torch.topk(logp, min(top_k, logp.numel())).values[-1]
                    logp = logp.masked_fill(logp < kth, float("-inf"))
                token = int(torch.multinomial(torch.softmax(logp, -1), 1, generator=gen))
            if token == eot:
                reason = "stop"
                break
            out.append(token)
            step_ids = torch.tensor([[token]])
        served = {str(s): m.stage for s, m in sorted(members.items())}
        text = self.tokenizer.decode(out, skip_special_tokens=True).strip()
        return Generation(prompt, text, tuple(out), reason, version, served)

    def generate(self, prompts: Sequence[str], **kwargs) -> list[Generation]:
        return [self.generate_one(p, **kwargs) for p in prompts]

    @torch.no_grad()
    def response_logits(self, prompt: str, response: str) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """Teacher-forced, in one forward pass from one manifest: each live member's next-token logits
        at the response's positions ([T, V] on the CPU, shard -> tensor) and the response's T token
        ids (end-of-turn token included). ``mix`` combines the logits as generation does."""
        members, _ = self._snapshot()
        limit = int(getattr(self.lm.config, "max_position_embeddings", 0) or 0) or 10 ** 9
        ids, start = chat_tokens(self.tokenizer, prompt, response, limit)
        states = self._step(members, torch.tensor([ids]), 0, None, None)
        return ({s: member.model.lm_logits(states[s][0, start - 1: len(ids) - 1]).cpu() for s, member in members.items()},
                torch.tensor(ids[start:]))

    @torch.no_grad()
    def score(self, prompt: str, response: str, combine: str = "probs") -> ResponseScore:
        """Log-probability of ``response`` after ``prompt`` (teacher-forced, end-of-turn token included)."""
        if combine not in COMBINES:
            raise ConfigError(f"combine must be one of {list(COMBINES)}; got {combine!r}")
        logits, targets = self.response_logits(prompt, response)
        per_shard = {s: float(torch.log_softmax(l, -1).gather(1, targets[:, None]).sum()) for s, l in logits.items()}
        mixed = self.mix(logits, combine).gather(1, targets[:, None]).sum()
        return ResponseScore(tokens=len(targets), shards=per_shard, ensemble=float(mixed))
