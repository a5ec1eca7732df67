"""Configuration of an S3T run: small validated dataclasses with a JSON round trip.

The whole configuration is stored as ``s3t.json`` in the workspace, and the hash of the
settings that can change a bit of a checkpoint (:meth:`S3TConfig.training_digest`: no serving
settings, no executor, workers or Ray address) in every checkpoint's metadata, so a checkpoint
can always be traced to the settings that made it, and the same run gives the same file
wherever it ran.

Example
-------
>>> from s3t.config import S3TConfig, PlanConfig
>>> cfg = S3TConfig(plan=PlanConfig(shards=2, slices=3, budget=3))
>>> S3TConfig.from_dict(cfg.to_dict()) == cfg
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .plan.placement import PLACEMENTS
from .plan.sequences import SELECTORS


def _check(cond: bool, name: str, allowed: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{name} must be {allowed}; got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class PlanConfig:
    """How the training data is cut and ordered."""

    shards: int = field(default=3, metadata={"help": "m: number of disjoint shards (ensemble members).", "short": "-m"})
    slices: int = field(default=3, metadata={
        "help": "L: slices per shard; must divide the number of transformer layers.", "short": "-L"})
    budget: int = field(default=3, metadata={"help": "B: sequences (slice orders) trained per shard.", "short": "-B"})
    selection: str = field(default="cyclic", metadata={"help": "Sequence selection: 'cyclic', 'bms' or 'bms_relaxed' (see s3t.plan.sequences)."})
    priors: tuple[float, ...] | None = field(
        default=None, metadata={"help": "Per-slice deletion priors for 'bms' / 'bms_relaxed' (length L); None = uniform."}
    )
    seed: int = field(default=0, metadata={"help": "Seed for the shard/slice assignment and all training seeds."})
    placement: str = field(default="auto", metadata={
        "help": "Where records go: 'subject' (all records of a subject in one slice, so forgetting a person cuts "
                "one slice), 'record' (each record at random) or 'auto' (subject when the data has subjects)."})

    def __post_init__(self) -> None:
        _check(self.placement in PLACEMENTS, "plan.placement", f"one of {list(PLACEMENTS)}", self.placement)
        _check(_is_int(self.shards) and self.shards >= 1, "plan.shards", "an integer >= 1", self.shards)
        _check(_is_int(self.slices) and self.slices >= 1, "plan.slices", "an integer >= 1", self.slices)
        _check(_is_int(self.budget) and self.budget >= 1, "plan.budget", "an integer >= 1", self.budget)
        _check(_is_int(self.seed), "plan.seed", "an integer", self.seed)
        _check(self.selection in SELECTORS, "plan.selection", f"one of {sorted(SELECTORS)}", self.selection)
        if self.priors is not None:
            object.__setattr__(self, "priors", tuple(float(p) for p in self.priors))
            _check(len(self.priors) == self.slices, "plan.priors", f"a list of {self.slices} numbers", self.priors)


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapter settings (peft) used at every stage."""

    rank: int = field(default=8, metadata={"help": "LoRA rank r."})
    alpha: int = field(default=16, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    targets: tuple[str, ...] = field(default=("query", "value"), metadata={
        "help": "Modules inside each adapted layer that get adapters: the roles 'query', 'key', 'value' (mapped to each "
                "architecture's own module names, e.g. DistilBERT's q_lin, ModernBERT's fused Wqkv) or module names."})

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        _check(_is_int(self.rank) and self.rank >= 1, "lora.rank", "an integer >= 1", self.rank)
        _check(_is_number(self.alpha) and self.alpha > 0, "lora.alpha", "> 0", self.alpha)
        _check(_is_number(self.dropout) and 0.0 <= self.dropout < 1.0, "lora.dropout", "in [0, 1)", self.dropout)
        _check(len(self.targets) > 0 and all(isinstance(t, str) and t for t in self.targets), "lora.targets", "a non-empty list of module names", self.targets)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one stage."""

    model: str = field(
        default="all-MiniLM-L6-v2",
        metadata={"help": "Built-in model name or a local directory with a Hugging Face encoder + tokenizer."},
    )
    task: str = field(default="classification", metadata={
        "help": "What the model learns: 'classification' (an encoder + a linear head on text/label records) or "
                "'causal-lm' (a decoder chat model tuned on prompt/response records; see s3t.tasks).",
        "omit_default": True})
    epochs: int = field(default=2, metadata={"help": "Epochs per stage (over slices 1..k of the sequence)."})
    lr: float = field(default=2e-3, metadata={"help": "AdamW learning rate for the adapters and the head."})
    first_stage_epochs: int = field(default=0, metadata={
        "help": "Epochs of stage 1 (the top layer group, trained on one slice only); 0 = train.epochs.",
        "omit_default": True})
    warmup: float = field(default=0.0, metadata={
        "help": "Fraction of each stage's steps with a linear learning-rate warm-up from 0; then a linear decay to 0 "
                "(0 = decay only).", "omit_default": True})
    head_init: str = field(default="warm", metadata={
        "help": "Classification head at stage k > 1: 'warm' (start from the parent checkpoint's head) or 'fresh' (a new "
                "head, seeded by the prefix, as at stage 1).", "omit_default": True})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    batch_size: int = field(default=32, metadata={"help": "Examples per step (batches are length-bucketed)."})
    max_length: int = field(default=128, metadata={"help": "Token limit per text (longer texts are truncated)."})
    threads: int = field(
        default=1, metadata={"help": "torch intra-op threads per worker; pinned for bit-reproducibility, recorded per checkpoint."}
    )
    workers: int = field(default=0, metadata={
        "help": "Worker processes for shard jobs (0 = one per core). Does not change any bit.", "bits": False})
    cache: bool = field(
        default=True, metadata={"help": "Reuse frozen-trunk activations instead of a full forward pass every step."}
    )
    executor: str = field(default="local", metadata={
        "help": "Where stage jobs run: 'local' (this machine) or 'ray' (a Ray cluster). Does not change any bit.",
        "bits": False})
    ray_address: str | None = field(default=None, metadata={
        "help": "Ray cluster address for executor 'ray' ('auto', 'ray://host:10001'); None = local Ray.", "bits": False})
    device: str = field(default="auto", metadata={
        "help": "Where stages train: 'auto' (a CUDA GPU if torch sees one, else the CPU), 'cpu', 'cuda' or 'cuda:N'. "
                "Deterministic on either; the device, its model and the torch/CUDA versions are recorded with every "
                "checkpoint (not in the settings digest), and verify compares bits only with a like machine.",
        "bits": False})
    val_limit: int = field(
        default=300, metadata={"help": "Validation records scoring each checkpoint (tie-breaks, status): a spread sample chosen by a hash of the id, not the first rows; 0 = all."}
    )
    lora: LoraSettings = field(default_factory=LoraSettings)

    def stage_epochs(self, stage: int) -> int:
        """Epochs of ``stage`` (1-based): ``first_stage_epochs`` for stage 1 when set, else ``epochs``."""
        return self.first_stage_epochs if stage == 1 and self.first_stage_epochs else self.epochs

    def work(self, prefixes, slice_sizes) -> int:
        """Examples × epochs that training ``prefixes`` (tuples of slice indices) processes, given
        ``slice_sizes`` (slice index -> records): what progress bars count."""
        return sum(self.stage_epochs(len(p)) * sum(slice_sizes[s] for s in p) for p in prefixes)

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            object.__setattr__(self, "lora", LoraSettings(**self.lora))
        from .tasks import TASKS

        _check(self.task in TASKS, "train.task", f"one of {sorted(TASKS)}", self.task)
        _check(_is_int(self.epochs) and self.epochs >= 1, "train.epochs", "an integer >= 1", self.epochs)
        _check(_is_number(self.lr) and self.lr > 0, "train.lr", "> 0", self.lr)
        _check(_is_int(self.first_stage_epochs) and self.first_stage_epochs >= 0, "train.first_stage_epochs",
               "an integer >= 0 (0 = train.epochs)", self.first_stage_epochs)
        _check(_is_number(self.warmup) and 0 <= self.warmup < 1, "train.warmup", "in [0, 1)", self.warmup)
        _check(self.head_init in ("warm", "fresh"), "train.head_init", "'warm' or 'fresh'", self.head_init)
        _check(_is_int(self.batch_size) and self.batch_size >= 1, "train.batch_size", "an integer >= 1", self.batch_size)
        _check(_is_number(self.weight_decay) and self.weight_decay >= 0, "train.weight_decay", ">= 0", self.weight_decay)
        _check(isinstance(self.model, str) and bool(self.model), "train.model", "a model name or directory", self.model)
        _check(_is_int(self.max_length) and self.max_length >= 8, "train.max_length", "an integer >= 8", self.max_length)
        _check(_is_int(self.threads) and self.threads >= 1, "train.threads", "an integer >= 1", self.threads)
        _check(self.executor in ("local", "ray"), "train.executor", "'local' or 'ray'", self.executor)
        _check(_is_int(self.val_limit) and self.val_limit >= 0, "train.val_limit", "an integer >= 0", self.val_limit)
        from .train.device import check_device_setting

        check_device_setting(self.device, "train.device")
        _check(_is_int(self.workers) and self.workers >= 0, "train.workers", "an integer >= 0 (0 = one per core)", self.workers)


RESTORES = ("progressive", "naive")
RETRAIN_POLICIES = ("immediate", "accuracy", "interval")


@dataclass(frozen=True)
class ServeConfig:
    """How the live shards are combined."""

    aggregate: str = field(default="logits", metadata={"help": "'logits' (mean of logits) or 'probs' (mean of softmax)."})
    batch_size: int = field(default=64, metadata={"help": "Texts per inference batch."})
    device: str = field(default="auto", metadata={
        "help": "Where the served ensemble runs: 'auto' (a CUDA GPU if torch sees one, else the CPU), 'cpu', 'cuda' "
                "or 'cuda:N'."})
    standby: bool = field(default=True, metadata={
        "help": "Pre-build, in a background thread, the members a next deletion could switch to, so a forget "
                "that swaps a served member does not build it on the request path."})
    forget_batch: int = field(default=256, metadata={
        "help": "Most forget requests committed in one ledger transaction (group commit): forgets that arrive while "
                "a commit runs share the next one, each with its own receipt, in order. 1 commits every forget alone."})
    erasure_interval: float | None = field(default=None, metadata={
        "help": "Least seconds between two physical erasures of the ledger's files after forgets (PostgreSQL: VACUUM "
                "FULL of records and validation_scores, which rewrites both tables under an exclusive lock; SQLite: "
                "WAL truncate). Forgets committed meanwhile are covered by the next run, so a forget's residue is "
                "gone at most this long plus one run after its commit. None: 1.0 on PostgreSQL, 0 on SQLite."})

    restore: str = field(default="progressive", metadata={
        "help": "How a retrain brings cut shards back: 'progressive' (dead shards first get stage 1, then best "
                "sequences grow stage by stage, each swapped in at once) or 'naive' (everything, swapped in at the end)."})
    retrain: str = field(default="immediate", metadata={
        "help": "When the service retrains after forgets: 'immediate' (every forget wakes it), 'accuracy' (only when a "
                "shard is dead or the served validation accuracy fell more than retrain_delta below the fitted one), "
                "'interval' (at most once every retrain_every seconds). The cut is served at once in every case."})
    retrain_delta: float = field(default=0.02, metadata={
        "help": "Policy 'accuracy': allowed drop of the served ensemble's validation accuracy before a retrain."})
    retrain_every: float = field(default=600.0, metadata={
        "help": "Policy 'interval': seconds between retrains at most."})

    def __post_init__(self) -> None:
        _check(self.restore in RESTORES, "serve.restore", f"one of {list(RESTORES)}", self.restore)
        _check(self.retrain in RETRAIN_POLICIES, "serve.retrain", f"one of {list(RETRAIN_POLICIES)}", self.retrain)
        _check(_is_number(self.retrain_delta) and 0 <= self.retrain_delta <= 1, "serve.retrain_delta", "in [0, 1]",
               self.retrain_delta)
        _check(_is_number(self.retrain_every) and self.retrain_every > 0, "serve.retrain_every", "> 0 seconds",
               self.retrain_every)
        _check(self.aggregate in ("logits", "probs"), "serve.aggregate", "'logits' or 'probs'", self.aggregate)
        _check(_is_int(self.batch_size) and self.batch_size >= 1, "serve.batch_size", "an integer >= 1", self.batch_size)
        _check(isinstance(self.standby, bool), "serve.standby", "true or false", self.standby)
        _check(_is_int(self.forget_batch) and self.forget_batch >= 1, "serve.forget_batch", "an integer >= 1",
               self.forget_batch)
        _check(self.erasure_interval is None or (_is_number(self.erasure_interval) and 0 <= self.erasure_interval <= 3600),
               "serve.erasure_interval", "none or seconds in [0, 3600]", self.erasure_interval)
        from .train.device import check_device_setting

        check_device_setting(self.device, "serve.device")


_SECTIONS = {"plan": PlanConfig, "train": TrainConfig, "serve": ServeConfig}


@dataclass(frozen=True)
class S3TConfig:
    """Everything that defines an S3T run. Stored as JSON in the workspace."""

    plan: PlanConfig = field(default_factory=PlanConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, _from_dict(cls, value, name))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "S3TConfig":
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(unknown)}; allowed: {sorted(_SECTIONS)}")
        return cls(**{k: _from_dict(_SECTIONS[k], v, k) for k, v in data.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "S3TConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def digest(self) -> str:
        """sha256 of the canonical JSON of the whole config."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def training_dict(self) -> dict[str, Any]:
        """The settings that can change a bit of a checkpoint: the config without the serve section
        and without the train fields marked ``bits: False`` (where and how many processes run the jobs)."""
        data = self.to_dict()
        data.pop("serve")
        for f in fields(TrainConfig):
            if f.metadata.get("bits", True) is False:
                data["train"].pop(f.name)
            # a field added later, at its default, does what the code did before it existed: left out, so
            # checkpoints of older workspaces keep their digest, byte for byte
            elif f.metadata.get("omit_default") and data["train"][f.name] == f.default:
                data["train"].pop(f.name)
        return data

    def training_digest(self) -> str:
        """sha256 of :meth:`training_dict`'s canonical JSON; recorded with every checkpoint, so the same
        training run gives byte-identical checkpoint files on any executor and any number of workers."""
        return hashlib.sha256(json.dumps(self.training_dict(), sort_keys=True).encode()).hexdigest()


# -- every field as a setting (the CLI's options are generated from these) ------------------

_SETTING_SECTIONS = (("plan", PlanConfig, ""), ("train", TrainConfig, ""), ("train.lora", LoraSettings, "lora-"),
                     ("serve", ServeConfig, "serve-"))


@dataclass(frozen=True)
class Setting:
    """One leaf field of :class:`S3TConfig`, as a command-line option."""

    path: str  # "train.lora.rank"
    flag: str  # "--lora-rank": the field name, prefixed "lora-" / "serve-" outside plan and train
    short: str | None  # e.g. "-m" (metadata "short")
    kind: type  # int, float, bool or str; a sequence's element type when ``sequence``
    sequence: bool  # a tuple field, given comma-separated
    optional: bool  # None is allowed (given as "none")
    default: Any
    help: str

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    def parse(self, value: Any) -> Any:
        """A command-line value (already int/float/bool for those kinds) as the field's value."""
        if not isinstance(value, str):
            return value
        if self.optional and value.strip().lower() in ("", "none"):
            return None
        if self.sequence:
            items = [v.strip() for v in value.split(",") if v.strip()]
            try:
                return tuple(self.kind(v) for v in items)
            except ValueError as exc:
                raise ConfigError(f"{self.path} must be comma-separated {self.kind.__name__} values; got {value!r}") from exc
        if self.kind in (int, float):  # an optional number comes as text (it may be "none")
            try:
                return self.kind(value)
            except ValueError as exc:
                raise ConfigError(f"{self.path} must be a number or 'none'; got {value!r}") from exc
        return value


def _setting(path: str, prefix: str, f, hint: Any) -> Setting:
    import types
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = isinstance(hint, types.UnionType) and len(args) < len(typing.get_args(hint))
    base = args[0] if optional else hint
    sequence = typing.get_origin(base) is tuple
    kind = typing.get_args(base)[0] if sequence else base
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return Setting(path=f"{path}.{f.name}", flag="--" + prefix + f.name.replace("_", "-"), short=f.metadata.get("short"),
                   kind=kind, sequence=sequence, optional=optional, default=default, help=f.metadata.get("help", ""))


def settings() -> list[Setting]:
    """Every leaf field of the config (nested sections flattened), in declaration order."""
    import typing

    out = []
    for path, cls, prefix in _SETTING_SECTIONS:
        hints = typing.get_type_hints(cls)
        out += [_setting(path, prefix, f, hints[f.name]) for f in fields(cls) if not dataclasses.is_dataclass(hints[f.name])]
    return out


def with_settings(config: S3TConfig, values: dict[str, Any]) -> S3TConfig:
    """``config`` with the given fields (by path, e.g. ``{"train.lora.rank": 4}``) replaced, all validated."""
    data = config.to_dict()
    known = {s.path for s in settings()}
    for path, value in values.items():
        if path not in known:
            raise ConfigError(f"unknown config field {path!r}")
        *sections, name = path.split(".")
        node = data
        for part in sections:
            node = node[part]
        node[name] = list(value) if isinstance(value, tuple) else value
    return S3TConfig.from_dict(data)


def _from_dict(cls: type, data: Any, section: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"config section {section!r} must be a mapping; got {type(data).__name__}")
    allowed = {f.name for f in fields(cls)}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"unknown field(s) {sorted(unknown)} in {section!r}; allowed: {sorted(allowed)}")
    data = dict(data)
    if cls is TrainConfig and isinstance(data.get("lora"), dict):
        data["lora"] = _from_dict(LoraSettings, data["lora"], "train.lora")
    return cls(**data)
