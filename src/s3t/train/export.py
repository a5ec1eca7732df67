"""Export the served ensemble as standard peft adapters (``s3t export``).

``OUT/shard-<k>/`` holds the adapter of shard k's served checkpoint in peft's own format
(``adapter_config.json`` + ``adapter_model.safetensors``: ``PeftModel.from_pretrained(base, dir)``
loads it onto the base encoder) and the classification head (``head.safetensors``: ``weight``
[classes, hidden], ``bias``). ``OUT/ensemble.json`` says how the members combine (mean pooling
over real tokens, the head, then the mean of the logits or of the softmaxes) and
``OUT/README.md`` is the model card: plan, what each shard serves and its lineage, the deletions
applied and the audit result. Nothing in the export names a record, a subject or a request.

A chat model (task ``causal-lm``) has no head: each ``shard-<k>`` is the adapter alone, for the
base causal LM (``AutoModelForCausalLM``), and the card says how members combine when they
generate (the mean of their next-token probabilities at every step, as ``S3T.generate``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError
from .layers import adapted_layers, layer_groups, lora_config
from .model import ADAPTER_PREFIX, HEAD_PREFIX

if TYPE_CHECKING:  # pragma: no cover
    from ..estimator import S3T


def export_served(model: "S3T", out: str | Path, run_audit: bool = True) -> dict[str, Any]:
    """Write the served shards of a fitted ``model`` to ``out`` (a new or empty directory)."""
    from safetensors.torch import save_file
    from sqlalchemy import select
    from transformers import AutoConfig

    from ..forget import receipts
    from ..store.checkpoints import load_checkpoint
    from ..store.schema import SliceVersion
    from .architectures import architecture_for
    from .backbone import resolve_model_path

    model._check_fitted()
    model.flush()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} is not empty; export into a new directory")
    ws, config = model.ws_, model.config
    base = resolve_model_path(config.train.model)
    hf_config = AutoConfig.from_pretrained(str(base), local_files_only=True)
    arch = architecture_for(hf_config)
    groups = layer_groups(int(hf_config.num_hidden_layers), config.plan.slices)
    version, body = ws.ledger.latest_manifest()
    report = model.audit() if run_audit else None
    with ws.ledger.Session() as s:
        lineage = ws.ledger.lineage(s)
        slices = {v.id: v for v in s.scalars(select(SliceVersion))}
        slices = {k: {"shard": v.shard, "slice": v.slice, "version": v.version, "records": v.size} for k, v in slices.items()}
    members = []
    for shard, entry in body["shards"].items():
        if entry is None:
            continue
        c = ws.ledger.checkpoint(entry["checkpoint"])
        state, _ = load_checkpoint(ws.resolve(c.path), sha256=c.sha256)
        layers = adapted_layers(groups, c.stage)
        target = out / f"shard-{shard}"
        peft_config = lora_config(config.train.lora, layers, arch)
        peft_config.base_model_name_or_path = str(base)
        peft_config.save_pretrained(str(target))
        adapters = {k[len(ADAPTER_PREFIX):]: v.contiguous() for k, v in state.items() if k.startswith(ADAPTER_PREFIX)}
        save_file(adapters, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})
        head = {k[len(HEAD_PREFIX):]: v.contiguous() for k, v in state.items() if k.startswith(HEAD_PREFIX)}
        if head:  # a decoder keeps its own (frozen) LM head: nothing to write
            save_file(head, str(target / "head.safetensors"))
        members.append({
            "shard": int(shard), "directory": target.name, "checkpoint": c.id, "checkpoint_sha256": c.sha256,
            "stage": c.stage, "of_stages": config.plan.slices, "sequence": entry["sequence"], "slice_order": c.prefix,
            "adapted_layers": layers, "records_trained_on": c.n_examples, "val_accuracy": c.val_accuracy,
            "lineage": [slices[v] for v in lineage.get(c.id, [])],
        })
    if not members:
        raise DataError("no shard is served (every lineage holds deleted records): retrain before exporting")
    chain = receipts(ws.ledger)
    card = {
        "base_model": str(base), "architecture": arch.name, "model_type": hf_config.model_type,
        "task": config.train.task, "max_length": config.train.max_length,
        **({"classes": [str(x) for x in model.classes_],
            "pooling": "mean of the last hidden states over real (non-padding) tokens",
            "aggregate": config.serve.aggregate} if config.train.task == "classification" else
           {"combine": "mean of the members' next-token probabilities at every generated token (greedy: its "
                       "arg-max); prompts in the tokenizer's chat template (one user turn + generation prompt)"}),
        "manifest_version": version,
        "plan": config.to_dict()["plan"], "lora": config.to_dict()["train"]["lora"],
        "lora_modules": arch.targets(config.train.lora.targets), "training_config_sha256": config.training_digest(),
        "shards": config.plan.shards, "served": members,
        "deletions": {"records": len(ws.ledger.deleted_ids()), "requests": len(chain),
                      "receipt_chain_head": chain[-1].hash if chain else None},
        "audit": None if report is None else {"ok": report.ok, "checks": {c.name: c.ok for c in report.checks}},
    }
    (out / "ensemble.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "README.md").write_text(model_card(card))
    return card


def _row(m: dict[str, Any]) -> str:
    lineage = ", ".join("{slice}v{version} ({records})".format(**v) for v in m["lineage"])
    return (f"| {m['shard']} | `{m['directory']}` | {m['stage']}/{m['of_stages']} | {m['slice_order']} | {lineage} | "
            f"{m['records_trained_on']} | `{m['checkpoint_sha256'][:16]}…` |")


def model_card(card: dict[str, Any]) -> str:
    """The export's README.md: what it is, the plan, the served lineage, the deletions, how to load it."""
    plan, lora = card["plan"], card["lora"]
    rows = "\n".join(_row(m) for m in card["served"])
    dead = card["shards"] - len(card["served"])
    dels = card["deletions"]
    audit = "not run" if card["audit"] is None else ("passed" if card["audit"]["ok"] else "FAILED") + (
        "" if card["audit"] is None else " (" + ", ".join(f"{k} {'ok' if v else 'FAIL'}" for k, v in card["audit"]["checks"].items()) + ")")
    chat = card.get("task", "classification") == "causal-lm"
    intro = (f"""# s3t chat-model ensemble export

Exact-unlearning ensemble of a chat model trained with s3t (S3T: sequence-aware sharded sliced
training). Each directory `shard-<k>` is a standard peft LoRA adapter for the base causal LM (its
own LM head, frozen); the ensemble generates with the {card.get('combine')}.""" if chat else f"""# s3t ensemble export

Exact-unlearning ensemble trained with s3t (S3T: sequence-aware sharded sliced training). Each
directory `shard-<k>` is a standard peft LoRA adapter for the base model plus the shard's
classification head; the ensemble is the {card.get('aggregate')} mean of the members' outputs.""")
    inputs = "" if chat else (f"\n- Classes: {', '.join(card['classes'])}; inputs truncated to {card['max_length']} "
                              f"tokens; pooling: {card['pooling']}")
    return f"""{intro}

- Base model: `{card['base_model']}` ({card['architecture']}, model_type `{card['model_type']}`)
- LoRA: r={lora['rank']}, alpha={lora['alpha']}, modules {', '.join(card['lora_modules'])}
- Plan: m={plan['shards']} shards, L={plan['slices']} slices, B={plan['budget']} sequences ({plan['selection']}),
  placement {plan['placement']}, seed {plan['seed']}{inputs}
- Served manifest version {card['manifest_version']}; {len(card['served'])} of {card['shards']} shards served{f' ({dead} dead)' if dead else ''}

## Served shards and their lineage

A shard serves the first `stage` layer groups (from the top) of one slice order; its lineage is
the slice versions (slice `v`ersion (records)) it was trained on, none holding a deleted record.

| shard | directory | stage | slice order | lineage | records | checkpoint sha256 |
|---|---|---|---|---|---|---|
{rows}

## Deletions applied

{dels['records']} record(s) forgotten in {dels['requests']} request(s); receipt chain head
`{dels['receipt_chain_head']}`. The audit: {audit}.

{_LM_LOADING if chat else _LOADING}"""


