"""Fixtures shared by the forget / audit / ledger tests: one fit per session, a fresh copy per test.

Fitting the tiny S3T takes seconds; the tests that mutate a workspace each get a byte copy of
one fitted workspace instead (the default ledger lives inside the workspace, so a copy is independent).
Import the fixtures into a test module: ``from tests.fitted_copy import fitted_template, fitted_ws``.
The helpers below compute expectations from the raw ledger rows, independently of the serving rule.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from s3t.store.schema import DeletionRequest, Manifest, Receipt as ReceiptRow
from tests.conftest import tiny_config, toy_rows


@dataclass(frozen=True)
class Template:
    path: Path
    model: str
    train: list[dict]
    val: list[dict]

    @property
    def texts(self) -> dict[str, str]:
        return {r["id"]: r["text"] for r in self.train + self.val}


# A session fixture imported into several modules gets one cache per module; this dict makes
# the fit happen once per session (keyed by the session's tiny model directory).
_TEMPLATES: dict[str, Template] = {}


@pytest.fixture(scope="session")
def fitted_template(tmp_path_factory, tiny_model) -> Template:
    """A fitted workspace (m=2, L=3, B=3) on toy data whose validation records also have subjects."""
    from s3t import S3T

    if tiny_model not in _TEMPLATES:
        root = tmp_path_factory.mktemp("fitted-template")
        train, val = toy_rows(120, seed=1, subjects=10), toy_rows(40, seed=2, subjects=10)
        est = S3T(tiny_config(tiny_model), workspace=root / "ws").fit(train, validation=val)
        est.ws_.ledger.close()
        _TEMPLATES[tiny_model] = Template(root / "ws", tiny_model, train, val)
    return _TEMPLATES[tiny_model]


def copy_workspace(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)  # the default ledger lives inside the workspace: a copy is independent
    return dest


@pytest.fixture
def fitted_ws(tmp_path, fitted_template):
    """A loaded S3T on a private copy of the template workspace."""
    from s3t import S3T

    est = S3T.load(copy_workspace(fitted_template.path, tmp_path / "ws"))
    assert str(tmp_path) in est.ws_.ledger.url  # never the shared template
    yield est
    est.ws_.ledger.close()


# -- independent expectations (from the raw ledger rows, not the serving rule) ----------------------


def record_in(est, shard: int, sl: int, n: int = 0) -> str:
    """The n-th training record id placed in (shard, slice), per the ledger."""
    ids = [r.id for r in est.ws_.ledger.records("train") if r.shard == shard and r.slice == sl]
    return ids[n]


def expected_entry(est, shard: int, deleted: set[str]):
    """(stage, sequence, prefix) the serving rule must pick for ``shard``, computed from the raw ledger."""
    led = est.ws_.ledger
    where = {r.id: (r.shard, r.slice) for r in led.records("train")}
    bad = {where[i][1] for i in deleted if where[i][0] == shard}
    acc = {c.prefix: c.val_accuracy for c in led.checkpoints() if c.shard == shard}
    candidates = []
    for j, order in enumerate(led.sequences()[shard]):
        n = next((k for k, sl in enumerate(order) if sl in bad), len(order))
        if n:
            prefix = ",".join(map(str, order[:n]))
            a = acc[prefix]
            candidates.append((n, a if a is not None else -1.0, -j, prefix))
    if not candidates:
        return None
    n, _, negj, prefix = max(candidates)
    return n, -negj, prefix


def snapshot(est) -> dict:
    """Everything a forget could change (after ``est``'s own queued file steps are done)."""
    assert est.flush(timeout=60), "file steps still pending after 60 s"
    led, ws = est.ws_.ledger, est.ws_
    with led.Session() as s:
        requests = sorted(s.scalars(select(DeletionRequest.id)))
        receipt_rows = [(r.request_id, r.seq, r.hash) for r in s.scalars(select(ReceiptRow).order_by(ReceiptRow.seq))]
        n_manifests = s.scalar(select(func.count()).select_from(Manifest))
    return {
        "manifest": led.latest_manifest(),
        "n_manifests": n_manifests,
        "deleted": sorted(led.deleted_ids()),
        "requests": requests,
        "receipts": receipt_rows,
        "texts": {r.id: r.text for r in led.records("train") + led.records("validation")},
        "purged": sorted(c.id for c in led.checkpoints() if c.purged),
        "files": sorted(str(p.relative_to(ws.path)) for p in ws.path.rglob("*.safetensors")),
        "served_json": ws.read_served(),
    }
