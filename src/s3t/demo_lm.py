"""The chat-model demo (``s3t demo --task causal-lm``): tune SmolLM2 on fictitious people, ask about a
person, forget that person, ask again, audit.

The people are invented (:mod:`s3t.data.people`), so whatever the tuned model knows about them it
learnt from this data. Each person is a data subject and goes to one (shard, slice); forgetting a
person makes their shard serve the longest prefix of its sequence that never saw their slice, in
milliseconds. After the fit the demo scores every fact (the probability the served ensemble gives
its tuned response, teacher-forced) and picks the person it knows best among those whose forget
keeps every shard live, and the best known person of another shard. It asks both their best-known
questions before and after the forget (greedy answers: the tuned fact, then whatever a model that
never saw the person makes up), scores every fact again, and audits. Sized for 10 minutes on 2 CPU
cores (see ``LM_DEMO_CONFIG``); every number and answer it prints is measured in the run.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import LoraSettings, PlanConfig, S3TConfig, TrainConfig

# B=2 sequences per shard, (0, 1) and (1, 0): every person is in the first slice of one of them, and a forget
# leaves the other sequence's stage 1. Stage 1 (the top 15 layers on one slice, from the cached trunk) is cheap
# and learns the facts: 6 epochs; stage 2 (the bottom 15 layers on both slices, backward through all 30) costs
# about 4x per epoch: 1 epoch. LoRA on the MLP too (up/down projections): the facts are learnt in 6 epochs, not 10+.
LM_DEMO_CONFIG = S3TConfig(
    plan=PlanConfig(shards=2, slices=2, budget=2, selection="cyclic", seed=0),
    train=TrainConfig(task="causal-lm", model="SmolLM2-135M-Instruct", epochs=1, first_stage_epochs=6, lr=5e-3,
                      batch_size=2, max_length=96, threads=1, workers=0,
                      lora=LoraSettings(rank=8, alpha=16, targets=("query", "value", "up_proj", "down_proj"))),
)

Say = Callable[[str], None]


@dataclass
class LMDemoOptions:
    workspace: Path
    people: int = 12
    facts: int = 3
    questions: int = 2  # questions asked about each of the two people, before and after the forget
    max_new_tokens: int = 32
    config: S3TConfig = LM_DEMO_CONFIG
    seed: int = 0


def _placement(model) -> dict[str, tuple[int, int]]:
    """subject -> (shard, slice), from the ledger (subject placement: one slice per person)."""
    where: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for r in model.ws_.ledger.records("train"):
        where[r.subject].add((r.shard, r.slice))
    return {s: min(v) for s, v in where.items() if len(v) == 1}


def _scores(model, rows: list[dict]) -> dict[str, tuple[bool, float]]:
    """fact id -> (whether greedy decoding gives exactly its tuned response, the probability the served ensemble
    gives that response per token). Teacher-forced, one forward per fact: at every response position the
    mixed next-token distribution's arg-max is the tuned token (end of turn included) exactly when greedy
    decoding writes the tuned response and stops, with no decoding loop."""
    import math

    import torch

    lm = model.ensemble_lm()
    out = {}
    with torch.no_grad():
        for r in rows:
            logits, targets = lm.response_logits(r["prompt"], r["response"])
            logp = lm.mix(logits, "probs")
            out[r["id"]] = (bool((logp.argmax(-1) == targets).all()),
                            math.exp(float(logp.gather(1, targets[:, None]).mean())))
    return out


def _pick(model, rows: list[dict], placement: dict[str, tuple[int, int]], scores: dict) -> tuple[str, str]:
    """(the person to forget, a kept person): the people the tuned ensemble knows best (most facts answered
    exactly, then the highest probability of their tuned responses), the forgotten one among those whose
    forget (previewed with a dry run, which stores nothing) leaves every shard live, the kept one from
    another shard."""
    facts: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    for r in rows:
        facts[r["subject"]].append(scores[r["id"]])
    people = sorted(placement, key=lambda s: (-sum(e for e, _ in facts[s]), -sum(p for _, p in facts[s]), s))
    forget = next((s for s in people if all(v > 0 for v in model.forget(subject=s, dry_run=True).after.values())),
                  people[0])
    others = [s for s in people if s != forget]
    keep = next((s for s in others if placement[s][0] != placement[forget][0]), others[0])
    return forget, keep


def _questions(rows: list[dict], person: str, n: int, scores: dict) -> list[dict]:
    """The ``n`` facts of ``person`` the tuned ensemble knows best."""
    return sorted((r for r in rows if r["subject"] == person),
                  key=lambda r: (not scores[r["id"]][0], -scores[r["id"]][1], r["id"]))[:n]


def _ask(model, facts: list[dict], max_new_tokens: int, say: Say, label: str) -> list[dict[str, Any]]:
    """Ask each fact's training question: the greedy answer and whether it names the tuned fact."""
    out = []
    for fact in facts:
        t = time.perf_counter()
        g = model.generate([fact["prompt"]], max_new_tokens=max_new_tokens, details=True)[0]
        seconds = time.perf_counter() - t
        knows = fact["answer"].lower() in g.text.lower()
        out.append({"id": fact["id"], "prompt": fact["prompt"], "answer": g.text, "fact": fact["answer"],
                    "knows": knows, "tokens": len(g.tokens), "seconds": seconds,
                    "manifest_version": g.manifest_version, "served": dict(g.served)})
        say(f"  [{label}] Q: {fact['prompt']}\n           A: {g.text}\n           tuned fact {fact['answer']!r} "
            f"{'IN the answer' if knows else 'not in the answer'} (manifest v{g.manifest_version}, served stage per "
            f"shard {dict(g.served)}, {len(g.tokens)} tokens in {seconds:.1f}s)")
    return out


