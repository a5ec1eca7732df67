"""The `s3t` command line: every command documented, JSON output, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from s3t.cli import app
from tests.fitted_copy import fitted_template, fitted_ws  # noqa: F401  (fixtures)

runner = CliRunner()
COMMANDS = ["train", "predict", "forget", "status", "audit", "retrain", "verify", "rotate-secret", "simulate", "demo",
            "serve", "export"]


def run_main(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "s3t.cli", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output
    doc = next(c.callback for c in app.registered_commands if (c.name or c.callback.__name__) == command).__doc__
    assert doc and len(doc.strip()) > 20, f"{command} needs a docstring that teaches"


def test_simulate_json_matches_formula():
    result = runner.invoke(app, ["simulate", "-m", "5", "-L", "6", "-B", "6", "--selection", "cyclic", "--trials", "500", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert abs(data["theory"] - 119.8) < 0.1
    assert abs(data["deletion_rate"] / 119.8 - 1) <= 0.03
    result = runner.invoke(app, ["simulate", "-B", "1", "--json"])
    assert abs(json.loads(result.stdout)["deletion_rate"] / 68.5 - 1) <= 0.03


def test_status_forget_predict_json(fitted_ws):
    ws = str(fitted_ws.ws_.path)
    status = json.loads(runner.invoke(app, ["status", "-w", ws, "--json"]).stdout)
    assert status["served"] == {"0": 3, "1": 3} and status["live_shards"] == 2
    rid = fitted_ws.ws_.ledger.records()[0].id
    result = runner.invoke(app, ["forget", rid, "-w", ws, "--json"])
    assert result.exit_code == 0, result.output
    receipt = json.loads(result.stdout)
    assert receipt["record_ids"] == [rid] and len(receipt["hash"]) == 64
    again = json.loads(runner.invoke(app, ["forget", rid, "-w", ws, "--json"]).stdout)
    assert again["hash"] == receipt["hash"]
    pred = json.loads(runner.invoke(app, ["predict", "great film", "awful plot", "-w", ws, "--json"]).stdout)
    assert [p["text"] for p in pred] == ["great film", "awful plot"]
    assert all(p["label"] in ("neg", "pos") and abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in pred)
    audit = json.loads(runner.invoke(app, ["audit", "-w", ws, "--json"]).stdout)
    assert audit["ok"] is True
    retrained = json.loads(runner.invoke(app, ["retrain", "-w", ws, "--json"]).stdout)
    assert retrained["requests"] == [receipt["request_id"]] and retrained["served_after"] == {"0": 3, "1": 3}
    cert = runner.invoke(app, ["verify", "--request", receipt["request_id"], "-w", ws, "--json"])
    assert cert.exit_code == 0 and json.loads(cert.stdout)["ok"] is True


def test_forget_dry_run_previews_and_stores_nothing(fitted_ws):
    ws = str(fitted_ws.ws_.path)
    rid = fitted_ws.ws_.ledger.records()[0].id
    status = json.loads(runner.invoke(app, ["status", "-w", ws, "--json"]).stdout)
    result = runner.invoke(app, ["forget", rid, "-w", ws, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    preview = json.loads(result.stdout)
    assert preview["dry_run"] is True and preview["record_ids"] == [rid]
    assert json.loads(runner.invoke(app, ["status", "-w", ws, "--json"]).stdout) == status
    text = runner.invoke(app, ["forget", rid, "-w", ws, "--dry-run"])
    assert text.exit_code == 0 and "dry run: nothing was stored" in text.stdout
    real = json.loads(runner.invoke(app, ["forget", rid, "-w", ws, "--json"]).stdout)
    assert "dry_run" not in real and real["served_after"] == preview["served_after"] and real["seq"] == preview["seq"]


def test_audit_exit_codes_and_tamper(fitted_ws):
    ws = str(fitted_ws.ws_.path)
    ok = run_main("audit", "-w", ws)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    victim = next((fitted_ws.ws_.path / "checkpoints").rglob("*.safetensors"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    bad = run_main("audit", "-w", ws)
    assert bad.returncode == 1
    assert "FAIL" in bad.stdout and victim.stem in bad.stdout


def test_errors_are_one_clean_line(tmp_path, fitted_ws):
    missing = run_main("status", "-w", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert "not an s3t workspace" in missing.stderr and "Traceback" not in missing.stderr
    unknown = run_main("forget", "no-such-record", "-w", str(fitted_ws.ws_.path))
    assert unknown.returncode == 2
    assert "no-such-record" in unknown.stderr and "Traceback" not in unknown.stderr


@pytest.mark.parametrize("placement", ["record", "subject"])
def test_train_placement_flag_and_retrain_restore_flag(tmp_path, tiny_model, placement):
    import pandas as pd

    from tests.conftest import toy_rows

    data = tmp_path / "train.csv"
    pd.DataFrame(toy_rows(60, seed=3, subjects=6)).to_csv(data, index=False)
    ws = str(tmp_path / "ws")
    result = runner.invoke(app, ["train", "-w", ws, "--data", str(data), "--model", tiny_model, "-m", "2", "-L", "3",
                                 "-B", "2", "--epochs", "1", "--placement", placement])
    assert result.exit_code == 0, result.output
    assert f"placement {placement}: slice sizes" in result.output
    status = json.loads(runner.invoke(app, ["status", "-w", ws, "--json"]).stdout)
    assert status["placement"] == placement
    forgot = json.loads(runner.invoke(app, ["forget", "--subject", "user2", "-w", ws, "--json"]).stdout)
    hit = sum(1 for k, v in forgot["served_after"].items() if v < 3)
    if placement == "subject":
        assert hit == 1  # one person, one slice
    done = runner.invoke(app, ["retrain", "-w", ws, "--restore", "naive", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["swaps"] == [] and {s["kind"] for s in report["steps"]} == {"all"}
    assert report["served_after"] == {"0": 3, "1": 3}
    bad = runner.invoke(app, ["retrain", "-w", ws, "--restore", "fast"])
    assert bad.exit_code != 0 and "restore must be one of" in (bad.output + str(bad.exception))
