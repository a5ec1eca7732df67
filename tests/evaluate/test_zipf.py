"""The Zipf-subject scenarios: subjects of skewed size given BEFORE the fit, so s3t and SISA
place each subject in one (shard, slice), and forgetting one subject leaves s3t a live model.

The rules are tested without torch; one small run on the tiny random model (only the two Zipf
scenarios and the exact methods, so it stays fast) checks the end-to-end wiring and the report.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest

from s3t.data.subjects import describe, synthetic_subjects, with_subjects
from s3t.errors import ConfigError
from s3t.evaluate import scenarios as sc
from s3t.evaluate import zipf
from s3t.evaluate.config import EvaluateConfig
from s3t.plan import place

LIMIT = 200


# -- rules (torch-free) ---------------------------------------------------------------------
def test_k_is_one_subject_per_40_records_and_at_least_twice_the_requests():
    assert sc.zipf_k(1500, None, 10) == 38  # round(1500 / 40)
    assert sc.zipf_k(4000, None, 10) == 100
    assert sc.zipf_k(195, None, 10) == 20  # the quick preset: 2 x 10 requests
    assert sc.zipf_k(195, None, 3) == 6
    assert sc.zipf_k(195, 50, 10) == 50  # set explicitly
    with pytest.raises(ConfigError):
        sc.zipf_k(8, None, 10)  # 8 records cannot give 11 subjects
    with pytest.raises(ConfigError):
        EvaluateConfig(zipf_subjects=10, zipf_requests=10)
    with pytest.raises(ConfigError):
        EvaluateConfig(zipf_exponent=-0.5)
    with pytest.raises(ConfigError):
        EvaluateConfig(scenarios=("zipf_everyone",))


def test_pick_subjects_is_seeded_distinct_and_returns_each_subjects_records():
    ids = [f"r{i}" for i in range(60)]
    subjects = synthetic_subjects(ids, 12, 1.0, 0)
    picked = sc.pick_subjects(ids, subjects, 5, 3)
    assert picked == sc.pick_subjects(ids, subjects, 5, 3) and picked != sc.pick_subjects(ids, subjects, 5, 4)
    assert len({who for who, _ in picked}) == 5
    for who, members in picked:
        assert members == sorted(i for i, s in zip(ids, subjects) if s == who)
    with pytest.raises(ConfigError):
        sc.pick_subjects(ids, subjects, 13, 0)


@pytest.mark.parametrize("n, m, L", [(195, 2, 3), (1500, 4, 3)])  # the quick and the full preset's shapes
def test_subject_placement_keeps_every_subject_in_one_shard(n, m, L):
    """Why s3t keeps a live model after one subject's forget: whichever subject is drawn, its records
    lie in one shard, so the other m - 1 shards are untouched. Record placement (the old ``subject``
    scenario's subjects, given after the fit) spreads the largest subject over every shard."""
    ids = [f"trec-{i}" for i in range(n)]
    for seed in range(3):
        subjects = synthetic_subjects(ids, sc.zipf_k(n, None, 10), 1.0, seed)
        owner = dict(zip(ids, subjects))
        by_subject = place(ids, subjects, m, L, seed)
        assert by_subject.placement == "subject"
        report = zipf.placement_report("subject", dict(zip(ids, by_subject.pairs)), owner, m, L)
        assert report["subject_shards_max"] == 1, seed
        by_record = place(ids, None, m, L, seed)
        largest = Counter(subjects).most_common(1)[0][0]
        assert len({by_record.pairs[i][0] for i, s in enumerate(subjects) if s == largest}) == m


def test_forget_sets_name_the_subjects_and_where_they_lie():
    from s3t.data import to_records

    train = to_records([{"id": f"q{i}", "text": f"t{i}", "label": i % 3} for i in range(120)])
    cfg = EvaluateConfig(zipf_requests=4, scenarios=("zipf_subject", "zipf_subjects"))
    owned, model = zipf.owned_train(cfg, train)
    assert model == describe(8, 120, 1.0, cfg.seed + zipf.SUBJECT_SEED)  # K = round(120 / 40) = 3 -> at least 2 x 4
    assert len(set(owned.subjects)) == 8 and owned.ids == train.ids
    where = dict(zip(owned.ids, place(list(owned.ids), list(owned.subjects), 2, 3, 0).pairs))
    sets = zipf.forget_sets(cfg, owned, model, where)
    one, many = sets["zipf_subject"], sets["zipf_subjects"]
    owner = dict(zip(owned.ids, owned.subjects))
    assert one["placed"] == many["placed"] == "subject"
    [who] = one["subjects"]
    assert one["requests"] == [sorted(i for i in owned.ids if owner[i] == who)]
    assert one["detail"]["size"] == len(one["requests"][0]) and len(one["detail"]["shards"]) == 1
    sizes = Counter(owned.subjects)
    assert one["detail"]["rank"] == 1 + sum(1 for s, k in sizes.items() if k > sizes[who] or (k == sizes[who] and s < who))
    assert len(many["requests"]) == 4 and len(set(many["subjects"])) == 4
    for who, req in zip(many["subjects"], many["requests"]):
        assert req and all(owner[i] == who for i in req) and len(req) == sizes[who]
    assert many["detail"]["sizes"] == [len(r) for r in many["requests"]]
    cells = {where[i] for r in many["requests"] for i in r}
    assert sorted(map(list, cells)) == many["detail"]["slices"]


# -- one small run on the tiny model -------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model):
    from s3t.evaluate import run_evaluate

    out = tmp_path_factory.mktemp("evaluate-zipf")
    r = run_evaluate(out, quick=True, say=lambda _msg: None, model=tiny_model, limit=LIMIT, threads=1,
                     sequential_requests=0, scenarios=("zipf_subject", "zipf_subjects"),
                     methods=("retrain", "sisa", "s3t"))
    return r, out


def test_only_the_subject_placed_fits_are_trained_and_their_placement_is_reported(run):
    r, _ = run
    assert set(r["fits"]) == {"full", "sisa_subject", "s3t_subject"}  # no record-placed fit: no scenario uses it
    for name in ("sisa_subject", "s3t_subject"):
        pl = r["fits"][name]["placement"]
        assert pl["placement"] == "subject" and pl["subject_shards_max"] == 1, name
        assert pl["slice_min"] >= 1 and pl["slice_min"] <= pl["slice_mean"] <= pl["slice_max"]
    assert r["fits"]["sisa_subject"]["placement"]["slice_max"] == r["fits"]["s3t_subject"]["placement"]["slice_max"]


def test_the_subject_model_is_stated_and_the_forgotten_records_are_the_subjects(run):
    from s3t.data import load_builtin

    r, _ = run
    cfg = EvaluateConfig.quick(limit=LIMIT)
    train = load_builtin(cfg.dataset, seed=cfg.seed, limit=LIMIT, fractions=cfg.fractions).train
    k = sc.zipf_k(len(train), None, cfg.zipf_requests)
    model = describe(k, len(train), 1.0, cfg.seed + zipf.SUBJECT_SEED)
    owner = dict(zip(train.ids, with_subjects(train, k, 1.0, cfg.seed + zipf.SUBJECT_SEED).subjects))
    one, many = r["scenarios"]["zipf_subject"], r["scenarios"]["zipf_subjects"]
    for s in (one, many):
        assert s["detail"]["subject_model"] == model and s["detail"]["placement"] == "subject"
    assert one["forget_size"] == sum(1 for s in owner.values() if s == one["detail"]["subject"]) == one["detail"]["size"]
    assert many["requests"] == 10 and len(set(many["detail"]["subjects"])) == 10
    assert many["forget_size"] == sum(1 for s in owner.values() if s in set(many["detail"]["subjects"]))
    assert r["config"]["zipf_exponent"] == 1.0 and r["config"]["zipf_subjects"] is None


def test_s3t_keeps_a_live_model_after_forgetting_one_subject(run):
    r, _ = run
    m = r["config"]["shards"]
    one = r["scenarios"]["zipf_subject"]
    s3t = one["rows"]["s3t"]
    assert len(one["detail"]["shards"]) == 1  # the subject lies in one shard ...
    assert s3t["live_shards"] >= m - 1 >= 1  # ... so every other shard still serves
    assert "no live model" not in s3t.get("note", "")
    for k in ("UA", "RA", "TA", "MIA"):
        assert not math.isnan(s3t[k]) and 0.0 <= s3t[k] <= 1.0, k
    untouched = [sh for sh in range(m) if sh not in one["detail"]["shards"]]
    L = r["config"]["slices"]
    assert all(s3t["served"][str(sh)] == L for sh in untouched)  # the untouched shards still serve their full prefix
    assert one["rows"]["sisa"]["shards_retrained"] == 1


def test_forgetting_ten_subjects_reports_live_shards_and_accuracy(run):
    r, out = run
    m = r["config"]["shards"]
    many = r["scenarios"]["zipf_subjects"]
    s3t = many["rows"]["s3t"]
    after = s3t["live_after"]
    assert len(after) == 10 and after[-1] == s3t["live_shards"]
    assert all(0 <= b <= a <= m for a, b in zip(after, after[1:]))  # a forget never brings a shard back
    assert 1 <= many["rows"]["sisa"]["shards_retrained"] <= len(many["detail"]["shards"])
    md = (out / "summary.md").read_text()
    section = md.split("### Zipf subjects one by one")[1]
    assert f"{s3t['live_shards']} of {m} shard(s) live" in section
    if not math.isnan(s3t["TA"]):
        assert f"test accuracy {100 * s3t['TA']:.1f}%" in section
    assert "live shards after each request: " + ", ".join(map(str, after)) in section
    assert "a = 1, K = 20 subjects" in md and "**s3t_subject** (the Zipf-subject scenarios): subject placement" in md
