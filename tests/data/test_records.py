"""Tests of s3t.data.records: RecordSet validation and to_records on every input kind."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s3t.data import RecordSet, to_records
from s3t.errors import DataError

ROWS = [
    {"id": "a", "text": "great film", "label": "pos", "subject": "u1"},
    {"id": "b", "text": "awful film", "label": "neg", "subject": None},
    {"id": "c", "text": "fine film", "label": "pos", "subject": "u2"},
]


def _check_rows(rs: RecordSet) -> None:
    assert rs.ids == ("a", "b", "c")
    assert rs.texts == ("great film", "awful film", "fine film")
    assert rs.label_names == ("neg", "pos")
    assert rs.labels == (1, 0, 1)
    assert rs.subjects == ("u1", None, "u2")


class FakeHFDataset:
    """Stands in for datasets.Dataset: to_pandas(), column_names and ClassLabel-like features."""

    def __init__(self, frame: pd.DataFrame, features: dict | None = None):
        self._frame = frame
        self.column_names = list(frame.columns)
        self.features = features or {}

    def to_pandas(self) -> pd.DataFrame:
        return self._frame.copy()


class FakeClassLabel:
    def __init__(self, names):
        self.names = names


# ---------------------------------------------------------------- input kinds


def test_list_of_dicts():
    _check_rows(to_records(ROWS))


def test_dataframe():
    _check_rows(to_records(pd.DataFrame(ROWS)))


def test_csv_path(tmp_path: Path):
    path = tmp_path / "d.csv"
    pd.DataFrame(ROWS).to_csv(path, index=False)
    _check_rows(to_records(path))
    _check_rows(to_records(str(path)))


def test_csv_keeps_leading_zero_ids_and_na_text(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("id,text,label\n007,NA,1\n8,null,0\n")
    rs = to_records(path)
    assert rs.ids == ("007", "8")
    assert rs.texts == ("NA", "null")


def test_jsonl_path(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    _check_rows(to_records(path))


def test_json_array_path(tmp_path: Path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS))
    _check_rows(to_records(path))


def test_hf_dataset_duck_typed():
    _check_rows(to_records(FakeHFDataset(pd.DataFrame(ROWS))))


def test_hf_classlabel_names_used():
    frame = pd.DataFrame({"text": ["x", "y"], "label": [0, 2]})  # class 1 absent: fine with names
    rs = to_records(FakeHFDataset(frame, {"label": FakeClassLabel(["neg", "neu", "pos"])}))
    assert rs.label_names == ("neg", "neu", "pos")
    assert rs.labels == (0, 2)


def test_recordset_returned_as_is():
    rs = to_records(ROWS)
    assert to_records(rs) is rs
    with pytest.raises(DataError, match="differs"):
        to_records(rs, label_names=("x", "y"))


def test_unsupported_inputs(tmp_path: Path):
    with pytest.raises(DataError, match="unsupported input int"):
        to_records(42)
    (tmp_path / "d.parquet").write_text("x")
    with pytest.raises(DataError, match=r"unsupported file type 'd.parquet'; expected \.csv"):
        to_records(tmp_path / "d.parquet")
    with pytest.raises(DataError, match="not found"):
        to_records(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="rows that are not, at positions \\[1\\]"):
        to_records([ROWS[0], "not a dict"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 0}\n{oops\n')
    with pytest.raises(DataError, match="bad.jsonl:2: invalid JSON"):
        to_records(bad)


# ---------------------------------------------------------------- ids


def test_derived_ids_stable_and_distinct_for_duplicate_texts():
    rows = [{"text": "same", "label": 0}, {"text": "other", "label": 1}, {"text": "same", "label": 0}]
    first, second = to_records(rows), to_records([dict(r) for r in rows])
    assert first.ids == second.ids == ("row-0", "row-1", "row-2")  # "same" at positions 0 and 2 gets two ids
    assert to_records(rows, id_prefix="val-").ids == ("val-0", "val-1", "val-2")


def test_derived_ids_name_no_text():
    """An id must not let a guessed text be confirmed once the text is forgotten (issue 15):
    other texts at the same positions get the same ids, and no hash of a text is in one."""
    rows = [{"text": "same", "label": 0}, {"text": "other", "label": 1}]
    changed = to_records([{"text": "a wholly different review", "label": 0}, {"text": "x", "label": 1}])
    assert changed.ids == to_records(rows).ids
    for p, r in enumerate(rows):
        for digest in (hashlib.sha256(r["text"].encode()).hexdigest(), hashlib.sha256(f"{p}\x00{r['text']}".encode()).hexdigest()):
            assert not any(digest[:8] in i for i in to_records(rows).ids)


def test_ids_are_strings():
    rs = to_records([{"id": 5, "text": "x", "label": 0}, {"id": 6.0, "text": "y", "label": 1}])
    assert rs.ids == ("5", "6")


def test_duplicate_ids_listed():
    rows = [{"id": f"d{i % 7}", "text": f"t{i}", "label": 0} for i in range(20)]
    with pytest.raises(DataError, match="unique ids") as err:
        to_records(rows, label_names=("a",))
    msg = str(err.value)
    assert "'d0'" in msg and "'d4'" in msg and "'d5'" not in msg and "..." in msg and "7 in all" in msg


def test_missing_id_value():
    with pytest.raises(DataError, match=r"'id' must have an id in every row; missing at positions \[1\]"):
        to_records([{"id": "a", "text": "x", "label": 0}, {"id": None, "text": "y", "label": 1}])


# ---------------------------------------------------------------- columns / empty / texts


@pytest.mark.parametrize("drop", ["text", "label"])
def test_missing_required_column(drop: str):
    frame = pd.DataFrame(ROWS).drop(columns=[drop])
    with pytest.raises(DataError, match=f"missing required column '{drop}'") as err:
        to_records(frame)
    assert "found columns" in str(err.value) and "'id'" in str(err.value)


def test_custom_column_names():
    frame = pd.DataFrame({"sentence": ["x", "y"], "y": ["a", "b"], "uid": [1, 2], "who": ["p", None]})
    rs = to_records(frame, text_column="sentence", label_column="y", id_column="uid", subject_column="who")
    assert rs.ids == ("1", "2") and rs.texts == ("x", "y") and rs.subjects == ("p", None)


@pytest.mark.parametrize("empty", [[], pd.DataFrame({"text": [], "label": []})])
def test_empty_input(empty):
    with pytest.raises(DataError, match="no records"):
        to_records(empty)


def test_empty_csv(tmp_path: Path):
    (tmp_path / "e.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="no records"):
        to_records(tmp_path / "e.csv")


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_bad_texts(bad):
    with pytest.raises(DataError, match=r"'text' must hold non-empty strings.*\[1\]"):
        to_records([{"text": "ok", "label": 0}, {"text": bad, "label": 1}])


# ---------------------------------------------------------------- labels


def test_int_labels_default_names():
    rs = to_records([{"text": "a", "label": 2}, {"text": "b", "label": 0}, {"text": "c", "label": 1}])
    assert rs.label_names == ("0", "1", "2") and rs.labels == (2, 0, 1)


def test_int_labels_with_gap_rejected_without_names():
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": 2}]
    with pytest.raises(DataError, match="every class present.*label_names"):
        to_records(rows)
    assert to_records(rows, label_names=("x", "y", "z")).labels == (1, 2)


def test_int_labels_out_of_range():
    with pytest.raises(DataError, match=r"indices in 0..1 .*got \[2\]"):
        to_records([{"text": "a", "label": 0}, {"text": "b", "label": 2}], label_names=("n", "p"))
    with pytest.raises(DataError, match="every class present"):
        to_records([{"text": "a", "label": 0}, {"text": "b", "label": -1}])


def test_string_labels_sorted_and_given():
    rows = [{"text": "a", "label": "zeta"}, {"text": "b", "label": "alpha"}, {"text": "c", "label": "mid"}]
    rs = to_records(rows)
    assert rs.label_names == ("alpha", "mid", "zeta") and rs.labels == (2, 0, 1)
    rs = to_records(rows, label_names=("zeta", "mid", "alpha", "unused"))
    assert rs.labels == (0, 2, 1) and rs.label_names[-1] == "unused"


def test_unknown_string_label():
    with pytest.raises(DataError, match=r"expected labels in label_names=\('neg', 'pos'\); got \['meh'\]"):
        to_records([{"text": "a", "label": "pos"}, {"text": "b", "label": "meh"}], label_names=["neg", "pos"])


def test_bool_labels():
    rs = to_records(pd.DataFrame({"text": ["a", "b", "c"], "label": [True, False, True]}))
    assert rs.labels == (1, 0, 1) and rs.label_names == ("False", "True")
    assert to_records([{"text": "a", "label": True}]).labels == (1,)  # True is 1 even if alone


def test_missing_label():
    with pytest.raises(DataError, match=r"label; missing at positions \[1\]"):
        to_records(pd.DataFrame({"text": ["a", "b"], "label": [1.0, np.nan]}))


def test_float_integral_labels_are_indices():
    assert to_records([{"text": "a", "label": 1.0}, {"text": "b", "label": 0.0}]).labels == (1, 0)


def test_bad_label_names_argument():
    with pytest.raises(DataError, match="label_names must be a sequence of str"):
        to_records(ROWS, label_names="neg")


# ---------------------------------------------------------------- subjects


def test_subjects_missing_and_nan():
    rs = to_records(pd.DataFrame({"text": ["a", "b", "c"], "label": [0, 1, 0], "subject": [7, np.nan, 8]}))
    assert rs.subjects == ("7", None, "8")
    assert to_records([{"text": "a", "label": 0}]).subjects == (None,)


# ---------------------------------------------------------------- RecordSet


def test_recordset_len_subset_index_of_frame():
    rs = to_records(ROWS)
    assert len(rs) == 3
    sub = rs.subset([2, 0])
    assert sub.ids == ("c", "a") and sub.labels == (1, 1) and sub.subjects == ("u2", "u1")
    assert sub.label_names == rs.label_names
    assert rs.subset(np.array([False, True, False])).ids == ("b",)
    assert len(rs.subset([])) == 0
    assert rs.index_of(["c", "a"]) == [2, 0] and rs.index_of("b") == [1]
    frame = rs.to_frame()
    assert list(frame.columns) == ["id", "text", "label", "label_name", "subject"]
    assert frame["label_name"].tolist() == ["pos", "neg", "pos"]
    assert frame["subject"].tolist() == ["u1", None, "u2"]
    assert to_records(frame.drop(columns="label_name"), label_names=rs.label_names) == rs


def test_subset_errors():
    rs = to_records(ROWS)
    with pytest.raises(DataError, match=r"0..2; got \[3\]"):
        rs.subset([0, 3])
    with pytest.raises(DataError, match="must not repeat"):
        rs.subset([1, 1])
    with pytest.raises(DataError, match="shape"):
        rs.subset([True, False])
    with pytest.raises(DataError, match="integers"):
        rs.subset([0.5])


def test_index_of_unknown():
    with pytest.raises(DataError, match=r"unknown ids: \['zz'\]"):
        to_records(ROWS).index_of(["a", "zz"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ids": ("a",)}, "equal lengths"),
        ({"ids": ("a", "a")}, "ids must be unique"),
        ({"labels": (0, 2)}, "labels must be int indices in 0..1"),
        ({"labels": (0, True)}, "labels must be int indices"),
        ({"texts": ("x", " ")}, "texts must be non-empty"),
        ({"label_names": ()}, "label_names"),
        ({"label_names": ("n", "n")}, "label_names"),
        ({"subjects": (None, 3)}, "subjects must be str or None"),
        ({"ids": "ab"}, "must be a sequence"),
    ],
)
def test_recordset_validation(kwargs, match):
    fields = {"ids": ("a", "b"), "texts": ("x", "y"), "labels": (0, 1), "label_names": ("n", "p"),
              "subjects": (None, None)}
    RecordSet(**fields)  # the baseline is valid
    with pytest.raises(DataError, match=match):
        RecordSet(**{**fields, **kwargs})


def test_recordset_is_frozen_and_coerces_to_tuples():
    rs = RecordSet(ids=["a"], texts=["x"], labels=np.array([0]), label_names=["n"], subjects=[None])
    assert rs.ids == ("a",) and rs.labels == (0,) and type(rs.labels[0]) is int
    with pytest.raises(AttributeError):
        rs.ids = ("b",)  # type: ignore[misc]


# ---------------------------------------------------------------- no torch, no datasets


def test_import_without_torch_or_datasets():
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None       # any `import torch` now raises ImportError
        sys.modules["datasets"] = None
        import s3t.data
        from s3t.data import to_records, load_builtin, RecordSet, Splits, BUILTIN_DATASETS
        import pandas as pd

        class Fake:
            column_names = ["text", "label"]
            def to_pandas(self):
                return pd.DataFrame({"text": ["a", "b"], "label": [0, 1]})

        assert len(to_records(Fake())) == 2
        assert sys.modules["torch"] is None and sys.modules["datasets"] is None
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
