"""The bench with settings chosen by ``s3t tune``: tune on the bench's own split, check, apply.

``tune_bench`` runs :func:`s3t.tune.tune` for every P3 dataset on exactly the split the bench
trains and tests on (the run's limit, fractions and seed), with the bench's fit settings as
the base, so the validation records it chooses on are never test records of that run.
``bench_tuned`` turns its result into ``BenchConfig.tuned``; ``check_tuned`` refuses a tune
result made on another split (its shard's records or validation records differ), which could
have chosen on records the bench tests on.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from ..errors import ConfigError
from .config import BenchConfig

SETTING_KEYS = ("lr", "rank", "alpha", "epochs")
# stage options a tune point may choose; the bench trains every method with their defaults, so a
# result that chose anything else is refused rather than applied in part
STAGE_NEUTRAL = {"first_stage_epochs": (None, 0), "warmup": (0, 0.0), "head_init": ("warm",)}


def tune_bench(cfg: BenchConfig, datasets: Sequence[str] | None = None, grid=None, methods: Sequence[str] | None = None,
               shard: int = 0, say: Callable[[str], None] | None = None, backbone=None, journal=None) -> dict[str, Any]:
    """Tune every method on each dataset (default: ``cfg.p3_datasets``) as the bench will split it.
    ``journal``: a :class:`~s3t.tune_journal.TuneJournal` to continue an interrupted tune from.

    Reads the training split (one shard of it) and the validation split; the test split is
    loaded with them by :func:`s3t.data.load_builtin` but dropped before :func:`s3t.tune.tune`.
    """
    from ..data import load_builtin
    from ..train.backbone import backbone_for
    from ..tune import METHODS, tune
    from .train_parts import s3t_config

    say = say or (lambda msg: print(msg, flush=True))
    datasets = list(datasets or cfg.p3_datasets)
    base = s3t_config(cfg, 1)
    backbone = backbone_for(base.train, backbone)
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    out: dict[str, Any] = {"kind": "s3t-tune", "bench": {k: v for k, v in cfg.to_dict().items() if k != "tuned"},
                           "datasets": {}}
    for name in datasets:
        splits = load_builtin(name, seed=cfg.seed, limit=cfg.limit, fractions=cfg.fractions)
        train, validation = splits.train, splits.validation
        del splits  # nothing below sees the test split
        say(f"tuning on {name}: shard {shard} of {len(train)} training records, {len(validation)} validation records")
        result = tune(train, validation, base, grid=grid, methods=methods or METHODS, shard=shard, backbone=backbone,
                      say=say, journal=journal)
        result["split"] = {"dataset": name, "seed": cfg.seed, "limit": cfg.limit, "fractions": list(cfg.fractions)}
        out["datasets"][name] = result
    out["cpu_seconds"] = time.process_time() - t_cpu
    out["seconds"] = time.perf_counter() - t_wall
    return out


def bench_tuned(result: Mapping[str, Any]) -> dict[str, Any]:
    """``BenchConfig.tuned`` from a :func:`tune_bench` result: per dataset the chosen settings per
    method and what identifies the data they were chosen on."""
    if not isinstance(result, Mapping) or not isinstance(result.get("datasets"), Mapping) or not result["datasets"]:
        raise ConfigError("not a s3t tune result: expected a 'datasets' mapping (written by `s3t tune --bench`)")
    out = {}
    for name, r in result["datasets"].items():
        for method, x in (r.get("methods") or {}).items() if isinstance(r, Mapping) else ():
            chosen = x.get("chosen", {}) if isinstance(x, Mapping) else {}
            odd = {k: chosen[k] for k, neutral in STAGE_NEUTRAL.items() if k in chosen and chosen[k] not in neutral}
            if odd:
                raise ConfigError(f"tune result for {name!r}: {method} chose stage options {odd}, which the bench does "
                                  "not apply (it takes lr, rank, alpha, epochs); tune without --grid-first-stage-epochs, "
                                  "--grid-warmup, --grid-head-init for the bench")
        try:
            base = r["base_config"]
            out[name] = {
                "methods": {m: {k: x["chosen"][k] for k in SETTING_KEYS} for m, x in r["methods"].items()},
                "shard": r["shard"], "train_ids_sha256": r["data"]["train_ids_sha256"],
                "validation_ids_sha256": r["data"]["validation_ids_sha256"],
                "model": base["train"]["model"], "batch_size": base["train"]["batch_size"],
            }
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"tune result for {name!r} lacks {exc}; expected the output of `s3t tune`") from exc
    return out


def method_settings(cfg: BenchConfig, method: str) -> dict[str, Any] | None:
    """The tuned ``lr``, ``rank``, ``alpha``, ``epochs`` of ``method`` on ``cfg.dataset``, or None."""
    if not cfg.tuned or cfg.dataset not in cfg.tuned:
        return None
    return cfg.tuned[cfg.dataset]["methods"].get(method)


def check_tuned(cfg: BenchConfig, splits) -> None:
    """Refuse tuned settings for ``cfg.dataset`` chosen on another split, model or batch size than this run's."""
    from ..tune import ids_digest, shard_slices
    from .train_parts import s3t_config

    if not cfg.tuned or cfg.dataset not in cfg.tuned:
        return
    t = cfg.tuned[cfg.dataset]
    slices = shard_slices(splits.train, s3t_config(cfg, 1), t["shard"])
    problems = []
    if ids_digest(r for v in slices.values() for r in v) != t["train_ids_sha256"]:
        problems.append(f"shard {t['shard']}'s training records differ")
    if ids_digest(splits.validation.ids) != t["validation_ids_sha256"]:
        problems.append("the validation records differ")
    if t["model"] != cfg.model or t["batch_size"] != cfg.batch_size:
        problems.append(f"tuned with model {t['model']} batch {t['batch_size']}, run with {cfg.model} batch {cfg.batch_size}")
    if problems:
        raise ConfigError(f"the tuned settings for {cfg.dataset} were not chosen on this run's split ("
                          + "; ".join(problems) + "): tune with the same bench preset and overrides "
                          "(`s3t tune --bench ...`), so the records it chooses on are never this run's test records")


