"""Background retraining for the service: one thread that batches deletions into one retrain.

Design
------
* ONE daemon thread waits on an :class:`threading.Event` with a timeout. ``POST /forget``
  sets the event; the thread then runs ONE ``S3T.retrain()`` for every request queued so far
  (state served-exact or retraining), so a burst of forgets costs one retrain.
* That retrain runs in a child process (``python -m s3t.service.worker WORKSPACE``): training
  never holds the server's GIL, never draws from the server's torch RNG (stage seeding is
  global-RNG based, so an in-process trainer racing a model swap could lose bit-exactness),
  and a crash in training cannot take the server down. The child writes the ledger, the
  checkpoint files and ``served.json``; the server then swaps its in-memory ensemble to the
  new manifest (atomically, under the estimator's lock). Predictions never wait for it.
* An exception (or a failed child) is logged and retried on the next wake (the next forget,
  or the timeout). ``stop()`` ends the thread; a running child is terminated, the stages it
  already registered are swapped in (:func:`finish_swap`) and its requests stay queued — the
  next start-up re-queues every request in served-exact/retraining. The child shares the
  server's process group and exits by itself within a second if the server dies.
* A :class:`~s3t.serve.policy.RetrainPolicy` (``serve.retrain``: immediate, accuracy or
  interval) decides on each wake whether the queued requests are retrained now; the cut is
  served at once whatever it decides.
* With progressive restore (``serve.restore``) the child commits a manifest after each step;
  the thread polls the ledger while the child runs and swaps each one in at once.
* :meth:`RetrainWorker.quiesce` holds retraining off (e.g. while ``/audit`` runs, so it never
  sees stages registered but not yet swapped in).
* **One retrain for the fleet.** With a :class:`~s3t.store.lease.Lease` (replicas sharing one
  ledger), a retrain runs only while this replica holds the ledger's ``retrain`` lease: it is
  acquired before the child starts, renewed by a heartbeat thread while it runs and released
  after the swap. The child gets the lease's epoch (``--lease``) and fences every write it makes
  with it (:class:`~s3t.store.lease.LeaseGuard`), so a holder that lost the lease can never write
  after its successor. A replica that finds the lease held does not retrain: it wakes again
  when the lease would expire (or when the holder releases it: a PostgreSQL ``NOTIFY`` wakes it
  earlier) and takes over if the holder died; it picks up the holder's manifests through the
  listener and the fence (:mod:`s3t.service.fence`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from ..serve.policy import Decision, RetrainPolicy, served_accuracy

log = logging.getLogger("s3t")

PENDING_STATES = ("served-exact", "retraining")


def pending_requests(model) -> list[str]:
    return model.ws_.ledger.requests_in_state(*PENDING_STATES)


def finish_swap(model, lease=None) -> None:
    """Finish a half-done swap: stages registered by an interrupted retrain become servable once
    the manifest is refreshed (the serving rule only ever picks clean lineages); ``served.json``
    is made to match. Skipped while another process is training, or (``lease``: a
    :class:`~s3t.store.lease.Lease`) while another replica holds the fleet's retrain lease."""
    from ..errors import WorkspaceError

    ws = model.ws_
    before, _ = ws.ledger.latest_manifest()
    if not before:
        return  # never fitted to the end: nothing was served, nothing to finish
    try:
        with _leased(lease), ws.training_lock():  # a trainer may have registered stages not yet in place
            version, body = ws.ledger.refresh_manifest("recovery")
    except WorkspaceError:
        log.info("recovery: another process or replica is training (or finishing a swap); the served manifest is left to it")
        version, body = ws.ledger.latest_manifest()
    if version != before:
        log.warning("recovery: served manifest v%d -> v%d (stages of an interrupted retrain swapped in)", before, version)
    ws.sync_served()
    ws.purge_tainted()


@contextmanager
def _leased(lease) -> Iterator[None]:
    """Hold ``lease`` (if given) for a short step; WorkspaceError if another holder has it."""
    from ..errors import WorkspaceError

    if lease is None:
        yield
        return
    # a handle of its own: never mistaken for (or releasing) the retrain thread's hold
    with type(lease)(lease.ledger, lease.name, holder=f"{lease.holder}/swap", ttl=lease.ttl).hold() as epoch:
        if epoch is None:
            raise WorkspaceError(f"another replica holds the {lease.name!r} lease")
        yield


def recover_on_startup(model, lease=None) -> list[str]:
    """:func:`finish_swap`, then the requests still to retrain (to re-queue)."""
    finish_swap(model, lease)
    pending = pending_requests(model)
    if pending:
        log.info("recovery: %d request(s) still to retrain: %s", len(pending), ", ".join(pending[:5]))
    return pending


