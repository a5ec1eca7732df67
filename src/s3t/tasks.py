"""What an S3T model learns: a registry of tasks (torch-free).

A task says how user data becomes records, which kind of pretrained model it tunes and how
that model is loaded. Everything downstream — placement, ledger, lineage, forget, audit — is
shared: a record is an id, a text, a label and an optional subject whatever the task.

``classification``
    Text/label records; an encoder (BERT family) with LoRA on the layer groups and a linear
    head on the mean-pooled top states. ``S3T.predict``.
``causal-lm``
    Prompt/response records (a chat example, stored as one canonical JSON text, label
    ``response``; see :mod:`s3t.data.chat`); a decoder chat model (Llama family) with LoRA on
    the layer groups, loss on the response tokens only, its own language-model head frozen.
    ``S3T.generate``.

The torch side of each task (tokenising, loss, validation outcome) is in
:mod:`s3t.train.objectives`, registered under the same names.

Example
-------
>>> from s3t.tasks import task_spec
>>> task_spec("causal-lm").model_kind
'decoder'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import ConfigError


def _classification_records(data: Any, label_names=None, id_prefix: str = "row-"):
    from .data import to_records
    from .data.chat import is_chat_records
    from .errors import DataError

    records = to_records(data, label_names=label_names, id_prefix=id_prefix)
    if is_chat_records(records):  # else it would train a one-class classifier on JSON texts
        raise DataError("these are chat records (prompt/response): train them with train.task 'causal-lm' "
                        "(s3t train --task causal-lm); classification needs text/label records")
    return records


def _chat_records(data: Any, label_names=None, id_prefix: str = "row-"):
    from .data.chat import to_chat_records

    return to_chat_records(data, id_prefix=id_prefix)


@dataclass(frozen=True)
class TaskSpec:
    """One task: its data conversion and the kind of model it tunes."""

    name: str
    description: str
    to_records: Callable[..., Any]  # (data, label_names=None, id_prefix="row-") -> RecordSet
    model_kind: str  # "encoder" or "decoder": the Architecture kinds it can tune
    auto_class: str  # the transformers Auto class that loads the model (with what the task needs on top)
    columns: str  # what the data holds, for help texts and errors


TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name in TASKS:
        raise ConfigError(f"task {spec.name!r} is already registered")
    TASKS[spec.name] = spec
    return spec


def task_spec(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ConfigError(f"train.task must be one of {sorted(TASKS)}; got {name!r}")
    return TASKS[name]


register_task(TaskSpec(
    "classification", "text classification with an encoder and a linear head", _classification_records,
    model_kind="encoder", auto_class="AutoModel", columns="text, label and optional id, subject"))
register_task(TaskSpec(
    "causal-lm", "instruction tuning of a decoder chat model (loss on the response tokens)", _chat_records,
    model_kind="decoder", auto_class="AutoModelForCausalLM", columns="prompt, response and optional id, subject"))
