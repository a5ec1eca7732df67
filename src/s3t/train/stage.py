"""Training one S3T stage: LoRA on layer group k (+ head), earlier groups frozen as saved.

Stage k of a sequence trains the adapters of group k and the classifier head on slices
1..k of the sequence. Adapters of groups 1..k-1 are loaded from the parent checkpoint
(stage k-1) and frozen — never re-initialised. Layers below group k keep their
pretrained weights, so training can start from cached hidden states.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from ..config import TrainConfig
from .batches import bucket_batches, pad_hidden, pad_ids
from .layers import adapted_layers
from .model import AdaptedEncoder, embed, seeded
from .objectives import objective_for


@dataclass(frozen=True)
class StageSpec:
    """Which stage to train: shard, slice prefix (its length is the stage), seed."""

    shard: int
    prefix: tuple[int, ...]
    seed: int
    groups: tuple[tuple[int, ...], ...]

    @property
    def stage(self) -> int:
        return len(self.prefix)

    @property
    def trained_layers(self) -> list[int]:
        return list(self.groups[self.stage - 1])

    @property
    def layers(self) -> list[int]:
        return adapted_layers([list(g) for g in self.groups], self.stage)

    @property
    def level(self) -> int:
        """Index of the lowest adapted layer = the cached level training starts from."""
        return min(self.layers)


@dataclass
class Examples:
    """Training/eval inputs: cached hidden states at ``level`` (when given) or token ids.

    ``labels`` are the task's targets (:mod:`s3t.train.objectives`): class indices, or where
    each record's response starts; ``tokens`` are kept alongside cached states (causal-lm
    targets are tokens)."""

    labels: list[int]
    hidden: list[torch.Tensor] | None = None
    tokens: list[list[int]] | None = None
    pad_id: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> list[int]:
        return [int(h.shape[0]) for h in self.hidden] if self.hidden is not None else [len(t) for t in self.tokens]

    def inputs(self, model: AdaptedEncoder, level: int, batch: Sequence[int]) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(level, padded states entering it, mask): cached states, or the embeddings at level 0."""
        if self.hidden is not None:
            h, mask = pad_hidden([self.hidden[i] for i in batch])
            return level, h, mask
        ids, mask = pad_ids([self.tokens[i] for i in batch], self.pad_id, device=model.device)
        return 0, embed(model.encoder, ids), mask

    def forward(self, model: AdaptedEncoder, level: int, batch: Sequence[int]) -> torch.Tensor:
        """Class logits (encoders)."""
        return model.forward_from(*self.inputs(model, level, batch))

    def states(self, model: AdaptedEncoder, level: int, batch: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(top states, mask) of ``batch``."""
        at, h, mask = self.inputs(model, level, batch)
        return model.states_from(at, h, mask), mask


@dataclass
class StageResult:
    state: dict[str, torch.Tensor]
    n_examples: int
    train_loss: float
    val_accuracy: float | None
    seconds: float  # the whole stage, validation scoring included
    val_seconds: float = 0.0  # of which scoring the validation records
    val_correct: tuple[bool, ...] | None = None  # per validation record (in order): prediction correct
    model: AdaptedEncoder | None = field(default=None, repr=False)  # the trained model, not persisted


def lr_factor(step: int, total: int, warmup: float = 0.0) -> float:
    """Learning-rate multiplier at ``step`` of ``total``: a linear warm-up over the first ``warmup``
    fraction of the steps, then a linear decay to 0 (warmup 0: the decay alone, 1 at step 0).

    >>> [round(lr_factor(s, 10, 0.2), 3) for s in (0, 1, 2, 5, 10)]
    [0.0, 0.5, 1.0, 0.625, 0.0]
    """
    ramp = int(round(warmup * total))
    if step < ramp:
        return step / ramp
    if ramp == 0:
        return max(0.0, 1.0 - step / total)
    return max(0.0, (total - step) / (total - ramp))


def build_model(base: nn.Module, cfg: TrainConfig, spec: StageSpec, n_labels: int) -> AdaptedEncoder:
    with seeded(spec.seed):
        return AdaptedEncoder(base, cfg.lora, spec.layers, n_labels)


def train_stage(
    base: nn.Module,
    cfg: TrainConfig,
    spec: StageSpec,
    n_labels: int,
    parent_state: dict[str, torch.Tensor] | None,
    train: Examples,
    validation: Examples | None = None,
    on_step: Callable[[int], None] | None = None,
) -> StageResult:
    """Train stage ``spec.stage`` and return its checkpoint state (adapters 1..k + head)."""
    if (parent_state is None) != (spec.stage == 1):
        raise ValueError("stage 1 takes no parent state; later stages need their parent's state")
    start = time.perf_counter()
    model = build_model(base, cfg, spec, n_labels)
    if parent_state is not None:
        fresh = {k: v.clone() for k, v in model.head.state_dict().items()} if model.head is not None else None
        model.load_state(parent_state, strict_layers=False)
        if cfg.head_init == "fresh" and fresh is not None:  # this prefix's own seeded head, not the parent's
            model.head.load_state_dict(fresh)
    for p in model.parameters():
        p.requires_grad_(False)
    objective = objective_for(cfg.task)
    trainable = model.lora_parameters(spec.trained_layers) + objective.head_parameters(model)
    for p in trainable:
        p.requires_grad_(True)

    gen = torch.Generator().manual_seed(spec.seed)
    batches = bucket_batches(train.lengths(), cfg.batch_size)
    epochs = cfg.stage_epochs(spec.stage)
    total = max(1, epochs * len(batches))
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, cfg.warmup))
    losses: list[float] = []
    for _epoch in range(epochs):
        for b in torch.randperm(len(batches), generator=gen).tolist():
            batch = batches[b]
            loss = objective.loss(model, spec.level, train, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(len(batch))
    val_start = time.perf_counter()
    scored = validation is not None and len(validation) > 0
    correct = objective.correct(model, spec.level, validation) if scored else None
    val_acc = mean_correct(correct) if scored else None
    end = time.perf_counter()
    return StageResult(
        state=model.state(),
        n_examples=len(train),
        train_loss=float(sum(losses[-len(batches):]) / max(1, len(losses[-len(batches):]))),
        val_accuracy=val_acc,
        seconds=end - start,
        val_seconds=end - val_start if scored else 0.0,
        val_correct=correct,
        model=model,
    )


@torch.no_grad()
def logits(model: AdaptedEncoder, level: int, data: Examples, batch_size: int = 64) -> torch.Tensor:
    out = torch.empty((len(data), model.head.out_features))
    for batch in bucket_batches(data.lengths(), batch_size):
        out[batch] = data.forward(model, level, batch).cpu()
    return out


def outcomes(model: AdaptedEncoder, level: int, data: Examples) -> tuple[bool, ...]:
    """Per record: is the model's prediction its label."""
    pred = logits(model, level, data).argmax(-1)
    return tuple(bool(x) for x in (pred == torch.tensor(data.labels)).tolist())


def mean_correct(correct) -> float:
    """Validation accuracy from per-record outcomes (the ledger re-scores the same way, without torch)."""
    return sum(bool(c) for c in correct) / len(correct)


def accuracy(model: AdaptedEncoder, level: int, data: Examples) -> float:
    pred = logits(model, level, data).argmax(-1)
    return float((pred == torch.tensor(data.labels)).float().mean())
