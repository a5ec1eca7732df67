"""Forget-set selection rules (torch-free). Each returns training record ids, sorted.

- ``random_1pct`` / ``random_10pct``: a seeded uniform sample of 1% / 10% of the training
  records (at least one).
- ``class``: every training record of one class — the one named in the config, else the
  rarest class holding at least 5% of the training records (ties: lowest class index).
- ``subject``: every record of one subject (data owner). The built-in datasets carry no
  subject ids, so each record gets a deterministic synthetic subject
  ``subject-<sha256(id) mod K>``; real subject ids are used when present. The subject
  forgotten is drawn with the seed among subjects holding at least one record. The subjects
  are given after the fit, so s3t and SISA placed records one by one and a subject's records
  lie in nearly every slice (one forget cuts nearly every lineage).
- ``zipf_subject`` / ``zipf_subjects``: realistic data owners. Before the fit every training
  record gets a synthetic subject (:func:`s3t.data.subjects.with_subjects`): K subjects with
  sizes ∝ 1/rank^a (K = one per ``PER_SUBJECT`` training records and at least twice the number
  of requests, unless set; a = 1), so s3t and SISA place each subject's records in one
  (shard, slice). ``zipf_subject`` forgets one subject drawn uniformly with the seed (a random
  person, so usually a small one); ``zipf_subjects`` forgets ``zipf_requests`` distinct subjects,
  one request per subject, sent one by one.
- ``worst_case``: the records the full model has memorised most — fitted by the full model
  but not by models that never saw them (Feldman's leave-out memorisation, estimated with
  the SISA shards). score = p_full(y|x) − mean over the SISA shard models NOT trained on x
  of p_shard(y|x) (true-label probabilities); the k records with the highest score are
  forgotten. These are the records whose behaviour differs most between the full model
  and Retrain, the hardest for approximate methods. Without SISA (or with one shard) the
  fallback is: score = −(ℓ − mean_c) / std_c, the loss ℓ under the full model relative to
  the held-out (validation) losses of the record's class c (pooled when c has fewer than
  two held-out records).
- ``sequential``: ``requests`` disjoint random batches, forgotten one after another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError


def n_of(fraction: float, n: int) -> int:
    """How many records a fraction of ``n`` is (at least 1, at most n)."""
    return int(min(n, max(1, round(fraction * n))))


def random_ids(ids: Sequence[str], fraction: float, seed: int) -> list[str]:
    pick = np.random.default_rng(seed).permutation(len(ids))[: n_of(fraction, len(ids))]
    return sorted(ids[i] for i in pick)


def pick_class(labels: Sequence[int], label_names: Sequence[str], name: str | None = None, min_share: float = 0.05) -> int:
    """Index of the class to forget (see the module docstring)."""
    if name is not None:
        if name not in label_names:
            raise ConfigError(f"forget_class must be one of {list(label_names)}; got {name!r}")
        return list(label_names).index(name)
    counts = np.bincount(np.asarray(labels, int), minlength=len(label_names))
    ok = [c for c in range(len(counts)) if counts[c] >= min_share * len(labels) and counts[c] < len(labels)]
    if not ok:
        raise ConfigError("no class holds at least 5% (and not all) of the training records")
    return min(ok, key=lambda c: (counts[c], c))


def class_ids(ids: Sequence[str], labels: Sequence[int], cls: int) -> list[str]:
    return sorted(i for i, y in zip(ids, labels) if int(y) == cls)


def synthetic_subject(record_id: str, k: int) -> str:
    """Deterministic synthetic subject of a record: ``subject-<sha256(id) mod k>``.

    >>> synthetic_subject("trec-17", 100) == synthetic_subject("trec-17", 100)
    True
    """
    return f"subject-{int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], 'big') % k}"


def subjects_of(ids: Sequence[str], subjects: Sequence[str | None], k: int) -> list[str]:
    """Real subjects when every record has one, else synthetic ones for all."""
    if subjects and all(s is not None for s in subjects):
        return [str(s) for s in subjects]
    return [synthetic_subject(i, k) for i in ids]


def subject_ids(ids: Sequence[str], subjects: Sequence[str], seed: int) -> tuple[str, list[str]]:
    """(subject, its record ids) for a seeded choice of subject."""
    names = sorted(set(subjects))
    chosen = names[int(np.random.default_rng(seed).integers(len(names)))]
    return chosen, sorted(i for i, s in zip(ids, subjects) if s == chosen)


PER_SUBJECT = 40  # training records per Zipf subject on average, when K is not set


def zipf_k(n_records: int, k: int | None, requests: int) -> int:
    """K of the Zipf subject model (see the module docstring); at most ``n_records``.

    >>> zipf_k(1500, None, 10), zipf_k(195, None, 10), zipf_k(195, 30, 10)
    (38, 20, 30)
    """
    out = min(n_records, k if k is not None else max(round(n_records / PER_SUBJECT), 2 * requests))
    if out <= requests:
        raise ConfigError(f"the Zipf subject scenarios forget {requests} subjects one by one and need more subjects "
                          f"than that; {n_records} training records give K = {out}")
    return out


def pick_subjects(ids: Sequence[str], subjects: Sequence[str], count: int, seed: int) -> list[tuple[str, list[str]]]:
    """``count`` distinct subjects drawn uniformly with the seed, each with its record ids, in the drawn order."""
    names = sorted(set(subjects))
    if not 1 <= count <= len(names):
        raise ConfigError(f"cannot pick {count} of {len(names)} subjects")
    chosen = [names[i] for i in np.random.default_rng(seed).permutation(len(names))[:count]]
    members: dict[str, list[str]] = {c: [] for c in chosen}
    for i, s in zip(ids, subjects):
        if s in members:
            members[s].append(i)
    return [(c, sorted(members[c])) for c in chosen]


def leave_out_scores(p_full: Sequence[float], p_shards: np.ndarray, shard_of: Sequence[int]) -> np.ndarray:
    """p_full − mean of ``p_shards[j]`` over shards j ≠ the record's own shard (higher = more memorised).

    ``p_full``: true-label probability per record under the full model; ``p_shards``: [m, n]
    true-label probabilities under each shard model; ``shard_of``: each record's shard.

    >>> leave_out_scores([0.9, 0.9], np.array([[0.9, 0.2], [0.3, 0.9], [0.5, 0.4]]), [0, 1]).round(2).tolist()
    [0.5, 0.6]
    """
    p_shards = np.asarray(p_shards, float)
    m = p_shards.shape[0]
    if m < 2:
        raise ConfigError("leave-out memorisation needs at least two shard models")
    own = p_shards[np.asarray(shard_of, int), np.arange(p_shards.shape[1])]
    return np.asarray(p_full, float) - (p_shards.sum(0) - own) / (m - 1)


def memorisation_scores(train_loss: Sequence[float], train_labels: Sequence[int], heldout_loss: Sequence[float],
                        heldout_labels: Sequence[int]) -> np.ndarray:
    """−(ℓ − mean_c) / std_c per training record (higher = fitted further below unseen data of its class)."""
    tl, ty = np.asarray(train_loss, float), np.asarray(train_labels, int)
    hl, hy = np.asarray(heldout_loss, float), np.asarray(heldout_labels, int)
    if len(hl) < 2:
        raise ConfigError("worst-case selection needs at least two held-out records")
    pooled = (hl.mean(), max(hl.std(), 1e-6))
    out = np.empty(len(tl))
    for c in np.unique(ty):
        mine = hl[hy == c]
        mean, std = (mine.mean(), max(mine.std(), 1e-6)) if len(mine) >= 2 else pooled
        out[ty == c] = -(tl[ty == c] - mean) / std
    return out


def worst_case_ids(ids: Sequence[str], scores: np.ndarray, k: int) -> list[str]:
    """The ``k`` ids with the highest memorisation score (ties: smaller id first)."""
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    return sorted(ids[i] for i in order[:k])


def sequential_ids(ids: Sequence[str], requests: int, fraction: float, seed: int) -> list[list[str]]:
    """``requests`` disjoint random batches of ``fraction`` of the records each."""
    size = n_of(fraction, len(ids))
    if requests * size > len(ids):
        raise ConfigError(f"{requests} requests of {size} records exceed the {len(ids)} training records")
    perm = np.random.default_rng(seed).permutation(len(ids))
    return [sorted(ids[i] for i in perm[r * size:(r + 1) * size]) for r in range(requests)]
