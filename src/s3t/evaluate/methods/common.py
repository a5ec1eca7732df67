"""Shared machinery of the approximate methods (imports torch): copying a model without
touching the input, example subsets, seeded batches, the optimisation loop, and the task's
loss and per-record log-likelihood.

A method sees the task only through :func:`cross_entropy` and :func:`record_logp`: for an
encoder (classification) they are the class cross-entropy and log p(label | text); for a
decoder (task ``causal-lm``, no head) the training objective's loss on the response tokens
(:mod:`s3t.train.objectives`) and log p(response | prompt), the sum of the response tokens'
log-probabilities. Examples of a decoder hold chat tokens, their ``labels`` where each
response starts."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from ...train.batches import bucket_batches
from ...train.model import AdaptedEncoder
from ...train.stage import Examples

LossFn = Callable[[AdaptedEncoder, list[int]], torch.Tensor]


def is_trainable(name: str) -> bool:
    """LoRA adapters and the head: what training updates (the encoder stays frozen)."""
    return "lora_" in name or name.startswith("head.")


def clone_model(model: AdaptedEncoder) -> AdaptedEncoder:
    """Deep copy with the frozen encoder tensors shared, trainable ones (adapters, head) copied.

    Only trainable tensors are ever updated, so the copy can be changed freely: the input
    model keeps its weights.
    """
    memo = {id(p): p for n, p in model.named_parameters() if not is_trainable(n)}
    memo.update({id(b): b for b in model.buffers()})
    clone = copy.deepcopy(model, memo)
    for n, p in clone.named_parameters():
        p.requires_grad_(is_trainable(n))
    clone.eval()
    return clone


def trainable(model: AdaptedEncoder) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if is_trainable(n)]


def named_trainable(model: AdaptedEncoder) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if is_trainable(n)]


def subset(ex: Examples, idx: Sequence[int], labels: Sequence[int] | None = None) -> Examples:
    """Rows ``idx`` of token examples (optionally relabelled)."""
    labs = [ex.labels[i] for i in idx] if labels is None else [int(y) for y in labels]
    return Examples(labels=labs, tokens=[ex.tokens[i] for i in idx], pad_id=ex.pad_id)


def concat(*parts: Examples) -> Examples:
    return Examples(labels=[y for p in parts for y in p.labels], tokens=[t for p in parts for t in p.tokens],
                    pad_id=parts[0].pad_id)


def sample(ex: Examples, n: int, gen: torch.Generator) -> Examples:
    """``n`` rows drawn without replacement (all of them when n >= len)."""
    n = min(n, len(ex))
    return subset(ex, sorted(torch.randperm(len(ex), generator=gen)[:n].tolist()))


def random_wrong_labels(labels: Sequence[int], n_classes: int, gen: torch.Generator) -> list[int]:
    """A uniformly random label different from the true one, per record."""
    shift = torch.randint(1, n_classes, (len(labels),), generator=gen).tolist()
    return [(int(y) + s) % n_classes for y, s in zip(labels, shift)]


def batches(ex: Examples, batch_size: int, epochs: int, gen: torch.Generator) -> Iterator[list[int]]:
    """Length-bucketed batches, in a seeded random order each epoch."""
    groups = bucket_batches(ex.lengths(), batch_size)
    for _ in range(epochs):
        for b in torch.randperm(len(groups), generator=gen).tolist():
            yield groups[b]


def forward(model: AdaptedEncoder, ex: Examples, batch: Sequence[int]) -> torch.Tensor:
    return ex.forward(model, 0, batch)


def optimise(model: AdaptedEncoder, steps: Iterator[list[int]], loss_fn: LossFn, lr: float,
             params: list[nn.Parameter] | None = None, after_step: Callable[[], None] | None = None) -> list[float]:
    """AdamW (no weight decay) over ``params`` (default: every trainable tensor); returns the losses."""
    params = trainable(model) if params is None else params
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    for batch in steps:
        loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step()
        losses.append(float(loss.detach()))
    return losses


def is_decoder(model: AdaptedEncoder) -> bool:
    """A causal LM (task ``causal-lm``): no classification head; its targets are response tokens."""
    return getattr(model, "head", None) is None


def cross_entropy(ex: Examples) -> LossFn:
    """The task's training loss on a batch: class cross-entropy, or (decoder) next-token
    cross-entropy averaged over the batch's response tokens."""
    labels = torch.tensor(ex.labels, dtype=torch.long)

    def loss(model: AdaptedEncoder, batch: list[int]) -> torch.Tensor:
        if is_decoder(model):
            from ...train.objectives import objective_for

            return objective_for("causal-lm").loss(model, 0, ex, batch)
        return nn.functional.cross_entropy(forward(model, ex, batch), labels[batch])
    return loss


def record_logp(model: AdaptedEncoder, ex: Examples, batch: Sequence[int]) -> torch.Tensor:
    """log p(target | input) per record of ``batch``: of the label (encoder), or of the whole
    response, summed over its tokens (decoder)."""
    if is_decoder(model):
        from ...train.objectives import response_positions

        states, _ = ex.states(model, 0, batch)
        rows, cols, targets = response_positions(ex, batch)
        logp = torch.log_softmax(model.lm_logits(states[rows, cols]), -1).gather(1, targets[:, None])[:, 0]
        return torch.zeros(len(batch), dtype=logp.dtype).index_add(0, rows, logp)
    labels = torch.tensor([ex.labels[i] for i in batch], dtype=torch.long)
    return torch.log_softmax(forward(model, ex, batch), -1)[torch.arange(len(batch)), labels]


@torch.no_grad()
def reference_logp(model: AdaptedEncoder, ex: Examples, batch_size: int) -> torch.Tensor:
    """:func:`record_logp` of every record of ``ex`` (in order), without gradients."""
    if not is_decoder(model):
        from ...train.stage import logits

        labels = torch.tensor(ex.labels, dtype=torch.long)
        return torch.log_softmax(logits(model, 0, ex, batch_size), -1)[torch.arange(len(ex)), labels]
    out = torch.empty(len(ex))
    for batch in bucket_batches(ex.lengths(), batch_size):
        out[batch] = record_logp(model, ex, batch)
    return out


def generator(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
