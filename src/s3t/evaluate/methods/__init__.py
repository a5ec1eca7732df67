"""Approximate unlearning methods behind one interface and a registry (torch-free to import).

Every method is ``unlearn(model, forget, retain, config) -> model``: ``model`` is a fitted
:class:`~s3t.train.model.AdaptedEncoder` (the full fine-tune: LoRA on every layer + head),
``forget`` and ``retain`` are :class:`~s3t.train.stage.Examples` with token ids, ``config``
the method's dataclass (None = defaults). It returns a NEW model: the input is deep-copied
(frozen encoder tensors shared, adapters and head copied) and never modified. Only the
LoRA adapters and the head are updated, as in training.

=========  =====================================================================
``ft``     fine-tune on (a share of) the retained data
``ga``     gradient ascent on the forget set
``rl``     random (wrong) labels on the forget set, mixed with retained data
``l1_sparse`` FT with an l1 penalty on the trainable weights (Jia et al. 2023)
``salun``  RL restricted to the salient weights: top |∇ forget loss| (Fan et al. 2024)
``npo``    negative preference optimisation against the input model (Zhang et al. 2024)
=========  =====================================================================

Each method names the tasks it handles (``Method.tasks``). GA and NPO reach the model only
through the task's loss and per-record log-likelihood (:mod:`.common`), so they also unlearn
a causal LM (task ``causal-lm``: the forget records' response tokens); the others relabel
classes or were written for a classifier and stay ``classification`` only.

Example
-------
>>> from s3t.evaluate.methods import get_method              # doctest: +SKIP
>>> method = get_method("ga")
>>> unlearned = method.unlearn(model, forget, retain, method.config_cls(lr=1e-3))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ...errors import ConfigError
from . import ft, ga, l1_sparse, npo, rl, salun
from .base import MethodConfig


@dataclass(frozen=True)
class Method:
    name: str
    unlearn: Callable[..., Any]
    config_cls: type
    description: str
    tasks: tuple[str, ...] = ("classification",)

    def configure(self, **overrides: Any) -> MethodConfig:
        return self.config_cls(**overrides)


METHODS: dict[str, Method] = {}


def register_method(name: str, unlearn: Callable[..., Any], config_cls: type, description: str = "",
                    tasks: tuple[str, ...] = ("classification",)) -> None:
    """Register an unlearning method under ``name`` for ``tasks``; a name can be registered only once."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a method name must be a non-empty string; got {name!r}")
    if name in METHODS:
        raise ConfigError(f"unlearning method {name!r} is already registered")
    METHODS[name] = Method(name, unlearn, config_cls, description, tuple(tasks))


def get_method(name: str, task: str | None = None) -> Method:
    """The method registered as ``name`` (that handles ``task``, when given)."""
    if name not in METHODS:
        raise ConfigError(f"unknown unlearning method {name!r}; expected one of {sorted(METHODS)}")
    if task is not None and task not in METHODS[name].tasks:
        raise ConfigError(f"unlearning method {name!r} handles task(s) {list(METHODS[name].tasks)}, not {task!r}; "
                          f"methods for {task!r}: {methods_for(task)}")
    return METHODS[name]


def methods_for(task: str) -> list[str]:
    """Names of the registered methods that handle ``task``."""
    return sorted(n for n, m in METHODS.items() if task in m.tasks)


for _module in (ft, ga, rl, l1_sparse, salun, npo):
    register_method(_module.NAME, _module.unlearn, _module.Config, (_module.__doc__ or "").strip().splitlines()[0],
                    getattr(_module, "TASKS", ("classification",)))

__all__ = ["METHODS", "Method", "MethodConfig", "get_method", "methods_for", "register_method"]
