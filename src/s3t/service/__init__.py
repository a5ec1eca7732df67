"""The s3t HTTP service (FastAPI): ``create_app(workspace)``; ``s3t serve`` runs it with uvicorn.

Imported lazily so that ``python -m s3t.service.worker`` (the background retrain child)
does not import FastAPI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 's3t.service' has no attribute {name!r}")
