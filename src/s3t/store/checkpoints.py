"""Checkpoint files: safetensors (adapters + head) with string metadata, written atomically."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from ..errors import IntegrityError
from .atomic import atomic_write, sha256_file


def save_checkpoint(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """Write ``state`` atomically and return the file's sha256. The same tensors and metadata
    always give the same bytes (see :func:`canonical_safetensors`)."""
    from safetensors.torch import save_file

    clean = {k: v.detach().contiguous().clone() for k, v in state.items()}

    def write(tmp: Path) -> None:
        save_file(clean, str(tmp), metadata={k: str(v) for k, v in metadata.items()})
        tmp.write_bytes(canonical_safetensors(tmp.read_bytes()))

    atomic_write(path, write)
    return sha256_file(path)


def canonical_safetensors(raw: bytes) -> bytes:
    """The same safetensors file with a canonical header: metadata keys sorted, tensor entries in
    data order, compact JSON padded with spaces to 8 bytes (as safetensors pads it).

    safetensors writes the header's maps in hash-map order, which changes from one call to the
    next: the same checkpoint would get a different sha256 on every write (and on every worker or
    Ray node). The tensor data is already laid out deterministically and is kept as is."""
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + size])
    ordered = {}
    if "__metadata__" in header:
        ordered["__metadata__"] = dict(sorted(header.pop("__metadata__").items()))
    for name in sorted(header, key=lambda k: (header[k]["data_offsets"][0], header[k]["data_offsets"][1], k)):
        ordered[name] = header[name]
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + size :]


def load_checkpoint(path: str | Path, sha256: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a checkpoint; if ``sha256`` is given the file must match it (else IntegrityError)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise IntegrityError(f"checkpoint file missing: {path}")
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise IntegrityError(f"checkpoint {path.name} sha256 {actual[:12]}… does not match ledger {sha256[:12]}…")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # corrupted header etc.
        raise IntegrityError(f"checkpoint {path.name} cannot be read: {exc}") from exc
    return state, meta


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes (independent of file layout)."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().contiguous().cpu()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
