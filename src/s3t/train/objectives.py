"""The torch side of each task (:mod:`s3t.tasks`): tokenising records, the training loss and the
per-record validation outcome, in a registry keyed by task name.

``classification``
    A record's tokens are its text's; its target is the label index. Loss: cross-entropy of the
    head's logits on the mean-pooled top states. Outcome: the arg-max is the label.
``causal-lm``
    A record's tokens are the prompt in the model's chat template (a user turn, then the
    generation prompt) followed by the response and the end-of-turn token; its target is where
    the response starts. Loss: next-token cross-entropy on the response tokens only (the prompt
    is context, never a target), averaged over the batch's response tokens. Outcome
    (teacher-forced): the model's arg-max next token is right on at least half of the response
    tokens. Only the response positions go through the LM head (a 49k-word head over every
    position would cost more than the adapted layers).

Both keep the stage's determinism: the same records in the same batches give the same bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .batches import bucket_batches, tokenize

USER_FALLBACK = "User: {prompt}\nAssistant: "  # tokenizers without a chat template


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids of ``prompt`` as one user turn in the chat template, ending with the generation prompt."""
    if getattr(tokenizer, "chat_template", None):
        out = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            tokenize=True)
        if hasattr(out, "keys"):  # BatchEncoding / dict
            out = out["input_ids"]
        return [int(t) for t in out]
    ids = tokenizer(USER_FALLBACK.format(prompt=prompt), add_special_tokens=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    return ([int(bos)] if bos is not None else []) + [int(t) for t in ids]


def end_of_turn(tokenizer) -> int | None:
    """The token that ends an answer: EOS (the chat template's end of turn), else SEP, else none."""
    for name in ("eos_token_id", "sep_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return None


def chat_tokens(tokenizer, prompt: str, response: str, max_length: int) -> tuple[list[int], int]:
    """(token ids, index of the first response token). Over ``max_length``, the prompt keeps its last
    ``max_length // 2`` tokens at most and the response is cut to fill the rest (at least one token)."""
    p = prompt_ids(tokenizer, prompt)
    r = [int(t) for t in tokenizer(response, add_special_tokens=False)["input_ids"]]
    eot = end_of_turn(tokenizer)
    if eot is not None:
        r.append(eot)
    if len(p) + len(r) > max_length:
        if len(p) > max_length // 2:
            p = p[-(max_length // 2):]
        r = r[: max_length - len(p)]
    return p + r, len(p)


@dataclass(frozen=True)
class Objective:
    name: str

    def encode(self, tokenizer, texts: Sequence[str], labels: Sequence[int], max_length: int
               ) -> tuple[list[list[int]], list[int]]:
        raise NotImplementedError

    def head_parameters(self, model) -> list[nn.Parameter]:
        """What the stage trains besides its layer group's adapters."""
        return [] if model.head is None else list(model.head.parameters())

    def loss(self, model, level: int, data, batch: Sequence[int]) -> torch.Tensor:
        raise NotImplementedError

    def correct(self, model, level: int, data, batch_size: int = 64) -> tuple[bool, ...]:
        raise NotImplementedError


class Classification(Objective):
    def encode(self, tokenizer, texts, labels, max_length):
        return tokenize(tokenizer, list(texts), max_length), [int(y) for y in labels]

    def loss(self, model, level, data, batch):
        logits = data.forward(model, level, batch)
        targets = torch.tensor([data.labels[i] for i in batch], dtype=torch.long, device=logits.device)
        return nn.functional.cross_entropy(logits, targets)

    def correct(self, model, level, data, batch_size=64):
        from .stage import outcomes

        return outcomes(model, level, data)


def response_positions(data, batch: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batch row, position, target token) of every response token of ``batch``: the state at
    position j-1 predicts token j."""
    rows, cols, targets = [], [], []
    for row, i in enumerate(batch):
        tokens, start = data.tokens[i], data.labels[i]
        for j in range(start, len(tokens)):
            rows.append(row)
            cols.append(j - 1)
            targets.append(tokens[j])
    return torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long), torch.tensor(targets, dtype=torch.long)


class CausalLM(Objective):
    def encode(self, tokenizer, texts, labels, max_length):
        from ..data.chat import decode_chat

        out = [chat_tokens(tokenizer, *decode_chat(t), max_length) for t in texts]
        return [ids for ids, _ in out], [start for _, start in out]

    def _response_logits(self, model, level, data, batch):
        states, _ = data.states(model, level, batch)
        rows, cols, targets = (t.to(states.device) for t in response_positions(data, batch))
        return model.lm_logits(states[rows, cols]), rows, targets

    def loss(self, model, level, data, batch):
        logits, _, targets = self._response_logits(model, level, data, batch)
        return nn.functional.cross_entropy(logits, targets)

    @torch.no_grad()
    def correct(self, model, level, data, batch_size=64):
        out = [False] * len(data)
        for batch in bucket_batches(data.lengths(), batch_size):
            logits, rows, targets = self._response_logits(model, level, data, batch)
            hits, rows = (logits.argmax(-1) == targets).to(torch.long).cpu(), rows.cpu()
            right = torch.zeros(len(batch), dtype=torch.long).index_add_(0, rows, hits)
            total = torch.zeros(len(batch), dtype=torch.long).index_add_(0, rows, torch.ones_like(hits))
            for row, i in enumerate(batch):
                out[i] = bool(2 * int(right[row]) >= int(total[row]) > 0)
        return tuple(out)


OBJECTIVES: dict[str, Objective] = {"classification": Classification("classification"),
                                    "causal-lm": CausalLM("causal-lm")}


def objective_for(task: str) -> Objective:
    if task not in OBJECTIVES:
        raise ConfigError(f"train.task must be one of {sorted(OBJECTIVES)}; got {task!r}")
    return OBJECTIVES[task]