def p3_before_after(preset: str, tune_result: Mapping[str, Any], out_dir, say: Callable[[str], None] | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """P3 (``run_bench(only="P3")``) twice on the datasets ``tune_result`` covers: with the preset's shared
    settings (``OUT/defaults``) and with each method's chosen settings (``OUT/tuned``). Writes
    ``OUT/p3_tuned.json`` (both P3 results, the chosen settings, the grid and the tuning's CPU seconds)
    and ``OUT/p3_before_after.png``; returns that JSON's content."""
    from pathlib import Path

    from .report import plot_p3_before_after
    from .resume import to_json
    from .run import run_bench

    out = Path(out_dir)
    datasets = tuple(tune_result["datasets"])
    quick = preset == "quick"
    runs = {}
    for name, tuned in (("defaults", None), ("tuned", tune_result)):
        (say or print)(f"P3 with {'the chosen' if tuned else 'the default'} settings on {', '.join(datasets)} ...")
        runs[name] = run_bench(out / name, quick=quick, say=say, only="P3", tuned=tuned, p3_datasets=datasets,
                               **overrides)
    slices = runs["tuned"]["config"]["slices"]
    L = f"s3t_B{slices}"
    per = {}
    for name in datasets:
        b, a = runs["defaults"]["P3"]["datasets"][name], runs["tuned"]["P3"]["datasets"][name]
        per[name] = {
            "defaults": {k: b[k] for k in (L, "s3t_B1", "sisa", "full")},
            "tuned": {k: a[k] for k in (L, "s3t_B1", "sisa", "full")},
            "settings": {"defaults": b["settings"], "tuned": a["settings"]},
            "gap_to_sisa_pts": {"defaults": 100 * (b[L] - b["sisa"]), "tuned": 100 * (a[L] - a["sisa"])},
            "gap_to_full_pts": {"defaults": 100 * (b[L] - b["full"]), "tuned": 100 * (a[L] - a["full"])},
            "n_test": a["n_test"], "n_train": a["n_train"], "n_classes": a["n_classes"],
            "tune_cpu_seconds": tune_result["datasets"][name]["cpu_seconds"],
            "tune_cpu_seconds_per_method": {m: x["cpu_seconds"] for m, x in tune_result["datasets"][name]["methods"].items()},
            "fit_cpu_seconds": {"defaults": b["fit_cpu_seconds"], "tuned": a["fit_cpu_seconds"]},
        }
    summary = "; ".join(
        f"{n}: S3T B={slices} {p['defaults'][L]:.3f} → {p['tuned'][L]:.3f}, SISA {p['defaults']['sisa']:.3f} → "
        f"{p['tuned']['sisa']:.3f}, full {p['defaults']['full']:.3f} → {p['tuned']['full']:.3f}" for n, p in per.items())
    result = {"preset": preset, "config": runs["tuned"]["config"], "datasets": per, "summary": summary,
              "tune_cpu_seconds": tune_result["cpu_seconds"],
              "grids": {n: {m: x["grid"] for m, x in r["methods"].items()} for n, r in tune_result["datasets"].items()},
              "p3_cpu_seconds": {k: r["cpu_seconds"] for k, r in runs.items()}}
    plot_p3_before_after(runs["defaults"]["P3"], runs["tuned"]["P3"], slices, out / "p3_before_after.png",
                         note=f"{preset} preset, m={runs['tuned']['config']['shards']}, L={slices}, "
                              f"limit {runs['tuned']['config']['limit']}, fractions {runs['tuned']['config']['fractions']}")
    (out / "p3_tuned.json").write_text(to_json(result))
    return result

