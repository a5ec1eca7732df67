"""What every ``s3t`` command module shares: the consoles, the common options, JSON-or-table output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

console = Console(stderr=True)
out = Console()

WorkspaceOpt = typer.Option(Path("s3t-workspace"), "--workspace", "-w", help="Workspace directory (ledger + checkpoints).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")
DbOpt = typer.Option(None, "--db", help="SQLAlchemy URL of the ledger (default: SQLite inside the workspace).")


def emit(data: Any, as_json: bool, render=None) -> None:
    if as_json or render is None:
        out.print_json(json.dumps(data, default=str))
    else:
        render(data)


def progress():
    """A rich progress bar driven by the estimator's (description, increment, total) callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("examples"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    tasks: dict[str, int] = {}

    done: dict[str, int] = {}

    def callback(desc: str, n: int, total: int) -> None:
        if desc not in tasks:
            tasks[desc] = bar.add_task(desc, total=total)
            done[desc] = 0
        bar.update(tasks[desc], advance=n, total=total)  # a retrain re-plans its total as deletions join
        if not console.is_terminal:  # logs and CI: a plain line every 10%
            before, done[desc] = done[desc], done[desc] + n
            if total and (10 * done[desc]) // total > (10 * before) // total:
                console.print(f"{desc}: {100 * done[desc] // total}% ({done[desc]}/{total} examples)")

    return bar, callback
