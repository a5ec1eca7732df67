"""The task registry: each task takes its own kind of records and refuses the other's."""

from __future__ import annotations

import pytest

from s3t.data.chat import to_chat_records
from s3t.errors import ConfigError, DataError
from s3t.tasks import task_spec


def test_classification_refuses_chat_records_and_causal_lm_refuses_text_labels():
    chat = to_chat_records([{"prompt": "q?", "response": "a."}, {"prompt": "r?", "response": "b."}])
    with pytest.raises(DataError, match="causal-lm"):
        task_spec("classification").to_records(chat)
    with pytest.raises(DataError):
        task_spec("causal-lm").to_records([{"text": "good", "label": "pos"}])
    assert task_spec("causal-lm").to_records(chat) is chat
    assert task_spec("classification").to_records([{"text": "good", "label": "pos"}]).label_names == ("pos",)


def test_unknown_task_is_a_config_error():
    with pytest.raises(ConfigError, match="classification"):
        task_spec("translation")


def test_fit_refuses_chat_data_for_a_classifier(tmp_path, tiny_model):
    from s3t import S3T
    from tests.conftest import chat_rows, tiny_config

    with pytest.raises(DataError, match="causal-lm"):
        S3T(tiny_config(tiny_model), workspace=tmp_path / "ws").fit(to_chat_records(chat_rows(6)))
    assert not (tmp_path / "ws").exists()
