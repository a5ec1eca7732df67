"""Synthetic data owners for datasets that name none: skewed (Zipf-like) subject sizes.

Real erasure requests name a person who owns many records, and a few people own most of them.
The built-in datasets carry no owner, so benchmarks, the evaluation and the demo give each
training record a synthetic subject: K subjects whose sizes follow 1/rank^a
(:func:`s3t.plan.subject_rate.zipf_sizes`), records dealt to them in a seeded order. The
subject model is stated wherever it is used (``describe``).

Example
-------
>>> from s3t.data import to_records
>>> rs = to_records([{"text": f"t{i}", "label": i % 2} for i in range(20)])
>>> owned = with_subjects(rs, n_subjects=4, exponent=1.0, seed=0)
>>> sorted(Counter(owned.subjects).values(), reverse=True)
[9, 5, 3, 3]
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from ..errors import DataError
from ..plan.subject_rate import zipf_sizes
from .records import RecordSet

__all__ = ["describe", "synthetic_subjects", "with_subjects"]


def synthetic_subjects(ids: list[str], n_subjects: int, exponent: float = 1.0, seed: int = 0) -> list[str]:
    """One subject name (``person-NNN``) per id: sizes ``zipf_sizes(K, N, a, seed)``, ids dealt in a
    seeded order. Depends only on the set of ids, K, a and the seed."""
    if n_subjects > len(ids):
        raise DataError(f"{n_subjects} subjects need at least as many records; got {len(ids)}")
    sizes = zipf_sizes(n_subjects, len(ids), exponent, seed)
    ordered = sorted(ids)
    perm = np.random.default_rng([seed, 0x50B]).permutation(len(ordered))
    width = len(str(n_subjects - 1))
    owner: dict[str, str] = {}
    pos = 0
    for k, size in enumerate(sizes):
        for i in perm[pos:pos + size].tolist():
            owner[ordered[i]] = f"person-{k:0{width}d}"
        pos += size
    return [owner[i] for i in ids]


def with_subjects(records: RecordSet, n_subjects: int, exponent: float = 1.0, seed: int = 0) -> RecordSet:
    """``records`` with synthetic subjects (any subjects it had are replaced)."""
    return replace(records, subjects=tuple(synthetic_subjects(list(records.ids), n_subjects, exponent, seed)))


def describe(n_subjects: int, n_records: int, exponent: float, seed: int) -> dict:
    """The subject model, for results files: K, N, a and the largest/median/smallest sizes."""
    sizes = sorted(zipf_sizes(n_subjects, n_records, exponent, seed), reverse=True)
    return {"model": "zipf", "subjects": n_subjects, "records": n_records, "exponent": exponent, "seed": seed,
            "largest": sizes[0], "median": sizes[len(sizes) // 2], "smallest": sizes[-1]}
