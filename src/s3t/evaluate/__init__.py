"""``s3t evaluate``: exact unlearning (s3t, SISA, Retrain) against approximate unlearning
(FT, GA, RL, l1-sparse, SalUn, NPO) on the same model and data, with UA / RA / TA /
MIA-efficacy / RTE and every method's gap to Retrain (see :func:`run_evaluate`).

Importing this package is torch-free; :func:`run_evaluate` loads the training stack.
"""

from __future__ import annotations

from typing import Any

from .config import EvaluateConfig
from .methods import METHODS, get_method, register_method


def run_evaluate(out_dir, quick: bool = True, **overrides: Any) -> dict:
    """Run the comparison, write ``results.json``, ``summary.md`` and PNG plots to ``out_dir``."""
    from .run import run_evaluate as _run

    return _run(out_dir, quick=quick, **overrides)


__all__ = ["METHODS", "EvaluateConfig", "get_method", "register_method", "run_evaluate"]
