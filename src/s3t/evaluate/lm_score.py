"""What one method serves, scored the same way for every method (imports torch).

An :class:`LMView` is a list of members — one adapted model (the full model, Retrain, GA,
NPO), or s3t's live shards — and their generator (:class:`~s3t.serve.generate.EnsembleLM`,
which answers for a single model too). Scoring is teacher-forced and batched: each pair is
tokenised as in training (:func:`~s3t.train.objectives.chat_tokens`: the chat template, the
response and its end-of-turn token), every member gives next-token log-probabilities at the
response positions, and the view's distribution is their mean of probabilities — what
:meth:`S3T.score_responses` and greedy generation use (``combine='probs'``); for one member it
is that member's. :meth:`LMView.score_answers` scores several answers to one question and runs
the shared prompt once per member (the model's own key/value cache), then only the answers:
the same numbers as :meth:`LMView.score` for a fraction of the work (a chat prompt with its
system turn is longer than a short answer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch

from ..train.batches import bucket_batches, pad_ids
from ..train.objectives import chat_tokens, response_positions
from ..train.stage import Examples


@dataclass
class Scores:
    """Per pair: summed response log-prob, response tokens, tokens the arg-max got right."""

    logp: np.ndarray
    tokens: np.ndarray
    hits: np.ndarray


class LMView:
    """The members a method serves and their generator."""

    def __init__(self, lm, members: Sequence, description: str = ""):
        self.lm, self.members, self.description = lm, list(members), description
        self.tokenizer = lm.tokenizer
        self.pad_id = int(self.tokenizer.pad_token_id or 0)

    @classmethod
    def single(cls, backbone, model, name: str = "model") -> "LMView":
        """One adapted decoder (LoRA on any layers), served alone."""
        from ..serve.ensemble import Member
        from ..serve.generate import EnsembleLM

        member = Member(0, name, 1, model)
        return cls(EnsembleLM(SimpleNamespace(backbone=backbone, members={0: member}, manifest_version=0)), [model],
                   f"{name}: one model")

    @classmethod
    def of_s3t(cls, est) -> "LMView":
        """What a fitted S3T serves now: its live shards' members."""
        lm = est.ensemble_lm()  # synced to the ledger's latest manifest
        members = dict(lm.ensemble.members)
        served = ", ".join(f"shard {s} stage {m.stage}" for s, m in sorted(members.items()))
        return cls(lm, [m.model for _, m in sorted(members.items())], f"s3t: {served or 'no live shard'}")

    def examples(self, pairs: Sequence[tuple[str, str]], max_length: int) -> Examples:
        enc = [chat_tokens(self.tokenizer, p, r, max_length) for p, r in pairs]
        return Examples([start for _, start in enc], tokens=[ids for ids, _ in enc], pad_id=self.pad_id)

    @torch.no_grad()
    def score(self, pairs: Sequence[tuple[str, str]], max_length: int, batch_size: int = 8) -> Scores:
        """Teacher-forced log-probability of each response after its prompt (see the module docstring)."""
        n = len(pairs)
        out = Scores(np.zeros(n), np.zeros(n, dtype=int), np.zeros(n, dtype=int))
        if not n:
            return out
        if not self.members:
            return Scores(np.full(n, np.nan), np.zeros(n, dtype=int), np.zeros(n, dtype=int))
        ex = self.examples(pairs, max_length)
        for batch in bucket_batches(ex.lengths(), batch_size):
            rows, cols, targets = response_positions(ex, batch)
            mixed = None
            for model in self.members:
                states, _ = ex.states(model, 0, batch)
                logp = torch.log_softmax(model.lm_logits(states[rows, cols]), -1)
                mixed = logp if mixed is None else torch.logaddexp(mixed, logp)
            mixed = mixed - math.log(len(self.members))
            token_logp = mixed.gather(1, targets[:, None])[:, 0]
            hits = (mixed.argmax(-1) == targets).to(torch.long)
            logp_sum = torch.zeros(len(batch), dtype=token_logp.dtype).index_add(0, rows, token_logp)
            counts = torch.zeros(len(batch), dtype=torch.long).index_add(0, rows, torch.ones_like(hits))
            hit_sum = torch.zeros(len(batch), dtype=torch.long).index_add(0, rows, hits)
            out.logp[batch], out.tokens[batch], out.hits[batch] = logp_sum.numpy(), counts.numpy(), hit_sum.numpy()
        return out

    @torch.no_grad()
    def score_answers(self, prompt: str, answers: Sequence[str], max_length: int) -> Scores:
        """:meth:`score` of ``[(prompt, a) for a in answers]``, the prompt run once per member."""
        enc = [chat_tokens(self.tokenizer, prompt, a, max_length) for a in answers]
        start = enc[0][1]
        if not self.members or any(s != start or ids[:s] != enc[0][0][:s] for ids, s in enc):
            return self.score([(prompt, a) for a in answers], max_length, len(answers))  # (truncated prompts)
        n, shared = len(answers), torch.tensor([enc[0][0][:start]])
        responses = [ids[start:] for ids, _ in enc]
        ids, mask = pad_ids(responses, self.pad_id)
        mask = torch.cat([torch.ones((n, start), dtype=mask.dtype), mask], 1)
        rows = torch.tensor([r for r, resp in enumerate(responses) for _ in resp])
        cols = torch.tensor([j for resp in responses for j in range(len(resp))])
        targets = torch.tensor([t for resp in responses for t in resp])
        mixed = None
        for model in self.members:
            trunk = model.encoder.model  # the decoder stack with its adapters in place (peft injects them)
            head = trunk(input_ids=shared, use_cache=True)
            cache = head.past_key_values
            cache.batch_repeat_interleave(n)
            tail = trunk(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True).last_hidden_state
            before = torch.cat([head.last_hidden_state[:, -1:].expand(n, 1, -1), tail[:, :-1]], 1)  # state before each token
            logp = torch.log_softmax(model.lm_logits(before[rows, cols]), -1)
            mixed = logp if mixed is None else torch.logaddexp(mixed, logp)
        mixed = mixed - math.log(len(self.members))
        token_logp = mixed.gather(1, targets[:, None])[:, 0]
        hits = (mixed.argmax(-1) == targets).to(torch.long)
        return Scores(torch.zeros(n, dtype=token_logp.dtype).index_add(0, rows, token_logp).numpy(),
                      np.array([len(r) for r in responses]),
                      torch.zeros(n, dtype=torch.long).index_add(0, rows, hits).numpy())

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """Greedy answers (an empty list without a live member)."""
        if not self.members or not prompts:
            return []
        return [g.text for g in self.lm.generate(list(prompts), max_new_tokens=max_new_tokens)]
