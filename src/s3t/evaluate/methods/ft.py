"""FT: fine-tune on the retained data, so the forget set fades by catastrophic forgetting.

Each epoch visits a seeded sample of ``retain_fraction`` of the retained records, so FT
costs a fraction of a retrain (the literature's setting: a few epochs against a full
training run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import MethodConfig, check_share

NAME = "ft"


@dataclass(frozen=True)
class Config(MethodConfig):
    lr: float = field(default=2e-3, metadata={"help": "AdamW learning rate."})
    retain_fraction: float = field(default=0.3, metadata={"help": "Share of the retained records used per epoch."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_share("retain_fraction", self.retain_fraction)


def fine_tune(model, retain, cfg, penalty=None):
    """A copy of ``model`` fine-tuned with cross-entropy (+ ``penalty(model)``) on a retain sample."""
    from ..scenarios import n_of
    from .common import batches, clone_model, cross_entropy, generator, optimise, sample

    gen = generator(cfg.seed)
    model = clone_model(model)
    data = sample(retain, n_of(cfg.retain_fraction, len(retain)), gen)
    ce = cross_entropy(data)
    loss = ce if penalty is None else (lambda m, b: ce(m, b) + penalty(m))
    optimise(model, batches(data, cfg.batch_size, cfg.epochs, gen), loss, cfg.lr)
    return model


def unlearn(model, forget, retain, config: Config | None = None):
    """Fine-tune a copy of ``model`` on the retained data (``forget`` is not used)."""
    return fine_tune(model, retain, config or Config())
