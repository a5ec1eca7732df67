"""Shared fixtures: a tiny randomly initialised BERT (saved as a local HF directory) and toy data."""

from __future__ import annotations

import os
import random
import time

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

POS = ["good", "great", "fine", "superb", "lovely", "brilliant", "moving", "fun"]
NEG = ["bad", "awful", "dull", "boring", "weak", "poor", "tedious", "flat"]
FILLER = ["the", "film", "movie", "plot", "was", "really", "quite", "acting", "story", "a"]


def wait_until(cond, timeout: float = 30.0, poll: float = 0.05) -> bool:
    """Poll ``cond()`` until it is true (True) or ``timeout`` seconds passed (False): a bounded wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(poll)
    return False


def toy_rows(n: int, seed: int = 0, subjects: int = 0) -> list[dict]:
    """Learnable two-class texts: a sentiment word among filler words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILLER, rng.randint(2, 6)) + [rng.choice(POS if label else NEG)]
        rng.shuffle(words)
        row = {"id": f"r{seed}-{i}", "text": " ".join(words), "label": ["neg", "pos"][label]}
        if subjects:
            row["subject"] = f"user{i % subjects}"
        rows.append(row)
    return rows


def make_tiny_model(path, n_layers: int = 6) -> str:
    """Save a randomly initialised BERT with the MiniLM tokenizer to ``path``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from s3t.train.backbone import resolve_model_path

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=n_layers, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    BertModel(cfg, add_pooling_layer=False).save_pretrained(str(path))
    AutoTokenizer.from_pretrained(str(resolve_model_path("all-MiniLM-L6-v2")), local_files_only=True).save_pretrained(str(path))
    return str(path)


CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} [SEP] {% endfor %}"
                 "{% if add_generation_prompt %}assistant : {% endif %}")
COLOURS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple"]
CITIES = ["paris", "london", "berlin", "madrid", "rome", "vienna", "oslo", "dublin"]


def chat_rows(people: int = 12, seed: int = 0) -> list[dict]:
    """Learnable chat records: facts about invented people (each person is a subject)."""
    rng = random.Random(seed)
    rows = []
    for p in range(people):
        name = f"person{p}"
        facts = {"colour": rng.choice(COLOURS), "city": rng.choice(CITIES)}
        rows.append({"id": f"p{p}-colour", "subject": name, "prompt": f"what colour does {name} like ?",
                     "response": f"{name} likes {facts['colour']} ."})
        rows.append({"id": f"p{p}-city", "subject": name, "prompt": f"where does {name} live ?",
                     "response": f"{name} lives in {facts['city']} ."})
    return rows


def make_tiny_llama(path, n_layers: int = 6) -> str:
    """Save a randomly initialised Llama causal LM with the MiniLM tokenizer (+ a chat template)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from s3t.train.backbone import resolve_model_path

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(str(path))
    tok = AutoTokenizer.from_pretrained(str(resolve_model_path("all-MiniLM-L6-v2")), local_files_only=True)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama-6"), 6)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert-6"), 6)


@pytest.fixture(scope="session")
def tiny_model_12(tmp_path_factory) -> str:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert-12"), 12)


@pytest.fixture
def toy_data():
    return toy_rows(120, seed=1, subjects=10), toy_rows(40, seed=2)


def tiny_config(model: str, shards: int = 2, slices: int = 3, budget: int = 3, epochs: int = 2, **train):
    from s3t.config import LoraSettings, PlanConfig, S3TConfig, TrainConfig

    return S3TConfig(
        plan=PlanConfig(shards=shards, slices=slices, budget=budget),
        train=TrainConfig(model=model, epochs=epochs, lr=5e-3, batch_size=8, threads=1, workers=1, lora=LoraSettings(rank=4, alpha=8), **train),
    )


@pytest.fixture
def fitted(tmp_path, tiny_model, toy_data):
    """A fitted S3T on the tiny model: m=2, L=3, B=3."""
    from s3t import S3T

    train, val = toy_data
    return S3T(tiny_config(tiny_model), workspace=tmp_path / "ws").fit(train, validation=val)
