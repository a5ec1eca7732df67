"""Baselines measured side by side with S3T, on the same shards, slices, model and LoRA settings.

- ``sisa``: SISA (Bourtoule et al.) — B=1, identity slice order, one model per shard trained
  incrementally slice by slice with LoRA on ALL layers at every stage (no layer isolation),
  a checkpoint after each slice; forget retrains the hit shard from the checkpoint before
  the hit slice.
- ``full``: one all-layer LoRA model on all the data; forget retrains from scratch.

Importing this package (and :mod:`s3t.baselines.cost`) does not import torch; the
baselines load it when they train.
"""

from __future__ import annotations

from ..errors import ConfigError
from .full import FullRetrain
from .sisa import SISA, ForgetReport

BASELINES: dict[str, type] = {}


def register_baseline(name: str, cls: type) -> None:
    """Register a baseline class under ``name``; a name can be registered only once."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a baseline name must be a non-empty string; got {name!r}")
    if name in BASELINES:
        raise ConfigError(f"baseline {name!r} is already registered ({BASELINES[name].__name__})")
    BASELINES[name] = cls


def get_baseline(name: str) -> type:
    """The baseline class registered as ``name``."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    return BASELINES[name]


register_baseline("sisa", SISA)
register_baseline("full", FullRetrain)

__all__ = ["BASELINES", "FullRetrain", "ForgetReport", "SISA", "get_baseline", "register_baseline"]
