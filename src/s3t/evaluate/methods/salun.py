"""SalUn: weight saliency (Fan et al., ICLR 2024) — RL restricted to the salient weights.

The saliency of a trainable weight is |∂ forget-loss / ∂w| (cross-entropy on the forget
set, gradient summed over the whole set, at the input model). The top ``mask_ratio`` share
of all trainable weights by saliency form the mask; RL then updates only masked weights
(their gradients are masked, and unmasked weights are restored after every step, so they
stay bit-identical to the input model).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import rl
from .base import check_share

NAME = "salun"


@dataclass(frozen=True)
class Config(rl.Config):
    mask_ratio: float = field(default=0.5, metadata={"help": "Share of trainable weights updated (most salient)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_share("mask_ratio", self.mask_ratio)


def saliency_masks(model, forget, ratio: float, batch_size: int) -> dict[str, "object"]:
    """Boolean mask per trainable tensor name: the top ``ratio`` of |∇ forget loss| overall."""
    import torch

    from .common import clone_model, forward, named_trainable
    from ...train.batches import bucket_batches

    probe = clone_model(model)
    params = named_trainable(probe)
    labels = torch.tensor(forget.labels, dtype=torch.long)
    for batch in bucket_batches(forget.lengths(), batch_size):
        loss = torch.nn.functional.cross_entropy(forward(probe, forget, batch), labels[batch], reduction="sum")
        loss.backward()
    grads = {n: (p.grad.abs() if p.grad is not None else torch.zeros_like(p)) for n, p in params}
    flat = torch.cat([g.flatten() for g in grads.values()])
    k = max(1, int(round(ratio * flat.numel())))
    threshold = torch.topk(flat, k).values.min()
    return {n: g >= threshold for n, g in grads.items()}


def unlearn(model, forget, retain, config: Config | None = None):
    """RL on a copy of ``model`` updating only the weights in the saliency mask."""
    from .common import named_trainable

    cfg = config or Config()
    masks = saliency_masks(model, forget, cfg.mask_ratio, cfg.batch_size)

    def params(copy):
        out = []
        for n, p in named_trainable(copy):
            p.register_hook(lambda g, m=masks[n]: g * m)
            out.append(p)
        return out

    def after_step(copy):
        originals = {n: p.detach().clone() for n, p in named_trainable(copy)}

        def restore():
            for n, p in named_trainable(copy):
                p.data.copy_(p.data.where(masks[n], originals[n]))
        return restore

    return rl.unlearn(model, forget, retain, cfg, params=params, after_step=after_step)
