"""Data of the operator dashboard, assembled from the ledger (one read transaction) and the model.

* The grid: per shard, per sequence, per stage, the state of the current checkpoint —
  served (in the served checkpoint's lineage), trained, cut (lineage holds a deleted record),
  retraining (cut, and a request that cut it is being retrained), missing.
* The deletion log: receipts, each with its own hash-chain check and its request's state.
* History per manifest version: deletions so far, mean served-member accuracy (ledger),
  measured ensemble accuracy (:class:`AccuracyCache`), and remaining deletion capacity
  m·L·H(c) with c the (shard, first slice) pairs whose stage-1 checkpoint was clean then —
  the coupon-collector of :func:`s3t.plan.deletion_rate` applied to the remaining coupons.
  It counts subjects (``capacity_unit``) when the plan places by subject and the training
  records have subjects (one subject deletion cuts one slice), else records.

Nothing here writes the ledger; the accuracy cache is a small JSON file in the workspace,
filled lazily (never on the /forget path).
"""

from __future__ import annotations

import json
import logging
import threading
from bisect import bisect_right
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import func, select

from .. import errors
from ..estimator import scoring_subset
from ..forget import Receipt, chain_problems
from ..plan import deletion_rate, harmonic
from ..serve.rule import valid_prefix
from ..store.atomic import atomic_write_bytes
from ..store.ledger import utcnow
from ..store.schema import Deletion, DeletionRequest, Manifest, Receipt as ReceiptRow, Record, SliceMember
from . import dashboard_schemas as ds
from .schemas import WorkerStatus

log = logging.getLogger("s3t")

ACCURACY_FILE = "dashboard-accuracy.json"
MAX_CACHED = 1000  # manifest versions kept in the accuracy cache
MAX_VALIDATION = 2000  # validation records the ensemble accuracy is measured on (the scoring subset, capped)
MAX_LOG = 200  # receipts listed (the whole chain is verified)
MAX_HISTORY = 500  # manifest versions in the history
MAX_IDS_SHOWN = 20
_Q_LIVE_VALIDATION = (select(func.count()).select_from(Record)
                      .where(Record.split == "validation", Record.text.is_not(None)))


class AccuracyCache:
    """Validation accuracy of the served ensemble per manifest version, measured lazily and
    persisted to ``WORKSPACE/dashboard-accuracy.json`` (bounded to the newest versions).

    Every value is kept with what it was measured on: ``measured_on`` = the number of live
    validation records then. Validation rows are only ever erased (a subject forget erases its
    own), so a smaller count means rows the values were measured on are gone: :meth:`check` then
    drops them all, from the file too, and the next measurement is made without those rows. The
    file holds numbers only (accuracies and that count), nothing else derived from any row.
    """

    def __init__(self, path: Path, limit: int = MAX_CACHED):
        self.path, self.limit = Path(path), limit
        self.lock = threading.Lock()
        self.values: dict[int, Optional[float]] = {}
        self.measured_on: Optional[int] = None  # live validation records the values were measured on
        try:
            raw = json.loads(self.path.read_text())
            self.values = {int(k): (None if v is None else float(v)) for k, v in raw.get("accuracy", {}).items()}
            on = raw.get("measured_on", {}).get("live_validation")
            self.measured_on = None if on is None else int(on)
        except FileNotFoundError:
            pass
        except (ValueError, AttributeError, TypeError) as exc:
            log.warning("ignoring unreadable dashboard accuracy cache %s: %s", self.path, exc)
            self.values, self.measured_on = {}, None

    def snapshot(self) -> dict[int, Optional[float]]:
        with self.lock:
            return dict(self.values)

    def check(self, live_validation: int) -> None:
        """Drop every value measured on another set of live validation rows (rows since erased), or
        on an unrecorded one, from memory and the file."""
        with self.lock:
            self._check(live_validation)

    def _check(self, live: int) -> None:
        if live != self.measured_on:
            dropped = bool(self.values)
            self.values, self.measured_on = {}, live
            if dropped or self.path.exists():
                self._save()

    def measure(self, model) -> tuple[Optional[int], Optional[float], int]:
        """(manifest version, accuracy, n records) of the served ensemble; measured once per version."""
        texts, labels, live = validation_set(model)
        with self.lock:  # one measurement at a time; others wait and then read the cache
            self._check(live)
            try:
                ens = model.ensemble_
            except errors.S3TError as exc:
                log.warning("dashboard: no ensemble to measure: %s", exc)
                return None, None, len(texts)
            model._sync()
            version = ens.manifest_version
            if version in self.values:
                return version, self.values[version], len(texts)
            if not texts or model.config.train.task != "classification":  # a chat model has no labels to predict
                return version, None, len(texts)
            try:
                pred = model.predict_proba(texts).argmax(-1)
                acc: Optional[float] = float(sum(int(p == y) for p, y in zip(pred, labels)) / len(labels))
            except errors.NoLiveModelError:
                acc = None
            if ens.manifest_version != version:  # swapped while measuring: measure again next time
                return version, None, len(texts)
            if live_validation(model) != live:  # a forget erased validation rows since they were read
                return version, None, len(texts)
            self.values[version] = acc
            for old in sorted(self.values)[: max(0, len(self.values) - self.limit)]:
                del self.values[old]
            self._save()
            return version, acc, len(texts)

    def _save(self) -> None:
        body = {"accuracy": {str(k): v for k, v in sorted(self.values.items())},
                "measured_on": {"live_validation": self.measured_on}}
        try:
            atomic_write_bytes(self.path, json.dumps(body).encode())
        except OSError as exc:  # a read-only workspace still gets a dashboard
            log.warning("could not write the dashboard accuracy cache %s: %s", self.path, exc)


