"""``s3t evaluate --task causal-lm`` on a tiny random Llama (one run serves the end-to-end tests).

The tiny model's answers mean nothing; what is asserted is that the metrics follow their
definitions (truth ratio, KS forget quality on the same questions, scores equal to
``S3T.score_responses``), that Retrain is never given a forgotten record, that GA and NPO
unlearn the response tokens of the forget set, and that the report is written.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from typer.testing import CliRunner

from s3t.cli import app
from s3t.data.people import fictitious_people
from s3t.errors import ConfigError
from s3t.evaluate.lm_config import LMEvaluateConfig
from s3t.evaluate.lm_data import forget_people, perturbed_values, questions
from s3t.evaluate.lm_metrics import forget_quality, question_metrics, rouge_l_recall, truth_ratio
from s3t.evaluate.methods import get_method, methods_for
from tests.conftest import chat_rows, tiny_config

PNG = b"\x89PNG\r\n\x1a\n"
SIZES = dict(people=6, facts=3, forget_people=1, shards=2, slices=2, epochs=2, lr=5e-3, perturbed=2, retain_eval=4,
             chat_eval=3, generate_eval=2, max_new_tokens=4, threads=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_llama):
    """One evaluation; every FullRetrain fit records the ids it was given."""
    from s3t.baselines import FullRetrain
    from s3t.evaluate import run_evaluate_lm

    fitted_on: list[list[str]] = []
    original = FullRetrain.fit

    def recording_fit(self, train):
        fitted_on.append(list(train.ids))
        return original(self, train)

    out = tmp_path_factory.mktemp("evaluate-lm") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FullRetrain, "fit", recording_fit)
        result = run_evaluate_lm(out, quick=True, say=lambda msg: None, model=tiny_llama, **SIZES)
    return result, out, fitted_on


# -- definitions, by hand -------------------------------------------------------------------
def test_truth_ratio_follows_its_definition_on_a_hand_built_case():
    # question 0: correct answer log P = -2 over 2 tokens; wrong answers -4 over 2 and -9 over 3 tokens
    # question 1: the model prefers a wrong answer
    tr = truth_ratio([-2.0, -6.0], [2, 3], [[-4.0, -9.0], [-1.0, -2.0]], [[2, 3], [1, 2]])
    want0 = math.sqrt(math.exp(-4 / 2) * math.exp(-9 / 3)) / math.exp(-2 / 2)
    want1 = math.sqrt(math.exp(-1.0) * math.exp(-2 / 2)) / math.exp(-6 / 3)
    assert tr == pytest.approx([want0, want1])
    assert tr[0] < 1 < tr[1]
    m = question_metrics([-2.0, -6.0], [2, 3], [1, 0], [[-4.0, -9.0], [-1.0, -2.0]], [[2, 3], [1, 2]], forget=True)
    assert m["truth_score"] == pytest.approx(np.mean([want0, 1 / want1]))
    assert m["answer_prob"] == pytest.approx(np.mean([math.exp(-1), math.exp(-2)]))
    assert m["token_accuracy"] == pytest.approx(1 / 5)
    kept = question_metrics([-2.0, -6.0], [2, 3], [1, 0], [[-4.0, -9.0], [-1.0, -2.0]], [[2, 3], [1, 2]], forget=False)
    assert kept["truth_score"] == pytest.approx(np.mean([1 - want0, 0.0]))


def test_forget_quality_is_the_ks_p_value_on_the_same_questions():
    same = forget_quality([0.5, 1.0, 2.0], [0.5, 1.0, 2.0])
    assert same == {"ks_statistic": 0.0, "p_value": 1.0}
    apart = forget_quality(np.linspace(0.1, 0.2, 12), np.linspace(1.0, 2.0, 12))
    assert apart["ks_statistic"] == 1.0 and apart["p_value"] < 1e-5
    with pytest.raises(ValueError, match="same questions"):
        forget_quality([1.0, 2.0], [1.0, 2.0, 3.0])
    assert math.isnan(forget_quality(None, [1.0])["p_value"])  # no live model


def test_rouge_l_recall():
    assert rouge_l_recall("Ann was born in Rome.", "Ann was born in Rome.") == 1.0
    assert rouge_l_recall("born Ann", "Ann was born") == pytest.approx(1 / 3)
    assert rouge_l_recall("", "Ann was born") == 0.0


# -- the questions ----------------------------------------------------------------------------
def test_perturbed_answers_swap_in_other_peoples_values_of_the_same_kind():
    rows = fictitious_people(8, 12, seed=0)  # everyone has every kind: 7 other people per kind
    qs = questions(rows, [r["id"] for r in rows], k=3)
    assert qs == questions(rows, [r["id"] for r in rows], k=3), "not deterministic"
    values = {}
    for r in rows:
        values.setdefault(r["kind"], {}).setdefault(r["answer"], set()).add(r["subject"])
    for q, r in zip(qs, rows):
        assert q.answer == r["response"] and q.prompt == r["prompt"]
        wrong = perturbed_values(rows, rows.index(r), 3)
        assert len(set(wrong)) == 3 and r["answer"] not in wrong
        for w, sentence in zip(wrong, q.perturbed):
            assert sentence == r["response"].replace(r["answer"], w)  # the same sentence, another value
            assert w in values[r["kind"]] and values[r["kind"]][w] - {r["subject"]}, "not another person's value"
    one = fictitious_people(1, 2, seed=0)  # nobody else: drawn from the kind's generator, still deterministic
    assert perturbed_values(one, 0, 4) == perturbed_values(one, 0, 4) and len(set(perturbed_values(one, 0, 4))) == 4
    para = questions(rows, [rows[0]["id"]], k=1, question="paraphrase")[0]
    assert para.prompt == rows[0]["paraphrase"] and para.answer == rows[0]["response"]


def test_forget_people_are_seeded_and_leave_someone():
    subjects = [f"person-{i:03d}" for i in range(10)]
    assert forget_people(subjects, 3, 0) == forget_people(subjects, 3, 0)
    assert len(set(forget_people(subjects, 3, 0))) == 3
    with pytest.raises(ConfigError):
        forget_people(subjects, 10, 0)


def test_config_and_registry_refuse_methods_that_do_not_handle_the_task():
    assert methods_for("causal-lm") == ["ga", "npo"]
    with pytest.raises(ConfigError, match="causal-lm"):
        get_method("rl", "causal-lm")
    with pytest.raises(ConfigError, match="methods"):
        LMEvaluateConfig(methods=("retrain", "salun"))
    with pytest.raises(ConfigError, match="retrain"):
        LMEvaluateConfig(methods=("s3t", "ga"))


# -- GA / NPO on a causal LM --------------------------------------------------------------------
@pytest.fixture(scope="module")
def lm_full(tiny_llama):
    from s3t.baselines import FullRetrain
    from s3t.train.stage import Examples

    rows = chat_rows(8)
    full = FullRetrain(tiny_config(tiny_llama, shards=1, slices=2, budget=1, epochs=3, task="causal-lm")).fit(rows)
    runner = full.runner_

    def ex(ids):
        return Examples([runner.labels[i] for i in ids], tokens=[runner.tokens[i] for i in ids], pad_id=runner.pad_id)

    ids = [r["id"] for r in rows]
    return full.model_, ex(ids[:4]), ex(ids[4:])


@pytest.mark.parametrize("name", ["ga", "npo"])
def test_ga_and_npo_change_the_model_and_lower_the_forget_likelihood(lm_full, name):
    from s3t.evaluate.methods.common import reference_logp

    model, forget, retain = lm_full
    before_state = {k: v.clone() for k, v in model.state().items()}
    before = reference_logp(model, forget, 8)
    method = get_method(name, "causal-lm")
    out = method.unlearn(model, forget, retain, method.configure(lr=5e-3, epochs=3, batch_size=4))
    assert all(torch.equal(before_state[k], v) for k, v in model.state().items()), "the input model was modified"
    assert any(not torch.equal(before_state[k], v) for k, v in out.state().items()), "the method changed nothing"
    after = reference_logp(out, forget, 8)
    assert float(after.mean()) < float(before.mean()) - 0.1, (before, after)


def test_record_logp_is_the_sum_of_the_response_token_logprobs(lm_full):
    from s3t.evaluate.methods.common import record_logp
    from s3t.train.model import embed

    model, forget, _ = lm_full
    tokens, start = forget.tokens[1], forget.labels[1]
    x = torch.tensor([tokens])
    with torch.no_grad():
        logp = torch.log_softmax(model.lm_logits(model.states_from(0, embed(model.encoder, x), torch.ones_like(x))[0]), -1)
        got = record_logp(model, forget, [0, 1])[1]
    assert float(got) == pytest.approx(sum(float(logp[j - 1, tokens[j]]) for j in range(start, len(tokens))), abs=1e-4)


# -- end to end -----------------------------------------------------------------------------------
def test_retrain_is_never_given_a_forgotten_record(run):
    r, _, fitted_on = run
    forgotten = set(r["data"]["forget_ids"])
    people = set(r["data"]["forgotten_people"])
    assert forgotten and all(i.rsplit("-fact-", 1)[0] in people for i in forgotten)
    assert len(forgotten) == SIZES["forget_people"] * SIZES["facts"]
    full_ids, retrain_ids = fitted_on  # the full model, then Retrain
    assert forgotten <= set(full_ids)
    assert not forgotten & set(retrain_ids) and set(retrain_ids) == set(full_ids) - forgotten
    assert r["rows"]["retrain"]["records"] == len(retrain_ids)


def test_every_method_is_scored_on_the_same_forget_questions(run):
    r, _, _ = run
    assert list(r["rows"]) == ["original", "retrain", "s3t", "s3t_retrain", "ga", "npo"]
    asked = r["data"]["questions"]["forget"]
    assert sorted(q["id"] for q in asked) == sorted(r["data"]["forget_ids"])
    assert all(len(q["perturbed"]) == SIZES["perturbed"] for q in asked)
    ref = r["rows"]["retrain"]["forget"]["truth_ratios"]
    for method, row in r["rows"].items():
        tr = row["forget"]["truth_ratios"]
        assert len(tr) == len(asked), method
        assert row["forget_quality"]["p_value"] == pytest.approx(ks_2samp(tr, ref).pvalue), method
        assert row["forget_quality"]["ks_statistic"] == pytest.approx(ks_2samp(tr, ref).statistic), method
        assert 0 < row["chat"]["perplexity"] and row["chat"]["pairs"] == SIZES["chat_eval"]
        assert len(row["retain"]["truth_ratios"]) == SIZES["retain_eval"]
    assert r["rows"]["retrain"]["forget_quality"]["p_value"] == 1.0


def test_s3t_serves_prefixes_that_never_saw_the_people(run):
    r, _, _ = run
    s3t = r["rows"]["s3t"]
    assert [x["subject"] for x in s3t["receipts"]] == r["data"]["forgotten_people"]
    for x in s3t["receipts"]:
        for shard in x["affected_shards"]:
            assert x["served_after"][str(shard)] < x["served_before"][str(shard)]
    assert 0 < s3t["RTE"] < r["rows"]["s3t_retrain"]["RTE"]
    assert s3t["live_shards"] == SIZES["shards"] - 1  # one person lives in one slice of one shard
    assert r["rows"]["s3t_retrain"]["live_shards"] == SIZES["shards"]
    assert set(r["rows"]["s3t_retrain"]["served_stages"].values()) == {SIZES["slices"]}
    assert r["fits"]["s3t"]["placement"]["placement"] == "subject"


def test_batched_ensemble_scores_equal_score_responses(tmp_path, tiny_llama):
    from s3t import S3T
    from s3t.evaluate.lm_score import LMView

    est = S3T(tiny_config(tiny_llama, shards=2, slices=2, budget=1, epochs=1, task="causal-lm"),
              workspace=tmp_path / "ws").fit(chat_rows(8))
    pairs = [("where does person1 live ?", "person1 lives in rome ."), ("hi", "hello there , how are you today ?"),
             ("what colour does person2 like ?", "red")]
    want = est.score_responses(pairs)
    got = LMView.of_s3t(est).score(pairs, max_length=128, batch_size=2)
    assert len(LMView.of_s3t(est).members) == 2
    assert got.logp == pytest.approx([w.ensemble for w in want], abs=1e-4)
    assert got.tokens.tolist() == [w.tokens for w in want]
    view = LMView.of_s3t(est)
    prompt, answers = pairs[0][0], ["person1 lives in rome .", "person1 lives in oslo , i think", "x"]
    shared = view.score_answers(prompt, answers, max_length=128)  # the prompt run once, from the model's cache
    alone = view.score([(prompt, a) for a in answers], max_length=128, batch_size=1)
    assert shared.logp == pytest.approx(alone.logp, abs=1e-4)
    assert shared.tokens.tolist() == alone.tokens.tolist() and shared.hits.tolist() == alone.hits.tolist()


def test_report_and_plot_written(run):
    r, out, _ = run
    written = json.loads((out / "results.json").read_text())
    assert written["rows"].keys() == r["rows"].keys() and written["task"] == "causal-lm"
    md = (out / "summary.md").read_text()
    for method in r["rows"]:
        assert f"| {method} |" in md
    assert "forget quality" in md and r["data"]["forgotten_people"][0] in md
    assert r["plots"] == ["lm_eval.png"] and (out / "lm_eval.png").read_bytes()[:8] == PNG


def test_cli_documents_and_passes_the_causal_lm_options(monkeypatch, tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "--help"])
    assert result.exit_code == 0
    for word in ("--task", "causal-lm", "--people", "--forget-people", "KS", "truth-ratio", "GA", "NPO", "Retrain"):
        assert word in result.output, word
    seen = {}

    def fake(out_dir, quick, say, **overrides):
        seen.update(overrides, quick=quick)
        raise ConfigError("stop here")

    monkeypatch.setattr("s3t.evaluate.run_evaluate_lm", fake)
    result = CliRunner().invoke(app, ["evaluate", "--task", "causal-lm", "--out", str(tmp_path), "--quick",
                                      "--people", "9", "--forget-people", "1", "--threads", "1"])
    assert "stop here" in repr(result.exception) or "stop here" in result.output
    assert seen["people"] == 9 and seen["forget_people"] == 1 and seen["threads"] == 1 and seen["quick"]
    bad = CliRunner().invoke(app, ["evaluate", "--task", "causal-lm", "--out", str(tmp_path), "--limit", "5"])
    assert bad.exit_code != 0 and "--limit" in repr(bad.exception) + bad.output
