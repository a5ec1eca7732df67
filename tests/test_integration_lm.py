"""End to end on the real pretrained chat model (SmolLM2-135M-Instruct, from its PyPI GGUF) and the
fictitious-people facts: train, generate, forget a person, audit, verify bit for bit."""

from __future__ import annotations

import pytest

from s3t import S3T
from s3t.config import LoraSettings, PlanConfig, S3TConfig, TrainConfig
from s3t.data import fictitious_people

pytestmark = pytest.mark.integration


def test_smollm2_trains_generates_forgets_a_person_and_verifies(tmp_path):
    rows = fictitious_people(n_people=4, facts_per_person=2, seed=0)
    cfg = S3TConfig(plan=PlanConfig(shards=2, slices=2, budget=1),
                    train=TrainConfig(task="causal-lm", model="SmolLM2-135M-Instruct", epochs=1, lr=5e-3, batch_size=4,
                                      max_length=64, threads=1, workers=1, lora=LoraSettings(rank=4, alpha=8)))
    model = S3T(cfg, workspace=tmp_path / "ws").fit(rows)
    assert model.status()["served"] == {"0": 2, "1": 2}
    person = rows[0]
    before = model.generate([person["prompt"]], max_new_tokens=12, details=True)[0]
    assert before.text and before.served == {"0": 2, "1": 2}
    receipt = model.forget(subject=person["subject"])
    assert receipt.body["record_ids"] == sorted(r["id"] for r in rows if r["subject"] == person["subject"])
    after = model.generate([person["prompt"]], max_new_tokens=12, details=True)[0]
    assert after.manifest_version > before.manifest_version
    assert sum(after.served.values()) < 4  # the person's shard serves a prefix that never saw them
    model.retrain()
    assert model.status()["served"] == {"0": 2, "1": 2}
    assert model.audit().ok
    cert = model.verify(receipt.request_id)
    assert cert.ok and cert.compared > 0, cert.mismatches
