"""An interrupted fit is finished by ``retrain`` (``s3t retrain``), bit for bit as if never interrupted."""

from __future__ import annotations

import pytest

from s3t import S3T
from s3t.errors import DataError
from s3t.store.workspace import Workspace
from tests.conftest import tiny_config, toy_rows


class Crash(RuntimeError):
    pass


def digests(est) -> dict[str, str]:
    """sha256 of the weights (adapters + head) of every checkpoint, by (shard, prefix)."""
    from s3t.store.checkpoints import load_checkpoint, state_digest

    return {f"{c.shard}:{c.prefix}": state_digest(load_checkpoint(est.ws_.resolve(c.path), sha256=c.sha256)[0])
            for c in est.ws_.ledger.checkpoints()}


def test_interrupted_fit_is_finished_by_retrain_bit_for_bit(tmp_path, tiny_model, monkeypatch):
    train, val = toy_rows(90, seed=3), toy_rows(20, seed=4)
    full = S3T(tiny_config(tiny_model), workspace=tmp_path / "full").fit(train, validation=val)
    expected = digests(full)
    assert len(expected) == 2 * 9  # m=2 shards, cyclic B=L=3: 3+3+3 distinct prefixes each

    publish = Workspace.publish
    calls = []

    def crash_on_the_fifth(self, staging, path):
        calls.append(path)
        if len(calls) == 5:
            raise Crash("power cut during fit")
        return publish(self, staging, path)

    with monkeypatch.context() as m:
        m.setattr(Workspace, "publish", crash_on_the_fifth)
        with pytest.raises(Crash):
            S3T(tiny_config(tiny_model), workspace=tmp_path / "cut").fit(train, validation=val)
    with pytest.raises(DataError, match="s3t retrain"):  # fit again: told how to finish instead
        S3T(tiny_config(tiny_model), workspace=tmp_path / "cut").fit(train, validation=val)

    est = S3T.load(tmp_path / "cut")  # recovery finishes the registered-but-unmoved checkpoint
    assert 5 <= len(digests(est)) < len(expected) and est.status()["served"] == {}
    report = est.retrain()
    assert digests(est) == expected  # same seeds, same parents: identical weights
    assert report.served_after == full.status()["served"] and est.audit().ok
    texts = ["a great film", "an awful plot"]
    assert (est.predict_proba(texts) == full.predict_proba(texts)).all()
