"""Per-architecture descriptions: where the layers are, which modules take adapters, how the
pristine trunk runs.

S3T needs three things from an encoder that Hugging Face models do not share a name for:

- the **layer list** (``encoder.layer`` in BERT, ``transformer.layer`` in DistilBERT,
  ``layers`` in ModernBERT), to count layer groups from the top and to place LoRA adapters
  by exact layer index (peft ``layers_to_transform`` + ``layers_pattern``);
- the **modules that take adapters**: ``LoraSettings.targets`` names roles (``query``, ``key``,
  ``value``) that each architecture maps to its own module names; any other name is given to
  peft as is (a module-name suffix inside a layer);
- **running the frozen trunk from any layer**: the embedding output, whatever each layer needs
  besides the hidden states (attention masks, relative positions, rotary embeddings), and
  what follows the top layer (ModernBERT's final norm). Training starts from cached states
  entering layer k, serving computes them once per batch, so both need layer-by-layer runs.

One :class:`Architecture` per family, registered by ``config.model_type`` (like peft's
model-type mappings). An unsupported model fails at load with the list of supported ones.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Mapping

import torch

from ..errors import ConfigError


def _plain_embed(encoder, ids: torch.Tensor) -> torch.Tensor:
    """BERT-style embeddings (word + position + token type 0)."""
    return encoder.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))


def _electra_embed(encoder, ids: torch.Tensor) -> torch.Tensor:
    hidden = _plain_embed(encoder, ids)
    project = getattr(encoder, "embeddings_project", None)  # embedding_size != hidden_size
    return project(hidden) if project is not None else hidden


def _ids_only_embed(encoder, ids: torch.Tensor) -> torch.Tensor:
    """Embeddings that take no token types (DistilBERT, ModernBERT)."""
    return encoder.embeddings(input_ids=ids)


def _bidirectional_mask(encoder, hidden: torch.Tensor, mask2d: torch.Tensor):
    """The 4-D mask in the form the configured attention implementation expects."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=mask2d)


def _call_masked(encoder, index: int, layer, hidden: torch.Tensor, mask) -> torch.Tensor:
    out = layer(hidden, attention_mask=mask)
    return out[0] if isinstance(out, tuple) else out  # transformers 4.x layers return tuples


def _deberta_context(encoder, hidden: torch.Tensor, mask2d: torch.Tensor):
    """DeBERTa-v2's disentangled attention: a query x key mask, relative positions and their embeddings."""
    enc = encoder.encoder
    return SimpleNamespace(mask=enc.get_attention_mask(mask2d), input_mask=mask2d,
                           relative_pos=enc.get_rel_pos(hidden), rel_embeddings=enc.get_rel_embedding())


def _deberta_call(encoder, index: int, layer, hidden: torch.Tensor, ctx) -> torch.Tensor:
    out = layer(hidden, ctx.mask, relative_pos=ctx.relative_pos, rel_embeddings=ctx.rel_embeddings)[0]
    conv = encoder.encoder.conv
    if index == 0 and conv is not None:  # DeBERTa-v2's convolution after the first layer (conv_kernel_size > 0)
        # it reads neighbouring positions of the layer's input, whose padding the model zeroes
        # (embeddings * mask); cached states are zero-padded too, so both paths see the same zeros
        out = conv(hidden * ctx.input_mask.unsqueeze(-1).to(hidden.dtype), out, ctx.input_mask)
    return out


def _modernbert_context(encoder, hidden: torch.Tensor, mask2d: torch.Tensor):
    """ModernBERT: full or sliding-window masks and rotary embeddings, per layer attention type."""
    from transformers.masking_utils import create_bidirectional_mask, create_bidirectional_sliding_window_mask

    kw = dict(config=encoder.config, inputs_embeds=hidden, attention_mask=mask2d)
    masks = {"full_attention": create_bidirectional_mask(**kw),
             "sliding_attention": create_bidirectional_sliding_window_mask(**kw)}
    positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    rotary = {t: encoder.rotary_emb(hidden, positions, t) for t in set(encoder.config.layer_types)}
    return masks, rotary


