"""``s3t evaluate``: exact unlearning (s3t, SISA, Retrain) against approximate unlearning
(FT, GA, RL, l1-sparse, SalUn, NPO) on the same model and data, with UA / RA / TA /
MIA-efficacy / RTE and every method's gap to Retrain (see :func:`run_evaluate`); and for a
chat model (task ``causal-lm``) exact s3t against Retrain, GA and NPO on forgotten people:
TOFU-style forget quality and utility (see :func:`run_evaluate_lm`, :mod:`s3t.evaluate.lm`).

Importing this package is torch-free; :func:`run_evaluate` loads the training stack.
"""

from __future__ import annotations

from typing import Any

from .config import EvaluateConfig
from .lm_config import LMEvaluateConfig
from .methods import METHODS, get_method, register_method


def run_evaluate(out_dir, quick: bool = True, **overrides: Any) -> dict:
    """Run the comparison, write ``results.json``, ``summary.md`` and PNG plots to ``out_dir``."""
    from .run import run_evaluate as _run

    return _run(out_dir, quick=quick, **overrides)


def run_evaluate_lm(out_dir, quick: bool = True, **overrides: Any) -> dict:
    """The causal-LM comparison; writes ``results.json``, ``summary.md`` and ``lm_eval.png`` to ``out_dir``."""
    from .lm import run_evaluate_lm as _run

    return _run(out_dir, quick=quick, **overrides)


__all__ = ["METHODS", "EvaluateConfig", "LMEvaluateConfig", "get_method", "register_method", "run_evaluate",
           "run_evaluate_lm"]
