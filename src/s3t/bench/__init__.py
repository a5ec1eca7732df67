"""``s3t bench``: S3T side by side with SISA and full retraining, in one run (see :func:`run_bench`).

Importing this package is torch-free; :func:`run_bench` loads the training stack.
"""

from __future__ import annotations

from typing import Any

from .config import BenchConfig


def run_bench(out_dir, quick: bool = True, **overrides: Any) -> dict:
    """Run the benchmark, write ``results.json`` + PNG plots to ``out_dir``, return the results."""
    from .run import run_bench as _run

    return _run(out_dir, quick=quick, **overrides)


__all__ = ["BenchConfig", "run_bench"]
