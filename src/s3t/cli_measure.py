"""``s3t simulate``, ``s3t bench`` and ``s3t evaluate``: the commands that measure (deletion-rate
maths, the side-by-side benchmark, exact vs approximate unlearning)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .cli_common import JsonOpt, console, out
from .cli_common import emit as _emit


def simulate(
    shards: int = typer.Option(5, "--shards", "-m"),
    slices: int = typer.Option(6, "--slices", "-L"),
    budget: int = typer.Option(6, "--budget", "-B"),
    selection: str = typer.Option("cyclic", "--selection", help="cyclic | bms | bms_relaxed (BMS with distinct first "
                                  "slices only: likely-deleted slices can go last in every sequence)."),
    priors: Optional[str] = typer.Option(None, "--priors", help="Comma-separated per-slice deletion priors (bms and the "
                                         "request stream; with --subjects, sequence selection only)."),
    subjects: Optional[int] = typer.Option(
        None, "--subjects", "-K", help="Requests name whole subjects (people), K of them: count deletions in subjects "
        "and compare record placement with subject placement side by side."),
    zipf: Optional[float] = typer.Option(
        None, "--zipf", help="Zipf exponent a of the subject sizes (size ∝ 1/rank^a); 0 = equal sizes. Default 1.0."),
    records: Optional[int] = typer.Option(None, "--records", "-N", help="Records N shared by the subjects (default 40·K)."),
    placement: Optional[str] = typer.Option(
        None, "--placement", help="record | subject: the placement whose result heads the output and the JSON top "
        "level (both are simulated). Default subject."),
    trials: int = typer.Option(500, "--trials"),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = JsonOpt,
) -> None:
    """Deletion rate: expected deletions before every shard is dead (simulated vs m·L·H(m·min(B,L))),
    and the mean served-prefix fraction over the first half of that many deletions.

    Without --subjects each request deletes one record. Real erasure requests name a person who
    owns many records: with --subjects K each request deletes a whole subject, and the counts are
    in subjects. Record placement scatters a person's records over nearly every slice, so a large
    subject kills every shard at once; subject placement keeps each person in one slice (a subject
    larger than a slice is split over the fewest slices of one shard), so the formula counts subjects.

    Examples: s3t simulate -m 5 -L 10 -B 10 --selection bms_relaxed --priors 1,1,1,1,1,1,16,16,1,1

    s3t simulate -m 4 -L 4 -B 4 --subjects 100 --zipf 1.0 --records 4000
    """
    from .errors import ConfigError
    from .plan import deletion_rate, select_sequences, simulate as run
    from .plan.subject_rate import pack_subjects, subject_deletion_rate, zipf_sizes

    pri = [float(x) for x in priors.split(",")] if priors else None
    seqs = select_sequences(selection, slices, budget, pri)
    if subjects is None:
        if zipf is not None or records is not None or placement not in (None, "record"):
            raise ConfigError(f"--zipf, --records and --placement subject need --subjects K; got --zipf {zipf}, "
                              f"--records {records}, --placement {placement}")
        res = run(shards, slices, seqs, trials=trials, seed=seed, priors=pri).to_dict()
        res.update({"shards": shards, "slices": slices, "budget": budget, "selection": selection})

        def render(r):
            out.print(f"m={shards} L={slices} B={budget} {selection}: deletion rate {r['deletion_rate']:.1f} "
                      f"(conditional Monte Carlo, {trials} trials; plain count {r['deletion_rate_plain']:.1f} ± "
                      f"{r['std_plain'] / trials ** 0.5:.1f}); theory m·L·H(m·min(B,L)) = {r['theory']:.1f}; "
                      f"mean served-prefix fraction over the first {r['horizon']} requests {r['mean_prefix_fraction']:.3f}",
                      soft_wrap=True)

        _emit(res, as_json, render)
        return

    head = placement or "subject"
    if head not in ("record", "subject"):
        raise ConfigError(f"--placement must be record or subject; got {head!r}")
    a = 1.0 if zipf is None else zipf
    n = 40 * subjects if records is None else records
    if subjects < 1 or n < subjects or not a >= 0:
        raise ConfigError(f"--subjects must be >= 1, --records >= --subjects and --zipf >= 0; got --subjects "
                          f"{subjects}, --records {n}, --zipf {a}")
    sizes = zipf_sizes(subjects, n, a, seed=seed)
    cover, load = pack_subjects(sizes, shards, slices, seed)
    by = {"subject": run(shards, slices, seqs, trials=trials, seed=seed, subject_sizes=sizes, placement="subject")}
    # the same horizon for both, so the served-prefix fractions compare
    by["record"] = run(shards, slices, seqs, trials=trials, seed=seed, subject_sizes=sizes, placement="record",
                       horizon=by["subject"].horizon)
    split = sorted((len(c) for c in cover if len(c) > 1), reverse=True)
    res = {**by[head].to_dict(), "shards": shards, "slices": slices, "budget": budget, "selection": selection,
           "records": n, "zipf": a, "largest_subject": max(sizes), "smallest_subject": min(sizes),
           "slice_capacity": -(-n // (shards * slices)), "split_subjects": split,
           "record_requests_theory": deletion_rate(shards, slices, budget),
           "even_spread_theory": (subject_deletion_rate(shards, slices, budget, subjects)
                                  if subjects >= shards * slices else None),
           "by_placement": {k: v.to_dict() for k, v in by.items()}}

    def render_subjects(r):
        out.print(f"m={shards} L={slices} B={budget} {selection}; {subjects} subjects, {n} records, Zipf a={a:g} "
                  f"(largest {r['largest_subject']}, smallest {r['smallest_subject']} records; a slice holds "
                  f"~{r['slice_capacity']})", soft_wrap=True)
        table = Table(title=f"Subject deletions until every shard is dead ({trials} trials)")
        for col in ("placement", "subjects deleted", "exact, this packing", "even-spread form",
                    f"served-prefix fraction, first {r['horizon']}"):
            table.add_column(col, justify="left" if col == "placement" else "right")
        even = r["even_spread_theory"]
        for name in ("record", "subject"):
            d = r["by_placement"][name]
            table.add_row(name + (" *" if name == head else ""), f"{d['deletion_rate']:.1f} ± {d['std'] / trials ** 0.5:.1f}",
                          "-" if d["theory"] is None else f"{d['theory']:.1f}",
                          "-" if name == "record" or even is None else f"{even:.1f}", f"{d['mean_prefix_fraction']:.3f}")
        out.print(table)
        ml, mid = shards * slices, sorted(sizes)[len(sizes) // 2]
        reach = [ml * (1 - (1 - 1 / ml) ** k) for k in (mid, max(sizes))]
        out.print(f"Record placement scatters a subject of n records over ~m·L·(1-(1-1/(m·L))^n) slices: the median "
                  f"subject ({mid} records) hits ~{reach[0]:.1f} of {ml}, the largest ~{reach[1]:.1f}. Subject placement "
                  f"cuts one slice per subject" + (f" ({len(split)} subject(s) larger than a slice split over "
                                              f"{', '.join(map(str, split))} slices of one shard)" if split else "")
                  + f". For comparison, record requests: m·L·H(m·min(B,L)) = {r['record_requests_theory']:.1f} records.",
                  soft_wrap=True)

    _emit(res, as_json, render_subjects)


def bench(
    out_dir: Path = typer.Option(..., "--out", help="Directory for results.json, summary.md and the PNG plots."),
    quick: bool = typer.Option(False, "--quick", help="Reduced run (a few minutes on 2 cores) instead of the full benchmark (hours)."),
    as_json: bool = JsonOpt,
    model: Optional[str] = typer.Option(None, "--model", help="Override the encoder (built-in name or local HF directory)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Override the number of dataset rows used."),
    deletions: Optional[int] = typer.Option(None, "--deletions", help="Override the number of single-record forgets timed in P1 (default 200)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Override the torch thread count every method uses "
                                          "(quick 1, full 2); use 1 when another job shares a 2-core machine."),
    restart: bool = typer.Option(False, "--restart", help="Discard the pieces an interrupted run kept in OUT/work and start over."),
    keep_work: bool = typer.Option(False, "--keep-work", help="Keep OUT/work (fitted workspaces, baselines, per-part "
                                   "results) when the run completes."),
    tuned: Optional[Path] = typer.Option(None, "--tuned", exists=True, dir_okay=False, help="A `s3t tune --bench` result "
                                         "(JSON): each method trains with its validation-chosen settings (checked to be "
                                         "this run's split)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="S3T fits train this many shards at once "
                                          "(worker processes; the checkpoints are bit-identical). Only with --only P3 / "
                                          "P4: the other parts compare costs with baselines trained in one process."),
    p3_dataset: Optional[list[str]] = typer.Option(None, "--p3-dataset", help="P3's datasets (repeatable; default "
                                                   "movie_reviews and trec). With --only P3 / P4 the first is the main "
                                                   "one (P4's): run one per process to measure them at once."),
    only: Optional[str] = typer.Option(None, "--only", help="Run one part alone: P3 (test accuracy), P4 (P3's fits, "
                                       "then accuracy as deletions accumulate), P8 (deletion "
                                       "traffic: a stream of subject deletions with the background retrain running, "
                                       "every method) or P9 (the chat model: training CPU per sequence vs SISA, "
                                       "generation tokens/s of the ensemble vs one member, forget latency)."),
) -> None:
    """Benchmark S3T side by side with SISA and full retraining in one run: forget latency (P1),
    deletion rate (P2), accuracy before / during deletions (P3, P4), training cost (P5, P7),
    predict speed (P6) and deletion traffic by person (P8: availability, longest dark period,
    accuracy over time, CPU per deletion). Writes results.json, summary.md and PNG plots; prints
    the table. `--only P8` runs the deletion-traffic part alone; `--only P9` the causal-LM part
    (SmolLM2-135M-Instruct on the fictitious people; --model overrides the chat model).

    The full run takes hours. Every finished fit and part is kept in OUT/work as it completes:
    if the run stops (crash, Ctrl-C, machine taken away), run the same command again and it
    continues where it stopped (a fit cut off half-way keeps the stages it had trained).

    Example: s3t bench --out results/bench-quick --quick
    """
    from .bench import run_bench

    if only == "P9":
        from .bench.lm import run_p9

        result = run_p9(out_dir, quick=quick, say=lambda msg: console.print(msg, soft_wrap=True),
                        **({"model": model} if model else {}), **({"threads": threads} if threads else {}))
        _emit(result, as_json, lambda r: console.print_json(data={k: r[k] for k in ("training", "generation", "forget")}))
        return
    results = run_bench(out_dir, quick=quick, say=lambda msg: console.print(msg, soft_wrap=True), model=model, limit=limit,
                        deletions=deletions, threads=threads, restart=restart, keep_work=keep_work, only=only,
                        tuned=tuned, workers=workers, p3_datasets=tuple(p3_dataset) if p3_dataset else None)

    def render(r):
        table = Table("part", "metric", "measured", "target", "met", title=f"s3t bench ({r['mode']})")
        for row in r["summary"]:
            met = {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[row["met"]]
            table.add_row(row["part"], row["metric"], row["value"], row["target"], met)
        out.print(table)
        out.print(f"results: {out_dir / 'results.json'}; plots: {', '.join(r['plots'])}")

    _emit(results, as_json, render)


def evaluate(
    out_dir: Path = typer.Option(..., "--out", help="Directory for results.json, summary.md and the PNG plots."),
    task: str = typer.Option("classification", "--task", help="'classification' (an encoder on TREC: s3t, SISA, "
                             "Retrain and six approximate methods) or 'causal-lm' (a chat model on fictitious people: "
                             "s3t, Retrain, GA, NPO; TOFU-style forget quality)."),
    quick: bool = typer.Option(False, "--quick", help="Reduced run. classification: 195 training questions, m=2, L=3, "
                               "1 epoch, 5 sequential requests, under 5 minutes on 2 cores (full: 1,500 questions, m=4, "
                               "2 epochs, about an hour). causal-lm: 16 people x 10 facts, 2 forgotten, m=2, L=2, B=1, "
                               "4 epochs, about 30 minutes on 2 busy cores (full: 40 x 10, 4 forgotten, L=3, hours)."),
    as_json: bool = JsonOpt,
    model: Optional[str] = typer.Option(None, "--model", help="Override the model (built-in name or local HF directory): "
                                        "an encoder for classification, a Llama-family chat model for causal-lm."),
    limit: Optional[int] = typer.Option(None, "--limit", help="classification: override the number of dataset rows used."),
    sequential: Optional[int] = typer.Option(None, "--sequential", help="classification: successive forget requests in "
                                             "the sequential scenario (default 10, quick 5; 0 skips it)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Override the torch thread count every method "
                                          "uses (classification: quick 2, full 1; causal-lm: 1); use 1 when another "
                                          "job shares a 2-core machine."),
    people: Optional[int] = typer.Option(None, "--people", min=2, help="causal-lm: fictitious people generated."),
    facts: Optional[int] = typer.Option(None, "--facts", min=1, max=12, help="causal-lm: facts per person."),
    forget_people: Optional[int] = typer.Option(None, "--forget-people", min=1, help="causal-lm: people forgotten "
                                                "(one request each)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="causal-lm: training epochs of every fit."),
    lr: Optional[float] = typer.Option(None, "--lr", min=0.0, help="causal-lm: training learning rate of every fit."),
    slices: Optional[int] = typer.Option(None, "--slices", "-L", min=1, help="causal-lm: s3t slices per shard "
                                         "(divides the model's layers: 30 for SmolLM2)."),
) -> None:
    """Which unlearning method to use? Compare exact unlearning (s3t, Retrain = retraining without
    the forget set) with approximate methods on the same model and data.

    --task classification (default): s3t, SISA and Retrain against FT, GA, RL, l1-sparse, SalUn
    and NPO on TREC. Forget sets: random 1% and 10%, one whole class, one subject, the most
    memorised records (worst case), and a stream of successive requests. Metrics: UA (1 - forget
    accuracy), RA (retained accuracy), TA (test accuracy), MIA-efficacy (share of forget records a
    membership-inference attack calls non-members), RTE (run time of the unlearning step), and
    each method's gap to Retrain. Writes results.json, summary.md and PNG plots.

    --task causal-lm: a chat model (SmolLM2-135M-Instruct) tuned on fictitious people forgets some
    of them: s3t (forget -> surviving prefixes, and after its retrain), Retrain (a full fit without
    them), GA and NPO (on the response tokens). Forget quality = KS-test p-value between the
    method's and Retrain's truth-ratio distributions on the forget set (TOFU); utility = answer
    probability, token accuracy and ROUGE-L on retained people, perplexity on held-out
    movie_dialog chat; forget time per method. Writes results.json, summary.md and lm_eval.png.

    Example: s3t evaluate --out results/evaluate-quick --quick

    Example: s3t evaluate --task causal-lm --out results/lm-eval --quick --threads 1
    """
    from .errors import ConfigError

    say = lambda msg: console.print(msg, soft_wrap=True)  # noqa: E731
    if task not in ("classification", "causal-lm"):
        raise ConfigError(f"--task must be 'classification' or 'causal-lm'; got {task!r}")
    lm_only = {"--people": people, "--facts": facts, "--forget-people": forget_people, "--epochs": epochs,
               "--slices": slices, "--lr": lr}
    wrong = [k for k, v in ({"--limit": limit, "--sequential": sequential} if task == "causal-lm" else lm_only).items()
             if v is not None]
    if wrong:
        raise ConfigError(f"{', '.join(wrong)} do(es) not apply to --task {task}")
    if task == "causal-lm":
        from .evaluate import run_evaluate_lm

        results = run_evaluate_lm(out_dir, quick=quick, say=say, model=model, threads=threads, people=people,
                                  facts=facts, forget_people=forget_people, epochs=epochs, slices=slices, lr=lr)

        def render_lm(r):
            table = Table("method", "forget quality (KS p)", "forget answer prob", "retained answer prob",
                          "chat perplexity", "forget time s", title=f"causal-lm: {len(r['data']['forget_ids'])} "
                          f"facts of {', '.join(r['data']['forgotten_people'])} forgotten")
            for method, row in r["rows"].items():
                table.add_row(method, f"{row['forget_quality']['p_value']:.3g}",
                              f"{row['forget'].get('answer_prob', float('nan')):.3f}",
                              f"{row['retain'].get('answer_prob', float('nan')):.3f}",
                              f"{row['chat']['perplexity']:.1f}", f"{row['RTE']:.3f}")
            out.print(table)
            out.print(f"results: {out_dir / 'results.json'}, {out_dir / 'summary.md'}; plot: {', '.join(r['plots'])}")

        _emit(results, as_json, render_lm)
        return
    from .evaluate import run_evaluate

    results = run_evaluate(out_dir, quick=quick, say=say, model=model, limit=limit, sequential_requests=sequential,
                           threads=threads)

    def render(r):
        for name, sc in r["scenarios"].items():
            table = Table("method", "UA", "RA", "TA", "MIA", "avg gap", "RTE s", title=f"{name} ({sc['forget_size']} records)")
            for method, row in sc["rows"].items():
                table.add_row(method, *(f"{100 * row[k]:.1f}" for k in ("UA", "RA", "TA", "MIA")),
                              f"{100 * sc['gaps'][method]['avg']:.1f}", f"{row['RTE']:.3f}")
            out.print(table)
        out.print(f"results: {out_dir / 'results.json'}, {out_dir / 'summary.md'}; plots: {', '.join(r['plots'])}")

    _emit(results, as_json, render)


def register(app: typer.Typer) -> None:
    """Add ``s3t simulate``, ``s3t bench`` and ``s3t evaluate`` to the ``s3t`` app."""
    for command in (simulate, bench, evaluate):
        app.command()(command)
