"""``s3t evaluate --task causal-lm``: forgetting people in a chat model, exact s3t against Retrain, GA, NPO.

Data: :func:`~s3t.data.people.fictitious_people` (``people`` x ``facts`` questions, every person
a data subject; the trained phrasing of every fact). ``forget_people`` people are drawn with the
seed and forgotten, one request each. Order:

1. **original**: the full model (:class:`~s3t.baselines.FullRetrain`: LoRA on every layer) fitted
   on everyone — what GA and NPO start from, and the "not forgotten" reference;
2. **retrain**: the same recipe fitted from scratch on the retained people only (it is never given
   a forgotten record: asserted on the data it is fitted on); forget time = its training time;
3. **s3t**: an S3T ensemble fitted on everyone (subject placement: each person in one slice), then
   ``S3T.forget(subject=...)`` per person: the served prefixes never saw them; forget time = the
   forget calls; **s3t_retrain**: the same workspace after ``S3T.retrain()`` (forget + retrain time);
4. **ga**, **npo**: the registry's methods (:mod:`s3t.evaluate.methods`) on the full model, through
   the task's loss: the forget records' response tokens (forget time = the unlearning step).

Each is scored the same way (:class:`~s3t.evaluate.lm_score.LMView`) on the forget-set questions
(correct + perturbed answers: truth ratio, answer probability, token accuracy, ROUGE-L of greedy
answers), a sample of questions about retained people (the same) and held-out real chat
(movie_dialog test pairs: mean token log-prob, perplexity); forget quality = KS p-value of its
truth ratios against Retrain's on the same questions (:mod:`s3t.evaluate.lm_metrics`).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .lm_config import LM_EXACT, LMEvaluateConfig
from .lm_data import Question, forget_people, heldout_chat, questions, retained_sample
from .lm_metrics import chat_metrics, forget_quality, question_metrics, rouge_l_recall


def s3t_config(cfg: LMEvaluateConfig, cache: bool = True):
    """The training config every fit of the run shares (the full model and Retrain without the trunk cache)."""
    from ..config import LoraSettings, PlanConfig, S3TConfig, TrainConfig

    return S3TConfig(plan=PlanConfig(shards=cfg.shards, slices=cfg.slices, budget=cfg.budget, selection="cyclic",
                                     seed=cfg.seed),
                     train=TrainConfig(task="causal-lm", model=cfg.model, epochs=cfg.epochs, lr=cfg.lr,
                                       batch_size=cfg.batch_size, max_length=cfg.max_length, threads=cfg.threads,
                                       workers=1, cache=cache, lora=LoraSettings(rank=cfg.rank, alpha=cfg.alpha)))


def fit_retrain(config, backbone, train, forgotten: set[str]):
    """Retrain: a full fit on the records of ``train`` outside ``forgotten`` (never given one of them)."""
    from ..baselines import FullRetrain

    retained = train.subset([i for i, rid in enumerate(train.ids) if rid not in forgotten])
    assert not set(retained.ids) & forgotten
    return FullRetrain(config, backbone=backbone).fit(retained)


def machine(cfg: LMEvaluateConfig) -> dict[str, Any]:
    import torch
    import transformers

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
            "torch": torch.__version__, "transformers": transformers.__version__, "threads": cfg.threads,
            "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None}


class LMRun:
    """One evaluation: the data, the fits and every method's scores."""

    def __init__(self, cfg: LMEvaluateConfig, say: Callable[[str], None], tmp: Path):
        from ..data.chat import to_chat_records
        from ..data.people import fictitious_people

        self.cfg, self.say, self.tmp = cfg, say, tmp
        self.rows = fictitious_people(cfg.people, cfg.facts, cfg.data_seed)
        self.train = to_chat_records([{k: r[k] for k in ("id", "subject", "prompt", "response")} for r in self.rows])
        self.forgotten_people = forget_people(self.train.subjects, cfg.forget_people, cfg.seed)
        gone = set(self.forgotten_people)
        self.forget_ids = [r["id"] for r in self.rows if r["subject"] in gone]
        self.forgotten = set(self.forget_ids)
        self.q_forget = questions(self.rows, self.forget_ids, cfg.perturbed, cfg.question, cfg.seed)
        self.q_retain = questions(self.rows, retained_sample(self.rows, gone, cfg.retain_eval, cfg.seed),
                                  cfg.perturbed, cfg.question, cfg.seed)
        self.chat = heldout_chat(cfg.chat_eval, cfg.chat_limit, cfg.seed)
        self.rows_out: dict[str, dict[str, Any]] = {}
        self.fits: dict[str, Any] = {}

    # -- scoring ----------------------------------------------------------------------------
    def _questions(self, view, qs: list[Question], forget: bool) -> dict[str, Any]:
        import numpy as np

        scored = [view.score_answers(q.prompt, (q.answer, *q.perturbed), self.cfg.max_length) for q in qs]
        logp, tokens, hits = (np.stack([getattr(s, f) for s in scored]) for f in ("logp", "tokens", "hits"))
        asked = qs[: self.cfg.generate_eval]
        answers = view.generate([q.prompt for q in asked], self.cfg.max_new_tokens)
        rouge = [rouge_l_recall(a, q.answer) for a, q in zip(answers, asked)]
        if np.isnan(logp).any():  # no live model
            return {"note": "no live model", "truth_ratios": None, "answers": []}
        out = question_metrics(logp[:, 0], tokens[:, 0], hits[:, 0], logp[:, 1:], tokens[:, 1:], forget, rouge)
        out["answers"] = [{"id": q.id, "prompt": q.prompt, "expected": q.answer, "answer": a} for q, a in zip(asked, answers)]
        return out

    def score(self, method: str, view, rte: float, **extra: Any) -> dict[str, Any]:
        start = time.perf_counter()
        forget = self._questions(view, self.q_forget, forget=True)
        retain = self._questions(view, self.q_retain, forget=False)
        c = view.score(self.chat, self.cfg.max_length, self.cfg.score_batch)
        row = {"forget": forget, "retain": retain, "chat": chat_metrics(c.logp, c.tokens, c.hits), "RTE": rte,
               "served": view.description, "score_seconds": time.perf_counter() - start, **extra}
        self.rows_out[method] = row
        f, r, ch = forget, retain, row["chat"]
        self.say(f"  {method:<12} forget: answer prob {f.get('answer_prob', float('nan')):.3f} truth ratio median "
                 f"{f.get('truth_ratio_median', float('nan')):.3f} | retained: answer prob "
                 f"{r.get('answer_prob', float('nan')):.3f} | chat ppl {ch['perplexity']:.1f} | forget time {rte:.3g}s "
                 f"(scored in {row['score_seconds']:.0f}s)")
        return row

    # -- methods ----------------------------------------------------------------------------
    def run(self) -> None:
        from ..baselines import FullRetrain
        from ..train.backbone import load_backbone
        from .lm_score import LMView

        cfg = self.cfg
        self.backbone = load_backbone(cfg.model, "causal-lm")
        full_config = s3t_config(cfg, cache=False)  # every layer trained: a level-0 cache saves little
        self.say(f"training the full model (LoRA on every layer) on {len(self.train)} facts of {cfg.people} people ...")
        start = time.perf_counter()
        self.full = FullRetrain(full_config, backbone=self.backbone).fit(self.train)
        self.fits["full"] = {"seconds": time.perf_counter() - start, "records": len(self.train)}
        self.score("original", LMView.single(self.backbone, self.full.model_, "full model"), 0.0,
                   note="the full model before unlearning (GA and NPO start from it)")
        self.say(f"Retrain: the same recipe without {', '.join(self.forgotten_people)} ({len(self.forget_ids)} facts) ...")
        start = time.perf_counter()
        retrain = fit_retrain(full_config, self.backbone, self.train, self.forgotten)
        seconds = time.perf_counter() - start
        self.fits["retrain"] = {"seconds": seconds, "records": len(retrain.ids_)}
        self.score("retrain", LMView.single(self.backbone, retrain.model_, "Retrain"), seconds,
                   note=f"full fit on {len(retrain.ids_)} retained facts", records=len(retrain.ids_))
        del retrain
        if "s3t" in cfg.methods:
            self.run_s3t()
        for method in [m for m in cfg.methods if m not in LM_EXACT]:
            self.run_approximate(method)

    def run_s3t(self) -> None:
        from ..bench.serve_parts import close_copy
        from ..estimator import S3T
        from .lm_score import LMView
        from .run import quiesce

        cfg = self.cfg
        self.say(f"training s3t m={cfg.shards} L={cfg.slices} B={cfg.budget} on {len(self.train)} facts ...")
        start = time.perf_counter()
        est = S3T(s3t_config(cfg), workspace=self.tmp / "s3t").fit(self.train)
        self.fits["s3t"] = {"seconds": time.perf_counter() - start, "checkpoints": len(est.ws_.ledger.checkpoints()),
                            "placement": est.placement_}
        LMView.of_s3t(est)  # serving ready (the ensemble built) before the forgets are timed
        rte, receipts = 0.0, []
        for person in self.forgotten_people:
            quiesce(est)
            t = time.perf_counter()
            receipt = est.forget(subject=person)
            rte += time.perf_counter() - t
            receipts.append({"subject": person, "affected_shards": receipt.affected_shards,
                             "served_before": receipt.before, "served_after": receipt.after})
        quiesce(est)
        status = est.status()
        self.score("s3t", LMView.of_s3t(est), rte, live_shards=status["live_shards"], served_stages=status["served"],
                   receipts=receipts, note="served right after the forgets: the surviving prefixes")
        if "s3t_retrain" in cfg.methods:
            rep = est.retrain()
            quiesce(est)
            status = est.status()
            self.score("s3t_retrain", LMView.of_s3t(est), rte + rep.seconds, live_shards=status["live_shards"],
                       served_stages=status["served"], retrain_seconds=rep.seconds,
                       note=f"after S3T.retrain(): {len(rep.checkpoints)} checkpoint(s) retrained without the people")
        quiesce(est)
        est.flush()
        close_copy(est)

    def run_approximate(self, method: str) -> None:
        from ..train.stage import Examples
        from .lm_score import LMView
        from .methods import get_method

        spec = get_method(method, "causal-lm")
        conf = spec.configure(**self.cfg.method_config(method))
        runner = self.full.runner_

        def examples(ids):
            return Examples([runner.labels[i] for i in ids], tokens=[runner.tokens[i] for i in ids], pad_id=runner.pad_id)

        retain_ids = [i for i in self.train.ids if i not in self.forgotten]
        self.say(f"{method}: unlearning {len(self.forget_ids)} facts from the full model ...")
        start = time.perf_counter()
        model = spec.unlearn(self.full.model_, examples(self.forget_ids), examples(retain_ids), conf)
        rte = time.perf_counter() - start
        self.score(method, LMView.single(self.backbone, model, method), rte, method_config=conf.to_dict())

    def results(self) -> dict[str, Any]:
        """Rows with their forget quality against Retrain (same forget-set questions)."""
        ref = self.rows_out["retrain"]["forget"]["truth_ratios"]
        for row in self.rows_out.values():
            row["forget_quality"] = forget_quality(row["forget"].get("truth_ratios"), ref)
        return {"rows": self.rows_out, "fits": self.fits, "data": {
            "people": self.cfg.people, "facts": self.cfg.facts, "train": len(self.train),
            "forgotten_people": self.forgotten_people, "forget_ids": self.forget_ids,
            "questions": {name: [{"id": q.id, "prompt": q.prompt, "answer": q.answer, "perturbed": list(q.perturbed)}
                                 for q in qs] for name, qs in (("forget", self.q_forget), ("retain", self.q_retain))},
            "chat_pairs": len(self.chat)}}


