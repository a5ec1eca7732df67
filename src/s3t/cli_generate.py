"""``s3t generate``: answer prompts with the served ensemble of a causal-LM workspace (``train.task`` causal-lm)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli_common import DbOpt, JsonOpt, WorkspaceOpt, emit, out

COMBINES = ("probs", "logprobs")  # s3t.serve.generate.COMBINES (not imported here: that loads torch)


def generate_command(
    prompts: list[str] = typer.Argument(None, help="Prompts to answer (each one user turn in the model's chat template)."),
    workspace: Path = WorkspaceOpt,
    file: Optional[Path] = typer.Option(None, "--file", help="Read prompts from a file, one per line."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, max=4096, help="Tokens generated per answer at most."),
    combine: str = typer.Option("probs", "--combine", help="How the live shards' next-token distributions mix: probs (mean "
                                "of probabilities) | logprobs (mean of log-probabilities, renormalised)."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, max=100.0, help="0 = greedy; above 0 samples from "
                                      "the mixed distribution at this temperature."),
    top_k: int = typer.Option(0, "--top-k", min=0, help="With sampling, keep only the k likeliest tokens (0 = all)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the sampling generator (same seed, same answer)."),
    as_json: bool = JsonOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Answer prompts with the served ensemble of a causal-LM workspace: at each step the live shards'
    next-token distributions are mixed. Each answer names the manifest version and the served stages
    that wrote it (after a forget, a shard that saw the forgotten records no longer takes part).

    Example: s3t generate -w ws "Where was Velmora Quistane born?" --max-new-tokens 32
    """
    from .errors import ConfigError
    from .estimator import S3T

    if combine not in COMBINES:
        raise typer.BadParameter(f"one of {' | '.join(COMBINES)}; got {combine!r}", param_hint="--combine")
    items = list(prompts or [])
    if file:
        items += [line for line in file.read_text().splitlines() if line.strip()]
    if not items:
        raise typer.BadParameter("give prompts as arguments or --file")
    est = S3T.load(workspace, db=db)
    task = est.config.train.task
    if task != "causal-lm":
        raise ConfigError(f"workspace {workspace} holds a {task} model (train.task {task!r}); `s3t generate` answers "
                          f"prompts of a causal-lm workspace only: use `s3t predict -w {workspace} TEXT...`")
    answers = est.generate(items, max_new_tokens=max_new_tokens, combine=combine, temperature=temperature, top_k=top_k,
                           seed=seed, details=True)
    shards = est.config.plan.shards
    rows = [{"prompt": g.prompt, "text": g.text, "tokens": len(g.tokens), "finish_reason": g.finish_reason,
             "manifest_version": g.manifest_version,
             "served": {str(s): g.served.get(str(s), 0) for s in range(shards)}} for g in answers]

    def render(rows):
        from rich.markup import escape

        for r in rows:
            served = " ".join(f"{k}:{v}" for k, v in r["served"].items())
            out.print(f"[bold]Q:[/] {escape(r['prompt'])}\n[bold]A:[/] {escape(r['text'])}\n   [dim]({r['tokens']} tokens, "
                      f"{r['finish_reason']}; manifest v{r['manifest_version']}, served stage per shard {served})[/]",
                      soft_wrap=True)

    emit(rows, as_json, render)


def register(app: typer.Typer) -> None:
    """Add ``s3t generate`` to the ``s3t`` app."""
    app.command("generate")(generate_command)
