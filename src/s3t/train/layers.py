"""Layer groups (top-first) and exact LoRA placement with peft.

With N transformer layers and L slices, group k (1-based) holds the n = N / L layers
counted from the top: group 1 = layers N-n..N-1, group 2 the n below, and so on.
Adapters are placed with peft's ``layers_to_transform`` (exact indices), never by
substring matching of module names ("layer.1" would also match "layer.10"). Where the
layers are and which modules take adapters comes from the model's
:class:`~s3t.train.architectures.Architecture`.
"""

from __future__ import annotations

import copy

from torch import nn

from ..config import LoraSettings
from ..errors import ConfigError
from .architectures import Architecture, architecture_for


def layer_groups(n_layers: int, n_slices: int) -> list[list[int]]:
    """Return the layer indices of groups 1..L (index 0 = group 1 = the top layers).

    >>> layer_groups(6, 3)
    [[4, 5], [2, 3], [0, 1]]
    """
    if n_slices < 1 or n_layers % n_slices != 0:
        raise ConfigError(
            f"plan.slices must divide the model's {n_layers} transformer layers (one layer group per slice); "
            f"got {n_slices}"
        )
    n = n_layers // n_slices
    return [list(range(n_layers - (k + 1) * n, n_layers - k * n)) for k in range(n_slices)]


def adapted_layers(groups: list[list[int]], stage: int) -> list[int]:
    """Layers carrying adapters at ``stage`` (groups 1..stage), sorted, each once.

    Groups may repeat layers: a SISA stage is expressed as every group = all layers.
    """
    return sorted({i for g in groups[:stage] for i in g})


def lora_config(settings: LoraSettings, layers: list[int], arch: Architecture):
    """peft LoraConfig placing adapters on exactly ``layers`` (by index) of an ``arch`` model."""
    from peft import LoraConfig

    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=arch.targets(settings.targets),
        layers_to_transform=list(layers),
        layers_pattern=arch.layers_pattern,
        bias="none",
    )


def check_targets(base, arch: Architecture, targets: list[str], layers: list[int]) -> None:
    """Every target module exists in every adapted layer (else a ConfigError naming what does)."""
    stack = arch.layer_list(base)
    for i in layers:
        names = [n for n, _ in stack[i].named_modules() if n]
        for t in targets:
            if not any(n == t or n.endswith("." + t) for n in names):
                linear = sorted({n.rsplit(".", 1)[-1] for n, m in stack[i].named_modules() if isinstance(m, nn.Linear)})
                raise ConfigError(
                    f"lora.targets: no module {t!r} in layer {i} of this {arch.name} model; its linear modules: "
                    f"{linear} (roles: {sorted(arch.roles)})"
                )


def attach_lora(base, settings: LoraSettings, layers: list[int]):
    """Wrap a structural copy of ``base`` with LoRA on ``layers``.

    The copy shares the frozen base tensors with ``base`` (they are never modified), so
    many adapted models cost only their adapters in memory.
    """
    from peft import get_peft_model

    arch = architecture_for(base)
    check_targets(base, arch, arch.targets(settings.targets), layers)
    memo = {id(p): p for p in base.parameters()}
    clone = copy.deepcopy(base, memo)
    return get_peft_model(clone, lora_config(settings, layers, arch))