def _modernbert_call(encoder, index: int, layer, hidden: torch.Tensor, ctx) -> torch.Tensor:
    masks, rotary = ctx
    return layer(hidden, attention_mask=masks[layer.attention_type], position_embeddings=rotary[layer.attention_type])


def _modernbert_finish(encoder, hidden: torch.Tensor) -> torch.Tensor:
    return encoder.final_norm(hidden)


# -- decoders (causal LMs, loaded with their LM head: the trunk is ``model``) -----------------
def _decoder_embed(lm, ids: torch.Tensor) -> torch.Tensor:
    return lm.model.embed_tokens(ids)


def causal_mask_arguments(create, config, hidden: torch.Tensor, mask2d: torch.Tensor,
                          positions: torch.Tensor) -> dict:
    """Keyword arguments for ``transformers.masking_utils.create_causal_mask`` (no KV cache), whose
    signature changed within transformers 5: ``input_embeds`` + ``cache_position`` +
    ``past_key_values`` (5.0), ``inputs_embeds`` + ``past_key_values`` (5.17), ``inputs_embeds`` +
    ``cache`` (5.25, where ``past_key_values`` is a deprecated keyword)."""
    params = inspect.signature(create).parameters
    args = {"config": config, "attention_mask": mask2d, "position_ids": positions,
            ("inputs_embeds" if "inputs_embeds" in params else "input_embeds"): hidden,
            ("cache" if "cache" in params else "past_key_values"): None}
    if "cache_position" in params:
        args["cache_position"] = positions[0]
    return args


def _decoder_context(lm, hidden: torch.Tensor, mask2d: torch.Tensor):
    """Causal mask and rotary embeddings for a right-padded batch starting at position 0 (a real
    token never attends to a later position, so padding on the right changes none of its states)."""
    from transformers.masking_utils import create_causal_mask

    positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    mask = create_causal_mask(**causal_mask_arguments(create_causal_mask, lm.config, hidden, mask2d, positions))
    return SimpleNamespace(mask=mask, positions=positions, rotary=lm.model.rotary_emb(hidden, positions))


def _decoder_call(lm, index: int, layer, hidden: torch.Tensor, ctx) -> torch.Tensor:
    out = layer(hidden, attention_mask=ctx.mask, position_ids=ctx.positions, position_embeddings=ctx.rotary)
    return out[0] if isinstance(out, tuple) else out


def _decoder_finish(lm, hidden: torch.Tensor) -> torch.Tensor:
    return lm.model.norm(hidden)


@dataclass(frozen=True, eq=False)
class Architecture:
    """How S3T drives one encoder family (see the module docstring)."""

    name: str
    model_types: tuple[str, ...]  # config.model_type values
    layers: str  # dotted path of the layer ModuleList inside the encoder
    roles: Mapping[str, tuple[str, ...]]  # LoRA target role -> module names inside a layer
    embed: Callable[[Any, torch.Tensor], torch.Tensor] = _plain_embed  # (encoder, ids) -> states entering layer 0
    context: Callable = _bidirectional_mask  # (encoder, hidden, mask2d) -> what every layer of one run needs
    call: Callable = _call_masked  # (encoder, index, layer, hidden, context) -> hidden
    finish: Callable | None = None  # (encoder, hidden) -> hidden, after the top layer
    load_kwargs: Mapping[str, Any] = field(default_factory=dict)  # AutoModel.from_pretrained extras
    kind: str = "encoder"  # "encoder" (classification) or "decoder" (causal-lm: layers under the LM head's ``model``)

    @property
    def layers_pattern(self) -> str:
        """The layer list's own name, as peft's ``layers_pattern``."""
        return self.layers.rsplit(".", 1)[-1]

    def layer_list(self, encoder) -> torch.nn.ModuleList:
        module = encoder
        for part in self.layers.split("."):
            module = getattr(module, part)
        return module

    def layer_index(self, name: str) -> int | None:
        """Layer index in a parameter or module name (exact path, never a substring: 'layer.1' vs 'layer.10')."""
        match = _index_pattern(self.layers).search(name)
        return int(match.group(1)) if match else None

    def targets(self, names) -> list[str]:
        """Module names for ``LoraSettings.targets``: roles mapped, other names kept; each once, in order."""
        out: list[str] = []
        for name in names:
            for module in self.roles.get(name, (name,)):
                if module not in out:
                    out.append(module)
        return out

    def describe(self) -> str:
        return f"{self.name} ({', '.join(self.model_types)}; {self.kind})"


