"""s3t export: the served shards as standard peft adapters + heads that reproduce the ensemble."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import tiny_config, toy_rows
from tests.fitted_copy import fitted_template, fitted_ws  # noqa: F401  (fixtures)

TEXTS = ["a great moving film", "the plot was dull", "boring", "the acting was really quite superb and fun"]


def exported_probabilities(out, texts) -> torch.Tensor:
    """The ensemble rebuilt from the export with peft and transformers only (as the model card shows)."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    card = json.loads((out / "ensemble.json").read_text())
    tok = AutoTokenizer.from_pretrained(card["base_model"])
    enc = tok(texts, truncation=True, max_length=card["max_length"], padding=True, return_tensors="pt")
    mask = enc["attention_mask"].unsqueeze(-1).float()
    logits = []
    for m in card["served"]:
        model = PeftModel.from_pretrained(AutoModel.from_pretrained(card["base_model"]), str(out / m["directory"])).eval()
        head = load_file(str(out / m["directory"] / "head.safetensors"))
        with torch.no_grad():
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        logits.append(pooled @ head["weight"].T + head["bias"])
    stacked = torch.stack(logits)
    if card["aggregate"] == "logits":
        return torch.softmax(stacked.mean(0), -1)
    return torch.softmax(stacked, -1).mean(0)


def test_export_after_a_forget_reproduces_the_served_ensemble(fitted_ws, tmp_path):
    from typer.testing import CliRunner

    from s3t.cli import app

    est = fitted_ws
    rid = next(r.id for r in est.ws_.ledger.records("train") if r.shard == 0 and r.slice == 1)
    est.forget(record_ids=[rid])
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", "-w", str(est.ws_.path), str(out), "--json"])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "ensemble.json").read_text())
    served = est.status()["served"]
    assert {str(m["shard"]): m["stage"] for m in card["served"]} == served and served["0"] < 3
    for m in card["served"]:
        adapter = json.loads((out / m["directory"] / "adapter_config.json").read_text())
        top = list(range(6 - 2 * m["stage"], 6))  # 6 layers, 3 groups of 2, counted from the top
        assert sorted(adapter["layers_to_transform"]) == m["adapted_layers"] == top
        assert all(v["shard"] == m["shard"] for v in m["lineage"]) and len(m["lineage"]) == m["stage"]
    assert card["deletions"]["records"] == 1 and card["deletions"]["requests"] == 1 and card["audit"]["ok"]
    readme = (out / "README.md").read_text()
    assert "1 record(s) forgotten in 1 request(s)" in readme and "The audit: passed" in readme and rid not in readme
    assert rid not in (out / "ensemble.json").read_text()
    expected = torch.tensor(est.predict_proba(TEXTS))
    assert torch.allclose(exported_probabilities(out, TEXTS), expected, atol=1e-5)
    again = CliRunner().invoke(app, ["export", "-w", str(est.ws_.path), str(out)])
    assert again.exit_code != 0 and "not empty" in str(again.exception)


@pytest.mark.parametrize("family", ["distilbert", "deberta-v2", "modernbert"])
def test_export_of_other_families_loads_with_peft(tmp_path, family_models, family):
    from s3t import S3T
    from s3t.train.export import export_served

    cfg = tiny_config(family_models[family], shards=2, slices=2, budget=1, epochs=1)
    est = S3T(cfg, workspace=tmp_path / "ws").fit(toy_rows(30, seed=4), validation=toy_rows(10, seed=5))
    card = export_served(est, tmp_path / "out", run_audit=False)
    assert card["audit"] is None and len(card["served"]) == 2
    expected = torch.tensor(est.predict_proba(TEXTS))
    assert torch.allclose(exported_probabilities(tmp_path / "out", TEXTS), expected, atol=1e-5)
