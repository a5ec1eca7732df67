"""Checkpoint files: safetensors (adapters + head) with string metadata, written atomically."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import IntegrityError
from .atomic import atomic_write, sha256_file


def save_checkpoint(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """Write ``state`` atomically and return the file's sha256."""
    from safetensors.torch import save_file

    clean = {k: v.detach().contiguous().clone() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(clean, str(tmp), metadata={k: str(v) for k, v in metadata.items()}))
    return sha256_file(path)


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
