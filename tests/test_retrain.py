"""Background retraining and the exactness certificate (bit-identical to training from scratch)."""

from __future__ import annotations

import pytest

from s3t.errors import UnknownRecordError
from tests.fitted_copy import fitted_template, fitted_ws  # noqa: F401  (fixtures)


def one_record(est, shard: int, sl: int) -> str:
    return next(r.id for r in est.ws_.ledger.records("train") if r.shard == shard and r.slice == sl)


def test_retrain_restores_full_prefixes_and_verifies(fitted_ws):
    est = fitted_ws
    rid = one_record(est, 0, 1)
    receipt = est.forget(record_ids=[rid])
    assert receipt.after["0"] < 3
    assert est.ws_.ledger.request_state(receipt.request_id) == "served-exact"
    report = est.retrain()
    assert report.requests == [receipt.request_id]
    assert report.rebuilt_slices == [(0, 1)]
    assert report.served_after == {"0": 3, "1": 3}
    assert est.ws_.ledger.request_state(receipt.request_id) == "retrained"
    # only shard 0's cut stages were retrained: the 6 prefixes that contain slice 1
    retrained = [c for c in est.ws_.ledger.checkpoints() if c.id in set(report.checkpoints)]
    assert len(retrained) == 6 and all(c.shard == 0 and "1" in c.prefix.split(",") for c in retrained)
    # the new lineage does not hold the record
    assert est.audit().ok
    cert = est.verify(receipt.request_id)
    assert cert.ok, cert.mismatches
    assert cert.compared == 9  # every prefix of shard 0's trie, compared bit for bit


def test_verify_fails_when_a_deleted_record_is_smuggled_back(fitted_ws, monkeypatch):
    est = fitted_ws
    rid = one_record(est, 1, 0)
    text = next(r.text for r in est.ws_.ledger.records("train") if r.id == rid)
    label = next(r.label for r in est.ws_.ledger.records("train") if r.id == rid)
    receipt = est.forget(record_ids=[rid])

    original_jobs = type(est)._jobs

    def smuggling_jobs(self, prefixes, shards, parents=None):
        jobs = original_jobs(self, prefixes, shards, parents)
        out = []
        for job in jobs:
            slices = dict(job.slices)
            sd = slices[0]
            slices[0] = type(sd)(sd.version_id, (rid,) + sd.record_ids)  # the deleted record, back in
            out.append(type(job)(**{**job.__dict__, "slices": slices, "records": {**job.records, rid: (text, label)}}))
        return out

    monkeypatch.setattr(type(est), "_jobs", smuggling_jobs)
    est.retrain()
    monkeypatch.undo()
    cert = est.verify(receipt.request_id)
    assert not cert.ok
    assert cert.mismatches and all("shard 1" in m for m in cert.mismatches)


def test_verify_before_retrain_reports_pending(fitted_ws):
    est = fitted_ws
    receipt = est.forget(record_ids=[one_record(est, 0, 2)])
    cert = est.verify(receipt.request_id)
    assert not cert.ok and any("no live checkpoint" in m or "differs" in m for m in cert.mismatches)


def test_verify_unknown_request(fitted_ws):
    with pytest.raises(UnknownRecordError, match="req-nope"):
        fitted_ws.verify("req-nope")


