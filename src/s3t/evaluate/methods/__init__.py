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

    def configure(self, **overrides: Any) -> MethodConfig:
        return self.config_cls(**overrides)


METHODS: dict[str, Method] = {}


def register_method(name: str, unlearn: Callable[..., Any], config_cls: type, description: str = "") -> None:
    """Register an unlearning method under ``name``; a name can be registered only once."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a method name must be a non-empty string; got {name!r}")
    if name in METHODS:
        raise ConfigError(f"unlearning method {name!r} is already registered")
    METHODS[name] = Method(name, unlearn, config_cls, description)


def get_method(name: str) -> Method:
    """The method registered as ``name``."""
    if name not in METHODS:
        raise ConfigError(f"unknown unlearning method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]


for _module in (ft, ga, rl, l1_sparse, salun, npo):
    register_method(_module.NAME, _module.unlearn, _module.Config, (_module.__doc__ or "").strip().splitlines()[0])

__all__ = ["METHODS", "Method", "MethodConfig", "get_method", "register_method"]
