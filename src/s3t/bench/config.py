"""Benchmark settings (torch-free): the ``--quick`` and the full preset.

Every method in one run uses the same model, data, LoRA settings, epochs, batch size and
thread count, and runs in this one process one after the other, so the ratios the bench
reports compare like with like on a shared, noisy machine. ``tuned`` (from ``s3t tune
--bench``) gives each method its own lr, LoRA rank/alpha and epochs, chosen on the
validation split with the same grid budget for every method.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one benchmark run. ``quick()`` and ``full()`` are the two presets."""

    mode: str = "quick"
    model: str = "all-MiniLM-L6-v2"
    dataset: str = "movie_reviews"
    limit: int | None = 490                               # rows of the dataset before splitting
    fractions: tuple[float, float, float] = (0.65, 0.05, 0.30)
    shards: int = 2                                        # m
    slices: int = 3                                        # L (divides the model's layers)
    epochs: int = 1
    lr: float = 5e-3
    batch_size: int = 16
    rank: int = 8
    alpha: int = 16
    threads: int = 1                                       # torch intra-op threads, every method
    workers: int = 1                                       # S3T fits: shard jobs at once (processes); bit-identical
    validation: bool = False                               # score each S3T checkpoint (serving tie-breaks)
    val_limit: int = 50                                    # validation records scoring each S3T checkpoint
    seed: int = 0
    p3_datasets: tuple[str, ...] = ("movie_reviews", "trec")  # P3: test accuracy on each (the main dataset's fits: P3 too)
    tuned: dict[str, Any] | None = None                    # per dataset, per method lr/rank/alpha/epochs (s3t tune)
    deletions: int = 200                                   # P1: single-record forgets measured
    accuracy_points: int = 4                               # P4: points from 0 to 50% of the deletion rate
    accuracy_streams: int = 3                              # P4: independent deletion streams averaged
    latency_requests: int = 40                             # P6: single-request predictions timed
    throughput_texts: int = 64                             # P6: texts per throughput measurement
    throughput_repeats: int = 2                            # P6: best of this many runs
    size_fractions: tuple[float, ...] = (0.5, 1.0)         # P7: training-set sizes (fractions of train)
    pair_repeats: int = 2                                  # P5a side by side: S3T / SISA sequence pairs
    cache_fraction: float = 0.4                            # P5b: share of train whose shard 0 is trained twice
    sim_shards: int = 5                                    # P2: the paper's m=5, L=6 plan
    sim_slices: int = 6
    skew_slices: int = 10                                  # P2 skewed priors: 2 of 10 slices carry 80%
    skew_budgets: tuple[int, ...] = (1, 2, 5, 10)
    sim_trials: int = 500
    traffic: dict[str, Any] = field(default_factory=lambda: {  # P8: deletion traffic
        "subjects": 24,       # synthetic subjects over the training records (Zipf sizes)
        "zipf": 1.0,          # Zipf exponent of the subject sizes
        "singles": 6,         # one-subject deletions (Poisson arrivals)
        "burst": 6,           # subjects deleted at once, halfway through the singles
        "gap": 0.5,           # mean gap between singles, in units of one full fine-tune's CPU time
        "eval_texts": 120,    # test texts the served accuracy is measured on
    })
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls, **overrides: Any) -> "BenchConfig":
        """A few minutes on 2 cores (m=2, L=3, 318 training snippets, 1 epoch, 1 thread): every part runs,
        accuracies are indicative only (small shards, 147 test snippets)."""
        return replace(cls(), **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def full(cls, **overrides: Any) -> "BenchConfig":
        """The paper-sized plan (m=5, L=6) on all the snippets, 2 epochs: hours on 2 cores."""
        base = cls(mode="full", limit=None, fractions=(0.8, 0.1, 0.1), shards=5, slices=6, epochs=2, lr=2e-3,
                   batch_size=32, threads=2, validation=True, val_limit=300, accuracy_points=9, accuracy_streams=5,
                   latency_requests=200, throughput_texts=800, throughput_repeats=3,
                   size_fractions=(0.125, 0.25, 0.5, 1.0), cache_fraction=1.0, sim_trials=2000,
                   traffic={"subjects": 200, "zipf": 1.0, "singles": 12, "burst": 20, "gap": 0.5, "eval_texts": 400})
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
