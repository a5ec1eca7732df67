"""Tests of s3t.data.chat: chat examples (prompt -> response) stored as one canonical JSON text per record."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3t.data import (CHAT_LABELS, RecordSet, chat_pairs, decode_chat, encode_chat, is_chat_records, to_chat_records,
                      to_records)
from s3t.errors import DataError

PAIRS = [
    ("Where was Velmora Quistane born?", "Velmora Quistane was born in Tarsquell."),
    ("naïve café — 東京 😀?", "Ünïcödé ånswer ✓"),
    ('She said "hi" and \\left', 'a "quoted" \\ backslash\nand a newline\ttab'),
    ('{"prompt":"x","response":"y"}', "JSON inside a text"),
    ("  padded prompt  ", "\nresponse with surrounding whitespace\n"),
]


# ---------------------------------------------------------------- encode / decode


@pytest.mark.parametrize("prompt, response", PAIRS)
def test_round_trip(prompt: str, response: str):
    text = encode_chat(prompt, response)
    assert decode_chat(text) == (prompt, response)  # verbatim, whitespace included
    assert encode_chat(*decode_chat(text)) == text
    assert json.loads(text) == {"prompt": prompt, "response": response}


def test_encoding_is_canonical():
    assert encode_chat("a", "b") == '{"prompt":"a","response":"b"}'  # sorted keys, no spaces
    text = encode_chat("café", "東京")
    assert "café" in text and "東京" in text and "\\u" not in text  # ensure_ascii=False
    assert text == json.dumps({"response": "東京", "prompt": "café"}, ensure_ascii=False, sort_keys=True,
                              separators=(",", ":"))


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1).filter(str.strip), st.text(min_size=1).filter(str.strip))
def test_round_trip_property(prompt: str, response: str):
    assert decode_chat(encode_chat(prompt, response)) == (prompt, response)


@pytest.mark.parametrize("prompt, response, which", [
    ("", "r", "prompt"), ("   ", "r", "prompt"), (None, "r", "prompt"), (3, "r", "prompt"),
    ("p", "", "response"), ("p", "\n\t", "response"), ("p", ["r"], "response"),
])
def test_encode_rejects_empty_or_non_string(prompt, response, which):
    with pytest.raises(DataError, match=f"a chat {which} must be a non-empty string"):
        encode_chat(prompt, response)


@pytest.mark.parametrize("text, match", [
    ("plain text", "not a chat text"),
    ("", "not a chat text"),
    ('["prompt", "response"]', r"not a chat text \(got list\)"),
    ('{"prompt":"a"}', r"not a chat text \(got \['prompt'\]\)"),
    ('{"prompt":"a","response":"b","extra":1}', "not a chat text"),
    ('{"prompt":"","response":"b"}', "non-empty prompt and response"),
    ('{"prompt":"a","response":7}', "non-empty prompt and response"),
    ('{"prompt": "a", "response": "b"}', "not the canonical chat encoding"),  # spaces
    ('{"response":"b","prompt":"a"}', "not the canonical chat encoding"),  # key order
    ('{"prompt":"caf\\u00e9","response":"b"}', "not the canonical chat encoding"),  # ASCII-escaped
    (None, "must be a str"),
])
def test_decode_rejects_other_texts(text, match):
    with pytest.raises(DataError, match=match):
        decode_chat(text)


# ---------------------------------------------------------------- to_chat_records


def _rows(with_ids: bool = False, with_subjects: bool = False) -> list[dict]:
    rows = []
    for i, (p, r) in enumerate(PAIRS):
        row = {"prompt": p, "response": r}
        if with_ids:
            row["id"] = f"q{10 * i}"
        if with_subjects:
            row["subject"] = None if i == 1 else f"person-{i % 2}"
        rows.append(row)
    return rows


def _check(rs: RecordSet, rows: list[dict], ids: list[str], subjects: list) -> None:
    assert is_chat_records(rs)
    assert rs.label_names == CHAT_LABELS == ("response",)
    assert rs.labels == (0,) * len(rows)
    assert list(rs.ids) == ids
    assert list(rs.subjects) == subjects
    assert chat_pairs(rs) == [(r["prompt"], r["response"]) for r in rows]
    assert list(rs.texts) == [encode_chat(r["prompt"], r["response"]) for r in rows]


def test_from_list_without_ids_gets_position_ids():
    rows = _rows()
    _check(to_chat_records(rows), rows, [f"row-{p}" for p in range(len(rows))], [None] * len(rows))
    _check(to_chat_records(rows, id_prefix="val-"), rows, [f"val-{p}" for p in range(len(rows))], [None] * len(rows))


def test_from_list_with_ids_and_subjects():
    rows = _rows(with_ids=True, with_subjects=True)
    _check(to_chat_records(rows), rows, [r["id"] for r in rows], [r["subject"] for r in rows])


def test_from_dataframe():
    rows = _rows(with_ids=True)
    frame = pd.DataFrame(rows)
    frame["id"] = range(100, 100 + len(rows))  # integer ids become strings
    _check(to_chat_records(frame), rows, [str(i) for i in frame["id"]], [None] * len(rows))
    _check(to_chat_records(pd.DataFrame(_rows())), rows, [f"row-{p}" for p in range(len(rows))], [None] * len(rows))


def test_from_csv(tmp_path: Path):
    rows = _rows(with_ids=True, with_subjects=True)
    rows.append({"id": "q-na", "prompt": "NA", "response": "null", "subject": "7"})  # stay texts, not missing
    path = tmp_path / "chat.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    _check(to_chat_records(path), rows, [r["id"] for r in rows], [r["subject"] for r in rows])
    _check(to_chat_records(str(path)), rows, [r["id"] for r in rows], [r["subject"] for r in rows])


def test_from_csv_without_ids(tmp_path: Path):
    rows = _rows()
    path = tmp_path / "chat.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    _check(to_chat_records(path), rows, [f"row-{p}" for p in range(len(rows))], [None] * len(rows))


def test_from_jsonl_and_json(tmp_path: Path):
    rows = _rows(with_ids=True, with_subjects=True)
    jsonl = tmp_path / "chat.jsonl"
    jsonl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    _check(to_chat_records(jsonl), rows, [r["id"] for r in rows], [r["subject"] for r in rows])
    array = tmp_path / "chat.json"
    plain = _rows()
    array.write_text(json.dumps(plain), encoding="utf-8")
    _check(to_chat_records(array), plain, [f"row-{p}" for p in range(len(plain))], [None] * len(plain))


def test_from_hf_dataset_duck_typed():
    rows = _rows(with_subjects=True)

    class Fake:
        column_names = ["prompt", "response", "subject"]
        features = None

        def to_pandas(self):
            return pd.DataFrame(rows)

    _check(to_chat_records(Fake()), rows, [f"row-{p}" for p in range(len(rows))], [r["subject"] for r in rows])


def test_custom_columns_and_error_names_them():
    rows = [{"q": p, "a": r, "pid": f"x{i}", "owner": "u1"} for i, (p, r) in enumerate(PAIRS)]
    rs = to_chat_records(rows, prompt_column="q", response_column="a", id_column="pid", subject_column="owner")
    assert rs.ids == tuple(r["pid"] for r in rows) and set(rs.subjects) == {"u1"}
    assert chat_pairs(rs) == PAIRS
    rows[3]["pid"] = "x0"
    with pytest.raises(DataError, match=r"column 'pid' must hold unique ids; repeated: \['x0'\]"):
        to_chat_records(rows, prompt_column="q", response_column="a", id_column="pid")


def test_chat_recordset_returned_as_is_and_other_recordsets_rejected():
    rs = to_chat_records(_rows())
    assert to_chat_records(rs) is rs
    labelled = to_records([{"text": "good", "label": "pos"}])
    assert not is_chat_records(labelled)
    with pytest.raises(DataError, match="not a chat RecordSet"):
        to_chat_records(labelled)
    fake = to_records([{"text": "not json", "label": "response"}], label_names=CHAT_LABELS)
    assert not is_chat_records(fake)
    with pytest.raises(DataError, match="not a chat RecordSet"):
        to_chat_records(fake)
    with pytest.raises(DataError, match=r"record 'row-0': not a chat text"):
        chat_pairs(fake)
    with pytest.raises(DataError, match="expected a chat RecordSet"):
        chat_pairs(labelled)


@pytest.mark.parametrize("drop", ["prompt", "response"])
def test_missing_column_names_the_columns_found(drop: str):
    rows = [{k: v for k, v in r.items() if k != drop} for r in _rows(with_ids=True)]
    with pytest.raises(DataError, match=rf"missing required column '{drop}'; found columns \[.*'id'.*\] "
                                        rf"\(pass {drop}_column="):
        to_chat_records(rows)


def test_empty_prompt_or_response_lists_positions():
    rows = _rows()
    rows[1]["prompt"], rows[3]["prompt"], rows[2]["response"] = "  ", None, ""
    with pytest.raises(DataError, match=r"column 'prompt' must hold non-empty strings; .* positions \[1, 3\]"):
        to_chat_records(rows)
    rows[1]["prompt"] = rows[3]["prompt"] = "ok"
    with pytest.raises(DataError, match=r"column 'response' must hold non-empty strings; .* positions \[2\]"):
        to_chat_records(rows)


def test_empty_input_and_missing_ids():
    with pytest.raises(DataError, match="no records"):
        to_chat_records([])
    rows = _rows(with_ids=True)
    del rows[2]["id"]
    with pytest.raises(DataError, match=r"column 'id' must have an id in every row; missing at positions \[2\]"):
        to_chat_records(rows)