def validation_set(model) -> tuple[list[str], list[int], int]:
    """The validation records that score checkpoints (``train.val_limit``), capped at MAX_VALIDATION:
    texts, labels, and the number of live validation records they were chosen from."""
    records = [r for r in model.ws_.ledger.records("validation") if r.text is not None]
    keep = set(scoring_subset([r.id for r in records], model.config.train.val_limit)[:MAX_VALIDATION])
    chosen = [r for r in records if r.id in keep]
    return [r.text for r in chosen], [int(r.label) for r in chosen], len(records)


def live_validation(model) -> int:
    """Validation records whose text is not erased (one COUNT)."""
    with model.ws_.ledger.Session() as s:
        return s.scalar(_Q_LIVE_VALIDATION)


def _chain_problems(chain: list[ReceiptRow]) -> list[list[str]]:
    """Per receipt row, its chain problems (:func:`s3t.forget.chain_problems`, plus the row's own seq)."""
    per = chain_problems([Receipt(json.loads(row.body), row.hash) for row in chain])
    for i, (row, problems) in enumerate(zip(chain, per), start=1):
        if row.seq != i and not any(p.startswith("sequence number") for p in problems):
            problems.append(f"sequence number {row.seq} != {i}")
    return per


def build(model, worker_status: WorkerStatus, pending: list[str], accuracy: AccuracyCache,
          measure: bool = True) -> ds.DashboardData:
    """Everything the dashboard shows (see the module docstring)."""
    if not measure:  # measure() checks the cache itself
        accuracy.check(live_validation(model))
    version_measured, acc_now, n_val = accuracy.measure(model) if measure else (None, None, 0)
    ledger, plan = model.ws_.ledger, model.config.plan
    with ledger.Session() as s:
        version, manifest = ledger.latest_manifest(s)
        chains = ledger.chains(s)
        checkpoints = {c.id: c for c in ledger.checkpoints(s)}
        lineage = ledger.lineage(s)
        deletions = s.execute(
            select(Deletion.record_id, Deletion.request_id, DeletionRequest.created_at)
            .join(DeletionRequest, DeletionRequest.id == Deletion.request_id)
        ).all()
        req_state = dict(s.execute(select(DeletionRequest.id, DeletionRequest.state)).all())
        sv_requests: dict[int, set[str]] = defaultdict(set)
        sv_taint: dict[int, str] = {}  # slice version -> first time a record of it was deleted
        for sv, req, at in s.execute(
            select(SliceMember.slice_version_id, Deletion.request_id, DeletionRequest.created_at)
            .join(Deletion, Deletion.record_id == SliceMember.record_id)
            .join(DeletionRequest, DeletionRequest.id == Deletion.request_id)
        ).all():
            sv_requests[sv].add(req)
            sv_taint[sv] = min(at, sv_taint.get(sv, at))
        chain_rows = list(s.scalars(select(ReceiptRow).order_by(ReceiptRow.seq)))
        manifests = list(s.execute(
            select(Manifest.version, Manifest.created_at, Manifest.reason, Manifest.body)
            .order_by(Manifest.version.desc()).limit(MAX_HISTORY)
        ).all())[::-1]
        seq_rows = ledger.sequences()
        unit = capacity_unit(plan, s)
        subject_first = _subject_first_deletions(s)

    grid, counts = _grid(model, chains, checkpoints, lineage, sv_requests, req_state, manifest, seq_rows)
    shards = {str(k): (0 if v is None else int(v["stage"])) for k, v in manifest["shards"].items()}
    ens = getattr(model, "_ensemble", None)
    out_of_service = {str(k): v for k, v in (ens.out_of_service.items() if ens is not None else [])}
    first = {(sh, seqs[j][0]) for sh, seqs in seq_rows.items() for j in range(len(seqs))}
    live_first = {(sh, seq_rows[sh][j][0]) for sh, ch in chains.items() for j, c in enumerate(ch)
                  if c and c[0] is not None and c[0].clean}
    m, L = plan.shards, plan.slices
    capacity = ds.Capacity(
        formula=f"m·L·H(m·min(B,L)) = {m}·{L}·H({m}·{min(plan.budget, L)})",
        expected_total=deletion_rate(m, L, plan.budget), first_slices=len(first),
        live_first_slices=len(live_first), remaining=m * L * harmonic(len(live_first)), capacity_unit=unit,
    )
    history = _history(manifests, deletions, chain_rows, checkpoints, lineage, sv_taint, m, L, accuracy.snapshot(),
                       subject_first)
    summary = ds.EnsembleSummary(
        manifest_version=version, shards=m, slices=L, budget=plan.budget, selection=plan.selection,
        live_shards=sum(1 for v in shards.values() if v > 0), served=shards,
        ensemble_size=len(ens.members) if ens is not None else 0, out_of_service=out_of_service,
        validation_accuracy=acc_now if version_measured == version else accuracy.snapshot().get(version),
        validation_records=n_val, deleted_records=len(deletions), requests=len(chain_rows),
        pending_retrains=pending, worker=worker_status,
    )
    per = _chain_problems(chain_rows)
    flat = [f"receipt {row.request_id}: {p}" for row, ps in zip(chain_rows, per) for p in ps]
    entries = []
    for row, problems in list(zip(chain_rows, per))[::-1][:MAX_LOG]:
        body = json.loads(row.body)
        entries.append(ds.LogEntry(
            seq=row.seq, request_id=row.request_id, created_at=body.get("created_at", ""),
            state=req_state.get(row.request_id), records=len(body.get("record_ids", [])),
            record_ids=body.get("record_ids", [])[:MAX_IDS_SHOWN], newly_deleted=body.get("newly_deleted", 0),
            subject=body.get("subject"), affected_shards=body.get("affected_shards", []),
            served_before=body.get("served_before", {}), served_after=body.get("served_after", {}),
            manifest_version=body.get("manifest_version", 0), hash=row.hash, prev_hash=body.get("prev_hash", ""),
            chain_ok=not problems, chain_problems=problems,
        ))
    states = Counter(req_state.values())
    return ds.DashboardData(
        generated_at=utcnow(), workspace=str(model.ws_.path), summary=summary, counts=counts, grid=grid,
        log=ds.DeletionLog(chain_ok=not flat, problems=flat[:20], total=len(chain_rows), entries=entries,
                           states={k: states.get(k, 0) for k in ("served-exact", "retraining", "retrained")}),
        capacity=capacity, history=history,
    )


