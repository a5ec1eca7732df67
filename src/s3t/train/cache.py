"""Frozen-trunk activation cache.

Layers below the group being trained run with pretrained weights only, so the hidden
states entering them are the same for every shard, sequence and stage: compute them
once per record and reuse them across epochs, stages and sequences.

States are computed per *group* of records (a slice version, or the validation set),
batched only within that group. A record's cached states therefore never depend on
records outside its group, so deleting a record from one slice leaves every other
slice's cache — and every checkpoint trained on it — bit-identical.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import torch

from .batches import bucket_batches, pad_ids
from .model import embed, run_layers


class TrunkCache:
    """Hidden states entering the given layer ``levels``, per record, per group key."""

    def __init__(self, encoder, levels: Sequence[int], pad_id: int, batch_size: int = 64):
        self.encoder = encoder
        self.levels = sorted(set(levels))
        self.pad_id = pad_id
        self.batch_size = batch_size
        self._store: dict[Hashable, dict[int, list[torch.Tensor]]] = {}
        self.device = next(encoder.parameters()).device  # states stay where the model computes

    def __contains__(self, key: Hashable) -> bool:
        return key in self._store

    def drop(self, key: Hashable) -> None:
        self._store.pop(key, None)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for g in self._store.values() for ts in g.values() for t in ts)

    @torch.no_grad()
    def add(self, key: Hashable, tokens: Sequence[Sequence[int]]) -> None:
        """Compute and store the states of one group of records (no-op if present)."""
        if key in self._store:
            return
        out: dict[int, list[torch.Tensor | None]] = {lvl: [None] * len(tokens) for lvl in self.levels}
        top = max(self.levels)
        for batch in bucket_batches([len(t) for t in tokens], self.batch_size):
            ids, mask = pad_ids([tokens[i] for i in batch], self.pad_id, device=self.device)
            hidden = embed(self.encoder, ids)
            level = 0
            for target in self.levels:
                hidden = run_layers(self.encoder, hidden, mask, level, target)
                level = target
                for row, i in enumerate(batch):
                    out[target][i] = hidden[row, : len(tokens[i])].clone()
                if level == top:
                    break
        self._store[key] = out  # type: ignore[assignment]

    def get(self, key: Hashable, level: int) -> list[torch.Tensor]:
        return self._store[key][level]
