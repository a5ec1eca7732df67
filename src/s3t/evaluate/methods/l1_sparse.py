"""l1-sparse: FT with an l1 penalty on the trainable weights (Jia et al., NeurIPS 2023).

Loss = cross-entropy on retained data + ``gamma`` · Σ|w| over the LoRA adapters and the
head. Sparser weights were shown to make approximate unlearning closer to retraining.
Here ``gamma`` is constant (the paper also decays it linearly); the optimiser is AdamW
without weight decay, like every method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import ConfigError
from . import ft

NAME = "l1_sparse"


@dataclass(frozen=True)
class Config(ft.Config):
    gamma: float = field(default=1e-4, metadata={"help": "Weight of the l1 penalty Σ|w| (trainable weights)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.gamma >= 0:
            raise ConfigError(f"gamma must be >= 0; got {self.gamma}")


def l1_norm(model):
    """Σ|w| over the trainable weights (adapters + head)."""
    from .common import trainable

    return sum(p.abs().sum() for p in trainable(model))


def unlearn(model, forget, retain, config: Config | None = None):
    """FT on retained data with ``gamma`` · l1 of the trainable weights added to the loss."""
    cfg = config or Config()
    return ft.fine_tune(model, retain, cfg, penalty=lambda m: cfg.gamma * l1_norm(m))
