"""Chat (prompt -> response) examples stored as ordinary :class:`~s3t.data.records.RecordSet` records.

A causal-LM task (instruction-tuning a chat model) has no class labels: each example is a
prompt and the response the model should learn. s3t keeps such an example as ONE record whose
text is the canonical JSON encoding of ``{"prompt": ..., "response": ...}`` (:func:`encode_chat`),
whose label is 0 and whose ``label_names`` are :data:`CHAT_LABELS` = ``("response",)``. Ids and
subjects work exactly as for classification records, so the ledger, placement, erasure and
forget handle chat data unchanged; only the trainer decodes the text (:func:`decode_chat`).

Canonical means ``json.dumps(..., ensure_ascii=False, sort_keys=True, separators=(",", ":"))``:
one pair has exactly one encoding, and :func:`decode_chat` accepts only that encoding, so
``encode_chat(*decode_chat(t)) == t`` for every text it accepts.

Example
-------
>>> rs = to_chat_records([{"prompt": "Hi?", "response": "Hello."}])
>>> rs.ids, rs.texts, rs.label_names
(('row-0',), ('{"prompt":"Hi?","response":"Hello."}',), ('response',))
>>> chat_pairs(rs)
[('Hi?', 'Hello.')]
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import DataError
from .records import RecordSet, _columns, _require, to_records

__all__ = ["CHAT_LABELS", "chat_pairs", "decode_chat", "encode_chat", "is_chat_records", "to_chat_records"]

CHAT_LABELS: tuple[str, ...] = ("response",)
_KEYS = ("prompt", "response")


def _nonempty(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def encode_chat(prompt: str, response: str) -> str:
    """Return the canonical JSON text of one chat example (the prompt and response are kept verbatim).

    Raises
    ------
    DataError
        If ``prompt`` or ``response`` is not a string with a non-whitespace character.
    """
    for name, value in (("prompt", prompt), ("response", response)):
        if not _nonempty(value):
            raise DataError(f"a chat {name} must be a non-empty string; got {value!r}")
    return json.dumps({"prompt": prompt, "response": response}, ensure_ascii=False, sort_keys=True,
                      separators=(",", ":"))


def decode_chat(text: str) -> tuple[str, str]:
    """Return ``(prompt, response)`` from a text made by :func:`encode_chat`.

    Raises
    ------
    DataError
        If ``text`` is not the canonical encoding of a JSON object with exactly the keys
        ``prompt`` and ``response``, both non-empty strings.
    """
    expected = "expected the canonical JSON of {\"prompt\": ..., \"response\": ...} made by encode_chat"
    if not isinstance(text, str):
        raise DataError(f"a chat text must be a str; got {type(text).__name__}; {expected}")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"not a chat text ({e}): {text[:60]!r}; {expected}") from e
    if not isinstance(obj, dict) or set(obj) != set(_KEYS):
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"not a chat text (got {got}): {text[:60]!r}; {expected}")
    prompt, response = obj["prompt"], obj["response"]
    if not (_nonempty(prompt) and _nonempty(response)):
        raise DataError(f"a chat text needs a non-empty prompt and response; got {text[:60]!r}")
    if encode_chat(prompt, response) != text:
        raise DataError(f"not the canonical chat encoding: {text[:60]!r}; {expected} (sorted keys, no spaces, "
                        "ensure_ascii=False)")
    return prompt, response


def is_chat_records(rs: RecordSet) -> bool:
    """True if ``rs`` holds chat examples: ``label_names == CHAT_LABELS`` and every text decodes."""
    if not isinstance(rs, RecordSet) or rs.label_names != CHAT_LABELS:
        return False
    try:
        for text in rs.texts:
            decode_chat(text)
    except DataError:
        return False
    return True


def chat_pairs(rs: RecordSet) -> list[tuple[str, str]]:
    """Return the ``(prompt, response)`` of every record of a chat RecordSet, in order.

    Raises
    ------
    DataError
        If ``rs`` is not a chat RecordSet (the message names the first offending record).
    """
    if not isinstance(rs, RecordSet) or rs.label_names != CHAT_LABELS:
        got = rs.label_names if isinstance(rs, RecordSet) else type(rs).__name__
        raise DataError(f"expected a chat RecordSet (label_names {CHAT_LABELS!r}, see to_chat_records); got {got!r}")
    pairs = []
    for rid, text in zip(rs.ids, rs.texts):
        try:
            pairs.append(decode_chat(text))
        except DataError as e:
            raise DataError(f"record {rid!r}: {e}") from e
    return pairs


def to_chat_records(data: Any, *, prompt_column: str = "prompt", response_column: str = "response",
                    id_column: str = "id", subject_column: str = "subject", id_prefix: str = "row-") -> RecordSet:
    """Convert prompt / response data into a chat :class:`RecordSet` (see the module docstring).

    Parameters
    ----------
    data : RecordSet, DataFrame, datasets.Dataset, str, Path or list of dict
        The inputs :func:`~s3t.data.records.to_records` accepts. A chat RecordSet is returned as is.
    prompt_column, response_column : str
        Required columns of non-empty strings (kept verbatim, whitespace included).
    id_column : str
        Optional column of unique ids; without it the record at position ``p`` gets
        ``f"{id_prefix}{p}"`` (:func:`~s3t.data.records.derived_id`).
    subject_column : str
        Optional column of subject ids; missing values become None.
    id_prefix : str
        The prefix of derived ids.

    Returns
    -------
    RecordSet
        Texts :func:`encode_chat` (prompt, response), every label 0, ``label_names`` :data:`CHAT_LABELS`.

    Raises
    ------
    DataError
        On empty input, a missing column, an empty prompt or response, bad ids, or a RecordSet
        that is not a chat RecordSet.
    """
    if isinstance(data, RecordSet):
        if not is_chat_records(data):
            raise DataError(f"got a RecordSet with label_names {data.label_names!r} that is not a chat RecordSet; "
                            f"expected label_names {CHAT_LABELS!r} and texts made by encode_chat")
        return data
    cols, n, _ = _columns(data, (prompt_column, response_column, id_column, subject_column))
    if n == 0:
        raise DataError("the input has no records; expected at least one row")
    for arg, required in (("prompt_column", prompt_column), ("response_column", response_column)):
        if required not in cols:
            raise DataError(f"missing required column {required!r}; found columns {list(cols)} "
                            f"(pass {arg}=... if it has another name)")
    for column in (prompt_column, response_column):
        _require([p for p, v in enumerate(cols[column]) if not _nonempty(v)],
                 f"column {column!r} must hold non-empty strings; empty or non-string values at positions")
    text, label = "\0chat-text", "\0chat-label"  # keys no user column can be named; ids and subjects keep
    rows = []                                       # theirs, so to_records' messages name the user's columns
    for p in range(n):
        row = {text: encode_chat(cols[prompt_column][p], cols[response_column][p]), label: 0}
        for column in (id_column, subject_column):
            if column in cols:
                row[column] = cols[column][p]
        rows.append(row)
    return to_records(rows, label_names=CHAT_LABELS, text_column=text, label_column=label, id_column=id_column,
                      subject_column=subject_column, id_prefix=id_prefix)
