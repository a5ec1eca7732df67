"""The adapted encoder of one checkpoint: frozen trunk + LoRA on groups 1..k + linear head.

It can run from token ids (full forward) or from the hidden states entering any layer
(the cached frozen trunk), with the same modules, so both paths share one definition.
"""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from functools import cached_property

import torch
from torch import nn

from ..config import LoraSettings
from .architectures import architecture_for
from .layers import attach_lora

ADAPTER_PREFIX = "adapter."
HEAD_PREFIX = "head."

# Building an AdaptedEncoder draws from torch's global RNG (LoRA A and head initialisation).
# Training seeds that RNG and builds under this lock, so a member built at the same moment on
# another thread (the standby builder, a forget's swap) can neither take draws meant for the
# training init nor shift them: builds that load saved weights also restore the RNG state.
_RNG_LOCK = threading.RLock()


@contextmanager
def seeded(seed: int):
    """Hold the global RNG, seeded with ``seed``, for a deterministic model initialisation."""
    with _RNG_LOCK:
        torch.manual_seed(seed)
        yield


@contextmanager
def rng_untouched():
    """Build models whose random init is overwritten at once (loaded checkpoints) without moving
    the global RNG, and never in the middle of a seeded initialisation on another thread."""
    with _RNG_LOCK, torch.random.fork_rng(devices=[]):
        yield


def run_layers(encoder, hidden: torch.Tensor, mask2d: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Apply encoder layers ``start..stop-1`` to hidden states (padding masked), the way the
    encoder's architecture runs them (see :mod:`s3t.train.architectures`)."""
    if start >= stop:
        return hidden
    arch = architecture_for(encoder)
    context = arch.context(encoder, hidden, mask2d)
    stack = arch.layer_list(encoder)
    for index in range(start, stop):
        hidden = arch.call(encoder, index, stack[index], hidden, context)
    return hidden


def embed(encoder, input_ids: torch.Tensor) -> torch.Tensor:
    """Embedding output (the hidden states entering layer 0)."""
    return architecture_for(encoder).embed(encoder, input_ids)


def finish(encoder, hidden: torch.Tensor) -> torch.Tensor:
    """What the architecture applies after its top layer (ModernBERT's final norm; nothing for BERT)."""
    done = architecture_for(encoder).finish
    return hidden if done is None else done(encoder, hidden)


def mean_pool(hidden: torch.Tensor, mask2d: torch.Tensor) -> torch.Tensor:
    m = mask2d.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


class AdaptedEncoder(nn.Module):
    """Frozen pretrained model with LoRA adapters on ``layers``, and for an encoder a linear head.

    A decoder (task ``causal-lm``) keeps its own LM head, frozen and shared: its checkpoint
    state is the adapters alone, and ``head`` is None.
    """

    def __init__(self, base: nn.Module, lora: LoraSettings, layers: list[int], n_labels: int):
        super().__init__()
        self.layers = sorted(layers)
        self.arch = architecture_for(base)
        self.peft = attach_lora(base, lora, self.layers)
        # created on the CPU (the same initial bits wherever it trains), then moved to the model's device
        head = nn.Linear(base.config.hidden_size, n_labels) if self.arch.kind == "encoder" else None
        self.head = head.to(next(base.parameters()).device) if head is not None else None
        self.peft.eval()

    def spare(self, base: nn.Module) -> "AdaptedEncoder":
        """A new adapted encoder of this one's structure (layers, LoRA settings, head) that shares
        ``base``'s frozen tensors, as a new :class:`AdaptedEncoder` on ``base`` would, at about a
        third of the cost (no structural copy of ``base`` and no LoRA injection: a deep copy of this
        one in which every parameter of ``base`` is kept by reference). Its adapters and head are
        copies of this one's: load a checkpoint into it (strict :meth:`load_state`) before use.
        ``base`` must be the model this one was built on."""
        memo = {id(p): p for p in base.parameters()}
        return copy.deepcopy(self, memo)

    @property
    def encoder(self) -> nn.Module:
        """The wrapped encoder, adapters in place (peft: ``base_model.model``)."""
        return self.peft.base_model.model

    @property
    def n_layers(self) -> int:
        return len(self.arch.layer_list(self.encoder))

    @property
    def device(self) -> torch.device:
        return next(self.peft.parameters()).device

    @property
    def lowest_adapted(self) -> int:
        return self.layers[0]

    def states_from(self, level: int, hidden: torch.Tensor, mask2d: torch.Tensor) -> torch.Tensor:
        """Top states (after the final norm, if any) from the hidden states entering layer ``level``."""
        return finish(self.encoder, run_layers(self.encoder, hidden, mask2d, level, self.n_layers))

    def forward_from(self, level: int, hidden: torch.Tensor, mask2d: torch.Tensor) -> torch.Tensor:
        """Class logits from the hidden states entering layer ``level`` (encoders)."""
        return self.head(mean_pool(self.states_from(level, hidden, mask2d), mask2d))

    def lm_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Next-token logits of top states (decoders: the model's own, frozen LM head)."""
        return self.encoder.lm_head(states)

    def forward(self, input_ids: torch.Tensor, mask2d: torch.Tensor) -> torch.Tensor:
        return self.forward_from(0, embed(self.encoder, input_ids), mask2d)

    # -- checkpoint state -------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        """Adapters of all adapted layers + head, with stable names (no adapter name)."""
        from peft import get_peft_model_state_dict

        def copy(v: torch.Tensor) -> torch.Tensor:  # on the CPU, whatever device trained it
            return v.detach().to("cpu", copy=True).contiguous()

        out = {ADAPTER_PREFIX + k: copy(v) for k, v in get_peft_model_state_dict(self.peft).items()}
        if self.head is not None:
            out.update({HEAD_PREFIX + k: copy(v) for k, v in self.head.state_dict().items()})
        return out

    def load_state(self, state: dict[str, torch.Tensor], strict_layers: bool = True) -> None:
        """Load adapters + head saved by :meth:`state` (a parent's state may cover fewer layers)."""
        from peft import set_peft_model_state_dict

        adapters = {k[len(ADAPTER_PREFIX):]: v for k, v in state.items() if k.startswith(ADAPTER_PREFIX)}
        head = {k[len(HEAD_PREFIX):]: v for k, v in state.items() if k.startswith(HEAD_PREFIX)}
        result = set_peft_model_state_dict(self.peft, adapters)
        if result.unexpected_keys:
            raise ValueError(f"checkpoint holds adapters for layers this model lacks: {result.unexpected_keys[:3]}")
        if strict_layers:
            missing = self._adapter_keys - {ADAPTER_PREFIX + k for k in adapters}
            if missing:
                raise ValueError(f"checkpoint lacks adapters: {sorted(missing)[:3]}")
        if self.head is not None:
            self.head.load_state_dict(head)
        elif head:
            raise ValueError("checkpoint holds a classification head, but this model is a decoder (task causal-lm)")

    @cached_property
    def _adapter_keys(self) -> frozenset[str]:
        """The adapter names of :meth:`state` (fixed for a model: its layers never change)."""
        from peft import get_peft_model_state_dict

        return frozenset(ADAPTER_PREFIX + k for k in get_peft_model_state_dict(self.peft))

    def lora_parameters(self, layers: list[int]) -> list[nn.Parameter]:
        """LoRA parameters of exactly the given layer indices (parsed index, no substring match)."""
        wanted = set(layers)
        out = []
        for name, p in self.peft.named_parameters():
            if "lora_" in name and self.arch.layer_index(name) in wanted:
                out.append(p)
        return out
