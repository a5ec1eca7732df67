"""P9 on a tiny random Llama: the parts run, their numbers are consistent, the forgets are exact."""

from __future__ import annotations

import json

from s3t.bench.lm import run_p9


def test_p9_measures_training_generation_and_forgets(tmp_path, tiny_llama):
    out = tmp_path / "p9"
    result = run_p9(out, model=tiny_llama, people=4, facts=2, shards=2, slices=2, budget=2, rounds=2, prompts=2,
                    new_tokens=3, forgets=2, batch_size=4, say=lambda m: None)
    saved = json.loads((out / "results.json").read_text())
    assert saved["training"] == json.loads(json.dumps(result["training"]))
    training = result["training"]
    assert training["sequences"] == {"s3t": 4, "sisa": 2}
    assert training["checkpoints"]["s3t"] == 2 * 4  # per shard: both orders of 2 slices, 2 stages each
    for method in ("s3t", "sisa"):
        assert training["cpu_per_sequence"][method] > 0
    gen = result["generation"]
    assert gen["members"] == 2 and len(gen["seconds"]["ensemble"]) == 2
    assert all(t > 0 for t in gen["tokens_per_second"].values())
    forget = result["forget"]
    assert forget["forgets"] == 2 and forget["audit_ok"]
    assert sum(forget["served_after"].values()) < 4  # two people forgotten: some shard serves less
    assert (out / "p9.png").stat().st_size > 1000
    assert not (out / "work").exists()
