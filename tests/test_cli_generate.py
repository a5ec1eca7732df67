"""``s3t train --task causal-lm`` and ``s3t generate`` (issue 17) on the tiny random Llama: the chat
data paths of `train` (a file, a built-in dataset), the task/data mismatch errors, the default chat
model, and `generate` / `predict` refusing the other task's workspace."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from s3t import S3T
from s3t.cli import CHAT_MODEL, _task_defaults, app
from s3t.config import S3TConfig, TrainConfig, with_settings
from s3t.errors import ConfigError, DataError
from tests.conftest import chat_rows, toy_rows
from tests.fitted_copy import fitted_template, fitted_ws  # noqa: F401  (fixtures)

runner = CliRunner()
PROMPT = "where does person1 live ?"
TINY = ["-m", "2", "-L", "2", "-B", "1", "--epochs", "2", "--lr", "0.005", "--batch-size", "8", "--threads", "1",
        "--workers", "1", "--lora-rank", "4", "--lora-alpha", "8"]


@pytest.fixture(scope="module")
def chat_files(tmp_path_factory):
    import pandas as pd

    root = tmp_path_factory.mktemp("chat-data")
    chat, labelled = root / "chat.jsonl", root / "labelled.csv"
    pd.DataFrame(chat_rows(12)).to_json(chat, orient="records", lines=True)
    pd.DataFrame(toy_rows(40, seed=3)).to_csv(labelled, index=False)
    return chat, labelled


@pytest.fixture(scope="module")
def chat_ws_template(tmp_path_factory, tiny_llama, chat_files):
    """A causal-LM workspace trained through `s3t train --task causal-lm --data chat.jsonl`."""
    ws = tmp_path_factory.mktemp("cli-chat") / "ws"
    result = runner.invoke(app, ["train", "-w", str(ws), "--task", "causal-lm", "--data", str(chat_files[0]),
                                 "--model", tiny_llama, *TINY])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return ws


@pytest.fixture
def chat_ws(tmp_path, chat_ws_template):
    return shutil.copytree(chat_ws_template, tmp_path / "chat-ws")


def test_train_causal_lm_from_a_chat_file_then_generate(chat_ws, tiny_llama):
    config = json.loads(runner.invoke(app, ["config", "show", "-w", str(chat_ws), "--json"]).stdout)
    assert config["train"]["task"] == "causal-lm" and config["train"]["model"] == tiny_llama
    result = runner.invoke(app, ["generate", "-w", str(chat_ws), PROMPT, "what colour does person4 like ?",
                                 "--max-new-tokens", "5", "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = json.loads(result.stdout)
    model = S3T.load(chat_ws)
    want = model.generate([PROMPT, "what colour does person4 like ?"], max_new_tokens=5, details=True)
    assert [r["prompt"] for r in rows] == [PROMPT, "what colour does person4 like ?"]
    assert [r["text"] for r in rows] == [g.text for g in want]
    assert [r["tokens"] for r in rows] == [len(g.tokens) for g in want]
    for r in rows:
        assert r["tokens"] <= 5 and (r["finish_reason"] == "length") == (r["tokens"] == 5)
        assert r["served"] == {"0": 2, "1": 2} and r["manifest_version"] == want[0].manifest_version
    table = runner.invoke(app, ["generate", "-w", str(chat_ws), PROMPT, "--max-new-tokens", "3"])
    assert table.exit_code == 0 and PROMPT in table.stdout and "0:2 1:2" in table.stdout


def test_generate_follows_a_forget_and_takes_sampling_options(chat_ws, tmp_path):
    args = ["generate", "-w", str(chat_ws), PROMPT, "--max-new-tokens", "4", "--json"]
    before = json.loads(runner.invoke(app, args).stdout)[0]
    forgot = runner.invoke(app, ["forget", "--subject", "person1", "-w", str(chat_ws), "--json"])
    assert forgot.exit_code == 0, forgot.output
    receipt = json.loads(forgot.stdout)
    after = json.loads(runner.invoke(app, args).stdout)[0]
    assert after["manifest_version"] == receipt["manifest_version"] > before["manifest_version"]
    assert after["served"] == receipt["served_after"] and sum(after["served"].values()) < 4
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{PROMPT}\n\nwhat colour does person4 like ?\n")
    sampled = ["generate", "-w", str(chat_ws), "--file", str(prompts), "--max-new-tokens", "6", "--temperature", "1.5",
               "--top-k", "5", "--seed", "3", "--combine", "logprobs", "--json"]
    first = json.loads(runner.invoke(app, sampled).stdout)
    assert len(first) == 2 and json.loads(runner.invoke(app, sampled).stdout) == first  # seeded
    want = S3T.load(chat_ws).generate([PROMPT, "what colour does person4 like ?"], max_new_tokens=6, temperature=1.5,
                                      top_k=5, seed=3, combine="logprobs")
    assert [r["text"] for r in first] == want


def test_generate_refuses_a_classifier_and_predict_refuses_a_chat_model(chat_ws, fitted_ws):
    ws = str(fitted_ws.ws_.path)
    result = runner.invoke(app, ["generate", "-w", ws, "hello"])
    assert isinstance(result.exception, ConfigError)
    assert "classification" in str(result.exception) and f"s3t predict -w {ws}" in str(result.exception)
    result = runner.invoke(app, ["predict", "-w", str(chat_ws), "a great film"])
    assert isinstance(result.exception, ConfigError)
    assert "causal-lm" in str(result.exception) and f"s3t generate -w {chat_ws}" in str(result.exception)
    bad = runner.invoke(app, ["generate", "-w", str(chat_ws), PROMPT, "--combine", "max"])
    assert bad.exit_code == 2 and "--combine" in bad.output
    empty = runner.invoke(app, ["generate", "-w", str(chat_ws)])
    assert empty.exit_code == 2 and "give prompts" in empty.output


def test_a_classifier_workspace_is_one_clean_error_line(fitted_ws):
    from tests.test_cli import run_main

    proc = run_main("generate", "-w", str(fitted_ws.ws_.path), "hello")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "s3t predict" in proc.stderr


def test_train_causal_lm_on_the_builtin_people(tmp_path, tiny_llama):
    ws = tmp_path / "people"
    result = runner.invoke(app, ["train", "-w", str(ws), "--task", "causal-lm", "--dataset", "fictitious_people",
                                 "--limit", "4", "--model", tiny_llama, *TINY])
    assert result.exit_code == 0, result.output + repr(result.exception)
    model = S3T.load(ws)
    records = model.ws_.ledger.records("train")
    assert len(records) == 40 and {r.subject for r in records} == {f"person-{i:03d}" for i in range(4)}
    assert "placement subject" in result.output  # people are subjects: each person in one slice
    assert len(model.ws_.ledger.records("validation")) == 4  # the paraphrased questions
    out = json.loads(runner.invoke(app, ["generate", "-w", str(ws), "Where was somebody born?", "--max-new-tokens", "2",
                                         "--json"]).stdout)
    assert out[0]["served"] == {"0": 2, "1": 2}


@pytest.mark.parametrize("task, source, hint", [
    ("classification", ["--dataset", "fictitious_people", "--limit", "4"], "--task causal-lm"),
    ("classification", ["--dataset", "movie_dialog", "--limit", "50"], "--task causal-lm"),
    ("causal-lm", ["--dataset", "movie_reviews", "--limit", "50"], "--task classification"),
    ("causal-lm", ["--dataset", "trec", "--limit", "50"], "--task classification"),
    ("classification", ["chat-file"], "--task causal-lm"),
    ("causal-lm", ["labelled-file"], "--task classification"),
])
def test_train_refuses_the_other_tasks_data_before_training(tmp_path, tiny_model, chat_files, task, source, hint):
    if source == ["chat-file"]:
        source = ["--data", str(chat_files[0])]
    elif source == ["labelled-file"]:
        source = ["--data", str(chat_files[1])]
    ws = tmp_path / "ws"
    result = runner.invoke(app, ["train", "-w", str(ws), "--task", task, *source, "--model", tiny_model, *TINY])
    assert isinstance(result.exception, DataError), result.output + repr(result.exception)
    message = str(result.exception)
    assert hint in message and f"not {task} records" in message
    assert not ws.exists()  # refused before a workspace was made


def test_data_and_dataset_together_are_refused(tmp_path, chat_files):
    result = runner.invoke(app, ["train", "-w", str(tmp_path / "ws"), "--task", "causal-lm", "--data", str(chat_files[0]),
                                 "--dataset", "fictitious_people"])
    assert result.exit_code == 2 and "--dataset" in result.output


def test_causal_lm_defaults_to_the_builtin_chat_model():
    chat = with_settings(S3TConfig(), {"train.task": "causal-lm"})
    assert _task_defaults(chat, {"train.task": "causal-lm"}).train.model == CHAT_MODEL == "SmolLM2-135M-Instruct"
    given = {"train.task": "causal-lm", "train.model": "models/my-llama"}
    assert _task_defaults(with_settings(S3TConfig(), given), given).train.model == "models/my-llama"
    assert _task_defaults(S3TConfig(), {}).train.model == TrainConfig().model  # classification keeps the encoder
    from_file = with_settings(S3TConfig(train=TrainConfig(model="models/from-config")), {"train.task": "causal-lm"})
    assert _task_defaults(from_file, {"train.task": "causal-lm"}).train.model == "models/from-config"


def test_generate_has_help():
    result = runner.invoke(app, ["generate", "--help"])
    assert result.exit_code == 0 and "--max-new-tokens" in result.output and "--combine" in result.output
