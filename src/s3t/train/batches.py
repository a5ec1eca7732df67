"""Tokenisation once, length-bucketed batches and per-batch padding.

Batches are formed by sorting examples by token length (ties by position) and cutting
the sorted list into chunks: little padding, and the same examples always form the same
batches, which matters for bit-reproducibility (batch composition changes the bits).
"""

from __future__ import annotations

from typing import Sequence

import torch


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text (with special tokens, truncated, unpadded)."""
    if not texts:
        return []
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return [list(ids) for ids in enc["input_ids"]]


def bucket_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (deterministic)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_ids(seqs: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest one; returns (ids, mask), on ``device`` if given."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    if device is not None and torch.device(device).type != "cpu":
        return ids.to(device), mask.to(device)
    return ids, mask


def pad_hidden(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad per-example hidden states [len, hidden] to a batch (on their device); returns (hidden, mask)."""
    width = max(int(s.shape[0]) for s in states)
    device = states[0].device
    hidden = torch.zeros((len(states), width, states[0].shape[1]), dtype=states[0].dtype, device=device)
    mask = torch.zeros((len(states), width), dtype=torch.long, device=device)
    for row, s in enumerate(states):
        hidden[row, : s.shape[0]] = s
        mask[row, : s.shape[0]] = 1
    return hidden, mask
