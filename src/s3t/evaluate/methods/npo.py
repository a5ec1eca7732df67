"""NPO: negative preference optimisation (Zhang et al., 2024) on the forget set.

With r = log p_θ(y|x) − log p_ref(y|x) (ref = the input model, frozen), the forget loss
is (2/β) · mean log(1 + exp(β·r)) = −(2/β) · mean logσ(−β·r). Its gradient is gradient
ascent weighted by σ(β·r), which fades as a record's probability falls below the
reference's, so NPO slows down instead of diverging like GA. ``retain_weight`` adds
cross-entropy on an equally sized retained batch per step (NPO+RT; 0 = pure NPO).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import ConfigError
from .base import MethodConfig

NAME = "npo"
TASKS = ("classification", "causal-lm")  # through the task's loss and record log-likelihood


@dataclass(frozen=True)
class Config(MethodConfig):
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    epochs: int = field(default=3, metadata={"help": "Passes over the forget set."})
    beta: float = field(default=1.0, metadata={"help": "Inverse temperature β of the preference loss."})
    retain_weight: float = field(default=1.0, metadata={"help": "Weight of the retained-data cross-entropy (0 = none)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.beta > 0 or not self.retain_weight >= 0:
            raise ConfigError(f"beta must be > 0 and retain_weight >= 0; got {self.beta}, {self.retain_weight}")


def unlearn(model, forget, retain, config: Config | None = None):
    """A copy of ``model`` after NPO on ``forget`` (reference: ``model`` itself, frozen). r is the
    difference of the records' log-likelihoods (:func:`~s3t.evaluate.methods.common.record_logp`:
    the label's, or a causal LM's whole response's)."""
    import torch
    import torch.nn.functional as F

    from .common import batches, clone_model, cross_entropy, generator, optimise, record_logp, reference_logp

    cfg = config or Config()
    gen = generator(cfg.seed)
    ref_logp = reference_logp(model, forget, cfg.batch_size)
    model = clone_model(model)
    retain_loss = cross_entropy(retain)

    def loss(m, batch):
        logp = record_logp(m, forget, batch)
        out = -(2.0 / cfg.beta) * F.logsigmoid(-cfg.beta * (logp - ref_logp[batch])).mean()
        if cfg.retain_weight > 0 and len(retain):
            r = torch.randperm(len(retain), generator=gen)[: len(batch)].tolist()
            out = out + cfg.retain_weight * retain_loss(m, r)
        return out

    optimise(model, batches(forget, cfg.batch_size, cfg.epochs, gen), loss, cfg.lr)
    return model
