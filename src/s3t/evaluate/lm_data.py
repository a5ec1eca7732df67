"""What the causal-LM evaluation asks (torch-free): who is forgotten, the questions with their
correct and perturbed (wrong) answers, and the held-out chat pairs.

Perturbed answers (TOFU's truth ratio needs wrong answers of the same form): a fact of kind K
about person X gets the response the generator would have written had X's value been another
person's value of kind K. Candidates are the values of kind K of the other people, taken in
person order starting after X (cyclically), distinct and different from X's own value; the
first ``k`` are used. When the set holds fewer (few people, or a kind with few values), the
rest are drawn from the kind's own generator with ``random.Random(f"{seed}:{fact id}")``.
Everything is deterministic: the same rows give the same answers.

TOFU also asks a paraphrased *answer*; the generator writes one response per fact, so the
correct answer is the trained response itself. ``question="paraphrase"`` asks the paraphrased
question instead of the trained one (does the model know the fact, or only the string?).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class Question:
    """One fact asked: the question, the correct response and wrong responses of the same form."""

    id: str  # the training record's id, person-NNN-fact-FF
    subject: str
    kind: str
    prompt: str
    answer: str  # the correct response sentence (what the model was tuned on)
    perturbed: tuple[str, ...]  # the same sentence with another person's value of the kind
    short: str  # the correct short answer (contained in ``answer``)


def response_for(row: dict[str, str], value: str) -> str:
    """The response the generator writes for ``row``'s person and kind with answer ``value``."""
    from ..data.people import FACT_KINDS, possessive

    kind = next(k for k in FACT_KINDS if k.name == row["kind"])
    name = row["name"]
    fill = {"n": name, "p": possessive(name), "a": value, "A": value[0].upper() + value[1:]}
    return kind.response.format(**fill)


def perturbed_values(rows: Sequence[dict[str, str]], index: int, k: int, seed: int = 0) -> list[str]:
    """``k`` wrong values for fact ``rows[index]`` (see the module docstring)."""
    from ..data.people import FACT_KINDS

    row = rows[index]
    people = list(dict.fromkeys(r["subject"] for r in rows))
    by_person: dict[str, list[str]] = {}
    for r in rows:
        if r["kind"] == row["kind"]:
            by_person.setdefault(r["subject"], []).append(r["answer"])
    start = people.index(row["subject"])
    out: list[str] = []
    for step in range(1, len(people)):
        for value in by_person.get(people[(start + step) % len(people)], []):
            if value != row["answer"] and value not in out and len(out) < k:
                out.append(value)
    draw = next(kind.draw for kind in FACT_KINDS if kind.name == row["kind"])
    rng = random.Random(f"{seed}:{row['id']}")
    for _ in range(10_000):
        if len(out) >= k:
            break
        value = draw(rng)
        if value != row["answer"] and value not in out:
            out.append(value)
    if len(out) < k:
        raise ConfigError(f"kind {row['kind']!r} has fewer than {k + 1} distinct values; ask for fewer perturbed answers")
    return out


def questions(rows: Sequence[dict[str, str]], ids: Sequence[str], k: int, question: str = "train",
              seed: int = 0) -> list[Question]:
    """The questions about the facts ``ids`` (in the order given), each with ``k`` perturbed answers."""
    at = {r["id"]: n for n, r in enumerate(rows)}
    out = []
    for rid in ids:
        row = rows[at[rid]]
        if response_for(row, row["answer"]) != row["response"]:  # the generator and this module must agree
            raise ConfigError(f"fact {rid}: its response does not follow its kind's template")
        out.append(Question(rid, row["subject"], row["kind"], row["prompt" if question == "train" else "paraphrase"],
                            row["response"], tuple(response_for(row, v) for v in perturbed_values(rows, at[rid], k, seed)),
                            row["answer"]))
    return out


def forget_people(subjects: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` distinct people drawn uniformly with ``seed`` (sorted)."""
    names = sorted(set(subjects))
    if not 1 <= n < len(names):
        raise ConfigError(f"cannot forget {n} of {len(names)} people (at least one must remain)")
    return sorted(names[i] for i in np.random.default_rng(seed + 2).permutation(len(names))[:n])


def retained_sample(rows: Sequence[dict[str, str]], forgotten: set[str], n: int, seed: int) -> list[str]:
    """A seeded sample of ``n`` fact ids of people not forgotten (sorted)."""
    keep = [r["id"] for r in rows if r["subject"] not in forgotten]
    order = np.random.default_rng(seed + 11).permutation(len(keep))
    return sorted(keep[i] for i in order[:n])


def heldout_chat(n: int, limit: int, seed: int) -> list[tuple[str, str]]:
    """The first ``n`` (prompt, response) pairs of movie_dialog's test split (``limit`` rows loaded)."""
    if n == 0:
        return []
    from ..data import load_builtin
    from ..data.chat import chat_pairs

    return chat_pairs(load_builtin("movie_dialog", seed=seed, limit=limit).test)[:n]
