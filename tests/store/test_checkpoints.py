"""Tests of s3t.store.checkpoints and s3t.store.atomic: bit-exact files, integrity, atomic writes."""

from __future__ import annotations

import hashlib

import pytest
import torch

from s3t.errors import IntegrityError
from s3t.store.atomic import atomic_write, atomic_write_bytes, sha256_file
from s3t.store.checkpoints import load_checkpoint, save_checkpoint, state_digest


def sample_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "adapter.layer.4.lora_A.weight": torch.randn(4, 32, generator=g),
        "adapter.layer.4.lora_B.weight": torch.randn(32, 4, generator=g).t(),  # non-contiguous view
        "head.weight": torch.randn(2, 32, generator=g, dtype=torch.float64),
        "head.bias": torch.randn(2, generator=g).to(torch.bfloat16),
        "half": torch.randn(3, 3, generator=g).to(torch.float16),
        "ints": torch.arange(-5, 5, dtype=torch.int64),
        "weird": torch.tensor([float("nan"), float("inf"), -0.0, 1e-45]),
    }


def flip_byte(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# -- save / load -----------------------------------------------------------------------------


def test_round_trip_is_bit_exact_and_keeps_metadata(tmp_path):
    state = sample_state()
    meta = {"shard": 1, "prefix": "2,0", "stage": 2, "seed": 123456789012345, "config_sha256": "ab" * 32}
    path = tmp_path / "ck" / "c.safetensors"  # parent is created
    digest = save_checkpoint(path, state, meta)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded, loaded_meta = load_checkpoint(path, sha256=digest)
    assert set(loaded) == set(state)
    for k, v in state.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape, k
        # bitwise: compare the raw bytes (NaN != NaN under torch.equal)
        assert loaded[k].contiguous().view(-1).view(torch.uint8).tolist() == v.contiguous().view(-1).view(torch.uint8).tolist(), k
        if not torch.isnan(v.float()).any():
            assert torch.equal(loaded[k], v), k
    assert loaded_meta == {k: str(v) for k, v in meta.items()}


def test_save_does_not_alias_or_modify_the_given_state(tmp_path):
    state = sample_state()
    before = {k: v.clone() for k, v in state.items()}
    save_checkpoint(tmp_path / "c.safetensors", state, {})
    for k in state:
        assert torch.equal(state[k].nan_to_num(), before[k].nan_to_num())


def test_same_state_gives_the_same_file(tmp_path):
    a = save_checkpoint(tmp_path / "a.safetensors", sample_state(), {"x": "1"})
    b = save_checkpoint(tmp_path / "b.safetensors", sample_state(), {"x": "1"})
    assert a == b


def test_flipped_byte_is_an_integrity_error(tmp_path):
    path = tmp_path / "c.safetensors"
    digest = save_checkpoint(path, sample_state(), {"stage": 1})
    flip_byte(path, path.stat().st_size - 3)  # inside the tensor data
    with pytest.raises(IntegrityError, match="sha256"):
        load_checkpoint(path, sha256=digest)


def test_wrong_expected_hash_is_an_integrity_error(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, sample_state(), {})
    with pytest.raises(IntegrityError, match="sha256"):
        load_checkpoint(path, sha256="0" * 64)


def test_missing_file_is_an_integrity_error(tmp_path):
    with pytest.raises(IntegrityError, match="missing"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(IntegrityError, match="missing"):
        load_checkpoint(tmp_path / "nope.safetensors", sha256="0" * 64)


def test_unreadable_file_is_an_integrity_error_even_without_a_hash(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, sample_state(), {})
    path.write_bytes(path.read_bytes()[:-7])  # truncated
    with pytest.raises(IntegrityError, match="cannot be read"):
        load_checkpoint(path)


# -- atomic writes ---------------------------------------------------------------------------


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    atomic_write_bytes(path, b"new content")
    assert path.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_failed_writer_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old content")

    def writer(tmp):
        tmp.write_bytes(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, writer)
    assert path.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_failed_writer_on_a_new_path_creates_nothing(tmp_path):
    path = tmp_path / "sub" / "f.bin"

    def writer(tmp):
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(path, writer)
    assert not path.exists()
    assert list(path.parent.iterdir()) == []


def test_failed_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    digest = save_checkpoint(path, sample_state(), {"v": "1"})
    import safetensors.torch

    def broken(tensors, filename, metadata=None):
        open(filename, "wb").write(b"garbage")
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(RuntimeError):
        save_checkpoint(path, {"x": torch.zeros(2)}, {"v": "2"})
    state, meta = load_checkpoint(path, sha256=digest)
    assert meta == {"v": "1"} and set(state) == set(sample_state())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]


def test_sha256_file_matches_hashlib(tmp_path):
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * 9000  # > 1 MiB chunk
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


# -- state_digest ----------------------------------------------------------------------------


def test_state_digest_changes_with_one_changed_element():
    state = sample_state()
    base = state_digest(state)
    changed = dict(state)
    t = state["adapter.layer.4.lora_A.weight"].clone()
    t[3, 17] = torch.nextafter(t[3, 17], torch.tensor(float("inf")))  # smallest possible change
    changed["adapter.layer.4.lora_A.weight"] = t
    assert state_digest(changed) != base
    assert state_digest(state) == base  # deterministic


def test_state_digest_depends_on_names_dtypes_and_shapes_not_order_or_layout():
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    base = state_digest({"a": a, "b": torch.ones(2)})
    assert state_digest({"b": torch.ones(2), "a": a}) == base  # key order
    assert state_digest({"a": a.t().contiguous().t(), "b": torch.ones(2)}) == base  # memory layout
    assert state_digest({"a": a.reshape(3, 2), "b": torch.ones(2)}) != base  # shape
    assert state_digest({"a": a.to(torch.int32), "b": torch.ones(2)}) != base  # dtype (same bytes length)
    assert state_digest({"c": a, "b": torch.ones(2)}) != base  # name


def test_state_digest_survives_a_file_round_trip(tmp_path):
    state = sample_state()
    save_checkpoint(tmp_path / "c.safetensors", state, {})
    loaded, _ = load_checkpoint(tmp_path / "c.safetensors")
    assert state_digest(loaded) == state_digest(state)


def test_state_digest_accepts_scalar_tensors():
    d1 = state_digest({"scale": torch.tensor(2.0)})
    d2 = state_digest({"scale": torch.tensor(3.0)})
    assert d1 != d2
