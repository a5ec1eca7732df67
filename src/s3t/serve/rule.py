"""The serving rule, pure Python: which checkpoint each shard serves.

A shard's served checkpoint is, over its B sequences, the longest prefix whose
checkpoints all have a clean lineage (no deleted record) and form one unbroken chain
(each stage's parent is the stage below it). Ties: best validation accuracy, then the
lowest sequence index. Length 0 means the shard is dead.

Example
-------
>>> a = StageView("c1", None, clean=True, val_accuracy=0.7)
>>> b = StageView("c2", "c1", clean=False, val_accuracy=0.8)
>>> c = StageView("d1", None, clean=True, val_accuracy=0.75)
>>> choose_served([[a, b], [c]])
Served(sequence=1, stage=1, checkpoint_id='d1', val_accuracy=0.75)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class StageView:
    """What the rule needs to know about the current checkpoint of one stage."""

    checkpoint_id: str
    parent_id: str | None
    clean: bool
    val_accuracy: float | None = None


@dataclass(frozen=True)
class Served:
    sequence: int
    stage: int
    checkpoint_id: str
    val_accuracy: float | None = None


def valid_prefix(chain: Sequence[StageView | None]) -> int:
    """Number of leading stages that are clean and chained to the stage below."""
    parent = None
    for n, view in enumerate(chain):
        if view is None or not view.clean or view.parent_id != parent:
            return n
        parent = view.checkpoint_id
    return len(chain)


def choose_served(chains: Sequence[Sequence[StageView | None]]) -> Served | None:
    """Pick the served checkpoint of one shard from its sequences' stage chains."""
    best: tuple | None = None
    for j, chain in enumerate(chains):
        n = valid_prefix(chain)
        if n == 0:
            continue
        view = chain[n - 1]
        acc = view.val_accuracy if view.val_accuracy is not None else float("-inf")
        key = (n, acc, -j)
        if best is None or key > best[0]:
            best = (key, Served(j, n, view.checkpoint_id, view.val_accuracy))
    return None if best is None else best[1]
