"""Ray executor: bit-identical to local training (tensors and file bytes), and a killed task is retried."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from s3t import S3T
from tests.conftest import tiny_config, toy_rows
from tests.train.test_jobs import digests, file_hashes

ray = pytest.importorskip("ray", reason="ray is installed by scripts/bootstrap.sh (extra 'ray')")


@pytest.fixture
def fresh_ray():
    ray.shutdown()
    yield
    ray.shutdown()


def fit(tmp_path, model, name, **train):
    cfg = tiny_config(model, epochs=1)
    cfg = replace(cfg, train=replace(cfg.train, **train))
    return S3T(cfg, workspace=tmp_path / name).fit(toy_rows(60, seed=4), validation=toy_rows(10, seed=5))


def test_ray_is_bit_identical_to_local(tmp_path, tiny_model, fresh_ray):
    local = fit(tmp_path, tiny_model, "local")
    on_ray = fit(tmp_path, tiny_model, "ray", executor="ray")
    assert ray.is_initialized()
    assert digests(local) == digests(on_ray) and len(digests(local)) == 18
    assert local.config.digest() != on_ray.config.digest()  # the configs differ, in the executor only
    assert file_hashes(local) == file_hashes(on_ray), "local and Ray checkpoint files must be byte-identical"
    assert on_ray.audit().ok


def test_killed_ray_task_is_retried_and_identical(tmp_path, tiny_model, fresh_ray, monkeypatch):
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("S3T_FAULT_KILL_ONCE", str(marker))  # inherited by the Ray workers started below
    on_ray = fit(tmp_path, tiny_model, "ray", executor="ray")
    assert marker.exists(), "the fault was never injected"
    monkeypatch.delenv("S3T_FAULT_KILL_ONCE")
    local = fit(tmp_path, tiny_model, "local")
    assert digests(local) == digests(on_ray)
    report = on_ray.audit()
    assert report.ok, report.failures()
    staging = on_ray.ws_.path / "checkpoints" / ".staging"
    assert not any(staging.glob("*.safetensors")), "files of the killed attempt must not stay around"
    registered = {c.id for c in on_ray.ws_.ledger.checkpoints()}
    on_disk = {p.stem for p in (on_ray.ws_.path / "checkpoints").glob("shard-*/*.safetensors")}
    assert on_disk == registered


def test_killed_local_worker_fails_cleanly(tmp_path, tiny_model, monkeypatch):
    """The local process pool does not retry: the error names the shard and nothing is registered."""
    from s3t.errors import S3TError

    monkeypatch.setenv("S3T_FAULT_KILL_ONCE", str(tmp_path / "m"))
    with pytest.raises(S3TError, match="shard"):
        fit(tmp_path, tiny_model, "pool", workers=2)
    est = S3T.load(tmp_path / "pool")  # recovery erases staged files of the dead job
    assert not any((tmp_path / "pool" / "checkpoints" / ".staging").glob("*.safetensors"))
    assert est.status()["live_shards"] == 0 or est.audit().ok
    assert os.path.exists(tmp_path / "m")