_LOADING = """## Loading

```python
import json, torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

card = json.load(open("ensemble.json"))
tok = AutoTokenizer.from_pretrained(card["base_model"])
enc = tok(["a text"], truncation=True, max_length=card["max_length"], padding=True, return_tensors="pt")
mask = enc["attention_mask"].unsqueeze(-1).float()
logits = []
for m in card["served"]:
    model = PeftModel.from_pretrained(AutoModel.from_pretrained(card["base_model"]), m["directory"]).eval()
    head = load_file(f"{m['directory']}/head.safetensors")
    with torch.no_grad():
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    logits.append(pooled @ head["weight"].T + head["bias"])
probs = torch.softmax(torch.stack(logits).mean(0), -1)  # "probs" aggregate: mean of the softmaxes
```
"""

_LM_LOADING = """## Loading (greedy generation, mean of the members' probabilities)

```python
import json, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

card = json.load(open("ensemble.json"))
tok = AutoTokenizer.from_pretrained(card["base_model"])
members = [PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(card["base_model"]), m["directory"]).eval()
           for m in card["served"]]
ids = tok.apply_chat_template([{"role": "user", "content": "a question"}], add_generation_prompt=True,
                              return_tensors="pt", return_dict=True)["input_ids"]
for _ in range(64):
    with torch.no_grad():
        probs = torch.stack([torch.softmax(m(input_ids=ids).logits[0, -1], -1) for m in members]).mean(0)
    token = int(probs.argmax())
    if token == tok.eos_token_id:
        break
    ids = torch.cat([ids, torch.tensor([[token]])], 1)
```
"""
