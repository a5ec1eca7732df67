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
