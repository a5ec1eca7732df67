"""s3t — exact machine unlearning with Sequence-aware Sharded Sliced Training.

Public API (imported lazily, so ``import s3t.plan`` stays torch-free)::

    from s3t import S3T, S3TConfig, PlanConfig, TrainConfig, LoraSettings, ServeConfig
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "S3T": "s3t.estimator",
    "S3TConfig": "s3t.config",
    "PlanConfig": "s3t.config",
    "TrainConfig": "s3t.config",
    "LoraSettings": "s3t.config",
    "ServeConfig": "s3t.config",
    "Receipt": "s3t.forget",
    "AuditReport": "s3t.audit",
    "load_builtin": "s3t.data",
    "to_records": "s3t.data",
    "RecordSet": "s3t.data",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 's3t' has no attribute {name!r}")
