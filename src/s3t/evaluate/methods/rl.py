"""RL: random labels — train on the forget set relabelled with random wrong classes,
mixed with a sample of retained records (true labels) to keep the rest of the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import ConfigError
from .base import MethodConfig

NAME = "rl"


@dataclass(frozen=True)
class Config(MethodConfig):
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    epochs: int = field(default=2, metadata={"help": "Passes over forget + retain sample."})
    retain_per_forget: float = field(default=1.0, metadata={"help": "Retained records sampled per forget record."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.retain_per_forget >= 0:
            raise ConfigError(f"retain_per_forget must be >= 0; got {self.retain_per_forget}")


def relabelled_mix(model, forget, retain, cfg, gen):
    """Forget records with random wrong labels + ``retain_per_forget`` × as many retained records."""
    from .common import concat, random_wrong_labels, sample, subset

    wrong = subset(forget, range(len(forget)), random_wrong_labels(forget.labels, model.head.out_features, gen))
    n = round(cfg.retain_per_forget * len(forget))
    return concat(wrong, sample(retain, n, gen)) if n else wrong


def unlearn(model, forget, retain, config: Config | None = None, params=None, after_step=None):
    """A copy of ``model`` trained on the random-label mix; ``params``/``after_step`` (callables of
    the copy) let SalUn restrict the update to salient weights."""
    from .common import batches, clone_model, cross_entropy, generator, optimise

    cfg = config or Config()
    gen = generator(cfg.seed)
    model = clone_model(model)
    data = relabelled_mix(model, forget, retain, cfg, gen)
    optimise(model, batches(data, cfg.batch_size, cfg.epochs, gen), cross_entropy(data), cfg.lr,
             params=None if params is None else params(model), after_step=None if after_step is None else after_step(model))
    return model