class RetrainWorker:
    """The background retrain thread (see the module docstring)."""

    def __init__(self, model, on_done: Callable[[], None], interval: float = 30.0, stop_timeout: float = 10.0,
                 policy: Optional[RetrainPolicy] = None, poll: float = 0.5, restore: Optional[str] = None,
                 lease=None):
        self.model = model
        self.lease = lease  # s3t.store.lease.Lease: retrain only while holding it (one retrain for the fleet)
        self.deferred = 0  # wakes that found the lease held by another replica
        self._deferred_until = 0.0  # monotonic time before which the lease is known to be held elsewhere
        self._deferred_to: Optional[str] = None  # the holder the last deferral was logged for
        self._last_reason: Optional[str] = None
        self.on_done = on_done
        self.interval = interval
        self.policy = policy or RetrainPolicy.from_config(model.config.serve)
        self.poll = poll  # how often a running retrain's progressive swaps are picked up
        self.restore = restore or model.config.serve.restore
        self.last_decision: Optional[str] = None
        self._last_start: Optional[float] = None
        self.stop_timeout = stop_timeout
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards _proc against stop() racing a spawn
        self._gate = threading.Lock()  # held for a whole retrain, or by quiesce()
        self._proc: Optional[subprocess.Popen] = None
        self._thread: Optional[threading.Thread] = None
        self.busy = False
        self.runs = 0
        self.failures = 0
        self.last_error: Optional[str] = None
        self.last_report: Optional[dict] = None

    # -- control ------------------------------------------------------------------------
    def start(self, requeue: bool = True) -> None:
        self._thread = threading.Thread(target=self._loop, name="s3t-retrain", daemon=True)
        self._thread.start()
        if requeue and pending_requests(self.model):
            self.notify()

    def notify(self) -> None:
        """Wake the thread: there is something to retrain."""
        self._wake.set()

    def nudge(self) -> None:
        """A manifest was committed somewhere in the fleet (a forget through another replica, say):
        wake to look for pending requests, unless a retrain runs here or another replica is known
        to hold the lease (then the wake at its expiry, or its release, covers it)."""
        if not self.busy and time.monotonic() >= self._deferred_until:
            self._wake.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @contextmanager
    def quiesce(self, timeout: float) -> Iterator[bool]:
        """Wait (up to ``timeout`` s) for a running retrain to finish and hold the next one off;
        yields whether that worked."""
        got = self._gate.acquire(timeout=timeout)
        try:
            yield got
        finally:
            if got:
                self._gate.release()

    def stop(self) -> None:
        """Stop the thread; terminate a running retrain child (its requests stay queued) and
        swap in the stages it registered."""
        with self._lock:
            self._stop.set()
            proc = self._proc
        self._wake.set()
        if proc is not None and proc.poll() is None:
            log.info("stopping: terminating the running retrain (its requests stay queued)")
            proc.terminate()
        if self._thread is not None:
            self._thread.join(self.stop_timeout)
            if self._thread.is_alive() and proc is not None:
                proc.kill()
                self._thread.join(self.stop_timeout)
        if proc is not None:
            try:
                finish_swap(self.model, self.lease)
            except Exception:
                log.exception("could not swap in the stages of the interrupted retrain (the next start-up will)")

    # -- the thread -----------------------------------------------------------------------
    def decide(self) -> Decision:
        """Ask the retrain policy whether the queued requests are retrained now."""
        ledger = self.model.ws_.ledger
        pending = bool(pending_requests(self.model))
        dead = acc_now = acc_fit = None
        if pending and self.policy.kind == "accuracy":
            dead, acc_now = served_accuracy(ledger.latest_manifest()[1])
            acc_fit = served_accuracy(fitted_manifest(ledger))[1]
        since = None if self._last_start is None else time.monotonic() - self._last_start
        d = self.policy.decide(pending=pending, dead_shards=dead or 0, accuracy_now=acc_now, accuracy_fit=acc_fit,
                               since_last=since)
        if pending and d.reason != self._last_reason:
            log.info("retrain policy %s: %s", self.policy.kind, d.reason + ("" if d.run else "; the cut stays served"))
        if pending:
            self.last_decision = self._last_reason = d.reason
        return d

    def _loop(self) -> None:
        timeout = self.interval
        while not self._stop.is_set():
            self._wake.wait(timeout)
            if self._stop.is_set():
                break
            self._wake.clear()  # forgets from now on wake the next round
            timeout = self.interval
            try:
                d = self.decide()
                if d.wait is not None:
                    timeout = min(self.interval, max(0.05, d.wait))
                if d.run:
                    self._last_start = time.monotonic()
                    wait = self._retrain_once()
                    if wait is not None:  # another replica holds the lease: look again when it would expire
                        timeout = min(timeout, wait)
            except Exception as exc:  # never let the thread die
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                if not self._stop.is_set():
                    log.exception("background retrain failed; retrying on the next wake")

    def _retrain_once(self) -> Optional[float]:
        """One retrain (under the lease, if any). Returns None, or the seconds to wait before
        asking again when another replica holds the lease."""
        cmd = [sys.executable, "-m", "s3t.service.worker", str(self.model.ws_.path), "--restore", self.restore]
        if self.model.db:
            cmd += ["--db", str(self.model.db)]
        with self._gate:
            if self.lease is None:
                self._run_child(cmd)
                return None
            lost = threading.Event()

            def on_lost() -> None:
                lost.set()
                self._terminate_child()

            with self.lease.hold(on_lost=on_lost) as epoch:
                if epoch is not None:
                    self._run_child(cmd + ["--lease", self.lease.guard().token()], lost)
                    return None
            st = self.lease.state()
            self.deferred += 1
            why = f"another replica holds the retrain lease ({st.holder}, epoch {st.epoch}, {st.expires_in:.1f} s left)"
            if st.holder != self._deferred_to:  # once per holder, not on every wake
                log.info("retrain deferred: %s", why)
                self._deferred_to = st.holder
            self.last_decision = why
            wait = max(0.2, st.expires_in + 0.1)
            self._deferred_until = time.monotonic() + wait
            return wait

    def _terminate_child(self) -> None:
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def _run_child(self, cmd: list[str], lost: Optional[threading.Event] = None) -> None:
        self.busy = True  # until the new ensemble is swapped in
        start = time.perf_counter()
        try:
            with self._lock:
                if self._stop.is_set():
                    return
                self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = self._communicate(self._proc)
            if self._stop.is_set():
                return
            if lost is not None and lost.is_set():
                raise RuntimeError("lost the retrain lease while the retrain ran (another replica took it over); "
                                   "the retrain child was stopped")
            if self._proc.returncode != 0:
                tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-5:])
                raise RuntimeError(f"retrain process exited with {self._proc.returncode}: {tail}")
            lines = out.decode().strip().splitlines()
            self.last_report = json.loads(lines[-1]) if lines else {}
            self.on_done()
            self.runs += 1
            self.last_error = None
            log.info("background retrain done in %.1fs: %d request(s), %d checkpoint(s)", time.perf_counter() - start,
                     len(self.last_report.get("requests", [])), len(self.last_report.get("checkpoints", [])))
        finally:
            with self._lock:
                self._proc = None
            self.busy = False


    def _communicate(self, proc: subprocess.Popen) -> tuple[bytes, bytes]:
        """Wait for the child; meanwhile swap in each manifest its progressive restore commits
        (predictions would pick it up anyway: this does it before the next request)."""
        chunks: dict[str, list[bytes]] = {"out": [], "err": []}
        readers = [threading.Thread(target=lambda f=f, k=k: chunks[k].append(f.read()), daemon=True)
                   for f, k in ((proc.stdout, "out"), (proc.stderr, "err"))]
        for t in readers:
            t.start()
        ens = getattr(self.model, "_ensemble", None)
        while proc.poll() is None:
            time.sleep(self.poll)
            if ens is not None and not self._stop.is_set():
                try:
                    if self.model.ws_.ledger.latest_manifest()[0] > ens.manifest_version:
                        self.model._sync()
                except Exception:  # a busy ledger or a missing file: the next poll or on_done does it
                    log.debug("progressive swap deferred", exc_info=True)
        for t in readers:
            t.join()
        return b"".join(chunks["out"]), b"".join(chunks["err"])


