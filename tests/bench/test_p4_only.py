"""``s3t bench --only P4`` (P3's fits, then P4 on them) and ``--workers`` on the tiny random model.

What is asserted: P4 runs on the fits P3 made and is reported and plotted without the other
parts; S3T fits trained by two worker processes give the same workspace bits and the same P3 as
one process; CPU seconds count the workers' CPU; the parts that compare training cost refuse
``workers > 1``. No accuracy or time is asserted."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from s3t.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\n"


def _checkpoint_digests(work: Path, name: str) -> dict[str, str]:
    """Checkpoint file digests by shard and lineage (the file name's last part is unique per write)."""
    files = sorted((work / name / "checkpoints").rglob("*.safetensors"))
    assert files, f"no checkpoints under {work / name}"
    return {f"{p.parent.name}/{p.stem.rsplit('-', 1)[0]}": hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def p4_runs(tmp_path_factory, tiny_model):
    from s3t.bench import run_bench

    root = tmp_path_factory.mktemp("p4")
    kw = dict(quick=True, say=lambda m: None, model=tiny_model, limit=160, p3_datasets=("movie_reviews",),
              accuracy_points=3, accuracy_streams=2, keep_work=True)
    one = run_bench(root / "one", only="P4", workers=1, **kw)
    two = run_bench(root / "two", only="P4", workers=2, **kw)
    return root, one, two


def test_p4_alone_runs_on_the_p3_fits_and_is_reported(p4_runs):
    root, one, _ = p4_runs
    p4 = one["P4"]
    assert [x["deletions"] for x in p4["points"]][0] == 0 and len(p4["points"]) == 3 and len(p4["streams"]) == 2
    assert p4["points"][0]["s3t"] == pytest.approx(one["P3"]["s3t_B3"])  # no deletion yet: the P3 ensemble
    assert all(len(order) == p4["max_deletions"] for order in p4["orders"])
    assert {"P1", "P5", "P6", "P7"}.isdisjoint(one)
    parts = [row["part"] for row in one["summary"]]
    assert parts.count("P3") == 1 and parts.count("P4") == 1
    assert "p4_accuracy_vs_deletions.png" in one["plots"]
    assert (root / "one" / "p4_accuracy_vs_deletions.png").read_bytes().startswith(PNG)
    kept = json.loads((root / "one" / "results.json").read_text())
    assert kept["P4"]["points"] == json.loads(json.dumps(p4["points"]))


def test_two_workers_train_the_same_bits_as_one(p4_runs):
    root, one, two = p4_runs
    assert one["machine"]["workers"] == 1 and two["machine"]["workers"] == 2
    assert two["machine"]["compute"]["device"] in ("cpu", "cuda")
    for name in ("s3t-B3", "s3t-B1"):
        assert _checkpoint_digests(root / "one" / "work", name) == _checkpoint_digests(root / "two" / "work", name)
    for key in ("s3t_B3", "s3t_B1", "sisa", "full"):
        assert one["P3"][key] == two["P3"][key]
    assert [x["s3t"] for x in one["P4"]["points"]] == [x["s3t"] for x in two["P4"]["points"]]


def test_cpu_seconds_count_the_worker_processes(p4_runs):
    _, one, two = p4_runs
    # the B=3 fit's training runs in the workers: without their CPU the parent would show little
    a, b = one["fits"]["s3t_B3"]["cpu_seconds"], two["fits"]["s3t_B3"]["cpu_seconds"]
    assert b > 0.5 * a


def test_workers_are_refused_where_training_costs_are_compared(tiny_model, tmp_path):
    from s3t.bench import run_bench

    with pytest.raises(ConfigError, match="workers=2"):
        run_bench(tmp_path / "x", quick=True, say=lambda m: None, model=tiny_model, limit=160, workers=2)
    assert not (tmp_path / "x").exists()


def test_an_unknown_part_is_a_clear_error_before_anything_is_written(tmp_path):
    from s3t.bench import run_bench

    with pytest.raises(ConfigError, match="only must be None, 'P3', 'P4' or 'P8'; got 'P5'"):
        run_bench(tmp_path / "x", quick=True, say=lambda m: None, only="P5")
    assert not (tmp_path / "x").exists()
