"""Forgets sent to the service concurrently share a commit (group commit), as they do in process."""

from __future__ import annotations

import threading

import pytest

from s3t.forget import verify_chain
from tests.service.conftest import AUTH, settle, train_ids
from tests.test_group_commit import hold_first_commit


@pytest.mark.parametrize("forget_batch", [None, 1])
def test_concurrent_forget_requests_share_the_next_commit(make_client, fitted_ws, monkeypatch, forget_batch):
    """Seen failing before: the forget route held a lock around S3T.forget, so every request
    committed alone. ``--forget-batch 1`` asks for exactly that."""
    client = make_client(forget_batch=forget_batch)
    est = client.app.state.model
    ids = [i for sh in (0, 1) for sl in range(3) for i in train_ids(est, sh, sl)[:2]]  # 12 records
    sizes, first_started = hold_first_commit(monkeypatch)
    codes: dict[str, int] = {}

    def send(rid):
        codes[rid] = client.post("/forget", json={"record_ids": [rid]}, headers=AUTH).status_code

    lead = threading.Thread(target=send, args=(ids[0],))
    lead.start()
    assert first_started.wait(10)
    rest = [threading.Thread(target=send, args=(rid,)) for rid in ids[1:]]
    for t in rest:
        t.start()
    for t in [lead, *rest]:
        t.join(30)
    assert codes == {rid: 202 for rid in ids}
    if forget_batch == 1:
        assert sizes == [1] * 12
    else:
        assert sizes[0] == 1 and sum(sizes) == 12 and len(sizes) < 12, sizes  # the 11 queued ones were grouped
    assert verify_chain(est.receipts()) == []
    settle(client)
    assert est.audit().ok


def test_forget_batch_setting_is_checked():
    from s3t.config import ServeConfig
    from s3t.errors import ConfigError

    assert ServeConfig().forget_batch == 256
    for bad in (0, -1, 2.5, "8"):
        with pytest.raises(ConfigError, match="serve.forget_batch"):
            ServeConfig(forget_batch=bad)


def test_serve_options_override_the_workspace_serve_settings(make_client, fitted_ws):
    """``s3t serve --forget-batch / --erasure-interval`` (create_app) replace the workspace's values,
    checked as the config checks them; the paced erasure then uses it."""
    from s3t.errors import ConfigError
    from s3t.service import create_app

    client = make_client(forget_batch=4, erasure_interval=0.25)
    est = client.app.state.model
    assert (est.config.serve.forget_batch, est.config.serve.erasure_interval) == (4, 0.25)
    assert est._erasure_interval() == 0.25 and est._forget_group().max_batch == 4
    assert fitted_ws.config.serve.erasure_interval is None  # the workspace's own setting is untouched
    with pytest.raises(ConfigError, match="serve.erasure_interval"):
        create_app(fitted_ws.ws_.path, erasure_interval=-1.0, background=False)


def test_cli_serve_has_the_erasure_interval_option():
    from typer.testing import CliRunner

    from s3t.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert "--erasure-interval" in out and "--forget-batch" in out
    bad = CliRunner().invoke(app, ["serve", "-w", "nowhere", "--erasure-interval", "-1"])
    assert bad.exit_code != 0 and "erasure-interval" in bad.output
