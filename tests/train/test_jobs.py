"""Shard jobs in worker processes give bit-identical checkpoints to in-process training."""

from __future__ import annotations

from dataclasses import replace

from s3t import S3T
from s3t.store.checkpoints import load_checkpoint, state_digest
from s3t.train.jobs import resolve_workers
from tests.conftest import tiny_config, toy_rows


def digests(model: S3T) -> dict[tuple[int, str], str]:
    out = {}
    for c in model.ws_.ledger.checkpoints():
        state, meta = load_checkpoint(model.ws_.resolve(c.path), sha256=c.sha256)
        assert meta["threads"] == "1"
        out[(c.shard, c.prefix)] = state_digest(state)
    return out


def file_hashes(model: S3T) -> dict[tuple[int, str], str]:
    """sha256 of each checkpoint's file bytes (tensors and metadata), re-read from disk."""
    from s3t.store.atomic import sha256_file

    out = {}
    for c in model.ws_.ledger.checkpoints():
        path = model.ws_.resolve(c.path)
        assert sha256_file(path) == c.sha256
        _, meta = load_checkpoint(path)
        assert meta["training_config_sha256"] == model.config.training_digest()
        out[(c.shard, c.prefix)] = c.sha256
    return out


def test_process_workers_are_bit_identical_to_in_process(tmp_path, tiny_model):
    cfg = tiny_config(tiny_model, epochs=1)
    train, val = toy_rows(60, seed=4), toy_rows(10, seed=5)
    local = S3T(cfg, workspace=tmp_path / "a").fit(train, validation=val)
    pooled_cfg = replace(cfg, train=replace(cfg.train, workers=2))
    pooled = S3T(pooled_cfg, workspace=tmp_path / "b").fit(train, validation=val)
    a, b = digests(local), digests(pooled)
    assert len(a) == 18 and a == b
    assert file_hashes(local) == file_hashes(pooled), "workers must not change a byte of a checkpoint file"
    assert pooled.audit().ok
    assert (local.predict_proba(["great film"]) == pooled.predict_proba(["great film"])).all()


def test_resolve_workers():
    assert resolve_workers(3, 2) == 2
    assert resolve_workers(1, 5) == 1
    assert 1 <= resolve_workers(0, 4) <= 4
