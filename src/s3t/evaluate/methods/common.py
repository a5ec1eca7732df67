"""Shared machinery of the approximate methods (imports torch): copying a model without
touching the input, example subsets, seeded batches and the optimisation loop."""

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


def cross_entropy(ex: Examples) -> LossFn:
    labels = torch.tensor(ex.labels, dtype=torch.long)
    return lambda model, batch: nn.functional.cross_entropy(forward(model, ex, batch), labels[batch])


def generator(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
