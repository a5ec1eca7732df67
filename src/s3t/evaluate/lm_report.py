"""The causal-LM evaluation's report: a markdown summary and one PNG (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .report import _bad, _seconds

PLOT = "lm_eval.png"


def _num(x: Any, fmt: str = ".3f") -> str:
    return "n/a" if _bad(x) else format(x, fmt)


def _p(x: Any) -> str:
    return "n/a" if _bad(x) else (f"{x:.2g}" if x < 0.01 else f"{x:.3f}")


def main_table(r: dict[str, Any]) -> str:
    lines = ["| method | forget quality (KS p vs Retrain) | KS D | forget: truth ratio median | forget: answer prob | "
             "forget: ROUGE-L | retained: answer prob | retained: token acc | retained: truth score | retained: ROUGE-L | "
             "chat: perplexity | chat: token acc | forget time | note |",
             "|---" * 14 + "|"]
    for method, row in r["rows"].items():
        f, k, c, q = row["forget"], row["retain"], row["chat"], row.get("forget_quality", {})
        note = row.get("note", "")
        if "live_shards" in row:
            note += f"; {row['live_shards']} live shard(s), served stages " + ", ".join(
                str(v) for v in row["served_stages"].values())
        lines.append(f"| {method} | {_p(q.get('p_value'))} | {_num(q.get('ks_statistic'), '.2f')} | "
                     f"{_num(f.get('truth_ratio_median'))} | {_num(f.get('answer_prob'))} | {_num(f.get('rouge_l'), '.2f')} | "
                     f"{_num(k.get('answer_prob'))} | {_num(k.get('token_accuracy'))} | {_num(k.get('truth_score'))} | "
                     f"{_num(k.get('rouge_l'), '.2f')} | {_num(c.get('perplexity'), '.1f')} | {_num(c.get('token_accuracy'))} | "
                     f"{_seconds(row['RTE']) if row['RTE'] else '–'} | {note.replace('|', '/')} |")
    return "\n".join(lines)


def answers_table(r: dict[str, Any], which: str = "forget", n: int = 2) -> list[str]:
    """Greedy answers of every method to the first ``n`` questions of a set."""
    rows = r["rows"]
    firsts = next((row[which].get("answers") for row in rows.values() if row[which].get("answers")), [])[:n]
    out = []
    for i, q in enumerate(firsts):
        out += [f"**{q['prompt']}** (trained answer: {q['expected']})", "", "| method | greedy answer |", "|---|---|"]
        for method, row in rows.items():
            got = row[which].get("answers") or []
            text = got[i]["answer"] if i < len(got) else "(no live model)"
            out.append(f"| {method} | {text.replace('|', '/').replace(chr(10), ' ') or '(empty)'} |")
        out.append("")
    return out


def markdown(r: dict[str, Any]) -> str:
    c, d = r["config"], r["data"]
    fits = ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in r["fits"].items())
    head = [f"# s3t evaluate --task causal-lm ({r['mode']}): forgetting people in a chat model", "",
            f"Model {c['model']}, LoRA r={c['rank']} on every layer (full model, Retrain) or per layer group (s3t: "
            f"m={c['shards']} L={c['slices']} B={c['budget']}, subject placement); {d['people']} fictitious people x "
            f"{d['facts']} facts = {d['train']} training questions; {c['epochs']} epoch(s), lr {c['lr']:g}, batch "
            f"{c['batch_size']}; {c['threads']} thread(s). Forgotten: {', '.join(d['forgotten_people'])} "
            f"({len(d['forget_ids'])} facts, one request per person). Fits: {fits}. Run {r['total_seconds']:.0f} s wall, "
            f"{r['cpu_seconds']:.0f} s CPU.", "",
            f"Scored per method: the {len(d['questions']['forget'])} forget-set questions and "
            f"{len(d['questions']['retain'])} questions about retained people (asked with the "
            f"{'trained' if c['question'] == 'train' else 'paraphrased'} phrasing; each with the correct answer and "
            f"{c['perturbed']} perturbed answers: the same sentence with another person's value of the fact's kind), "
            f"and {d['chat_pairs']} held-out movie_dialog test pairs. Truth ratio R = geometric mean of the perturbed "
            "answers' length-normalised probabilities over the correct answer's (R < 1: the model prefers the truth). "
            "**Forget quality** = p-value of the two-sample KS test between the method's truth ratios and Retrain's on "
            "the same forget-set questions (TOFU; high = indistinguishable from a model that never saw the people; "
            "Retrain vs itself = 1). Answer prob = P(answer|question)^(1/tokens); token acc = teacher-forced arg-max "
            "accuracy on the response tokens; truth score on retained people = mean max(0, 1 - R); ROUGE-L = recall of "
            f"greedy answers (first {c['generate_eval']} questions per set). Forget time: s3t = the forget calls (no "
            "training), s3t_retrain = forget + S3T.retrain(), Retrain = its full fit, GA/NPO = the unlearning step. "
            "*original* = the full model before unlearning: a forget quality as high as the methods' means the test "
            "cannot tell at this size.", "", main_table(r), ""]
    s3t = r["rows"].get("s3t")
    if s3t and s3t.get("receipts"):
        head += ["s3t forget receipts (served prefix per shard before → after):", ""]
        head += [f"- {x['subject']}: shards {x['affected_shards']}, {x['served_before']} → {x['served_after']}"
                 for x in s3t["receipts"]]
        head.append("")
    head += ["## Greedy answers about forgotten people", "", *answers_table(r, "forget"),
             "## Greedy answers about retained people", "", *answers_table(r, "retain", 1)]
    return "\n".join(head).rstrip()


def plot(r: dict[str, Any], out: Path) -> str:
    """``lm_eval.png``: forget-set truth-ratio ECDFs, forget quality vs forget time, answer probabilities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def log_axis(axis, subs=(1.0, 2.0, 5.0)) -> None:
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())

    rows = r["rows"]
    methods = list(rows)
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    for m in methods:
        tr = rows[m]["forget"].get("truth_ratios")
        if not tr:
            ax.plot([], [], color=colors[m], label=f"{m} (no live model)")
            continue
        x = np.sort(np.asarray(tr))
        p = rows[m].get("forget_quality", {}).get("p_value", float("nan"))
        ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", color=colors[m], lw=2.4 if m == "retrain" else 1.4,
                ls="--" if m == "retrain" else "-", label=f"{m} (p={_p(p)})")
    ax.set_xscale("log")
    log_axis(ax.xaxis)
    ax.set_xlabel("truth ratio R on the forget set (log; < 1 prefers the truth)")
    ax.set_ylabel("share of forget-set questions")
    ax.set_title("Truth-ratio distributions (KS p vs Retrain)", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1]
    known = [row.get("forget_quality", {}).get("p_value") for row in rows.values()]
    floor = min([x for x in known if not _bad(x)] + [1e-2]) / 10  # where a method without a live model is drawn
    for m in methods:
        p, rte = rows[m].get("forget_quality", {}).get("p_value"), rows[m]["RTE"]
        if m in ("retrain", "original"):
            continue
        if _bad(p):
            ax.scatter(max(rte, 1e-4), floor, color=colors[m], marker="x", s=50)
            ax.annotate(f"{m}: no live model", (max(rte, 1e-4), floor), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
            continue
        ax.scatter(max(rte, 1e-4), max(p, 1e-12), color=colors[m], s=50)
        ax.annotate(m, (max(rte, 1e-4), max(p, 1e-12)), fontsize=8, xytext=(4, 4), textcoords="offset points")
    if "original" in rows and not _bad(rows["original"].get("forget_quality", {}).get("p_value")):
        ax.axhline(max(rows["original"]["forget_quality"]["p_value"], 1e-12), color="gray", ls=":", lw=1,
                   label="original (no unlearning)")
    ax.axvline(rows["retrain"]["RTE"], color=colors["retrain"], ls="--", lw=1, label="Retrain's time")
    ax.axhline(0.05, color="red", ls=":", lw=1, label="p = 0.05")
    ax.set_xscale("log"), ax.set_yscale("log")
    log_axis(ax.xaxis, (1.0,))
    ax.set_xlabel("forget time (s, log)"), ax.set_ylabel("forget quality: KS p-value (log, higher = better)")
    ax.set_title("Forget quality vs forget time", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[2]
    width, xs = 0.38, np.arange(len(methods))
    fa = [rows[m]["forget"].get("answer_prob", math.nan) for m in methods]
    ra = [rows[m]["retain"].get("answer_prob", math.nan) for m in methods]
    ax.bar(xs - width / 2, np.nan_to_num(fa), width, label="forgotten people", color="tab:red", alpha=0.7)
    ax.bar(xs + width / 2, np.nan_to_num(ra), width, label="retained people", color="tab:blue", alpha=0.7)
    for x, m in zip(xs, methods):
        ppl = rows[m]["chat"].get("perplexity")
        top = max(np.nan_to_num([fa[x], ra[x]]))
        ax.text(x, top + 0.02, f"chat ppl\n{_num(ppl, '.0f')}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(xs, methods, rotation=20, ha="right")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("answer probability P(a|q)^(1/|a|)")
    ax.set_title("Utility: answer probability (and held-out chat perplexity)", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(f"s3t evaluate --task causal-lm: {r['data']['people']} people x {r['data']['facts']} facts, "
                 f"{len(r['data']['forgotten_people'])} forgotten ({r['config']['model']})")
    fig.tight_layout()
    fig.savefig(out / PLOT, dpi=110)
    plt.close(fig)
    return PLOT
