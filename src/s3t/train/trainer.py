"""Training a shard's prefix trie, stage by stage, from the cached frozen trunk.

Sequences of a shard that share a prefix share its checkpoints: the trie of all prefixes
is trained level by level (stage 1 prefixes, then stage 2, ...), each prefix once, with
the seed of (shard, prefix). The same code retrains cut suffixes after a deletion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch

from ..config import S3TConfig
from .backbone import Backbone, set_determinism
from .device import set_device_determinism
from .objectives import objective_for
from .cache import TrunkCache
from .layers import layer_groups
from .seeds import stage_seed
from .stage import Examples, StageResult, StageSpec, train_stage


@dataclass(frozen=True)
class SliceData:
    """One slice version: its ledger id and member records (in position order)."""

    version_id: int
    record_ids: tuple[str, ...]


def trie(sequences: Iterable[Sequence[int]]) -> list[tuple[int, ...]]:
    """All distinct prefixes of the sequences, shortest first (parents before children).

    >>> trie([(0, 1, 2), (0, 2, 1), (1, 2, 0)])
    [(0,), (1,), (0, 1), (0, 2), (1, 2), (0, 1, 2), (0, 2, 1), (1, 2, 0)]
    """
    seen: dict[tuple[int, ...], None] = {}
    for seq in sequences:
        for k in range(1, len(seq) + 1):
            seen.setdefault(tuple(seq[:k]), None)
    return sorted(seen, key=lambda p: (len(p), p))


OnCheckpoint = Callable[[StageSpec, StageResult, list[int]], None]


class StageRunner:
    """Holds the backbone, tokens and activation cache shared by all stages of a run."""

    def __init__(self, backbone: Backbone, config: S3TConfig, n_labels: int):
        self.backbone = backbone
        self.config = config
        self.n_labels = n_labels
        self.groups = layer_groups(backbone.n_layers, config.plan.slices)
        self.levels = sorted({min(g) for g in self.groups})
        self.pad_id = int(backbone.tokenizer.pad_token_id or 0)
        self.tokens: dict[str, list[int]] = {}
        self.labels: dict[str, int] = {}
        self.cache = TrunkCache(backbone.model, self.levels, self.pad_id) if config.train.cache else None
        self.validation_ids: tuple[str, ...] = ()
        set_determinism(config.train.threads)
        set_device_determinism(backbone.device)

    def add_records(self, ids: Sequence[str], texts: Sequence[str], labels: Sequence[int]) -> None:
        """Tokenise once, the task's way (:mod:`s3t.train.objectives`); texts are not kept."""
        todo = [(i, t, y) for i, t, y in zip(ids, texts, labels) if i not in self.tokens]
        if not todo:
            return
        toks, targets = objective_for(self.config.train.task).encode(
            self.backbone.tokenizer, [t for _, t, _ in todo], [y for _, _, y in todo], self.config.train.max_length)
        for (i, _, _), tk, y in zip(todo, toks, targets):
            self.tokens[i] = tk
            self.labels[i] = int(y)

    def set_validation(self, ids: Sequence[str]) -> None:
        self.validation_ids = tuple(ids)

    def examples(self, key: object, ids: Sequence[str], level: int) -> Examples:
        """Inputs of records ``ids`` at ``level``; ``key`` names the cache group they are computed in."""
        labels = [self.labels[i] for i in ids]
        tokens = [self.tokens[i] for i in ids]
        if self.cache is None:
            return Examples(labels, tokens=tokens, pad_id=self.pad_id)
        self.cache.add(key, tokens)
        return Examples(labels, hidden=self.cache.get(key, level), tokens=tokens, pad_id=self.pad_id)

    def examples_for(self, slices: Sequence[SliceData], level: int) -> Examples:
        parts = [self.examples(("slice", sd.version_id), sd.record_ids, level) for sd in slices]
        merged = Examples(labels=[y for p in parts for y in p.labels], tokens=[t for p in parts for t in p.tokens],
                          pad_id=self.pad_id)
        if self.cache is not None:
            merged.hidden = [h for p in parts for h in p.hidden]
        return merged

    def validation(self, level: int) -> Examples | None:
        if not self.validation_ids:
            return None
        return self.examples(("validation",), self.validation_ids, level)

    def spec(self, shard: int, prefix: Sequence[int]) -> StageSpec:
        return StageSpec(
            shard=shard,
            prefix=tuple(prefix),
            seed=stage_seed(self.config.plan.seed, shard, prefix),
            groups=tuple(tuple(g) for g in self.groups),
        )

    def train_prefixes(
        self,
        shard: int,
        prefixes: Sequence[tuple[int, ...]],
        slices: dict[int, SliceData],
        on_checkpoint: OnCheckpoint,
        parent_states: dict[tuple[int, ...], dict[str, torch.Tensor]] | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> None:
        """Train ``prefixes`` (parents first). A parent not trained here must be in ``parent_states``."""
        states = dict(parent_states or {})
        for prefix in sorted(prefixes, key=lambda p: (len(p), p)):
            spec = self.spec(shard, prefix)
            parent = None if len(prefix) == 1 else states[prefix[:-1]]
            data = [slices[s] for s in prefix]
            result = train_stage(
                self.backbone.model, self.config.train, spec, self.n_labels, parent,
                self.examples_for(data, spec.level), self.validation(spec.level), on_step=on_step,
            )
            on_checkpoint(spec, result, [sd.version_id for sd in data])
            states[prefix] = result.state
            # free states no remaining prefix needs
            for p in [p for p in states if len(p) < len(prefix) - 1]:
                del states[p]

    def drop_slice(self, version_id: int) -> None:
        if self.cache is not None:
            self.cache.drop(("slice", version_id))
