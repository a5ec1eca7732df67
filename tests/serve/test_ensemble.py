"""The served ensemble: a corrupted checkpoint takes only its own shard out of service."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from s3t import S3T
from s3t.errors import NoLiveModelError
from tests.fitted_copy import fitted_template, fitted_ws  # noqa: F401  (fixtures)

TEXTS = ["a great film", "an awful plot", "the acting was dull", "lovely story"]


def corrupt_served(est, shard: int) -> str:
    """Flip one byte of the checkpoint file ``shard`` serves; return its id."""
    _, body = est.ws_.ledger.latest_manifest()
    cid = body["shards"][str(shard)]["checkpoint"]
    path = est.ws_.resolve(est.ws_.ledger.checkpoint(cid).path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return cid


def test_corrupted_checkpoint_takes_only_its_shard_out_of_service(fitted_ws, caplog):
    healthy = fitted_ws.ensemble_.shard_logits(TEXTS)
    bad = corrupt_served(fitted_ws, 0)
    est = S3T.load(fitted_ws.ws_.path)  # a fresh load: checkpoints are read (and hashed) now
    try:
        with caplog.at_level(logging.ERROR, logger="s3t"):
            proba = est.predict_proba(TEXTS)
        ens = est.ensemble_
        assert sorted(ens.members) == [1]
        assert ens.out_of_service == {0: bad}
        errors = [r for r in caplog.records if r.name == "s3t" and r.levelno == logging.ERROR]
        assert len(errors) == 1 and "shard 0" in errors[0].getMessage() and bad in errors[0].getMessage()
        # the prediction is shard 1's alone, bit for bit the same member as before the corruption
        assert sorted(ens.shard_logits(TEXTS)) == [1]
        expected = ens.aggregate({1: healthy[1]})
        np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-6)
    finally:
        est.ws_.ledger.close()


def test_every_checkpoint_corrupted_means_no_live_model(fitted_ws):
    for shard in (0, 1):
        corrupt_served(fitted_ws, shard)
    est = S3T.load(fitted_ws.ws_.path)
    try:
        with pytest.raises(NoLiveModelError):
            est.predict_proba(TEXTS)
        assert set(est.ensemble_.out_of_service) == {0, 1}
    finally:
        est.ws_.ledger.close()