@pytest.mark.parametrize("restore", ["naive", "progressive"])
def test_forget_during_retrain_is_not_lost(fitted_ws, monkeypatch, restore):
    """A deletion arriving while a retrain runs is never served; a naive retrain leaves it to
    the next retrain, a progressive one takes it into its next step."""
    est = fitted_ws
    first = est.forget(record_ids=[one_record(est, 0, 0)])
    late_id = one_record(est, 0, 2, )
    original_train = type(est)._train
    fired = []

    def train_and_forget(self, *args, **kwargs):
        out = original_train(self, *args, **kwargs)
        if not fired:
            fired.append(self.forget(record_ids=[late_id]))
        return out

    monkeypatch.setattr(type(est), "_train", train_and_forget)
    report = est.retrain(restore=restore)
    monkeypatch.undo()
    late = fired[0]
    assert est.audit().ok  # nothing served holds the late record
    if restore == "naive":
        assert est.ws_.ledger.request_state(first.request_id) in ("retraining", "retrained")
        assert est.ws_.ledger.request_state(late.request_id) == "served-exact"
    else:
        assert report.requests == [first.request_id, late.request_id]
        assert (0, 2) in report.rebuilt_slices
        assert est.ws_.ledger.request_state(late.request_id) == "retrained"
    est.retrain()
    assert est.status()["served"] == {"0": 3, "1": 3}
    assert est.verify(late.request_id).ok


def test_whole_slice_deleted_retrains_and_verifies(fitted_ws):
    """Forgetting every record of one slice leaves an empty slice version: retrain trains its
    stages on no records of that slice (as training does), and verify compares them bit for bit."""
    est = fitted_ws
    whole = [r.id for r in est.ws_.ledger.records("train") if r.shard == 0 and r.slice == 1]
    assert len(whole) > 1
    receipt = est.forget(record_ids=whole)
    assert receipt.after["0"] < 3
    report = est.retrain()
    assert report.rebuilt_slices == [(0, 1)]
    assert report.served_after == {"0": 3, "1": 3}
    assert est.ws_.ledger.request_state(receipt.request_id) == "retrained"
    current = est.ws_.ledger.current_slice_versions()
    assert current[(0, 1)].size == 0 and est.ws_.ledger.slice_member_ids(current[(0, 1)].id) == []
    retrained = {c.prefix: c for c in est.ws_.ledger.checkpoints() if c.id in set(report.checkpoints)}
    assert len(retrained) == 6 and all("1" in p.split(",") for p in retrained)
    assert retrained["1"].n_examples == 0  # stage 1 on the empty slice: no training steps
    sizes = {sl: sv.size for (sh, sl), sv in current.items() if sh == 0}
    for prefix, c in retrained.items():
        assert c.n_examples == sum(sizes[int(s)] for s in prefix.split(","))
    assert est.audit().ok
    cert = est.verify(receipt.request_id)
    assert cert.ok, cert.mismatches
    assert cert.compared == 9  # every prefix of shard 0's trie, the empty slice's included


def test_progressive_restore_revives_dead_shards_first_and_every_step_is_exact(fitted_ws):
    """A burst that kills every shard: the first swap serves stage 1 of one sequence per shard,
    the served prefixes then grow stage by stage, every manifest on the way passes the history
    audit, and the end result is bit-identical to training from scratch without the records."""
    from s3t.audit import history_violations

    est = fitted_ws
    burst = [one_record(est, shard, sl) for shard in (0, 1) for sl in range(3)]
    receipt = est.forget(record_ids=burst)
    assert receipt.after == {"0": 0, "1": 0}
    with pytest.raises(Exception, match="no model available"):
        est.predict(["a fine film"])
    report = est.retrain(restore="progressive")
    kinds = [(s["kind"], s["shard"], s["stages"]) for s in report.steps]
    assert kinds[:2] == [("revive", 0, 1), ("revive", 1, 1)]
    assert [k for k, _, _ in kinds[2:6]] == ["extend"] * 4 and kinds[-1][0] == "rest"
    served = [sw["served"] for sw in report.swaps]
    assert served[0] == {"0": 1, "1": 0} and served[1] == {"0": 1, "1": 1}
    for a, b in zip(served, served[1:]):
        assert all(b[k] >= a[k] for k in a)
    assert served[-1] == report.served_after == {"0": 3, "1": 3}
    versions = [sw["manifest_version"] for sw in report.swaps]
    assert versions == sorted(versions) and len(set(versions)) >= 6  # a commit per swap that changed what is served
    with est.ws_.ledger.Session() as s:
        assert history_violations(est.ws_.ledger, s) == []
    assert est.audit().ok
    cert = est.verify(receipt.request_id)
    assert cert.ok, cert.mismatches
    assert cert.compared == 18


