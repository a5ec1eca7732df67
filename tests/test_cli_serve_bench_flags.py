"""`s3t serve --lease-ttl` and `s3t bench --tuned` reach what they configure."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from s3t.cli import app

runner = CliRunner()


def test_lease_ttl_reaches_the_app(tmp_path, monkeypatch):
    import uvicorn

    import s3t.service as service

    seen = {}
    monkeypatch.setattr(service, "create_app", lambda workspace, **kw: seen.update(kw) or "app")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(ran=app))
    result = runner.invoke(app, ["serve", "-w", str(tmp_path), "--lease-ttl", "7.5"])
    assert result.exit_code == 0, result.output
    assert seen["lease_ttl"] == 7.5 and seen["ran"] == "app"
    assert runner.invoke(app, ["serve", "-w", str(tmp_path), "--lease-ttl", "0.2"]).exit_code != 0


def test_tuned_reaches_the_bench(tmp_path, monkeypatch):
    import s3t.bench as bench

    tuned = tmp_path / "tune.json"
    tuned.write_text(json.dumps({"methods": {}}))
    seen = {}

    def run_bench(out_dir, **kw):
        seen.update(kw)
        raise SystemExit(0)

    monkeypatch.setattr(bench, "run_bench", run_bench)
    runner.invoke(app, ["bench", "--out", str(tmp_path / "out"), "--quick", "--tuned", str(tuned)])
    assert seen["tuned"] == tuned
    missing = runner.invoke(app, ["bench", "--out", str(tmp_path / "out"), "--tuned", str(tmp_path / "nope.json")])
    assert missing.exit_code != 0 and "nope.json" in missing.output
