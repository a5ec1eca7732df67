"""End to end on the real pretrained model (all-MiniLM-L6-v2) and the real movie-review data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s3t import S3T
from s3t.config import LoraSettings, PlanConfig, S3TConfig, TrainConfig
from s3t.data import load_builtin
from s3t.store.checkpoints import load_checkpoint
from s3t.train.layers import adapted_layers, layer_groups
from s3t.train.model import AdaptedEncoder

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    splits = load_builtin("movie_reviews", seed=0, limit=1200)
    cfg = S3TConfig(
        plan=PlanConfig(shards=2, slices=3, budget=3),
        train=TrainConfig(epochs=1, lr=2e-3, batch_size=32, lora=LoraSettings(rank=8, alpha=16)),
    )
    model = S3T(cfg, workspace=tmp_path_factory.mktemp("real") / "ws").fit(splits.train, validation=splits.validation)
    return model, splits


def surviving_logits(model: S3T, texts: list[str]) -> torch.Tensor:
    """Mean logits of the served checkpoints, each loaded alone and run as a full forward pass."""
    from s3t.train.backbone import load_backbone
    from s3t.train.batches import pad_ids, tokenize

    bb = load_backbone(model.config.train.model)
    groups = layer_groups(bb.n_layers, model.config.plan.slices)
    _, manifest = model.ws_.ledger.latest_manifest()
    per_shard = []
    for shard, entry in manifest["shards"].items():
        if entry is None:
            continue
        ckpt = model.ws_.ledger.checkpoint(entry["checkpoint"])
        state, meta = load_checkpoint(model.ws_.resolve(ckpt.path), sha256=ckpt.sha256)
        assert int(meta["stage"]) == entry["stage"]
        m = AdaptedEncoder(bb.model, model.config.train.lora, adapted_layers(groups, entry["stage"]), len(model.classes_))
        m.load_state(state)
        rows = []
        for t in tokenize(bb.tokenizer, texts, model.config.train.max_length):
            ids, mask = pad_ids([t], bb.tokenizer.pad_token_id)
            with torch.no_grad():
                rows.append(m(ids, mask)[0])
        per_shard.append(torch.stack(rows))
    return torch.stack(per_shard).mean(0)


def test_real_model_forget_is_exact_and_audited(real):
    model, splits = real
    acc = model.score(splits.test)
    assert acc > 0.6, f"the real model should beat chance on movie reviews; got {acc:.3f}"
    assert model.status()["served"] == {"0": 3, "1": 3}

    # forget one record of shard 0: the shard must fall back to a prefix that never saw it
    rec = next(r for r in model.ws_.ledger.records() if r.shard == 0)
    receipt = model.forget(record_ids=[rec.id])
    assert receipt.affected_shards == [0]
    seqs = model.ws_.ledger.sequences()[0]
    expected = max(next((i for i, s in enumerate(seq) if s == rec.slice), len(seq)) for seq in seqs)
    assert receipt.after["0"] == expected < 3
    assert receipt.after["1"] == 3

    texts = list(splits.test.texts[:12])
    served = model.predict_proba(texts)
    reference = torch.softmax(surviving_logits(model, texts), -1).numpy()
    np.testing.assert_allclose(served, reference, atol=1e-5)

    report = model.audit()
    assert report.ok, report.failures()
    # the served checkpoints' lineages never include the forgotten record
    with model.ws_.ledger.Session() as s:
        assert not model.ws_.ledger.tainted_checkpoints(s) & {
            v["checkpoint"] for v in model.ws_.ledger.latest_manifest(s)[1]["shards"].values() if v
        }