def test_progressive_restore_extends_the_served_sequence_first(fitted_ws):
    est = fitted_ws
    receipt = est.forget(record_ids=[one_record(est, 1, 0)])
    report = est.retrain(restore="progressive")
    assert sum(s["stages"] for s in report.steps) == len(report.checkpoints) == 6
    # cyclic orders (0,1,2), (1,2,0), (2,0,1): slice 0 cut leaves (1,2,0) two clean stages: first its
    # third stage (served prefix 2 -> 3), then the other two sequences' five stages
    assert report.served_before["1"] == 2
    assert [(s["kind"], s["stages"]) for s in report.steps] == [("extend", 1), ("rest", 5)]
    assert report.swaps[0]["served"]["1"] == 3
    assert est.verify(receipt.request_id).ok


def test_unknown_restore_is_a_clear_error(fitted_ws):
    from s3t.errors import ConfigError

    fitted_ws.forget(record_ids=[one_record(fitted_ws, 0, 0)])
    with pytest.raises(ConfigError, match="restore must be one of"):
        fitted_ws.retrain(restore="fast")


def test_a_forget_that_cuts_a_planned_parent_between_jobs_is_replanned_not_a_crash(fitted_ws):
    """A forget committed while a retrain runs can cut (and erase the file of) the parent that the
    retrain planned for a later job. The retrain must re-plan that job, not fail on the missing file."""
    from s3t.retrain import RetrainReport, iter_retrain

    est = fitted_ws
    est.forget(record_ids=[one_record(est, 0, 0), one_record(est, 1, 0)])
    report = RetrainReport()
    steps = iter_retrain(est, report, restore="progressive")
    first = next(steps)
    assert first == {"kind": "extend", "shard": 0, "stages": 1}  # shard 1's job, parent (1, 2), is next
    late = est.forget(record_ids=[one_record(est, 1, 2)])  # cuts (1, 2): its file is erased
    assert est.flush()
    rest = list(steps)
    assert rest and all(s["shard"] in (0, 1) for s in rest)
    assert report.served_after == {"0": 3, "1": 3}
    assert late.request_id in report.requests
    assert est.audit().ok
    assert est.verify(late.request_id).ok


def test_forgetting_a_subject_then_progressive_restore_is_bit_identical_to_training_without_it(fitted_ws):
    """Issue 16: under subject placement one person's forget cuts one slice; the progressive
    retrain brings the shard back and equals a from-scratch fit without the person, bit for bit."""
    est = fitted_ws
    receipt = est.forget(subject="user5")
    assert len(receipt.affected_shards) == 1 and all(v > 0 for v in receipt.after.values())
    report = est.retrain(restore="progressive")
    assert report.served_after == {"0": 3, "1": 3} and report.swaps
    cert = est.verify(receipt.request_id)
    assert cert.ok, cert.mismatches
    assert cert.compared == 9


@pytest.mark.parametrize("restore", ["progressive", "naive"])
def test_retrain_progress_reports_one_total_for_the_whole_retrain(fitted_ws, restore):
    """A progress bar gets the whole retrain's work as its total, not one job's: progressive
    restore trains one shard step at a time, and a per-job total sent the bar past 100 %."""
    est = fitted_ws
    est.forget(record_ids=[one_record(est, 0, 1), one_record(est, 1, 0)])
    calls: list[tuple[str, int, int]] = []
    report = est.retrain(progress=lambda desc, n, total: calls.append((desc, n, total)), restore=restore)
    assert len(report.steps) >= (2 if restore == "naive" else 3)  # several jobs, so several per-job totals
    done = 0
    for desc, n, total in calls:
        done += n
        assert desc == "training" and n > 0
        assert done <= total, f"{done} examples done of a total of {total}"
    assert {total for _, _, total in calls} == {done}  # no forget joined: the plan's total was exact
