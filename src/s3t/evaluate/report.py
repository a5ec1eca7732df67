"""The evaluation report: one markdown table per scenario and two PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .metrics import NOISE_METRICS
from .zipf import describe_scenario

METRICS = ("UA", "RA", "TA", "MIA", "MIA_loss")
TITLES = {"random_1pct": "random 1%", "random_10pct": "random 10%", "class": "one whole class",
          "subject": "one subject", "zipf_subject": "one Zipf subject (placed by subject)",
          "zipf_subjects": "Zipf subjects one by one (placed by subject)", "worst_case": "worst case (most memorised)", "sequential": "sequential requests"}


def _bad(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _pct(x: float | None) -> str:
    return "n/a" if _bad(x) else f"{100 * x:.1f}"


def _cell(row: dict[str, Any], ref: dict[str, Any], metric: str) -> str:
    x, r = row.get(metric), ref.get(metric)
    if _bad(x):
        return "n/a"
    if row is ref or _bad(r):
        return _pct(x)
    return f"{_pct(x)} ({100 * (x - r):+.1f})"


def _ftg(row: dict[str, Any]) -> str:
    return "n/a" if _bad(row.get("FTG")) else f"{100 * row['FTG']:+.1f}"


def _seconds(s: float) -> str:
    return f"{1000 * s:.0f} ms" if s < 1 else f"{s:.1f} s"


def _noise(check: dict[str, Any] | None) -> str:
    """'yes / no' per UA and MIA-efficacy: does the 95% paired-bootstrap interval of the difference hold 0?"""
    if not check:
        return "n/a"
    return " / ".join({True: "yes", False: "**no**", None: "n/a"}[check[m]["within"]] for m in NOISE_METRICS)


def _all_within(check: dict[str, Any] | None) -> bool:
    """UA and MIA-efficacy both within noise of Retrain (False without a live model)."""
    return bool(check) and all(check[m]["within"] for m in NOISE_METRICS)


def within_noise_summary(r: dict[str, Any], methods: tuple[str, ...] = ("s3t", "s3t_retrain", "sisa", "retrain_seed1")) -> list[str]:
    """One line per exact method: in how many scenarios its UA and MIA-efficacy are within noise of Retrain."""
    lines = []
    for m in methods:
        checks = [sc["noise"][m] for sc in r["scenarios"].values() if m in sc.get("noise", {})]
        if not checks:
            continue
        both = sum(1 for c in checks if _all_within(c))
        dead = sum(1 for c in checks if c["UA"]["within"] is None)
        lines.append(f"- **{m}**: UA and MIA-efficacy within noise of Retrain in {both} of {len(checks)} scenarios"
                     + (f" ({dead} without a live model)" if dead else ""))
    return lines


def placement_lines(fits: dict[str, Any]) -> list[str]:
    """One line per s3t / SISA fit: where its records went (record or subject placement) and the slice sizes."""
    lines = []
    for name, fit in fits.items():
        pl = fit.get("placement")
        if not pl:
            continue
        used = "the Zipf-subject scenarios" if name.endswith("_subject") else "the other scenarios"
        split = f", {len(pl['split_subjects'])} subject(s) split over several slices" if pl["placement"] == "subject" else ""
        lines.append(f"- **{name}** ({used}): {pl['placement']} placement, slice sizes {pl['slice_min']}–{pl['slice_max']} "
                     f"(mean {pl['slice_mean']}){split}")
    return lines


def overview_table(r: dict[str, Any]) -> str:
    """Methods × scenarios: average gap to Retrain (UA/MIA-efficacy within noise marked ✓), and the
    range of the unlearning step's run time."""
    scs = r["scenarios"]
    if not scs:
        return ""
    methods = list(next(iter(scs.values()))["rows"])
    head = "| method | " + " | ".join(f"{TITLES.get(n, n)} ({sc['forget_size']})" for n, sc in scs.items()) + " | RTE |"
    lines = [head, "|---" * (len(scs) + 2) + "|"]
    first = next(iter(scs.values()))
    if "original_gaps" in first:
        lines.append("| *original* | " + " | ".join(_pct(sc["original_gaps"]["avg"]) for sc in scs.values()) + " | – |")
    for m in methods:
        cells = []
        for sc in scs.values():
            g = sc["gaps"][m]["avg"]
            ok = m != "retrain" and _all_within(sc.get("noise", {}).get(m))
            cells.append("no live model" if _bad(g) else _pct(g) + (" ✓" if ok else ""))
        rtes = [sc["rows"][m]["RTE"] for sc in scs.values()]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {_seconds(min(rtes))} – {_seconds(max(rtes))} |")
    return "\n".join(lines)