def run_evaluate_lm(out_dir: str | Path, quick: bool = True, say: Callable[[str], None] | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """Run the causal-LM comparison (``quick`` preset or full); write results.json, summary.md and lm_eval.png."""
    import torch

    from ..bench.resume import to_json
    from ..train.backbone import set_determinism
    from .lm_report import markdown, plot

    say = say or (lambda msg: print(msg, flush=True))
    cfg = LMEvaluateConfig.quick(**overrides) if quick else LMEvaluateConfig.full(**overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0, cpu0 = time.perf_counter(), time.process_time()
    set_determinism(cfg.threads)
    torch.manual_seed(cfg.seed)
    results: dict[str, Any] = {"task": "causal-lm", "mode": cfg.mode, "config": cfg.to_dict(), "machine": machine(cfg)}
    say(f"s3t evaluate --task causal-lm ({cfg.mode}): {cfg.people} people x {cfg.facts} facts, forget "
        f"{cfg.forget_people}; model {cfg.model}, m={cfg.shards} L={cfg.slices} B={cfg.budget}, {cfg.epochs} epoch(s), "
        f"{cfg.threads} thread(s)")
    tmp = Path(tempfile.mkdtemp(prefix="s3t-evaluate-lm-"))
    try:
        run = LMRun(cfg, say, tmp)
        run.run()
        results.update(run.results())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["total_seconds"] = time.perf_counter() - t0
    results["cpu_seconds"] = time.process_time() - cpu0
    results["machine"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["plots"] = [plot(results, out)]
    (out / "results.json").write_text(to_json(results))
    (out / "summary.md").write_text(markdown(results) + "\n")
    say(f"evaluate finished in {results['total_seconds']:.0f}s wall ({results['cpu_seconds']:.0f}s CPU); results in {out}")
    return results
