"""Group commit of concurrent forgets (issue 19, item 3): one transaction for what queued during the
previous commit, each request still its own receipt in the chain; a refused request fails alone."""

from __future__ import annotations

import threading
import time

import pytest

from s3t import forget as forget_module
from s3t.errors import UnknownRecordError
from s3t.forget import verify_chain
from tests.fitted_copy import fitted_template, fitted_ws  # noqa: F401  (fixtures)
from tests.service.conftest import train_ids


def hold_first_commit(monkeypatch, seconds: float = 0.5) -> tuple[list[int], threading.Event]:
    """Make the first group commit last ``seconds`` so that later forgets queue behind it; returns
    the sizes of the commits made (filled in as they run) and an event set when the first started."""
    real = forget_module.record_forgets
    sizes: list[int] = []
    first_started = threading.Event()

    def slow_first(ledger, requests, dry_run=False):
        sizes.append(len(requests))
        if len(sizes) == 1:
            first_started.set()
            time.sleep(seconds)  # the others arrive while the first commit runs
        return real(ledger, requests, dry_run=dry_run)

    monkeypatch.setattr(forget_module, "record_forgets", slow_first)
    return sizes, first_started


def test_forgets_that_queue_behind_a_commit_share_the_next_one(fitted_ws, monkeypatch):
    est = fitted_ws
    ids = [i for sh in (0, 1) for sl in range(3) for i in train_ids(est, sh, sl)[:2]]  # 12 records
    sizes, first_started = hold_first_commit(monkeypatch)
    results: dict[str, object] = {}

    def run(rid):
        try:
            results[rid] = est.forget(record_ids=[rid])
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            results[rid] = exc

    lead = threading.Thread(target=run, args=(ids[0],))
    lead.start()
    assert first_started.wait(10)
    rest = [threading.Thread(target=run, args=(rid,)) for rid in ids[1:]] + [
        threading.Thread(target=run, args=("no-such-record",))]
    for t in rest:
        t.start()
    for t in [lead, *rest]:
        t.join(30)
    assert sizes[0] == 1 and sum(sizes) == 13 and len(sizes) < 13  # the 12 queued ones were grouped
    assert isinstance(results["no-such-record"], UnknownRecordError)  # refused alone
    receipts = [results[r] for r in ids]
    assert all(r.created and r.body["record_ids"] == [rid] for r, rid in zip(receipts, ids))
    assert sorted(r.body["seq"] for r in receipts) == list(range(1, 13))
    assert len({r.body["manifest_version"] for r in receipts}) == 12  # each its own manifest version
    assert verify_chain(est.receipts()) == []
    est.flush()
    assert est.audit().ok
    assert sorted(est.ws_.ledger.deleted_ids()) == sorted(ids)


def test_a_lone_forget_commits_at_once_alone(fitted_ws, monkeypatch):
    est = fitted_ws
    calls: list[int] = []
    real = forget_module.record_forgets
    monkeypatch.setattr(forget_module, "record_forgets", lambda ledger, reqs, dry_run=False: calls.append(len(reqs))
                        or real(ledger, reqs, dry_run=dry_run))
    receipt = est.forget(record_ids=[train_ids(est, 0, 0)[0]])
    assert calls == [1] and receipt.created
    with pytest.raises(UnknownRecordError):
        est.forget(record_ids=["nope"])
    assert calls == [1, 1] and len(est.receipts()) == 1


def test_a_batch_swaps_the_served_ensemble_once_to_its_newest_manifest(fitted_ws, monkeypatch):
    """Seen failing before: every request of a batch swapped to its own manifest version, so a batch
    of 11 made up to 11 swaps (building members for versions the next request replaced at once)."""
    est = fitted_ws
    ens = est.ensemble_
    ens.standby.close()  # its builds are not swaps; keep the count to the request path
    ens.standby = None
    swaps: list[int] = []
    real_sync = ens.sync
    monkeypatch.setattr(ens, "sync", lambda version, body, load: swaps.append(version) or real_sync(version, body, load))
    ids = [i for sh in (0, 1) for sl in range(3) for i in train_ids(est, sh, sl)[:2]]  # 12 records, 2 shards
    sizes, first_started = hold_first_commit(monkeypatch)
    receipts = {}
    lead = threading.Thread(target=lambda: receipts.setdefault(ids[0], est.forget(record_ids=[ids[0]])))
    lead.start()
    assert first_started.wait(10)
    rest = [threading.Thread(target=lambda rid=rid: receipts.setdefault(rid, est.forget(record_ids=[rid])))
            for rid in ids[1:]]
    for t in rest:
        t.start()
    for t in [lead, *rest]:
        t.join(30)
    assert len(receipts) == 12 and sizes[0] == 1 and len(sizes) < 12
    assert len(swaps) <= len(sizes), (swaps, sizes)  # at most one swap per commit
    newest = max(r.body["manifest_version"] for r in receipts.values())
    assert swaps[-1] == newest and ens.manifest_version == newest
    assert ens.manifest_version == est.ws_.ledger.latest_manifest()[0]
    est.flush()
    assert est.audit().ok
