"""Where training and serving run (CPU or a CUDA GPU), deterministically, and who ran it.

``train.device`` / ``serve.device`` is ``auto`` (a CUDA GPU when torch sees one, else the CPU),
``cpu`` or ``cuda`` (``cuda:N`` for one GPU of several). A device that is asked for and absent
is a clear error, never a silent fallback.

Determinism on CUDA: deterministic algorithms (``torch.use_deterministic_algorithms``, which
needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` before the first cuBLAS call), no TF32 in matmuls or
convolutions, cuDNN deterministic and without autotuning. With these, the same plan on the same
GPU model, driver and torch build gives the same bits, as the CPU does with pinned threads.

The bits of a checkpoint depend on the kernels that computed it: a CPU and a GPU (or two GPU
models, or two torch builds) give different — equally correct — bits. So every checkpoint
records :func:`device_identity` (device type, its model name, torch and CUDA versions), and
``verify`` compares bit for bit only with a like machine (:func:`incomparable`: the same device
type and torch build, and on CUDA the same GPU model and CUDA version); otherwise it says which
identity differs instead of reporting a false mismatch. On the CPU the model name is recorded
but not required to match: with pinned threads and deterministic kernels the same torch build
gives the same bits on the x86-64 machines these checks ran on; a mismatch found on another CPU
model says so in the report.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:  # torch is imported where a device is used: checking a setting stays torch-free
    import torch

DEVICES = ("auto", "cpu", "cuda")
IDENTITY_KEYS = ("device", "device_name", "torch", "cuda")


def check_device_setting(value: str, name: str) -> None:
    ok = isinstance(value, str) and (value in DEVICES or (value.startswith("cuda:") and value[5:].isdigit()))
    if not ok:
        raise ConfigError(f"{name} must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {value!r}")


def resolve_device(setting: str = "auto") -> "torch.device":
    """The torch device for a ``device`` setting (see the module docstring)."""
    import torch

    check_device_setting(setting, "device")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {setting!r} was asked for, but torch {torch.__version__} sees no CUDA GPU "
                              "(a CPU build of torch, or no driver); use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {setting!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def same_device(a: "torch.device", b: "torch.device") -> bool:
    """``cuda`` and ``cuda:N`` are the same device when N is the current one (a model's parameters
    report ``cuda:0``; the setting ``cuda`` resolves to ``cuda``)."""
    import torch

    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    current = torch.cuda.current_device()
    return (current if a.index is None else a.index) == (current if b.index is None else b.index)


def set_device_determinism(device: "torch.device") -> None:
    """Deterministic kernels on ``device`` (the CPU's thread count is pinned by ``set_determinism``)."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_identity(device: "torch.device | str") -> dict[str, str]:
    """What computed a checkpoint: device type, its model name, torch build and CUDA version."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = cpu_name()
    return {"device": device.type, "device_name": name, "torch": torch.__version__,
            "cuda": (torch.version.cuda or "") if device.type == "cuda" else ""}


def incomparable(recorded: dict[str, str], current: dict[str, str]) -> str | None:
    """Why checkpoints made under ``recorded`` cannot be compared bit for bit with ones made under
    ``current`` (None when they can). Checkpoints written before identities were recorded carry
    none: they were all trained on the CPU, whose identity was not kept, and compare as CPU."""
    if not any(k in recorded for k in IDENTITY_KEYS):
        return None if current.get("device") == "cpu" else (
            f"the checkpoint predates device records (trained on a CPU); this machine computes on {current['device']}")
    keys = IDENTITY_KEYS if "cuda" in (recorded.get("device"), current.get("device")) else ("device", "torch")
    diffs = [f"{k} {recorded.get(k, '?')!r} vs {current.get(k, '?')!r} here" for k in keys
             if recorded.get(k, "") != current.get(k, "")]
    return "; ".join(diffs) or None


