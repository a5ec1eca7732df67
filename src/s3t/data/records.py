"""Training records with stable ids, and the conversion of user data into them.

A :class:`RecordSet` is the immutable, validated form every other part of s3t works
with: one stable string id, one non-empty text, one label index and an optional
subject (the person the record belongs to) per record. :func:`to_records` builds one
from a pandas DataFrame, a HuggingFace ``datasets.Dataset`` (duck-typed, never
imported), a ``.csv`` / ``.jsonl`` / ``.json`` file or a list of dicts.

Example
-------
>>> rs = to_records([{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}])
>>> rs.label_names, rs.labels
(('neg', 'pos'), (1, 0))
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError

_SHOW = 5  # how many offending values an error message lists


def _few(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:_SHOW])
    return f"[{shown}{', ...' if len(values) > _SHOW else ''}]"


def _require(bad: Sequence[Any], message: str) -> None:
    """Raise DataError(``message`` + up to 5 of ``bad``) if ``bad`` is not empty."""
    if len(bad):
        raise DataError(f"{message} {_few(bad)}" + (f" ({len(bad)} in all)" if len(bad) > _SHOW else ""))


@dataclass(frozen=True)
class RecordSet:
    """An immutable, validated set of labelled text records.

    Parameters
    ----------
    ids : tuple of str
        Unique, stable record ids.
    texts : tuple of str
        Non-empty texts, one per record.
    labels : tuple of int
        Label indices into ``label_names``.
    label_names : tuple of str
        The class names; ``labels[i]`` names ``label_names[labels[i]]``.
    subjects : tuple of (str or None)
        The subject (data owner) of each record, or None.

    Raises
    ------
    DataError
        If the fields differ in length, ids repeat, a label is out of range or a text is empty.
    """

    ids: tuple[str, ...]
    texts: tuple[str, ...]
    labels: tuple[int, ...]
    label_names: tuple[str, ...]
    subjects: tuple[str | None, ...]

    def __post_init__(self) -> None:
        for name in ("ids", "texts", "labels", "label_names", "subjects"):
            value = getattr(self, name)
            _require([] if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str | bytes)
                     else [type(value).__name__], f"RecordSet.{name} must be a sequence; got")
            object.__setattr__(self, name, tuple(value))
        lengths = {k: len(getattr(self, k)) for k in ("ids", "texts", "labels", "subjects")}
        _require([lengths] if len(set(lengths.values())) != 1 else [], "RecordSet fields must have equal lengths; got")
        names = self.label_names
        _require([] if names and all(isinstance(x, str) for x in names) and len(set(names)) == len(names)
                 else [names], "label_names must be a non-empty tuple of unique str; got")
        _require([i for i in self.ids if not isinstance(i, str) or not i], "ids must be non-empty str; got")
        _require([i for i, c in Counter(self.ids).items() if c > 1], "ids must be unique; repeated ids:")
        _require([(p, v) for p, v in enumerate(self.labels) if isinstance(v, bool | np.bool_)
                  or not isinstance(v, int | np.integer) or not 0 <= v < len(names)],
                 f"labels must be int indices in 0..{len(names) - 1} (label_names={names!r}); got (position, label)")
        object.__setattr__(self, "labels", tuple(int(v) for v in self.labels))
        _require([p for p, t in enumerate(self.texts) if not isinstance(t, str) or not t.strip()],
                 "texts must be non-empty strings; empty or non-string text at positions")
        _require([x for x in self.subjects if x is not None and not isinstance(x, str)],
                 "subjects must be str or None; got")

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def _position(self) -> dict[str, int]:
        return {rid: p for p, rid in enumerate(self.ids)}

    def subset(self, indices: Sequence[int] | np.ndarray) -> RecordSet:
        """Return the records at ``indices`` (ints, or a boolean mask of length ``len(self)``), in that order.

        Raises
        ------
        DataError
            If an index is out of range, repeats, or a mask has the wrong length.
        """
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise DataError(f"a boolean mask must have shape ({len(self)},); got {idx.shape}")
            idx = np.flatnonzero(idx)
        elif idx.size and idx.dtype.kind not in "iu":
            raise DataError(f"indices must be integers; got dtype {idx.dtype}")
        idx = idx.astype(np.int64).ravel()
        _require(idx[(idx < 0) | (idx >= len(self))].tolist(), f"indices must be in 0..{len(self) - 1}; got")
        _require([i for i, c in Counter(idx.tolist()).items() if c > 1], "indices must not repeat; repeated:")
        pick = idx.tolist()
        return RecordSet(
            ids=tuple(self.ids[i] for i in pick),
            texts=tuple(self.texts[i] for i in pick),
            labels=tuple(self.labels[i] for i in pick),
            label_names=self.label_names,
            subjects=tuple(self.subjects[i] for i in pick),
        )

    def index_of(self, ids: Sequence[str] | str) -> list[int]:
        """Return the positions of ``ids`` (a single id is accepted too).

        Raises
        ------
        DataError
            If an id is not in this set.
        """
        wanted = [ids] if isinstance(ids, str) else list(ids)
        _require([i for i in wanted if i not in self._position], "expected ids of this RecordSet; unknown ids:")
        return [self._position[i] for i in wanted]

    def to_frame(self) -> pd.DataFrame:
        """Return a DataFrame with columns id, text, label (index), label_name and subject."""
        return pd.DataFrame({
            "id": list(self.ids),
            "text": list(self.texts),
            "label": np.asarray(self.labels, dtype=np.int64),
            "label_name": [self.label_names[v] for v in self.labels],
            "subject": pd.Series(list(self.subjects), dtype=object),
        })


def _missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # lists, arrays: not a scalar missing value
        return False


def _key(v: Any) -> str:
    """Render an id / subject value as str (integral floats like 7.0 become '7')."""
    if isinstance(v, float | np.floating) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return str(v.item() if isinstance(v, np.generic) else v)


def _int_like(v: Any) -> bool:
    return isinstance(v, bool | np.bool_ | int | np.integer) or (
        isinstance(v, float | np.floating) and math.isfinite(v) and float(v).is_integer())


def _labels(values: list[Any], label_names: Sequence[str] | None) -> tuple[tuple[int, ...], tuple[str, ...]]:
    _require([p for p, v in enumerate(values) if _missing(v)],
             "expected every record to have a label; missing at positions")
    if label_names is not None:
        if isinstance(label_names, str) or not all(isinstance(x, str) for x in label_names):
            raise DataError(f"label_names must be a sequence of str; got {label_names!r}")
        label_names = tuple(label_names)
    if all(_int_like(v) for v in values):  # class indices (bools: False -> 0, True -> 1)
        labels = [int(v) for v in values]
        if label_names is None:
            if all(isinstance(v, bool | np.bool_) for v in values):
                return tuple(labels), ("False", "True")
            present = set(labels)
            if min(present) < 0 or present != set(range(max(present) + 1)):
                raise DataError(
                    f"integer labels must be class indices 0..C-1 with every class present; got values "
                    f"{_few(sorted(present))}. Pass label_names=... to declare the classes explicitly")
            return tuple(labels), tuple(str(i) for i in range(max(present) + 1))
        _require(sorted({v for v in labels if not 0 <= v < len(label_names)}),
                 f"integer labels must be indices in 0..{len(label_names) - 1} of label_names={label_names!r}; got")
        return tuple(labels), label_names
    names = [_key(v) for v in values]
    if label_names is None:
        label_names = tuple(sorted(set(names)))
    lookup = {n: i for i, n in enumerate(label_names)}
    _require(sorted({n for n in names if n not in lookup}), f"expected labels in label_names={label_names!r}; got")
    return tuple(lookup[n] for n in names), label_names


def _read_json(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}); expected UTF-8 JSON") from e
    if text.lstrip().startswith("["):  # a JSON array of objects
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: invalid JSON ({e}); expected an array of objects or JSON lines") from e
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({e}); expected one JSON object per line") from e
    return rows


def _rows_to_columns(rows: Sequence[Any]) -> tuple[dict[str, list[Any]], int]:
    _require([p for p, r in enumerate(rows) if not isinstance(r, Mapping)], "expected every row to be a dict; "
             "rows that are not, at positions")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: [r.get(k) for r in rows] for k in keys}, len(rows)


def _columns(data: Any, columns_for_str: tuple[str, ...]) -> tuple[dict[str, list[Any]], int, Any]:
    """Return (column -> values, row count, HF features or None) for any supported input."""
    features = None
    if hasattr(data, "to_pandas") and hasattr(data, "column_names"):  # datasets.Dataset, duck-typed
        features, data = getattr(data, "features", None), data.to_pandas()
        if not isinstance(data, pd.DataFrame):
            raise DataError(f"to_pandas() returned {type(data).__name__}; expected a pandas DataFrame")
    if isinstance(data, pd.DataFrame):
        return {str(c): data[c].tolist() for c in data.columns}, len(data), features
    if isinstance(data, str | Path):
        path = Path(data)
        if not path.is_file():
            raise DataError(f"data file not found: {path}")
        if path.name.lower().endswith((".csv", ".csv.gz")):  # only empty fields are missing: "NA" stays a text
            try:
                data = pd.read_csv(path, dtype=dict.fromkeys(columns_for_str, str), keep_default_na=False,
                                   na_values=[""])
            except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
                raise DataError(f"{path}: cannot read as CSV ({e}); expected a header and one row per record") from e
            return {str(c): data[c].tolist() for c in data.columns}, len(data), None
        if path.suffix.lower() in (".jsonl", ".json"):
            return (*_rows_to_columns(_read_json(path)), None)
        raise DataError(f"unsupported file type {path.name!r}; expected .csv, .csv.gz, .jsonl or .json")
    if hasattr(data, "column_names") and isinstance(getattr(data, "column_names"), Mapping):
        raise DataError("got a dataset dict with several splits; pass one split, e.g. data['train']")
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        return (*_rows_to_columns(data), None)
    raise DataError(f"unsupported input {type(data).__name__}; expected a RecordSet, pandas DataFrame, "
                    "datasets.Dataset, path to a .csv/.jsonl/.json file, or a list of dicts")


def derived_id(position: int, prefix: str = "row-") -> str:
    """Return the stable id of a record given without one: ``prefix`` + its position (from 0).

    The id names the position only, never the text: a hash of the text (schema 1 used
    ``sha256(position, text)``) would let anyone who reads an id, e.g. in a receipt, confirm a
    guessed text after the text itself was forgotten (issue 15; ``s3t.store.migrate``).
    """
    return f"{prefix}{position}"


def to_records(data: Any, *, label_names: Sequence[str] | None = None, text_column: str = "text",
               label_column: str = "label", id_column: str = "id", subject_column: str = "subject",
               id_prefix: str = "row-") -> RecordSet:
    """Convert user data into a validated :class:`RecordSet`.

    Parameters
    ----------
    data : RecordSet, DataFrame, datasets.Dataset, str, Path or list of dict
        A RecordSet is returned as is. Files: ``.csv`` (optionally ``.gz``), ``.jsonl`` or
        ``.json`` (JSON lines, or one JSON array of objects).
    label_names : sequence of str, optional
        The class names. Integer labels are indices into them; other labels are looked up
        by ``str(value)``. Default: for integer labels ``"0".."C-1"`` (all classes must occur),
        for bools ``("False", "True")``, for a HF ``ClassLabel`` column its names, otherwise
        the sorted unique label values as strings.
    text_column, label_column : str
        Required columns.
    id_column : str
        Optional column of unique ids (rendered with ``str``). Without it, the id of the
        record at position ``p`` (from 0) is ``f"{id_prefix}{p}"``: stable for the same rows in
        the same order, and independent of the text (see :func:`derived_id`).
    id_prefix : str
        The prefix of derived ids (default ``"row-"``; ``S3T.fit`` uses ``"val-"`` for validation
        data, so the two sets never share an id).
    subject_column : str
        Optional column of subject ids; missing values become None.

    Returns
    -------
    RecordSet

    Raises
    ------
    DataError
        On empty input, a missing column, duplicate or missing ids, bad labels or empty texts.
    """
    if not isinstance(id_prefix, str):
        raise DataError(f"id_prefix must be a str; got {id_prefix!r}")
    if isinstance(data, RecordSet):
        if label_names is not None and tuple(label_names) != data.label_names:
            raise DataError(f"label_names={tuple(label_names)!r} differs from the RecordSet's {data.label_names!r}")
        return data
    cols, n, features = _columns(data, (text_column, id_column, subject_column))
    if n == 0:
        raise DataError("the input has no records; expected at least one row")
    for arg, required in (("text_column", text_column), ("label_column", label_column)):
        if required not in cols:
            raise DataError(f"missing required column {required!r}; found columns {list(cols)} "
                            f"(pass {arg}=... if it has another name)")
    texts = cols[text_column]
    _require([p for p, t in enumerate(texts) if not isinstance(t, str) or not t.strip()],
             f"column {text_column!r} must hold non-empty strings; empty or non-string values at positions")
    if id_column in cols:
        _require([p for p, v in enumerate(cols[id_column]) if _missing(v)],
                 f"column {id_column!r} must have an id in every row; missing at positions")
        ids = [_key(v) for v in cols[id_column]]
        _require([i for i, c in Counter(ids).items() if c > 1], f"column {id_column!r} must hold unique ids; repeated:")
    else:
        ids = [derived_id(p, id_prefix) for p in range(n)]
    if label_names is None and isinstance(features, Mapping):  # a HF ClassLabel column knows its names
        label_names = getattr(features.get(label_column), "names", None)
    labels, names = _labels(cols[label_column], label_names)
    subjects = [None if _missing(v) else _key(v) for v in cols.get(subject_column, [None] * n)]
    return RecordSet(ids=tuple(ids), texts=tuple(texts), labels=labels, label_names=names, subjects=tuple(subjects))
