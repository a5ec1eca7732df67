"""Per-subject deletion likelihoods -> per-slice BMS priors -> each shard's own sequences (issue 16)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from s3t import S3T
from s3t.errors import ConfigError, DataError
from tests.conftest import tiny_config, toy_rows


def _config(tiny_model, selection="bms"):
    cfg = tiny_config(tiny_model, shards=2, slices=3, budget=2, epochs=1)
    return replace(cfg, plan=replace(cfg.plan, selection=selection))


def test_a_likely_deleted_subject_puts_its_slice_last_in_its_shard_only(tmp_path, tiny_model):
    from s3t.plan import place, select_sequences

    rows = toy_rows(60, seed=4, subjects=6)
    cfg = _config(tiny_model)
    where = place([r["id"] for r in rows], [r["subject"] for r in rows], 2, 3, cfg.plan.seed)
    risky = next(r["subject"] for r, pair in zip(rows, where.pairs) if pair[1] == 0)  # a person in a slice 0
    likelihood = {f"user{k}": 1.0 for k in range(6)} | {risky: 50.0}
    model = S3T(cfg, workspace=tmp_path / "ws").fit(rows, subject_priors=likelihood)
    led = model.ws_.ledger
    (shard, sl), = {(r.shard, r.slice) for r in led.records("train") if r.subject == risky}
    assert sl == 0
    seqs = led.sequences()
    assert select_sequences("bms", 3, 2)[0][0] == 0  # with uniform priors slice 0 would come first
    assert all(seq[0] != sl for seq in seqs[shard]), seqs  # the risky slice never comes first in its shard
    assert seqs[shard] != seqs[1 - shard]  # the other shard keeps its own order
    priors = model.placement_["slice_priors"][str(shard)]
    assert priors[sl] == max(priors) and priors[sl] >= 50.0
    # trained per shard: every prefix of each shard's own sequences has a checkpoint
    have = {(c.shard, c.prefix) for c in led.checkpoints()}
    for sh, ss in seqs.items():
        for seq in ss:
            assert all((sh, ",".join(map(str, seq[:k]))) in have for k in range(1, 4))
    receipt = model.forget(subject=risky)
    assert receipt.after[str(shard)] == 2  # the risky slice was last: the full-but-one prefix survives


@pytest.mark.parametrize(("selection", "priors", "error", "match"), [
    ("cyclic", {"user1": 2.0}, ConfigError, "need plan.selection 'bms'"),
    ("bms", {"nobody": 2.0}, DataError, "does not hold"),
])
def test_bad_subject_priors_are_refused_before_anything_is_written(tmp_path, tiny_model, selection, priors, error, match):
    with pytest.raises(error, match=match):
        S3T(_config(tiny_model, selection), workspace=tmp_path / "ws").fit(toy_rows(60, seed=4, subjects=6),
                                                                         subject_priors=priors)
    assert not (tmp_path / "ws").exists()


def test_cli_reads_subject_priors_from_a_csv(tmp_path, tiny_model):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from s3t.cli import app

    data, priors = tmp_path / "train.csv", tmp_path / "priors.csv"
    pd.DataFrame(toy_rows(60, seed=4, subjects=6)).to_csv(data, index=False)
    pd.DataFrame({"subject": [f"user{k}" for k in range(6)], "prior": [1, 1, 1, 30, 1, 1]}).to_csv(priors, index=False)
    ws = str(tmp_path / "ws")
    runner = CliRunner()
    result = runner.invoke(app, ["train", "-w", ws, "--data", str(data), "--model", tiny_model, "-m", "2", "-L", "3",
                                 "-B", "2", "--epochs", "1", "--selection", "bms", "--subject-priors", str(priors)])
    assert result.exit_code == 0, result.output
    model = S3T.load(ws)
    (shard, sl), = {(r.shard, r.slice) for r in model.ws_.ledger.records("train") if r.subject == "user3"}
    assert all(seq[0] != sl for seq in model.ws_.ledger.sequences()[shard])
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"who": ["user1"], "p": [1]}).to_csv(bad, index=False)
    result = runner.invoke(app, ["train", "-w", str(tmp_path / "ws2"), "--data", str(data), "--model", tiny_model,
                                 "--selection", "bms", "--subject-priors", str(bad)])
    assert result.exit_code != 0 and "subject,prior" in result.output
    assert json.loads(runner.invoke(app, ["status", "-w", ws, "--json"]).stdout)["selection"] == "bms"