def fitted_manifest(ledger) -> dict:
    """The body of the first manifest (what the fit served)."""
    from sqlalchemy import select

    from ..store.schema import Manifest

    with ledger.Session() as s:
        body = s.scalar(select(Manifest.body).order_by(Manifest.version).limit(1))
    return {"shards": {}} if body is None else json.loads(body)


def _exit_with_parent() -> None:
    """In the child: SIGTERM unwinds (so training worker processes are reaped), and the child
    terminates itself if the server that started it dies."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="s3t-parent-watch", daemon=True).start()


def main(argv: Optional[list[str]] = None) -> None:
    """Child entry point: one ``S3T.retrain()`` over every queued request; the report as JSON on stdout."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m s3t.service.worker", description=main.__doc__)
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--db", default=None)
    parser.add_argument("--restore", default=None, choices=["progressive", "naive"])
    parser.add_argument("--lease", default=None, help="NAME:EPOCH:HOLDER of the lease the server holds for this "
                        "retrain: every ledger write checks it first (fencing)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _exit_with_parent()
    from ..estimator import S3T

    model = S3T.load(args.workspace, db=args.db)
    if args.lease:
        from ..store.lease import LeaseGuard

        model.ws_.ledger.guard = LeaseGuard.parse(args.lease)
    try:
        report = model.retrain(restore=args.restore)
    finally:
        model.ws_.ledger.close()
    print(json.dumps(report.to_dict(), default=str), flush=True)


if __name__ == "__main__":
    main()
