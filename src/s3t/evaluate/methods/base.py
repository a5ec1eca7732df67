"""The hyper-parameters every method shares (torch-free)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ...errors import ConfigError


@dataclass(frozen=True)
class MethodConfig:
    """Optimiser settings shared by every method (AdamW, constant learning rate, no weight decay)."""

    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    epochs: int = field(default=1, metadata={"help": "Passes over the method's training batches."})
    batch_size: int = field(default=16, metadata={"help": "Records per step."})
    seed: int = field(default=0, metadata={"help": "Seed of batch order, sampling and random labels."})

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0; got {self.lr}")
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ConfigError(f"epochs must be an integer >= 1; got {self.epochs}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ConfigError(f"batch_size must be an integer >= 1; got {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_share(name: str, value: float, allow_zero: bool = False) -> None:
    if not ((0 <= value if allow_zero else 0 < value) and value <= 1):
        raise ConfigError(f"{name} must be in {'[0' if allow_zero else '(0'}, 1]; got {value}")