def _grid(model, chains, checkpoints, lineage, sv_requests, req_state, manifest, seq_rows):
    counts = Counter({k: 0 for k in ds.CELL_STATES})
    ens = getattr(model, "_ensemble", None)
    grid = []
    for shard in sorted(chains):
        entry = manifest["shards"].get(str(shard))
        served_ids: set[str] = set()
        cid = entry["checkpoint"] if entry else None
        while cid is not None and cid in checkpoints and cid not in served_ids:  # the served lineage
            served_ids.add(cid)
            cid = checkpoints[cid].parent_id
        sequences = []
        for j, chain in enumerate(chains[shard]):
            order = list(seq_rows[shard][j])
            cells = []
            for k, view in enumerate(chain, start=1):
                cut_by: set[str] = set()
                if view is None:
                    state = "missing"
                elif not view.clean:
                    for sv in lineage.get(view.checkpoint_id, []):
                        cut_by |= sv_requests.get(sv, set())
                    state = "retraining" if any(req_state.get(r) == "retraining" for r in cut_by) else "cut"
                else:
                    state = "served" if view.checkpoint_id in served_ids else "trained"
                counts[state] += 1
                cells.append(ds.GridCell(
                    stage=k, slice=order[k - 1], state=state, checkpoint=view.checkpoint_id if view else None,
                    val_accuracy=view.val_accuracy if view else None, cut_by=sorted(cut_by),
                    head=bool(entry) and view is not None and view.checkpoint_id == entry["checkpoint"] and j == entry["sequence"],
                ))
            sequences.append(ds.GridSequence(index=j, order=order, valid_prefix=valid_prefix(chain), cells=cells))
        grid.append(ds.GridShard(
            shard=shard, served_stage=int(entry["stage"]) if entry else 0,
            served_sequence=entry["sequence"] if entry else None, served_checkpoint=entry["checkpoint"] if entry else None,
            val_accuracy=entry.get("val_accuracy") if entry else None,
            out_of_service=ens is not None and shard in ens.out_of_service, sequences=sequences,
        ))
    return grid, dict(counts)


