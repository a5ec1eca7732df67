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

import hashlib
import logging
from dataclasses import replace
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .audit import AuditReport, audit
from .config import S3TConfig
from .data import RecordSet, to_records
from .errors import ConfigError, DataError, NotFittedError
from .forget import Receipt, receipts, record_forget
from .generative import GenerativeMixin
from .plan import place
from .plan.placement import shard_sequences
from .tasks import task_spec
from .store.workspace import Workspace

log = logging.getLogger("s3t")
_SYNC_LOCK = threading.RLock()

Progress = Callable[[str, int, int], None]  # (description, done increment, total) callbacks


class S3T(GenerativeMixin):
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
        with _SYNC_LOCK:
            return self._build_ensemble()

    def _build_ensemble(self):
        if getattr(self, "_ensemble", None) is None:
            from .serve.ensemble import Ensemble
            from .train.backbone import load_backbone, set_determinism
            from .train.device import resolve_device, same_device

            set_determinism(self.config.train.threads)
            device = resolve_device(self.config.serve.device)
            if getattr(self, "_backbone", None) is None or not same_device(self._backbone.device, device):
                self._backbone = load_backbone(self.config.train.model, self.config.train.task, device)
            self._ensemble = Ensemble(self._backbone, self.config, len(self.classes_))
            if self.config.serve.standby:
                from .serve.standby import Standby

                self._ensemble.standby = Standby(self._ensemble, self.ws_.ledger.fallbacks, self._load_state)
            self._sync()
            self._warm_forget()
        return self._ensemble

    def _warm_forget(self) -> None:
        """One dry-run forget once serving is ready: the first real request then finds its statements
        compiled and the ledger's pages cached (cold, it took 3-5x a warm one). Changes nothing."""
        rid = self.ws_.ledger.live_training_record()
        if rid is None:
            return
        start = time.perf_counter()
        try:
            record_forget(self.ws_.ledger, record_ids=[rid], dry_run=True)
        except Exception as exc:  # a warm-up must never stop serving; the real forget reports real errors
            log.warning("forget warm-up skipped: %s", exc)
            return
        log.debug("forget path warmed in %.1f ms", 1000 * (time.perf_counter() - start))

    def _load_state(self, checkpoint_id: str):
        from .store.checkpoints import load_checkpoint

        c = self.ws_.ledger.checkpoint(checkpoint_id)
        state, _ = load_checkpoint(self.ws_.resolve(c.path), sha256=c.sha256)
        return state

    def _sync(self, version: int | None = None, body: dict | None = None) -> None:
        """Swap the in-memory ensemble to the ledger's latest manifest, or to ``version``/``body``
        when the caller has just committed it (thread-safe; never goes back to an older version)."""
        with _SYNC_LOCK:
            if version is None:
                version, body = self.ws_.ledger.latest_manifest()
            if version > self._ensemble.manifest_version:
                self._ensemble.sync(version, body, self._load_state)
                if self._ensemble.standby is not None:
                    self._ensemble.standby.request()  # pre-build what the next deletion could switch to

    # -- fit --------------------------------------------------------------------------
    def fit(self, data: Any, validation: Any = None, progress: Progress | None = None,
            subject_priors: Mapping[str, float] | None = None) -> "S3T":
        """Shard, slice, order and train every sequence's stages; serve the full prefixes.

        ``data``/``validation``: a RecordSet, pandas DataFrame, HF Dataset, list of dicts
        or a CSV/JSONL path with ``text``, ``label`` and optional ``id``/``subject``.
        ``subject_priors``: deletion likelihood per subject (for ``selection`` 'bms' or
        'bms_relaxed'): summed into each slice's prior after placement, and each shard's
        sequences are selected for its own slices (:func:`s3t.plan.placement.slice_priors`).
        """
        config = self.config or S3TConfig()
        task = task_spec(config.train.task)
        train = task.to_records(data)
        # rows without ids get position ids (s3t.data.records.derived_id): row-N, and val-N for validation
        val = task.to_records(validation, label_names=train.label_names, id_prefix="val-") if validation is not None else None
        plan = config.plan
        if subject_priors is not None:  # checked before anything is written
            if plan.selection == "cyclic":
                raise ConfigError("subject_priors need plan.selection 'bms' or 'bms_relaxed' (cyclic ignores priors)")
            if plan.priors is not None:
                raise ConfigError("give per-slice plan.priors or subject_priors, not both")
            unknown = sorted(set(subject_priors) - {s for s in train.subjects if s is not None})
            if unknown:
                raise DataError(f"subject_priors name subjects the training data does not hold: {unknown[:5]}")
        if len(train) < plan.shards * plan.slices:
            raise DataError(f"{len(train)} training records cannot fill {plan.shards} shards x {plan.slices} slices")
        if val is not None and set(val.ids) & set(train.ids):
            both = sorted(set(val.ids) & set(train.ids))
            raise DataError(f"validation ids overlap training ids ({', '.join(both[:3])}); give disjoint sets (a RecordSet "
                            "built from rows without ids: to_records(validation, id_prefix='val-'), or pass the rows)")

        from .train.backbone import load_backbone
        from .train.layers import layer_groups

        backbone = load_backbone(config.train.model, config.train.task, config.train.device)
        layer_groups(backbone.n_layers, plan.slices)  # validate before writing anything
        ws = Workspace(self.workspace, db_url=self.db, create=True)
        if ws.ledger.initialised:
            if not ws.ledger.latest_manifest()[0]:
                raise DataError(
                    f"workspace {ws.path} holds a fit that was interrupted before it finished; finish it with "
                    f"`s3t retrain -w {ws.path}` (or S3T.load(path).retrain()): the stages already trained are kept "
                    "and the rest are trained exactly as an uninterrupted fit would")
            raise DataError(f"workspace {ws.path} already holds a trained plan; use a new workspace or S3T.load()")
        placed = place(list(train.ids), list(train.subjects), plan.shards, plan.slices, plan.seed, plan.placement)
        assignment = placed.pairs
        if plan.placement != placed.placement:  # the workspace records what "auto" chose
            config = replace(config, plan=replace(plan, placement=placed.placement))
            plan = config.plan
        lo, hi = placed.spread
        log.info("placement %s: slice sizes %d..%d records", placed.placement, lo, hi)
        for subj, pieces in placed.split:
            log.warning("subject %r holds more records than a slice and is split over %d slices (forgetting it cuts "
                        "all of them)", subj, pieces)
        self.placement_ = placed.report()
        per_shard, priors = shard_sequences(placed, list(train.subjects), plan.selection, plan.shards, plan.slices,
                                            plan.budget, plan.priors, subject_priors)
        if priors is not None:
            self.placement_["slice_priors"] = {str(sh): [round(x, 6) for x in q] for sh, q in priors.items()}
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
            per_shard,
        )
        self.config, self.ws_, self.classes_ = config, ws, np.array(train.label_names)
        self._backbone, self._ensemble = backbone, None
        from .train.trainer import trie

        self._train({sh: trie(seqs) for sh, seqs in per_shard.items()}, range(plan.shards), progress)
        ws.ledger.refresh_manifest("fit")
        ws.sync_served()
        return self

    def _load_backbone(self):
        from .train.backbone import load_backbone

        self._backbone = load_backbone(self.config.train.model, self.config.train.task, self.config.train.device)
        return self._backbone

    def _jobs(self, prefixes: Sequence[tuple[int, ...]] | Mapping[int, Sequence[tuple[int, ...]]], shards,
              parents: dict | None = None) -> list:
        """One job per shard: its prefixes (the same for all, or per shard), current slice
        versions, texts and validation records."""
        from .train.jobs import ShardJob
        from .train.trainer import SliceData

        ledger = self.ws_.ledger
        versions = ledger.current_slice_versions()
        records = {r.id: r for r in ledger.records("train") + ledger.records("validation") if r.text is not None}
        validation = scoring_subset([i for i, r in records.items() if r.split == "validation"], self.config.train.val_limit)
        jobs = []
        for shard in shards:
            # a record forgotten after its slice version was built has no text any more: leave it
            # out; that version is tainted, so nothing trained on it is ever served
            slices = {sl: SliceData(sv.id, tuple(i for i in ledger.slice_member_ids(sv.id) if i in records))
                      for (sh, sl), sv in versions.items() if sh == shard}
            needed = {i for sd in slices.values() for i in sd.record_ids} | set(validation)
            jobs.append(ShardJob(
                workspace=str(self.ws_.path), config=self.config.to_dict(), shard=shard,
                prefixes=tuple(prefixes[shard] if isinstance(prefixes, Mapping) else prefixes),
                slices=slices, records={i: (records[i].text, records[i].label) for i in needed},
                validation_ids=validation, n_labels=len(self.classes_), parents=(parents or {}).get(shard, {}),
            ))
        return jobs

    def _train(self, prefixes: Sequence[tuple[int, ...]], shards, progress: Progress | None,
               parents: dict | None = None, on_job=None) -> list[str]:
        """Train ``prefixes`` for each shard (in worker processes when there are cores to spare).

        Workers only write checkpoint files (into staging); each is re-hashed, registered in
        the ledger, then moved into place, so a crashed worker never leaves a registered
        half-checkpoint and an unregistered file never outlives recovery. ``on_job()`` runs after
        each job's checkpoints are registered and in place.
        """
        from .errors import IntegrityError
        from .store.atomic import sha256_file
        from .train.jobs import run_jobs

        jobs = self._jobs(prefixes, shards, parents)
        total = sum(j.work() for j in jobs)
        on_step = (lambda n: progress("training", n, total)) if progress else None
        created: list[str] = []
        # this process's training work, by kind (wall seconds of the stages' own timers)
        timings = self.__dict__.setdefault("train_timings_", {"checkpoints": 0, "stage_seconds": 0.0,
                                                                "validation_seconds": 0.0})
        in_process = self._backbone if getattr(self, "_backbone", None) is not None else None
        with self.ws_.training_lock():
            for trained in run_jobs(jobs, self.config.train, on_step=on_step, backbone=in_process):
                for c in trained:  # parents first
                    if sha256_file(self.ws_.resolve(c.staging)) != c.sha256:
                        raise IntegrityError(f"checkpoint {c.id} changed between training and registration")
                    fields = {k: v for k, v in c.__dict__.items()
                              if k not in ("lineage", "staging", "val_seconds", "val_scores")}
                    self.ws_.ledger.register_checkpoint(lineage=list(c.lineage), val_scores=c.val_scores, **fields)
                    self.ws_.publish(c.staging, c.path)  # registered first: recovery finishes the move
                    created.append(c.id)
                    timings["checkpoints"] += 1
                    timings["stage_seconds"] += c.seconds
                    timings["validation_seconds"] += c.val_seconds
                    log.info("shard %d prefix %s: val acc %s (%.1fs)", c.shard, c.prefix, c.val_accuracy, c.seconds)
                if on_job is not None:  # e.g. progressive restore: serve what this job registered
                    on_job()
            self.ws_.sweep_staging()  # files of retried or failed attempts
        return created

    # -- predict ----------------------------------------------------------------------
    def _require_task(self, task: str, method: str, instead: str) -> None:
        if self.config.train.task != task:
            raise ConfigError(f"{method}() serves task {task!r}; this model's task is {self.config.train.task!r}: "
                              f"use {instead}")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Ensemble class probabilities [n, n_classes] from the live shards' served checkpoints."""
        self._check_fitted()
        self._require_task("classification", "predict", "generate(prompts)")
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
    def forget(self, record_ids: Sequence[str] | None = None, subject: str | None = None,
               dry_run: bool = False) -> Receipt:
        """Forget records (or all records of a subject): durable, exact, milliseconds.

        When this returns, the deletion and the new served manifest are committed (fsynced)
        and the served ensemble no longer uses any checkpoint that saw the records. The file
        steps (erasing the cut checkpoints' files, rewriting the ``served.json`` mirror) follow
        on a background thread in request order; :meth:`flush` waits for them, and recovery
        finishes them if the process dies first. Returns the receipt; the same request again
        returns the original receipt.

        ``dry_run=True`` previews the request: the receipt says which records, which shards and
        which served prefixes it would change (``receipt.dry_run`` is set), and nothing is
        stored or swapped.
        """
        self._check_fitted()
        start = time.perf_counter()
        if dry_run:
            receipt = record_forget(self.ws_.ledger, record_ids=record_ids, subject=subject, dry_run=True)
        else:  # concurrent forgets of this process share one commit (group commit); a lone one waits for nothing
            receipt = self._forget_group().forget(record_ids, subject)
        if receipt.dry_run:
            return receipt
        if receipt.created:  # the manifest this request committed: no need to read it back
            version, body = receipt.body["manifest_version"], receipt.manifest
            newest = self._group.newest  # its batch's last one: one swap for the batch, not one per request
            if newest[0] > version:
                version, body = newest
            if getattr(self, "_ensemble", None) is not None:
                self._sync(version, body)
            self._file_steps().submit_merged(self._apply_files, receipt.cut_paths)
        else:  # a retry: finish any file step an earlier attempt left undone, now
            self.flush()
            version, body = self.ws_.sync_served()
            if getattr(self, "_ensemble", None) is not None:
                self._sync(version, body)
            self.ws_.purge_tainted()
            self.ws_.erase_residue()
        log.info("forget %s applied in %.1f ms", receipt.request_id, 1000 * (time.perf_counter() - start))
        return receipt

    def _forget_group(self):
        from .forget import ForgetGroup

        with _SYNC_LOCK:
            if getattr(self, "_group", None) is None or self._group.ledger is not self.ws_.ledger:
                self._group = ForgetGroup(self.ws_.ledger, max_batch=self.config.serve.forget_batch)
        return self._group

    def _file_steps(self):
        from .store.file_steps import FileSteps

        if getattr(self, "_files", None) is None:
            self._files = FileSteps()
        return self._files

    def _apply_files(self, cut_paths: Sequence[str]) -> None:
        """A committed forget's file steps: the mirror (the ledger's latest manifest), then the cut files."""
        self.ws_.sync_served()
        self.ws_.erase_files(cut_paths)
        self.ws_.erase_residue(min_interval=self._erasure_interval())

    def _erasure_interval(self) -> float:
        """``serve.erasure_interval``, or its default: 1 s on PostgreSQL (a VACUUM FULL per burst of a
        forget storm would keep both tables under an exclusive lock most of the time), 0 on SQLite."""
        every = self.config.serve.erasure_interval
        if every is not None:
            return float(every)
        return 1.0 if self.ws_.ledger.dialect == "postgresql" else 0.0

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the file steps of earlier forgets are done (cut checkpoint files erased,
        ``served.json`` rewritten). True when nothing is left pending."""
        files = getattr(self, "_files", None)
        return True if files is None else files.flush(timeout)

    def retrain(self, progress: Progress | None = None, restore: str | None = None):
        """Retrain every cut suffix without the deleted records and swap it in (see ``s3t.retrain``);
        ``restore``: 'progressive' or 'naive' (default: ``config.serve.restore``)."""
        from .retrain import retrain

        self._check_fitted()
        if getattr(self, "_backbone", None) is None:
            self._load_backbone()
        return retrain(self, progress, restore=restore or self.config.serve.restore)

    def verify(self, request_id: str, progress: Progress | None = None):
        """Exactness certificate: retrain the request's shards from scratch without the deleted
        records and compare every live checkpoint bit for bit (see ``s3t.retrain.verify``)."""
        from .certificate import save_verification
        from .retrain import verify

        self._check_fitted()
        report = verify(self, request_id, progress)
        save_verification(self.ws_.path, report.to_dict())  # a certificate of the request cites it
        return report

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
            "placement": plan.placement,
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
        self.flush()
        return audit(self.ws_)


def scoring_subset(validation_ids: Sequence[str], limit: int) -> tuple[str, ...]:
    """The validation records that score checkpoints: ``limit`` of them (0 = all), in their order.

    Not the first ``limit`` rows (a split lists rows in file order, and files are often sorted by
    label) but the ``limit`` ids that come first by a hash of the id: a spread sample that depends
    only on the set of ids, and that keeps its members when other records leave it.
    """
    ids = list(validation_ids)
    if not limit or len(ids) <= limit:
        return tuple(ids)
    keep = set(sorted(ids, key=lambda i: hashlib.blake2b(i.encode(), digest_size=8).digest())[:limit])
    return tuple(i for i in ids if i in keep)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise DataError("predict expects a list of texts, not a single string; wrap it in a list")
    out = list(texts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str)]
    if bad:
        raise DataError(f"texts must be strings; item(s) {bad[:5]} are not")
    return out
