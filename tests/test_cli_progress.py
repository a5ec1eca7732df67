"""The CLI's progress bar follows the total the estimator reports (a retrain re-plans its total)."""

from __future__ import annotations

from s3t import cli_common


def test_progress_bar_takes_the_latest_total_and_lines_never_pass_100(monkeypatch):
    from rich.console import Console

    quiet = Console(file=open("/dev/null", "w"), force_terminal=False)
    printed: list[str] = []
    monkeypatch.setattr(cli_common, "console", quiet)
    monkeypatch.setattr(quiet, "print", lambda *a, **k: printed.append(" ".join(map(str, a))))
    bar, callback = cli_common.progress()
    callback("training", 40, 100)
    callback("training", 60, 150)  # a deletion joined: more work planned
    callback("training", 50, 150)
    task = bar.tasks[0]
    assert (task.completed, task.total) == (150, 150)
    assert printed and printed[-1] == "training: 100% (150/150 examples)"
    assert all(int(line.split(": ")[1].split("%")[0]) <= 100 for line in printed)