def scenario_table(name: str, sc: dict[str, Any], fits: dict[str, Any] | None = None, shards: int = 0, slices: int = 0) -> str:
    rows, g = sc["rows"], sc["gaps"]
    ref = rows["retrain"]
    about = describe_scenario(sc, fits or {}, shards, slices) if "subject_model" in sc.get("detail", {}) else []
    intro = [" ".join(about), ""] if about else []
    lines = [f"### {TITLES.get(name, name)} — {sc['forget_size']} records"
             + (f" in {sc['requests']} requests" if sc["requests"] > 1 else ""), "", *intro,
             "| method | UA | RA | TA | MIA-efficacy | MIA (loss) | avg gap | within noise (UA / MIA) | FTG | RTE | RTE / Retrain | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    if "original" in sc:  # the full model before unlearning: what the approximate methods start from
        o = sc["original"]
        lines.append("| *original (no unlearning)* | " + " | ".join(_cell(o, ref, m) for m in METRICS)
                     + f" | {_pct(sc['original_gaps']['avg'])} | – | {_ftg(o)} | – | – | the full model all approximate methods start from |")
    for method, row in rows.items():
        note = row.get("note", "")
        if method == "s3t" and "live_shards" in row:
            note = (note + "; " if note else "") + f"{row['live_shards']} live shard(s), served stages " + \
                ", ".join(str(v) for v in row["served"].values())
        if method == "sisa" and "shards_retrained" in row:
            note = (note + "; " if note else "") + f"{row['shards_retrained']} shard(s) retrained"
        ratio = row["RTE"] / ref["RTE"] if ref["RTE"] > 0 else float("nan")
        cells = [_cell(row, ref, m) for m in METRICS]
        noise = _noise(sc.get("noise", {}).get(method)) if method != "retrain" else "–"
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {_pct(g[method]['avg'])} | {noise} | {_ftg(row)} | {_seconds(row['RTE'])} | "
                     f"{ratio:.3g}× | {note.replace('|', '/')} |")
    return "\n".join(lines)


def markdown(r: dict[str, Any]) -> str:
    c, d = r["config"], r["data"]
    head = [f"# s3t evaluate ({r['mode']}): exact vs approximate unlearning", "",
            f"{d['dataset']} ({len(d['classes'])} classes): {d['train']} train / {d['test']} test; model {c['model']}, "
            f"LoRA r={c['rank']}; m={c['shards']} L={c['slices']} B={c['budget'] or c['slices']}; {c['epochs']} epoch(s); "
            f"{c['threads']} thread(s); run {r['total_seconds']:.0f} s wall, {r.get('cpu_seconds', float('nan')):.0f} s CPU.", "",
            "Metrics in % (in brackets: difference to Retrain, the gold standard). UA = 1 − forget accuracy, "
            "RA = retained accuracy, TA = test accuracy, MIA-efficacy = share of forget records a confidence attack "
            "(logistic regression on max prob, entropy, true-label prob; trained on retained vs test) calls "
            "non-members, MIA (loss) = the same for a loss-threshold attack. avg gap = mean |Δ| over UA, RA, TA, "
            "MIA-efficacy (lower is better). FTG = forget accuracy − test accuracy: for a random forget set ≈ 0 when it "
            "is treated like unseen data, whatever the model's accuracy (> 0 = leftover memorisation); for a chosen "
            "forget set (class, worst case) compare it with Retrain's. RTE = wall time of the unlearning step; "
            "n/a = no live model. within noise = the 95% paired-bootstrap interval (over the forget records) of the "
            "method's difference to Retrain holds 0; retrain_seed1 (Retrain with another training seed) shows how far "
            "Retrain moves by itself. s3t = serving the surviving prefixes right after the forget; s3t_retrain = the "
            "same workspace after its background retrain of the cut suffixes (RTE = forget + retrain).", ""]
    before = ", ".join(f"{k} {_pct(v['test_accuracy'])}" for k, v in r.get("fits", {}).items() if "test_accuracy" in v)
    if before:
        head += [f"Test accuracy (%) before any deletion: {before}.", ""]
    verdict = within_noise_summary(r)
    if verdict:
        head += ["Within noise of Retrain (UA and MIA-efficacy both):", "", *verdict, ""]
    if r["scenarios"]:
        head += ["Average gap to Retrain per forget set (✓ = UA and MIA-efficacy both within noise of Retrain):", "",
                 overview_table(r), ""]
    placed = placement_lines(r.get("fits", {}))
    if placed:
        head += ["Placement of the s3t and SISA fits:", "", *placed, ""]
    body = [scenario_table(name, sc, r.get("fits", {}), c["shards"], c["slices"]) + "\n" for name, sc in r["scenarios"].items()]
    return "\n".join(head + body).rstrip()


