"""The served ensemble: one adapted encoder per live shard, mean of logits (or probabilities).

Shared trunk: every member uses pretrained weights below its lowest adapted layer, so a
batch runs the pristine trunk once — up to the lowest level any member needs, keeping
the hidden states at each member's level — and then only each member's adapted top
layers. Swapping to a new manifest replaces the member table in one assignment, so a
prediction sees either the old or the new ensemble, never a mix.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..config import S3TConfig
from ..errors import IntegrityError, NoLiveModelError
from ..train.batches import bucket_batches, pad_ids, tokenize
from ..train.layers import adapted_layers, layer_groups
from ..train.model import AdaptedEncoder, embed, rng_untouched, run_layers
from .shells import ShellPool

log = logging.getLogger("s3t")

@dataclass(frozen=True)
class Member:
    shard: int
    checkpoint_id: str
    stage: int
    model: AdaptedEncoder

    @property
    def level(self) -> int:
        return self.model.lowest_adapted


StateLoader = Callable[[str], dict[str, torch.Tensor]]


class Ensemble:
    """Members built from a served manifest; ``predict_logits`` aggregates live shards."""

    def __init__(self, backbone, config: S3TConfig, n_labels: int):
        self.backbone = backbone
        self.config = config
        self.n_labels = n_labels
        self.groups = layer_groups(backbone.n_layers, config.plan.slices)
        self.members: dict[int, Member] = {}
        self.out_of_service: dict[int, str] = {}  # shard -> checkpoint that failed its integrity check
        self.manifest_version = 0
        self.standby = None  # serve.standby.Standby: pre-built members a next deletion could switch to
        # retired members' models, reloaded instead of rebuilt once nothing holds them (serve.shells)
        self.shells = ShellPool(capacity=config.plan.shards * config.plan.slices)
        # per stage, a never-served model that new members are copied from (AdaptedEncoder.spare)
        self._templates: dict[int, AdaptedEncoder] = {}
        self._templates_lock = threading.Lock()

    def build_member(self, shard: int, checkpoint_id: str, stage: int, state: dict[str, torch.Tensor]) -> Member:
        """The member serving ``state`` (a checkpoint of ``stage``): a spare shell of that stage
        reloaded, or a new one; the same weights either way (every adapter and the head are loaded)."""
        model = self.shells.take(stage)
        if model is None:
            model = self._template(stage).spare(self.backbone.model)
        model.load_state(state)
        model.eval()
        return Member(shard, checkpoint_id, stage, model)

    def _template(self, stage: int) -> AdaptedEncoder:
        """The model of ``stage`` that new members copy (built once; its weights are never served:
        every adapter and the head of a copy are overwritten by the checkpoint loaded into it)."""
        with self._templates_lock:
            if stage not in self._templates:
                with rng_untouched():  # its init is overwritten in every copy
                    self._templates[stage] = AdaptedEncoder(self.backbone.model, self.config.train.lora,
                                                            adapted_layers(self.groups, stage), self.n_labels)
            return self._templates[stage]

    def sync(self, version: int, manifest: dict, load_state: StateLoader) -> list[int]:
        """Swap to ``manifest``; reuse unchanged members. Returns shards whose member changed.

        A checkpoint that fails its integrity check (sha256 mismatch, missing or unreadable
        file) takes only its shard out of service — logged at ERROR, listed in
        ``out_of_service``, never served; the other shards keep serving.
        """
        new: dict[int, Member] = {}
        broken: dict[int, str] = {}
        changed = []
        for shard_key, entry in manifest["shards"].items():
            shard = int(shard_key)
            old = self.members.get(shard)
            if entry is None:
                if old is not None:
                    changed.append(shard)
                continue
            if old is not None and old.checkpoint_id == entry["checkpoint"]:
                new[shard] = old
                continue
            standby = self.standby.take(entry["checkpoint"]) if self.standby is not None else None
            if standby is not None:
                new[shard] = standby
                changed.append(shard)
                continue
            try:
                state = load_state(entry["checkpoint"])
            except IntegrityError as exc:
                log.error("shard %d taken out of service: checkpoint %s failed its integrity check (%s)",
                          shard, entry["checkpoint"], exc)
                broken[shard] = entry["checkpoint"]
                if old is not None:
                    changed.append(shard)
                continue
            new[shard] = self.build_member(shard, entry["checkpoint"], int(entry["stage"]), state)
            changed.append(shard)
        changed += [s for s in self.members if str(s) not in manifest["shards"]]
        old, self.members = self.members, new  # one assignment: readers see old or new, never a mix
        self.out_of_service = broken
        self.manifest_version = version
        kept = {id(m) for m in new.values()}
        self.shells.retire([m for m in old.values() if id(m) not in kept])  # reused once no reader holds them
        return sorted(set(changed))

    @torch.no_grad()
    def shard_logits(self, texts: Sequence[str]) -> dict[int, torch.Tensor]:
        """Per live shard, logits [n, C] — the pristine trunk is computed once per batch."""
        members = dict(self.members)  # snapshot
        if not members:
            raise NoLiveModelError(
                "no model available: every shard's lineages hold deleted records; retraining is needed"
            )
        tokens = tokenize(self.backbone.tokenizer, list(texts), self.config.train.max_length)
        out = {s: torch.empty((len(texts), self.n_labels)) for s in members}
        levels = sorted({m.level for m in members.values()})
        pad = int(self.backbone.tokenizer.pad_token_id or 0)
        encoder = self.backbone.model
        for batch in bucket_batches([len(t) for t in tokens], self.config.serve.batch_size):
            ids, mask = pad_ids([tokens[i] for i in batch], pad, device=self.backbone.device)
            hidden, level = embed(encoder, ids), 0
            at_level = {}
            for target in levels:
                hidden = run_layers(encoder, hidden, mask, level, target)
                at_level[target], level = hidden, target
            for s, m in members.items():
                out[s][batch] = m.model.forward_from(m.level, at_level[m.level], mask).cpu()
        return out

    def aggregate(self, per_shard: dict[int, torch.Tensor]) -> np.ndarray:
        """Class probabilities of the ensemble (mean of logits → softmax, or mean of softmax)."""
        stacked = torch.stack([per_shard[s] for s in sorted(per_shard)])
        if self.config.serve.aggregate == "logits":
            return torch.softmax(stacked.mean(0), -1).numpy()
        return torch.softmax(stacked, -1).mean(0).numpy()

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.n_labels), dtype=np.float32)
        return self.aggregate(self.shard_logits(texts))
