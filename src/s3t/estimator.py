"""``S3T``: fit / predict / forget / audit on one estimator-like object.

Example
-------
>>> from s3t import S3T, S3TConfig, PlanConfig                       # doctest: +SKIP
>>> model = S3T(S3TConfig(plan=PlanConfig(shards=2, slices=3, budget=3)), workspace="ws")
>>> model.fit("reviews.csv", validation="val.csv")                  # train the prefix tries
>>> model.predict(["a gorgeous, moving film"])                       # -> array(['positive'])
>>> receipt = model.forget(record_ids=["r-17"])                      # exact in milliseconds
>>> model.audit().ok
True
>>> S3T.load("ws").status()["served"]                                # served prefix per shard
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .audit import AuditReport, audit
from .config import S3TConfig
from .data import RecordSet, to_records
from .errors import DataError, NotFittedError
from .forget import Receipt, receipts, record_forget
from .plan import assign_shards, select_sequences
from .store.workspace import Workspace

log = logging.getLogger("s3t")

Progress = Callable[[str, int, int], None]  # (description, done increment, total) callbacks


class S3T:
    """Sequence-aware Sharded Sliced Training with exact, instant forgetting.

    Parameters
    ----------
    config : S3TConfig, optional
        Plan, LoRA/training and serving settings. Stored in the workspace.
    workspace : str or Path
        Directory holding the ledger, checkpoints and served manifest.
    db : str, optional
        SQLAlchemy URL of the ledger (default: SQLite file inside the workspace).
    """

    def __init__(self, config: S3TConfig | None = None, workspace: str | Path = "s3t-workspace", db: str | None = None):
        self.config = config
        self.workspace = workspace
        self.db = db

    # -- construction -----------------------------------------------------------------
    @classmethod
    def load(cls, workspace: str | Path, db: str | None = None) -> "S3T":
        """Open a trained workspace (recovering from any interrupted forget) and load the served ensemble."""
        ws = Workspace(workspace, db_url=db)
        obj = cls(ws.load_config(), workspace, db)
        obj.ws_ = ws
        if not ws.ledger.initialised:
            raise NotFittedError(f"workspace {ws.path} has no trained plan; call fit() first")
        obj.classes_ = np.array(ws.ledger.label_names())
        ws.recover()
        return obj

    def _check_fitted(self) -> None:
        if not hasattr(self, "ws_"):
            raise NotFittedError("this S3T instance is not fitted: call fit(data) or S3T.load(workspace)")

    @property
    def ensemble_(self):
        """The served ensemble, built lazily (loading torch and the backbone) on first use."""
        self._check_fitted()
        if getattr(self, "_ensemble", None) is None:
            from .serve.ensemble import Ensemble
            from .train.backbone import load_backbone, set_determinism

            set_determinism(self.config.train.threads)
            self._backbone = getattr(self, "_backbone", None) or load_backbone(self.config.train.model)
            self._ensemble = Ensemble(self._backbone, self.config, len(self.classes_))
            self._sync()
        return self._ensemble

    def _load_state(self, checkpoint_id: str):
        from .store.checkpoints import load_checkpoint

        c = self.ws_.ledger.checkpoint(checkpoint_id)
        state, _ = load_checkpoint(self.ws_.resolve(c.path), sha256=c.sha256)
        return state

    def _sync(self) -> None:
        version, body = self.ws_.ledger.latest_manifest()
        if self._ensemble.manifest_version != version:
            self._ensemble.sync(version, body, self._load_state)

    # -- fit --------------------------------------------------------------------------
    def fit(self, data: Any, validation: Any = None, progress: Progress | None = None) -> "S3T":
        """Shard, slice, order and train every sequence's stages; serve the full prefixes.

        ``data``/``validation``: a RecordSet, pandas DataFrame, HF Dataset, list of dicts
        or a CSV/JSONL path with ``text``, ``label`` and optional ``id``/``subject``.
        """
        config = self.config or S3TConfig()
        train = to_records(data)
        val = to_records(validation, label_names=train.label_names) if validation is not None else None
        plan = config.plan
        if len(train) < plan.shards * plan.slices:
            raise DataError(f"{len(train)} training records cannot fill {plan.shards} shards x {plan.slices} slices")
        if val is not None and set(val.ids) & set(train.ids):
            raise DataError("validation ids overlap training ids; give disjoint sets")

        from .train.backbone import load_backbone
        from .train.layers import layer_groups

        backbone = load_backbone(config.train.model)
        layer_groups(backbone.n_layers, plan.slices)  # validate before writing anything
        ws = Workspace(self.workspace, db_url=self.db, create=True)
        if ws.ledger.initialised:
            raise DataError(f"workspace {ws.path} already holds a trained plan; use a new workspace or S3T.load()")
        assignment = assign_shards(list(train.ids), plan.shards, plan.slices, plan.seed)
        sequences = select_sequences(plan.selection, plan.slices, plan.budget, plan.priors)
        ws.save_config(config)
        ws.ledger.initialise(
            config.to_json(),
            train.label_names,
            (
                {"id": i, "position": n, "label": int(y), "subject": subj, "text": t, "shard": a[0], "slice": a[1]}
                for n, (i, t, y, subj, a) in enumerate(zip(train.ids, train.texts, train.labels, train.subjects, assignment))
            ),
            (
                {"id": i, "position": n, "label": int(y), "subject": subj, "text": t}
                for n, (i, t, y, subj) in enumerate(zip(val.ids, val.texts, val.labels, val.subjects))
            ) if val is not None else [],
            {shard: sequences for shard in range(plan.shards)},
        )
        self.config, self.ws_, self.classes_ = config, ws, np.array(train.label_names)
        self._backbone, self._ensemble = backbone, None
        from .train.trainer import trie

        self._train(trie(sequences), range(plan.shards), progress)
        version, body = ws.ledger.refresh_manifest("fit")
        ws.write_served(version, body)
        return self

    def _runner(self):
        from .train.trainer import StageRunner

        runner = StageRunner(self._backbone or self._load_backbone(), self.config, len(self.classes_))
        records = self.ws_.ledger.records("train") + self.ws_.ledger.records("validation")
        live = [r for r in records if r.text is not None]
        runner.add_records([r.id for r in live], [r.text for r in live], [r.label for r in live])
        runner.set_validation([r.id for r in live if r.split == "validation"])
        return runner

    def _load_backbone(self):
        from .train.backbone import load_backbone

        self._backbone = load_backbone(self.config.train.model)
        return self._backbone

    def _train(self, prefixes: Sequence[tuple[int, ...]], shards, progress: Progress | None,
               parent_states: dict | None = None) -> list[str]:
        """Train ``prefixes`` for each shard on the current slice versions; register checkpoints."""
        from .store.checkpoints import save_checkpoint
        from .train.seeds import prefix_key
        from .train.trainer import SliceData

        runner = self._runner()
        versions = self.ws_.ledger.current_slice_versions()
        created: list[str] = []
        slices_by_shard = {
            shard: {sl: SliceData(sv.id, tuple(self.ws_.ledger.slice_member_ids(sv.id))) for (sh, sl), sv in versions.items() if sh == shard}
            for shard in shards
        }
        total = sum(runner.stage_work(prefixes, slices_by_shard[s]) for s in shards)
        for shard in shards:
            slices = slices_by_shard[shard]

            def on_checkpoint(spec, result, lineage, shard=shard):
                cid = f"s{shard}-{prefix_key(spec.prefix).replace(',', '.')}-{uuid.uuid4().hex[:8]}"
                path = self.ws_.checkpoint_path(shard, cid)
                meta = {"shard": shard, "prefix": prefix_key(spec.prefix), "stage": spec.stage, "seed": spec.seed,
                        "threads": self.config.train.threads, "config_sha256": self.config.digest()}
                digest = save_checkpoint(path, result.state, meta)
                parent = self._current_checkpoint(shard, spec.prefix[:-1]) if spec.stage > 1 else None
                self.ws_.ledger.register_checkpoint(
                    lineage=lineage, id=cid, shard=shard, prefix=prefix_key(spec.prefix), stage=spec.stage,
                    parent_id=parent, path=self.ws_.relative(path), sha256=digest, seed=str(spec.seed),
                    threads=self.config.train.threads, n_examples=result.n_examples,
                    val_accuracy=result.val_accuracy, seconds=result.seconds,
                )
                created.append(cid)
                log.info("shard %d prefix %s: val acc %s (%.1fs)", shard, spec.prefix, result.val_accuracy, result.seconds)

            on_step = (lambda n: progress("training", n, total)) if progress else None
            runner.train_prefixes(shard, prefixes, slices, on_checkpoint,
                                  parent_states=(parent_states or {}).get(shard), on_step=on_step)
        return created

    def _current_checkpoint(self, shard: int, prefix: tuple[int, ...]) -> str:
        from .train.seeds import prefix_key

        key = prefix_key(prefix)
        ids = [c.id for c in self.ws_.ledger.checkpoints() if c.shard == shard and c.prefix == key]
        return ids[-1]

    # -- predict ----------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Ensemble class probabilities [n, n_classes] from the live shards' served checkpoints."""
        texts = _check_texts(texts)
        ens = self.ensemble_
        self._sync()
        return ens.predict_proba(texts)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Predicted label names."""
        return self.classes_[self.predict_proba(texts).argmax(-1)]

    def score(self, data: Any) -> float:
        """Accuracy of the served ensemble on labelled data."""
        rs: RecordSet = to_records(data, label_names=list(self.classes_))
        pred = self.predict_proba(list(rs.texts)).argmax(-1)
        return float((pred == np.array(rs.labels)).mean())

    # -- forget -----------------------------------------------------------------------
    def forget(self, record_ids: Sequence[str] | None = None, subject: str | None = None) -> Receipt:
        """Forget records (or all records of a subject): durable, exact, milliseconds.

        Returns the receipt; the same request again returns the original receipt.
        """
        self._check_fitted()
        start = time.perf_counter()
        receipt = record_forget(self.ws_.ledger, record_ids=record_ids, subject=subject)
        # idempotent file steps, also on a repeated request (a retry after a failed file step)
        version, body = self.ws_.ledger.latest_manifest()
        served = self.ws_.read_served()
        if served is None or served.get("version") != version:
            self.ws_.write_served(version, body)
        if getattr(self, "_ensemble", None) is not None:
            self._sync()
        self.ws_.purge_tainted()
        log.info("forget %s applied in %.1f ms", receipt.request_id, 1000 * (time.perf_counter() - start))
        return receipt

    def receipts(self) -> list[Receipt]:
        self._check_fitted()
        return receipts(self.ws_.ledger)

    # -- status / audit ---------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Shards, sequences, served prefix per shard, deletions and checkpoints."""
        self._check_fitted()
        ledger = self.ws_.ledger
        version, body = ledger.latest_manifest()
        plan = self.config.plan
        served = {k: (0 if v is None else v["stage"]) for k, v in body["shards"].items()}
        return {
            "workspace": str(self.ws_.path),
            "shards": plan.shards, "slices": plan.slices, "budget": plan.budget, "selection": plan.selection,
            "sequences": {str(k): [list(s) for s in v] for k, v in ledger.sequences().items()},
            "manifest_version": version,
            "served": served,
            "served_detail": body["shards"],
            "live_shards": sum(1 for v in served.values() if v > 0),
            "deleted_records": len(ledger.deleted_ids()),
            "requests": len(receipts(ledger)),
            "checkpoints": len(ledger.checkpoints()),
            "classes": list(self.classes_),
        }

    def audit(self) -> AuditReport:
        self._check_fitted()
        return audit(self.ws_)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise DataError("predict expects a list of texts, not a single string; wrap it in a list")
    out = list(texts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str)]
    if bad:
        raise DataError(f"texts must be strings; item(s) {bad[:5]} are not")
    return out