_PATTERNS: dict[str, re.Pattern] = {}


def _index_pattern(path: str) -> re.Pattern:
    if path not in _PATTERNS:
        _PATTERNS[path] = re.compile(rf"(?:^|\.){re.escape(path)}\.(\d+)\.")
    return _PATTERNS[path]


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(arch: Architecture) -> Architecture:
    """Add a family; its model types must be new."""
    taken = [t for t in arch.model_types if t in ARCHITECTURES]
    if taken:
        raise ConfigError(f"model type(s) {taken} already have an architecture")
    for t in arch.model_types:
        ARCHITECTURES[t] = arch
    return arch


def supported() -> list[Architecture]:
    """Registered families, each once, in registration order."""
    out: list[Architecture] = []
    for arch in ARCHITECTURES.values():
        if not any(a is arch for a in out):
            out.append(arch)
    return out


def supported_text() -> str:
    return "; ".join(a.describe() for a in supported())


def architecture_for(config) -> Architecture:
    """The family of a transformers config (or of a model, via its ``config``)."""
    config = getattr(config, "config", config)
    model_type = getattr(config, "model_type", None)
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        names = getattr(config, "architectures", None) or []
        shown = f"{model_type!r}" + (f" ({', '.join(names)})" if names else "")
        raise ConfigError(
            f"model type {shown} is not supported: s3t must know where an encoder's layers are, which modules "
            f"take adapters and how its trunk runs layer by layer. Supported: {supported_text()}. "
            "Add a family with s3t.train.architectures.register_architecture."
        )
    return arch


_BERT_ROLES = {"query": ("query",), "key": ("key",), "value": ("value",)}
_NO_POOLER = {"add_pooling_layer": False}

register_architecture(Architecture("BERT", ("bert",), "encoder.layer", _BERT_ROLES, load_kwargs=_NO_POOLER))
register_architecture(Architecture("RoBERTa/XLM-R", ("roberta", "xlm-roberta"), "encoder.layer", _BERT_ROLES,
                                   load_kwargs=_NO_POOLER))
register_architecture(Architecture("DistilBERT", ("distilbert",), "transformer.layer",
                                   {"query": ("q_lin",), "key": ("k_lin",), "value": ("v_lin",)},
                                   embed=_ids_only_embed))
register_architecture(Architecture("DeBERTa-v2/v3", ("deberta-v2",), "encoder.layer",
                                   {"query": ("query_proj",), "key": ("key_proj",), "value": ("value_proj",)},
                                   context=_deberta_context, call=_deberta_call))
register_architecture(Architecture("ELECTRA", ("electra",), "encoder.layer", _BERT_ROLES, embed=_electra_embed))
register_architecture(Architecture("ModernBERT", ("modernbert",), "layers",
                                   # q, k and v are one fused projection: every role adapts it
                                   {"query": ("Wqkv",), "key": ("Wqkv",), "value": ("Wqkv",)},
                                   embed=_ids_only_embed, context=_modernbert_context, call=_modernbert_call,
                                   finish=_modernbert_finish))
register_architecture(Architecture("Llama", ("llama",), "model.layers",
                                   {"query": ("q_proj",), "key": ("k_proj",), "value": ("v_proj",)},
                                   embed=_decoder_embed, context=_decoder_context, call=_decoder_call,
                                   finish=_decoder_finish, kind="decoder"))
