"""Seeds derived from (base seed, shard, prefix of slices) — no torch needed.

Two sequences sharing a prefix get the same seed for it, so the prefix is trained once
and retraining it from scratch reproduces it bit for bit.
"""

from __future__ import annotations

import hashlib
from typing import Sequence


def stage_seed(seed: int, shard: int, prefix: Sequence[int]) -> int:
    """63-bit seed of the stage that trains ``prefix`` of ``shard``.

    >>> stage_seed(0, 1, (2, 0)) == stage_seed(0, 1, [2, 0])
    True
    >>> stage_seed(0, 1, (2, 0)) != stage_seed(0, 1, (0, 2))
    True
    """
    text = f"s3t|{seed}|{shard}|{','.join(str(int(s)) for s in prefix)}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def prefix_key(prefix: Sequence[int]) -> str:
    """Canonical text form of a prefix, e.g. ``"2,0,1"``."""
    return ",".join(str(int(s)) for s in prefix)


def parse_prefix(key: str) -> tuple[int, ...]:
    return tuple(int(s) for s in key.split(",")) if key else ()
