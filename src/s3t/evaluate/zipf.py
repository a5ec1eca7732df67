"""The Zipf-subject scenarios (torch-free): data owners of skewed size, known BEFORE the fit.

A real erasure request names a person, and a few people own most records. The built-in data
names no owner, so :func:`owned_train` gives every training record a synthetic subject
(:func:`s3t.data.subjects.with_subjects`: K subjects, sizes ∝ 1/rank^a) before s3t and SISA are
fitted a second time on it; their default placement (``"auto"``) then puts each subject's records
in one (shard, slice) (:func:`s3t.plan.place`). Forgetting one subject cuts the lineages of that
slice only — unlike the ``subject`` scenario, whose hash subjects are given after a record-placed
fit and cut nearly every lineage. Retrain, the full model and the approximate methods do not
depend on placement and are shared with the other scenarios.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from . import scenarios as sc
from .config import EvaluateConfig

SUBJECT_SEED = 6  # the subject model's seed is the run's seed + this


def owned_train(cfg: EvaluateConfig, train):
    """(``train`` with Zipf subjects, the subject model as stated in the results)."""
    from ..data.subjects import describe, with_subjects

    k = sc.zipf_k(len(train), cfg.zipf_subjects, cfg.zipf_requests)
    seed = cfg.seed + SUBJECT_SEED
    return with_subjects(train, k, cfg.zipf_exponent, seed), describe(k, len(train), cfg.zipf_exponent, seed)


def placement_report(kind: str, where: Mapping[str, tuple[int, int]], subject_of: Mapping[str, str | None],
                     shards: int, slices: int) -> dict[str, Any]:
    """The keys of :meth:`s3t.plan.Placement.report`, from a fit's actual (shard, slice) per record,
    plus ``subject_shards_max``: the most shards one subject's records lie in (1 = every subject in one shard).

    >>> r = placement_report("subject", {"a": (0, 0), "b": (0, 1), "c": (1, 0), "d": (1, 1)},
    ...                      {"a": "x", "b": "x", "c": "y", "d": None}, 2, 2)
    >>> r["slice_min"], r["split_subjects"], r["subject_shards_max"]
    (1, [{'subject': 'x', 'slices': 2}], 1)
    """
    sizes = [0] * (shards * slices)
    pieces: dict[str, set[tuple[int, int]]] = {}
    for rid, (sh, sl) in where.items():
        sizes[sh * slices + sl] += 1
        subj = subject_of.get(rid)
        if subj is not None:
            pieces.setdefault(subj, set()).add((sh, sl))
    split = [{"subject": s, "slices": len(p)} for s, p in sorted(pieces.items()) if len(p) > 1]
    return {"placement": kind, "slice_min": min(sizes), "slice_max": max(sizes),
            "slice_mean": round(sum(sizes) / len(sizes), 2), "split_subjects": split,
            "subject_shards_max": max((len({sh for sh, _ in p}) for p in pieces.values()), default=0)}


def forget_sets(cfg: EvaluateConfig, owned, model: dict[str, Any],
                where: Mapping[str, tuple[int, int]]) -> dict[str, dict[str, Any]]:
    """Requests, the subject named by each request and the detail of the selected Zipf scenarios.

    ``where``: the (shard, slice) of every training record in the subject-placed fits."""
    ids, subjects = list(owned.ids), list(owned.subjects)
    sizes = Counter(subjects)
    rank = {s: r + 1 for r, (s, _) in enumerate(sorted(sizes.items(), key=lambda x: (-x[1], x[0])))}
    base = {"subject_model": model, "placement": "subject"}

    def located(rids: Sequence[str]) -> dict[str, Any]:
        cells = sorted({where[i] for i in rids})
        return {"shards": sorted({sh for sh, _ in cells}), "slices": [list(c) for c in cells]}

    out: dict[str, dict[str, Any]] = {}
    if "zipf_subject" in cfg.scenarios:
        [(who, members)] = sc.pick_subjects(ids, subjects, 1, cfg.seed + 4)
        out["zipf_subject"] = {"requests": [members], "subjects": [who], "placed": "subject", "detail": {
            **base, "subject": who, "size": len(members), "rank": rank[who], **located(members)}}
    if "zipf_subjects" in cfg.scenarios:
        picked = sc.pick_subjects(ids, subjects, cfg.zipf_requests, cfg.seed + 5)
        every = [i for _, members in picked for i in members]
        out["zipf_subjects"] = {"requests": [m for _, m in picked], "subjects": [s for s, _ in picked],
                                "placed": "subject", "detail": {
                                    **base, "subjects": [s for s, _ in picked], "sizes": [len(m) for _, m in picked],
                                    "ranks": [rank[s] for s, _ in picked], **located(every)}}
    return out


def describe_scenario(sc_result: dict[str, Any], fits: Mapping[str, Any], shards: int, slices: int) -> list[str]:
    """Report lines of a Zipf scenario: the subject model, the placement, who was forgotten, and what s3t serves after."""
    d = sc_result["detail"]
    m = d["subject_model"]
    fit = fits.get("s3t_subject") or fits.get("sisa_subject") or {}
    pl = fit.get("placement", {})
    lines = [f"Subjects: Zipf-like sizes ∝ 1/rank^a, a = {m['exponent']:g}, K = {m['subjects']} subjects over "
             f"{m['records']} training records (largest {m['largest']}, median {m['median']}, smallest {m['smallest']}; "
             f"seed {m['seed']}), given before the fit. s3t and SISA placed records by **{pl.get('placement', '?')}**"
             + (f" (slice sizes {pl['slice_min']}–{pl['slice_max']}, {len(pl['split_subjects'])} subject(s) split over "
                f"several slices, at most {pl['subject_shards_max']} shard(s) per subject)" if pl else "") + "."]
    cells = d["slices"]
    where = (f"{len(cells)} of {shards * slices} slices (" + ", ".join(f"shard {sh} slice {sl}" for sh, sl in cells) + ")"
             if len(cells) <= 3 else f"{len(cells)} of {shards * slices} slices, of shard(s) {', '.join(map(str, d['shards']))}")
    if "subject" in d:
        lines.append(f"Forgotten: {d['subject']}, {d['size']} records (size rank {d['rank']} of {m['subjects']}), "
                     f"in {where}.")
    else:
        lines.append(f"Forgotten one request per subject: {len(d['subjects'])} subjects of sizes "
                     f"{', '.join(map(str, d['sizes']))} ({sum(d['sizes'])} records), in {where}.")
    row = sc_result["rows"].get("s3t")
    if row and "live_shards" in row:
        ta, before = row["TA"], fits.get("s3t_subject", {}).get("test_accuracy")
        acc = "n/a (no live model)" if ta != ta else f"{100 * ta:.1f}%"
        text = f"s3t after the forget: {row['live_shards']} of {shards} shard(s) live, test accuracy {acc}"
        if before is not None:
            text += f" (before any deletion {100 * before:.1f}%)"
        if row.get("live_after") and len(row["live_after"]) > 1:
            text += f"; live shards after each request: {', '.join(map(str, row['live_after']))}"
        lines.append(text + ".")
    return lines
