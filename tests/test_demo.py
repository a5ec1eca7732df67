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


def test_lm_demo_asks_forgets_the_person_and_asks_again(tmp_path, tiny_llama):
    from s3t.demo_lm import LM_DEMO_CONFIG, LMDemoOptions, run_lm_demo

    config = tiny_config(tiny_llama, shards=2, slices=2, budget=2, epochs=1, task="causal-lm")
    config = replace(config, plan=replace(config.plan, selection="cyclic"),
                     train=replace(config.train, first_stage_epochs=2, lora=LM_DEMO_CONFIG.train.lora))
    lines: list[str] = []
    out = run_lm_demo(LMDemoOptions(workspace=tmp_path / "ws", people=4, facts=3, questions=2, max_new_tokens=4,
                                    config=config), say=lines.append)
    person, kept = out["forget_person"], out["kept_person"]
    assert out["records"] == 12 and out["placement"]["placement"] == "subject"
    assert person["shard"] != kept["shard"]
    # B=2, L=2: the person's shard keeps the stage 1 of the sequence that starts with the other slice
    assert out["receipt"]["served_before"] == {"0": 2, "1": 2}
    assert out["receipt"]["served_after"] == {str(person["shard"]): 1, str(kept["shard"]): 2}
    assert out["receipt"]["subject"] == person["subject"] and len(out["receipt"]["record_ids"]) == 3
    for when in ("before", "after"):
        for who in ("forget", "kept"):
            asked = out[when][who]
            assert len(asked) == 2 and all(a["tokens"] <= 4 for a in asked)
            assert all(a["knows"] == (a["fact"].lower() in a["answer"].lower()) for a in asked)
            assert all(0 < a["p_tuned_response"] <= 1 and isinstance(a["exact"], bool) for a in asked)
    tally = out["tuned_responses"]
    assert {w: (tally["forgotten"][w]["of"], tally["others"][w]["of"]) for w in ("before", "after")} == {
        "before": (3, 9), "after": (3, 9)}
    assert all(0 <= tally[who][w]["exact"] <= tally[who][w]["of"] for who in tally for w in ("before", "after"))
    assert all(a["served"] == {"0": 2, "1": 2} for a in out["before"]["forget"] + out["before"]["kept"])
    after = out["after"]["forget"] + out["after"]["kept"]
    assert all(a["served"] == out["receipt"]["served_after"] for a in after)
    assert all(a["manifest_version"] == out["receipt"]["manifest_version"] for a in after)
    assert [a["id"] for a in out["after"]["forget"]] == [a["id"] for a in out["before"]["forget"]]
    assert all(a["id"].startswith(person["subject"] + "-") for a in out["before"]["forget"])
    assert all(a["id"].startswith(kept["subject"] + "-") for a in out["before"]["kept"])
    assert all(c["ok"] for c in out["audit"]["checks"]), out["audit"]
    assert any(line.startswith("forgot ") and person["subject"] in line for line in lines)


def test_demo_command_refuses_an_unknown_task(tmp_path):
    from typer.testing import CliRunner

    from s3t.cli import app

    result = CliRunner().invoke(app, ["demo", "--task", "regression", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 2 and "--task" in result.output
    assert not (tmp_path / "ws").exists()
