"""GA: gradient ascent on the forget set (maximise its cross-entropy).

The loss is the task's: class cross-entropy, or for a causal LM the cross-entropy of the
forget records' response tokens (:func:`~s3t.evaluate.methods.common.cross_entropy`).

No retained data is used, so nothing holds the rest of the model in place: with too
large a learning rate or too many epochs GA collapses test accuracy as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import MethodConfig

NAME = "ga"
TASKS = ("classification", "causal-lm")  # through the task's loss


@dataclass(frozen=True)
class Config(MethodConfig):
    lr: float = field(default=5e-4, metadata={"help": "AdamW learning rate."})
    epochs: int = field(default=3, metadata={"help": "Passes over the forget set."})


def unlearn(model, forget, retain, config: Config | None = None):
    """A copy of ``model`` after gradient ascent on ``forget`` (``retain`` is not used)."""
    from .common import batches, clone_model, cross_entropy, generator, optimise

    cfg = config or Config()
    gen = generator(cfg.seed)
    model = clone_model(model)
    ce = cross_entropy(forget)
    optimise(model, batches(forget, cfg.batch_size, cfg.epochs, gen), lambda m, b: -ce(m, b), cfg.lr)
    return model