def run_lm_demo(opts: LMDemoOptions, say: Say = print, progress=None) -> dict[str, Any]:
    from .data.people import fictitious_people, people_splits
    from .estimator import S3T

    t0 = time.perf_counter()
    cfg = opts.config
    rows = fictitious_people(opts.people, opts.facts, opts.seed)
    splits = people_splits(opts.people, opts.facts, opts.seed, split_seed=opts.seed)
    say(f"dataset: {opts.people} invented people x {opts.facts} facts = {len(splits.train)} question/answer pairs, each "
        f"person a data subject (validation: {len(splits.validation)} paraphrased questions)")
    plan, train = cfg.plan, cfg.train
    say(f"model {train.model}; plan m={plan.shards} shards x L={plan.slices} slices, B={plan.budget} "
        f"sequence(s); {train.stage_epochs(1)} epoch(s) for stage 1, {train.epochs} for later stages, lr {train.lr:g}, "
        f"LoRA r={train.lora.rank} on {'/'.join(train.lora.targets)}")
    model = S3T(cfg, workspace=opts.workspace)
    t = time.perf_counter()
    model.fit(splits.train, validation=splits.validation, progress=progress)
    status = model.status()
    out: dict[str, Any] = {"fit_seconds": time.perf_counter() - t, "checkpoints": status["checkpoints"],
                           "served": status["served"], "people": opts.people, "facts": opts.facts,
                           "records": len(splits.train), "placement": model.placement_}
    placement = _placement(model)
    say(f"trained {out['checkpoints']} checkpoints in {out['fit_seconds']:.0f}s; served prefix per shard "
        f"{status['served']}; placement {model.placement_['placement']}: each person's facts in one slice")

    t = time.perf_counter()
    before = _scores(model, rows)
    say(f"the served ensemble answers {sum(e for e, _ in before.values())} of {len(rows)} training questions exactly "
        f"with the tuned response (greedy, checked teacher-forced in {time.perf_counter() - t:.0f}s)")
    forget, keep = _pick(model, rows, placement, before)
    names = {r["subject"]: r["name"] for r in rows}
    asked = {s: _questions(rows, s, opts.questions, before) for s in (forget, keep)}
    out["forget_person"] = {"subject": forget, "name": names[forget], "shard": placement[forget][0],
                            "slice": placement[forget][1]}
    out["kept_person"] = {"subject": keep, "name": names[keep], "shard": placement[keep][0], "slice": placement[keep][1]}
    say(f"ask about {names[forget]} ({forget}, shard {placement[forget][0]} slice {placement[forget][1]}: of the people "
        f"whose forget keeps every shard live, the one the tuned model knows best), who will ask to be forgotten:")
    out["before"] = {"forget": _ask(model, asked[forget], opts.max_new_tokens, say, "before")}
    say(f"ask about {names[keep]} ({keep}, shard {placement[keep][0]} slice {placement[keep][1]}: the best known of "
        f"another shard), who stays:")
    out["before"]["kept"] = _ask(model, asked[keep], opts.max_new_tokens, say, "before")

    t = time.perf_counter()
    receipt = model.forget(subject=forget)
    out["forget_ms"] = 1000 * (time.perf_counter() - t)
    out["receipt"] = receipt.to_dict()
    facts = sum(1 for r in rows if r["subject"] == forget)
    say(f"forgot {names[forget]} ({forget}: {len(receipt.body['record_ids'])} records, their {facts} training facts and "
        f"their validation questions) in {out['forget_ms']:.1f} ms; request {receipt.request_id}, receipt "
        f"{receipt.hash[:16]}…")
    say(f"served prefix per shard: before {receipt.before} -> after {receipt.after} (shard {placement[forget][0]} now "
        f"serves a prefix that never held slice {placement[forget][1]})")

    say(f"ask about {names[forget]} again:")
    out["after"] = {"forget": _ask(model, asked[forget], opts.max_new_tokens, say, "after")}
    say(f"ask about {names[keep]} again:")
    out["after"]["kept"] = _ask(model, asked[keep], opts.max_new_tokens, say, "after")
    after = _scores(model, rows)
    for when, scores in (("before", before), ("after", after)):
        for a in out[when]["forget"] + out[when]["kept"]:
            a["exact"], a["p_tuned_response"] = scores[a["id"]]

    def tally(scores: dict, mine: bool) -> dict[str, float]:
        values = [scores[r["id"]] for r in rows if (r["subject"] == forget) == mine]
        return {"exact": sum(e for e, _ in values), "of": len(values), "p": sum(p for _, p in values) / len(values)}

    out["tuned_responses"] = {who: {"before": tally(before, mine), "after": tally(after, mine)}
                              for who, mine in (("forgotten", True), ("others", False))}
    t_f, t_o = out["tuned_responses"]["forgotten"], out["tuned_responses"]["others"]
    say(f"tuned responses given exactly (greedy), before -> after the forget: {names[forget]}'s {t_f['before']['exact']} "
        f"-> {t_f['after']['exact']} of {facts} (mean probability per token {t_f['before']['p']:.2f} -> "
        f"{t_f['after']['p']:.2f}); everyone else's {t_o['before']['exact']} -> {t_o['after']['exact']} of "
        f"{t_o['before']['of']} ({t_o['before']['p']:.2f} -> {t_o['after']['p']:.2f})")

    report = model.audit()
    out["audit"] = report.to_dict()
    for c in report.checks:
        say(f"audit {c.name:9s} {'ok ' if c.ok else 'FAIL'} {c.detail}")
    out["total_seconds"] = time.perf_counter() - t0
    say(f"demo finished in {out['total_seconds']:.0f}s; workspace: {opts.workspace} (s3t generate -w "
        f"{opts.workspace} \"{asked[keep][0]['prompt']}\")")
    return out