def plots(r: dict[str, Any], out: Path) -> list[str]:
    """Write ``gaps.png`` (avg gap to Retrain per method and scenario) and ``ua_vs_rte.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    scs = r["scenarios"]
    if not scs:
        return []
    methods = list(next(iter(scs.values()))["rows"])
    names = []
    colors = [plt.get_cmap("tab20")(i % 20) for i in range(len(methods))]  # > 10 methods: the C0..C9 cycle repeats
    fig, ax = plt.subplots(figsize=(max(8, 1.9 * len(scs)), 4.8))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        vals = [100 * scs[s]["gaps"][m]["avg"] for s in scs]
        xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(scs))]
        ax.bar(xs, [0 if math.isnan(v) else v for v in vals], width, label=m, color=colors[j])
        for x, v in zip(xs, vals):
            if math.isnan(v):
                ax.text(x, 0.5, "no live model", rotation=90, ha="center", va="bottom", fontsize=7, color=colors[j])
    ax.set_xticks(range(len(scs)), [TITLES.get(s, s) for s in scs], rotation=15, ha="right")
    ax.set_ylabel("avg gap to Retrain (% points, lower = better)")
    ax.set_title("Average gap to Retrain over UA, RA, TA, MIA-efficacy")
    ax.legend(ncol=1, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(out / "gaps.png", dpi=110)
    plt.close(fig)
    names.append("gaps.png")

    cols = min(3, len(scs))
    rows_n = math.ceil(len(scs) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.6 * cols, 3.8 * rows_n), squeeze=False)
    for ax, (s, sc) in zip(axes.flat, scs.items()):
        for j, m in enumerate(methods):
            row = sc["rows"][m]
            if _bad(row["UA"]):
                continue
            ax.scatter(max(row["RTE"], 1e-4), 100 * row["UA"], color=colors[j], s=40, label=m)
            ax.annotate(m, (max(row["RTE"], 1e-4), 100 * row["UA"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(100 * sc["rows"]["retrain"]["UA"], color="gray", ls="--", lw=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(-5, 105)
        ax.set_xlabel("RTE (s, log)"), ax.set_ylabel("UA (%)")
        ax.set_title(f"{TITLES.get(s, s)} ({sc['forget_size']} records)", fontsize=9)
    for ax in list(axes.flat)[len(scs):]:
        ax.axis("off")
    handles: dict[str, Any] = {}
    for ax in axes.flat:  # every method that has a point somewhere, once
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", fontsize=8, ncol=len(handles))
    fig.suptitle("Unlearning accuracy vs run time (dashed: Retrain's UA; missing = no live model)")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(out / "ua_vs_rte.png", dpi=110)
    plt.close(fig)
    names.append("ua_vs_rte.png")
    return names
