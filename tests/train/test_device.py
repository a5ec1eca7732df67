"""Devices: settings resolve or fail clearly, every checkpoint records what computed it, and verify
compares bits only with a like machine (these run on CPU-only machines; scripts/gpu_check.sh is
the check on a CUDA GPU)."""

from __future__ import annotations

import pytest
import torch

from s3t.config import ServeConfig, TrainConfig
from s3t.errors import ConfigError
from s3t.train import device as dev

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour of a machine without a GPU")


@no_gpu
def test_auto_is_the_cpu_here_and_cuda_asked_for_is_a_clear_error():
    assert dev.resolve_device("auto") == torch.device("cpu")
    assert dev.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        dev.resolve_device("cuda")
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        dev.resolve_device("cuda:1")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "", 3])
def test_bad_device_settings_are_refused_at_configuration(bad):
    with pytest.raises(ConfigError, match="train.device"):
        TrainConfig(device=bad)
    with pytest.raises(ConfigError, match="serve.device"):
        ServeConfig(device=bad)


def test_cuda_determinism_switches(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    try:
        dev.set_device_determinism(torch.device("cuda"))
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


def test_like_with_like():
    cpu = {"device": "cpu", "device_name": "CPU A", "torch": "2.13.0+cpu", "cuda": ""}
    h200 = {"device": "cuda", "device_name": "NVIDIA H200", "torch": "2.13.0+cu128", "cuda": "12.8"}
    assert dev.incomparable(cpu, dict(cpu, device_name="CPU B")) is None  # recorded, not required on the CPU
    assert "torch" in dev.incomparable(cpu, dict(cpu, torch="2.14.0+cpu"))
    assert "device 'cpu' vs 'cuda'" in dev.incomparable(cpu, h200)
    assert "device_name" in dev.incomparable(h200, dict(h200, device_name="NVIDIA A100"))
    assert "cuda" in dev.incomparable(h200, dict(h200, cuda="12.4"))
    assert dev.incomparable(h200, dict(h200)) is None
    assert dev.incomparable({"shard": "0"}, cpu) is None  # written before identities: CPU-trained
    assert "predates" in dev.incomparable({"shard": "0"}, h200)


def test_checkpoints_record_the_device_and_verify_refuses_another_kind(tmp_path, tiny_model, toy_data, monkeypatch):
    from s3t import S3T
    from s3t.store.checkpoints import load_checkpoint
    from tests.conftest import tiny_config

    train, val = toy_data
    # device="cpu" said outright: under "auto" a machine with a GPU would train on it (seen on an H200)
    est = S3T(tiny_config(tiny_model, shards=2, slices=2, budget=1, epochs=1, device="cpu"),
              workspace=tmp_path / "ws").fit(train)
    c = est.ws_.ledger.checkpoints()[0]
    _, meta = load_checkpoint(est.ws_.resolve(c.path))
    assert meta["device"] == "cpu" and meta["torch"] == torch.__version__ and meta["device_name"] == dev.cpu_name()
    receipt = est.forget(record_ids=[train[0]["id"]])
    est.retrain()
    assert est.verify(receipt.request_id).ok
    # the same verify on "another kind of machine": every from-scratch file says it was computed on a GPU
    gpu = {"device": "cuda", "device_name": "NVIDIA H200", "torch": torch.__version__, "cuda": "12.8"}
    monkeypatch.setattr(dev, "device_identity", lambda device: gpu)
    report = est.verify(receipt.request_id)
    assert not report.ok and report.compared == 0 and not report.mismatches
    assert report.incomparable and "another kind of machine" in report.incomparable[0]
    assert "device 'cpu' vs 'cuda'" in report.incomparable[0]


@no_gpu
def test_serving_on_a_missing_gpu_is_a_clear_error(fitted):
    from dataclasses import replace

    fitted.config = replace(fitted.config, serve=replace(fitted.config.serve, device="cuda"))
    fitted._ensemble = None
    fitted._backbone = None
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        fitted.predict(["a film"])


class _Loaded(Exception):
    """Raised by the spy in place of loading a model: where it was asked to go."""


@pytest.fixture
def fake_gpu(monkeypatch):
    """A machine that says it has a CUDA GPU; loading a backbone raises ``_Loaded(device)`` instead."""
    from s3t.train import backbone as bb

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(dev, "device_identity", lambda device: {"device": torch.device(device).type,
                                                                "device_name": "fake", "torch": "", "cuda": ""})

    def spy(name, task="classification", device="cpu"):
        raise _Loaded(dev.resolve_device(device) if isinstance(device, str) else torch.device(device))

    monkeypatch.setattr(bb, "load_backbone", spy)
    import s3t.baselines.runner as runner

    monkeypatch.setattr(runner, "load_backbone", spy, raising=False)  # where it was imported by name
    return spy


def _device_asked(fn) -> torch.device:
    with pytest.raises(_Loaded) as caught:
        fn()
    return caught.value.args[0]


def test_every_trainer_loads_its_backbone_on_the_training_device(fake_gpu, tiny_model, toy_data, tmp_path):
    """SISA, the full fine-tune, ``s3t tune`` and the bench trained on the CPU on a GPU machine while
    S3T trained on the GPU (seen on an H200: a full-size tune ran at 0% GPU)."""
    from s3t.baselines import SISA, FullRetrain
    from s3t.bench import run_bench
    from s3t.bench.config import BenchConfig
    from s3t.bench.tuned import tune_bench
    from s3t.tune import Grid, tune
    from tests.conftest import tiny_config

    train, val = toy_data
    cuda = torch.device("cuda")
    auto = tiny_config(tiny_model, shards=2, slices=2, budget=1, epochs=1)
    assert auto.train.device == "auto"
    assert _device_asked(lambda: SISA(auto).fit(train)) == cuda
    assert _device_asked(lambda: FullRetrain(auto).fit(train)) == cuda
    grid = Grid(lrs=(0.01,), ranks=(2,), epochs=(1,))
    assert _device_asked(lambda: tune(train, val, auto, grid=grid, methods=("sisa",))) == cuda
    cfg = BenchConfig.quick(model=tiny_model, limit=160)
    assert _device_asked(lambda: tune_bench(cfg, datasets=["movie_reviews"], grid=grid, say=lambda m: None)) == cuda
    assert _device_asked(lambda: run_bench(tmp_path / "b", quick=True, say=lambda m: None, only="P3",
                                           model=tiny_model, limit=160)) == cuda
    cpu = tiny_config(tiny_model, shards=2, slices=2, budget=1, epochs=1, device="cpu")
    assert _device_asked(lambda: SISA(cpu).fit(train)) == torch.device("cpu")


def test_a_shared_backbone_on_another_device_is_not_trained_on(fake_gpu, tiny_model):
    """A backbone loaded on the CPU and handed to a baseline that trains on 'auto' (the GPU here) is
    replaced, not used: every method of one bench run computes on the same device."""
    from s3t.baselines.runner import resolve_backbone
    from s3t.train.backbone import Backbone
    from tests.conftest import tiny_config

    on_cpu = Backbone(model=torch.nn.Linear(2, 2), tokenizer=None, path=tiny_model)
    auto = tiny_config(tiny_model, shards=2, slices=2, budget=1, epochs=1)
    assert _device_asked(lambda: resolve_backbone(on_cpu, auto)) == torch.device("cuda")
    cpu = tiny_config(tiny_model, shards=2, slices=2, budget=1, epochs=1, device="cpu")
    assert resolve_backbone(on_cpu, cpu) is on_cpu


def test_cuda_and_its_current_index_are_one_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert dev.same_device(torch.device("cuda:0"), torch.device("cuda"))
    assert not dev.same_device(torch.device("cuda:1"), torch.device("cuda"))
    assert not dev.same_device(torch.device("cpu"), torch.device("cuda"))
    assert dev.same_device(torch.device("cpu"), torch.device("cpu"))
