"""The forget's background file steps: in order, and a burst merged into one call."""

from __future__ import annotations

import threading

from s3t.store.file_steps import FileSteps


def test_steps_run_in_submission_order():
    steps, seen = FileSteps(), []
    for i in range(20):
        steps.submit(seen.append, i)
    assert steps.flush(10) and seen == list(range(20))
    steps.close()


def test_merged_submissions_queued_behind_a_running_step_become_one_call():
    steps, calls, gate, started = FileSteps(), [], threading.Event(), threading.Event()

    def blocker():
        started.set()
        gate.wait(10)

    steps.submit(blocker)
    assert started.wait(10)
    for batch in (["a"], ["b", "c"], [], ["d"]):  # all wait behind the blocker: one call
        steps.submit_merged(calls.append, batch)
    gate.set()
    assert steps.flush(10)
    assert calls == [["a", "b", "c", "d"]]
    steps.submit_merged(calls.append, ["e"])  # nothing waiting now: a call of its own
    assert steps.flush(10) and calls == [["a", "b", "c", "d"], ["e"]]
    steps.close()


def test_a_merged_call_that_started_takes_no_more_items():
    steps, calls, inside, gate = FileSteps(), [], threading.Event(), threading.Event()

    def slow(items):
        calls.append(list(items))
        inside.set()
        gate.wait(10)

    steps.submit_merged(slow, ["a"])
    assert inside.wait(10)
    steps.submit_merged(slow, ["b"])  # the first call runs: this one is the next call
    gate.set()
    assert steps.flush(10)
    assert calls == [["a"], ["b"]]
    steps.close()
