"""The demo end to end on the tiny model and a small slice of the real snippets."""

from __future__ import annotations

from dataclasses import replace

from s3t.demo import DemoOptions, run_demo
from tests.conftest import tiny_config


def test_demo_forgets_a_person_and_records_and_stays_live_and_exact(tmp_path, tiny_model):
    config = tiny_config(tiny_model, shards=3, slices=3, budget=3, epochs=1)
    config = replace(config, plan=replace(config.plan, selection="cyclic"))
    lines: list[str] = []
    out = run_demo(DemoOptions(workspace=tmp_path / "ws", limit=400, config=config, reference=False, forget_count=4),
                   say=lines.append)
    person = out["person"]
    assert out["placement"]["placement"] == "subject"
    assert person["records"] >= 1 and person["live_shards"] == 3  # one person never takes a shard down here
    assert sum(1 for v in person["after"].values() if v < 3) == 1  # exactly one shard shortened
    assert person["slices_if_record_placed"] > 1 or person["records"] == 1
    assert out["people"]["subjects"] == max(2, out["people"]["records"] // 40)
    assert all(c["ok"] for c in out["audit"]["checks"]), out["audit"]
    assert any(line.startswith(f"forgot person {person['subject']}") for line in lines)
    assert set(person["record_ids"]).isdisjoint(out["receipt"]["record_ids"])
