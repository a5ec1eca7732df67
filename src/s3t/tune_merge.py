"""Unite ``s3t tune`` results made in parallel: one process per dataset or per method.

A tune's grid points run one after the other. On a machine with room for several at once (a
GPU the small encoder leaves mostly idle, many cores), run one ``s3t tune`` per dataset and/or
per method, then merge: the result is what one run tuning everything would have written,
with the CPU seconds of all the parts added. Parts must agree on everything that defines the
choice (the bench preset, each dataset's shard, split, data digests, base config and grid
budget); a method tuned twice on one dataset is refused rather than one of them dropped.

Example
-------
>>> a = {"kind": "s3t-tune", "datasets": {"trec": {"shard": 0, "methods": {"s3t": {}}, "cpu_seconds": 2.0}},
...      "cpu_seconds": 2.0}
>>> b = {"kind": "s3t-tune", "datasets": {"trec": {"shard": 0, "methods": {"sisa": {}}, "cpu_seconds": 3.0}},
...      "cpu_seconds": 3.0}
>>> m = merge_tune_results([a, b])
>>> sorted(m["datasets"]["trec"]["methods"]), m["cpu_seconds"], m["parts"]
(['s3t', 'sisa'], 5.0, 2)
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

from .errors import ConfigError

SUMMED = ("cpu_seconds", "seconds")          # added over the parts (work done, not wall time)
PER_METHOD = ("methods", "s3t_config", *SUMMED)  # what differs between parts that tuned other methods


def merge_tune_results(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One tune result from ``parts`` (each as ``s3t tune`` wrote it); see the module docstring."""
    if len(parts) < 2:
        raise ConfigError(f"merging needs at least two tune results; got {len(parts)}")
    for n, part in enumerate(parts):
        if not isinstance(part, Mapping) or part.get("kind") != "s3t-tune" or not isinstance(part.get("datasets"), Mapping):
            raise ConfigError(f"part {n + 1} is not a s3t tune result (expected kind 's3t-tune' and a 'datasets' mapping)")
    head = {k: v for k, v in parts[0].items() if k not in ("datasets", "parts", *SUMMED)}
    for n, part in enumerate(parts[1:], start=2):
        other = {k: v for k, v in part.items() if k not in ("datasets", "parts", *SUMMED)}
        if other != head:
            keys = sorted(k for k in set(head) | set(other) if head.get(k) != other.get(k))
            raise ConfigError(f"part {n} was tuned with other settings than part 1 ({', '.join(keys)}): "
                              "merge only parts of one tune, split by dataset or method")
    out: dict[str, Any] = {**copy.deepcopy(head), "datasets": {}}
    for n, part in enumerate(parts, start=1):
        for name, d in part["datasets"].items():
            if name not in out["datasets"]:
                out["datasets"][name] = copy.deepcopy(dict(d))
                continue
            have = out["datasets"][name]
            fixed = {k: v for k, v in d.items() if k not in PER_METHOD}
            mine = {k: v for k, v in have.items() if k not in PER_METHOD}
            if fixed != mine:
                keys = sorted(k for k in set(fixed) | set(mine) if fixed.get(k) != mine.get(k))
                raise ConfigError(f"{name}: part {n} was tuned on other data or settings ({', '.join(keys)})")
            twice = sorted(set(have.get("methods", {})) & set(d.get("methods", {})))
            if twice:
                raise ConfigError(f"{name}: {', '.join(twice)} tuned in more than one part; keep one of them")
            have["methods"] = {**have.get("methods", {}), **copy.deepcopy(dict(d.get("methods", {})))}
            if "s3t_config" in d:
                have["s3t_config"] = copy.deepcopy(d["s3t_config"])
            for k in SUMMED:
                if k in d:
                    have[k] = have.get(k, 0.0) + d[k]
    for k in SUMMED:
        if any(k in p for p in parts):
            out[k] = float(sum(p.get(k, 0.0) for p in parts))
    out["parts"] = int(sum(p.get("parts", 1) for p in parts))
    return out
