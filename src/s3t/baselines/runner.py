"""All-layer training on the S3T stage machinery (imports torch; loaded lazily by the baselines).

A SISA stage, or a full fine-tune, is an S3T stage whose layer groups are all equal to
"every layer": ``StageSpec(groups=(all_layers,) * L)`` makes stage k train every layer's
adapters (plus the head), starting from stage k-1's state, on slices 1..k. So the
baselines reuse :class:`~s3t.train.trainer.StageRunner` and ``train_stage`` unchanged —
same tokenisation, length-bucketed batches, seeds, optimiser and LoRA placement — and
only swap the groups. The trunk cache keeps a single level, 0 (the embedding output),
since every layer is trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..config import S3TConfig
from ..train.backbone import Backbone, backbone_for
from ..train.batches import tokenize
from ..train.cache import TrunkCache
from ..train.model import AdaptedEncoder
from ..train.stage import Examples, build_model, logits
from ..train.trainer import StageRunner


class AllLayerRunner(StageRunner):
    """A StageRunner whose ``stages`` groups each hold every layer of the backbone."""

    def __init__(self, backbone: Backbone, config: S3TConfig, n_labels: int, stages: int):
        super().__init__(backbone, config, n_labels)
        every = list(range(backbone.n_layers))
        self.groups = [list(every) for _ in range(stages)]
        self.levels = [0]
        if self.cache is not None:
            self.cache = TrunkCache(backbone.model, self.levels, self.pad_id)

    def model(self, shard: int, prefix: Sequence[int], state: dict[str, torch.Tensor]) -> AdaptedEncoder:
        """The trained model of ``prefix`` rebuilt from its checkpoint state (eval mode)."""
        model = build_model(self.backbone.model, self.config.train, self.spec(shard, prefix), self.n_labels)
        model.load_state(state)
        model.eval()
        return model

    def text_examples(self, texts: Sequence[str]) -> Examples:
        """Token inputs for arbitrary texts (labels unused)."""
        toks = tokenize(self.backbone.tokenizer, list(texts), self.config.train.max_length)
        return Examples(labels=[0] * len(toks), tokens=toks, pad_id=self.pad_id)


def save_fitted(path, payload: dict) -> None:
    """A fitted baseline's tensors and timings, written atomically (``torch.save``)."""
    import io

    from ..store.atomic import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_fitted(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def resolve_backbone(backbone: Backbone | None, config: S3TConfig) -> Backbone:
    """``backbone`` when it is on ``train.device``, else the model loaded there (a baseline trains
    where S3T would: 'auto' is the GPU where there is one)."""
    return backbone_for(config.train, backbone)


def model_logits(model: AdaptedEncoder, examples: Examples, batch_size: int) -> torch.Tensor:
    return logits(model, 0, examples, batch_size=batch_size)


def aggregate(per_member: Sequence[torch.Tensor], how: str = "logits") -> np.ndarray:
    """Ensemble class probabilities: softmax of the mean logits, or the mean of the softmaxes."""
    stacked = torch.stack(list(per_member))
    if how == "logits":
        return torch.softmax(stacked.mean(0), -1).numpy()
    return torch.softmax(stacked, -1).mean(0).numpy()
