"""Settings of one ``s3t evaluate --task causal-lm`` run (torch-free): the quick and the full preset.

Every method shares the chat model, the fictitious-people data, the LoRA settings, batch size
and thread count. The full model (what GA and NPO start from), Retrain and s3t train with the
same :class:`~s3t.config.TrainConfig` (task ``causal-lm``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import ConfigError

LM_EXACT = ("retrain", "s3t", "s3t_retrain")
LM_APPROXIMATE = ("ga", "npo")
# LoRA on a 135M chat model: batches of 8 facts; NPO's beta as TOFU uses it on sequence log-likelihoods
LM_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {"ga": {"lr": 5e-4, "epochs": 3, "batch_size": 8},
                                                 "npo": {"lr": 5e-4, "epochs": 3, "batch_size": 8, "beta": 0.1}}
QUESTIONS = ("train", "paraphrase")


@dataclass(frozen=True)
class LMEvaluateConfig:
    """Sizes of one causal-LM evaluation. ``quick()`` and ``full()`` are the two presets."""

    mode: str = field(default="quick", metadata={"help": "Preset name, recorded in results.json."})
    model: str = field(default="SmolLM2-135M-Instruct", metadata={"help": "Chat model (built-in name or local HF dir)."})
    people: int = field(default=20, metadata={"help": "Fictitious people generated (each one data subject)."})
    facts: int = field(default=10, metadata={"help": "Facts per person (1..12); one training question each."})
    data_seed: int = field(default=0, metadata={"help": "Seed of the fictitious-people generator."})
    forget_people: int = field(default=2, metadata={"help": "People forgotten (one request each), drawn with the seed."})
    shards: int = field(default=2, metadata={"help": "m, shards of s3t."})
    slices: int = field(default=3, metadata={"help": "L, slices per shard (divides the model's layers: 30 for SmolLM2)."})
    budget: int = field(default=1, metadata={"help": "B, s3t sequences per shard."})
    epochs: int = field(default=2, metadata={"help": "Training epochs of the full model, Retrain and every s3t stage."})
    lr: float = field(default=2e-3, metadata={"help": "Training learning rate (AdamW, linear decay)."})
    batch_size: int = field(default=8, metadata={"help": "Training batch size."})
    rank: int = field(default=8, metadata={"help": "LoRA rank."})
    alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    max_length: int = field(default=128, metadata={"help": "Token limit per chat record (training and scoring)."})
    threads: int = field(default=1, metadata={"help": "torch intra-op threads for every method."})
    seed: int = field(default=0, metadata={"help": "Seed of the plan, the forget set, the samples and every method."})
    perturbed: int = field(default=3, metadata={"help": "Wrong answers per question in the truth ratio."})
    question: str = field(default="train", metadata={
        "help": "Question asked in the truth ratio and answer metrics: 'train' (the trained phrasing) or 'paraphrase'."})
    retain_eval: int = field(default=12, metadata={"help": "Questions about retained people scored (seeded sample)."})
    chat_eval: int = field(default=12, metadata={"help": "Held-out movie_dialog test pairs scored (0 = skip)."})
    chat_limit: int = field(default=2000, metadata={"help": "movie_dialog rows loaded before its split."})
    generate_eval: int = field(default=4, metadata={
        "help": "Questions per set (forget, retained) answered greedily for ROUGE-L (0 = skip)."})
    max_new_tokens: int = field(default=24, metadata={"help": "Greedy answer length limit."})
    score_batch: int = field(default=8, metadata={"help": "Pairs per scoring forward."})
    methods: tuple[str, ...] = field(default=LM_EXACT + LM_APPROXIMATE, metadata={"help": "Methods compared."})
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={
        "help": "Per-method config fields over LM_METHOD_DEFAULTS, e.g. {'ga': {'lr': 1e-4}}."})

    def __post_init__(self) -> None:
        from .methods import methods_for

        known = set(LM_EXACT) | set(methods_for("causal-lm"))
        bad = [m for m in self.methods if m not in known]
        if bad:
            raise ConfigError(f"methods must be among {sorted(known)} for task 'causal-lm'; got {bad}")
        if "retrain" not in self.methods:
            raise ConfigError("methods must include 'retrain': forget quality is measured against it")
        if "s3t_retrain" in self.methods and "s3t" not in self.methods:
            raise ConfigError("methods: 's3t_retrain' (s3t after its background retrain) needs 's3t' too")
        if not 1 <= self.forget_people < self.people:
            raise ConfigError(f"forget_people must be in 1..people-1; got {self.forget_people} of {self.people}")
        if self.people < self.shards * self.slices:
            raise ConfigError(f"{self.people} people cannot fill {self.shards} shards x {self.slices} slices "
                              "(each person goes to one slice)")
        if self.question not in QUESTIONS:
            raise ConfigError(f"question must be one of {list(QUESTIONS)}; got {self.question!r}")
        for name in ("perturbed", "retain_eval", "epochs", "batch_size", "score_batch", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("chat_eval", "generate_eval"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0; got {getattr(self, name)}")

    @classmethod
    def quick(cls, **overrides: Any) -> "LMEvaluateConfig":
        """About half an hour on 2 shared cores with SmolLM2-135M and one thread: 16 people x 10 facts, 2 forgotten
        (20 forget-set questions), m=2, L=2, B=1, 4 epochs in batches of 4 at lr 5e-3; 12 retained questions and 12
        chat pairs scored, 3 wrong answers per question, 3 greedy answers per set."""
        base = cls(people=16, facts=10, slices=2, epochs=4, lr=5e-3, batch_size=4, generate_eval=3)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def full(cls, **overrides: Any) -> "LMEvaluateConfig":
        """Hours on 2 cores: 40 people x 10 facts, 4 forgotten, m=2, L=3, 5 epochs, 5 wrong answers per question."""
        base = cls(mode="full", people=40, facts=10, forget_people=4, epochs=5, lr=5e-3, batch_size=4, perturbed=5,
                   retain_eval=40, chat_eval=40, generate_eval=10)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def method_config(self, method: str) -> dict[str, Any]:
        """Fields of ``method``'s config: LM defaults, then the run's overrides, with the run's seed."""
        return {"seed": self.seed, **LM_METHOD_DEFAULTS.get(method, {}), **self.method_overrides.get(method, {})}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
