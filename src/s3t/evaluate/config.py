"""Settings of one ``s3t evaluate`` run (torch-free): the ``--quick`` and the full preset.

Every method in a run shares the backbone, data split, LoRA settings, batch size and
thread count. The exact methods (Retrain, SISA, s3t) and the full model that the
approximate methods start from are trained with the same :class:`~s3t.config.TrainConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import ConfigError

SCENARIOS = ("random_1pct", "random_10pct", "class", "subject", "zipf_subject", "zipf_subjects", "worst_case")
SUBJECT_PLACED = ("zipf_subject", "zipf_subjects")  # run on the s3t / SISA fits placed by subject
EXACT = ("retrain", "retrain_seed1", "sisa", "s3t", "s3t_retrain")
APPROXIMATE = ("ft", "ga", "rl", "l1_sparse", "salun", "npo")


@dataclass(frozen=True)
class EvaluateConfig:
    """Sizes of one evaluation run. ``quick()`` and ``full()`` are the two presets."""

    mode: str = field(default="quick", metadata={"help": "Preset name, recorded in results.json."})
    model: str = field(default="all-MiniLM-L6-v2", metadata={"help": "Frozen encoder (built-in name or local HF dir)."})
    dataset: str = field(default="trec", metadata={"help": "Built-in dataset (6 classes, so class forgetting is meaningful)."})
    limit: int | None = field(default=400, metadata={"help": "Rows of the dataset used before splitting (None = all)."})
    fractions: tuple[float, float, float] = field(default=(0.65, 0.05, 0.30), metadata={"help": "train/validation/test."})
    shards: int = field(default=2, metadata={"help": "m, shards of s3t and SISA."})
    slices: int = field(default=3, metadata={"help": "L, slices per shard (divides the encoder's layers)."})
    budget: int | None = field(default=None, metadata={"help": "s3t sequences per shard B (None = L)."})
    epochs: int = field(default=1, metadata={"help": "Training epochs of every exact method and the full model."})
    lr: float = field(default=5e-3, metadata={"help": "Training learning rate (AdamW, linear decay)."})
    batch_size: int = field(default=16, metadata={"help": "Training batch size."})
    rank: int = field(default=8, metadata={"help": "LoRA rank."})
    alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    threads: int = field(default=1, metadata={"help": "torch intra-op threads for every method."})
    seed: int = field(default=0, metadata={"help": "Seed of the split, the plan, the forget sets and every method."})
    scenarios: tuple[str, ...] = field(default=SCENARIOS, metadata={"help": "Forget-set scenarios to run."})
    methods: tuple[str, ...] = field(default=EXACT + APPROXIMATE, metadata={"help": "Methods compared."})
    subjects: int = field(default=100, metadata={"help": "Synthetic subjects K (sha256(id) mod K) when the data has none."})
    zipf_subjects: int | None = field(default=None, metadata={
        "help": "K of the Zipf subject model of the zipf_* scenarios (None: one subject per 40 training records, "
                "at least 2 x zipf_requests)."})
    zipf_exponent: float = field(default=1.0, metadata={"help": "a of the Zipf subject model: sizes ~ 1/rank^a (0 = equal)."})
    zipf_requests: int = field(default=10, metadata={"help": "Subjects forgotten one by one in the zipf_subjects scenario."})
    worst_fraction: float = field(default=0.01, metadata={"help": "Size of the worst-case forget set (share of train)."})
    forget_class: str | None = field(default=None, metadata={"help": "Class to forget (None: the rarest class with >= 5%)."})
    sequential_requests: int = field(default=10, metadata={"help": "Successive forget requests (0 = skip)."})
    sequential_fraction: float = field(default=0.0005, metadata={"help": "Share of train per sequential request (>= 1 record)."})
    eval_limit: int = field(default=200, metadata={"help": "Retain and test records scored per method (seeded sample)."})
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict,
                                                        metadata={"help": "Per-method config fields, e.g. {'ga': {'lr': 1e-4}}."})

    def __post_init__(self) -> None:
        from .methods import METHODS

        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad:
            raise ConfigError(f"scenarios must be among {list(SCENARIOS)}; got {bad}")
        known = set(EXACT) | set(METHODS)
        bad = [m for m in self.methods if m not in known]
        if bad:
            raise ConfigError(f"methods must be among {sorted(known)}; got {bad}")
        if "s3t_retrain" in self.methods and "s3t" not in self.methods:
            raise ConfigError("methods: 's3t_retrain' (s3t after its background retrain) needs 's3t' too")
        if "retrain" not in self.methods:
            raise ConfigError("methods must include 'retrain': every gap is measured against it")
        if not 0 < self.worst_fraction < 1 or not 0 < self.sequential_fraction < 1:
            raise ConfigError("worst_fraction and sequential_fraction must be in (0, 1); got "
                              f"{self.worst_fraction}, {self.sequential_fraction}")
        if self.zipf_requests < 1 or self.zipf_exponent < 0 or (self.zipf_subjects is not None
                                                                 and self.zipf_subjects <= self.zipf_requests):
            raise ConfigError("zipf_requests must be >= 1, zipf_exponent >= 0 and zipf_subjects (when set) > "
                              f"zipf_requests; got {self.zipf_requests}, {self.zipf_exponent}, {self.zipf_subjects}")
        if self.sequential_requests < 0 or self.subjects < 1 or self.eval_limit < 10:
            raise ConfigError("sequential_requests must be >= 0, subjects >= 1 and eval_limit >= 10; got "
                              f"{self.sequential_requests}, {self.subjects}, {self.eval_limit}")

    @classmethod
    def quick(cls, **overrides: Any) -> "EvaluateConfig":
        """195 TREC training questions, m=2, L=3, 1 epoch, 2 threads, 5 sequential requests, 100 retained and test
        records scored: under 5 minutes on 2 cores for the record-level scenarios. The two Zipf-subject scenarios
        (K = 20 subjects, about 10 records each, 10 forgotten one by one) add a second SISA and s3t fit and 10
        requests per method: several minutes more. Numbers are indicative only (a 1% forget set is 2 records)."""
        return replace(cls(limit=300, sequential_requests=5, threads=2, eval_limit=100),
                       **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def full(cls, **overrides: Any) -> "EvaluateConfig":
        """About an hour on 2 cores: 1,500 TREC training questions, m=4, L=3, 2 epochs, 1 thread, K = 38 Zipf subjects."""
        base = cls(mode="full", limit=2000, sequential_requests=10, fractions=(0.75, 0.05, 0.20), shards=4, slices=3, epochs=2, lr=4e-3,
                   batch_size=16, threads=1, eval_limit=400, subjects=500)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def plan_budget(self) -> int:
        return self.slices if self.budget is None else self.budget

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