def capacity_unit(plan, s) -> str:
    """'subjects' when the plan places by subject ('subject', or 'auto' — subject placement when the
    data has subjects) and some training record has a subject; else 'records'."""
    if getattr(plan, "placement", "record") not in ("subject", "auto"):
        return "records"
    has = s.scalar(select(Record.id).where(Record.split == "train", Record.subject.is_not(None)).limit(1))
    return "subjects" if has is not None else "records"


def _subject_first_deletions(s) -> list[str]:
    """Sorted first deletion time of each training subject (a record without a subject is its own)."""
    first: dict[str, str] = {}
    for rid, subject, at in s.execute(
        select(Deletion.record_id, Record.subject, DeletionRequest.created_at)
        .join(DeletionRequest, DeletionRequest.id == Deletion.request_id)
        .join(Record, Record.id == Deletion.record_id).where(Record.split == "train")
    ).all():
        key = f"s:{subject}" if subject is not None else f"r:{rid}"
        first[key] = min(at, first.get(key, at))
    return sorted(first.values())


def _history(manifests, deletions, chain_rows, checkpoints, lineage, sv_taint, m: int, L: int,
             measured: dict[int, Optional[float]], subject_first: Optional[list[str]] = None) -> list[ds.HistoryPoint]:
    deleted_at = sorted(at for _, _, at in deletions)
    request_at = sorted(json.loads(r.body).get("created_at", "") for r in chain_rows)
    # stage-1 checkpoints: (shard, first slice) -> [(registered at, first tainted at or None)]
    firsts: dict[tuple[int, int], list[tuple[str, Optional[str]]]] = defaultdict(list)
    for c in checkpoints.values():
        if c.stage == 1:
            svs = lineage.get(c.id, [])
            taints = [sv_taint[sv] for sv in svs if sv in sv_taint]
            firsts[(c.shard, int(c.prefix))].append((c.created_at, min(taints) if taints else None))
    out = []
    for version, created_at, reason, body_text in manifests:
        body: dict[str, Any] = json.loads(body_text)
        served = {k: (0 if v is None else int(v["stage"])) for k, v in body["shards"].items()}
        accs = [v["val_accuracy"] for v in body["shards"].values() if v is not None and v.get("val_accuracy") is not None]
        live = sum(1 for cs in firsts.values() if any(reg <= created_at and (t is None or t > created_at) for reg, t in cs))
        out.append(ds.HistoryPoint(
            manifest_version=version, created_at=created_at, reason=reason,
            deleted_records=bisect_right(deleted_at, created_at), requests=bisect_right(request_at, created_at),
            deleted_subjects=bisect_right(subject_first or [], created_at),
            served=served, mean_member_accuracy=(sum(accs) / len(accs)) if accs else None,
            ensemble_accuracy=measured.get(version), live_first_slices=live, remaining_capacity=m * L * harmonic(live),
        ))
    return out
