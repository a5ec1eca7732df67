"""The ledger's named leases (one retrain for a fleet of replicas): exclusive while renewed, taken
over with the next epoch once expired, fenced (a holder that was taken over writes nothing), on
the database's clock. SQLite and a real PostgreSQL server."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from s3t.store.lease import Lease, LeaseGuard, LeaseLostError
from s3t.store.ledger import Ledger
from s3t.store.schema import LeaseRow, Meta
from tests.conftest import wait_until
from tests.pg import pg, pg_bin  # noqa: F401  (pg: fixture)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    else:
        if pg_bin() is None:
            pytest.skip("PostgreSQL server binaries are not installed")
        url = request.getfixturevalue("pg").url
    led = Ledger(url)
    yield led
    led.close()


def _name(request) -> str:  # one lease per test: the PostgreSQL database is shared by the module
    return "t-" + request.node.name.replace("[", "-").replace("]", "")[:50]



def test_one_holder_at_a_time_and_release_hands_it_on(ledger, request):
    name = _name(request)
    a, b = Lease(ledger, name, holder="a", ttl=60), Lease(ledger, name, holder="b", ttl=60)
    e1 = a.try_acquire()
    assert e1 == 1
    assert b.try_acquire() is None  # held and not expired
    assert a.try_acquire() == e1  # re-entrant for its holder: same epoch
    assert a.renew()
    st = b.state()
    assert st.holder == "a" and st.epoch == 1 and st.held and 0 < st.expires_in <= 60
    a.release()
    assert not b.state().held
    assert b.try_acquire() == 2  # a new holder: the next epoch
    assert not a.renew()  # released: no longer a's
    assert a.try_acquire() is None


def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced(ledger, request):
    name = _name(request)
    old, new = Lease(ledger, name, holder="old", ttl=0.3), Lease(ledger, name, holder="new", ttl=60)
    epoch = old.try_acquire()
    assert new.try_acquire() is None
    # the old holder stops renewing (killed, paused): once expired, the next asker takes it over
    assert wait_until(lambda: new.try_acquire() is not None)
    assert new.epoch == epoch + 1 and new.takeovers == 1
    assert not old.renew()  # late renewal of a taken-over lease fails

    # fencing: a process still working under the old epoch can write nothing more
    worker = Ledger(ledger.url)
    try:
        worker.guard = LeaseGuard(name, "old", epoch)
        before = worker.meta("fenced")
        with pytest.raises(LeaseLostError):
            with worker.write() as s:
                s.add(Meta(key="fenced", value="written by a holder that lost its lease"))
        assert worker.meta("fenced") == before is None
        worker.guard = new.guard()  # the current holder's epoch writes
        with worker.write() as s:
            s.add(Meta(key="fenced", value="ok"))
        assert worker.meta("fenced") == "ok"
    finally:
        worker.close()


def test_an_expired_lease_nobody_took_can_still_be_renewed_by_its_holder(ledger, request):
    name = _name(request)
    a = Lease(ledger, name, holder="a", ttl=0.2)
    epoch = a.try_acquire()
    assert wait_until(lambda: not a.state().held)
    assert a.renew() and a.epoch == epoch  # nobody else wrote under another epoch: still exclusive
    assert Lease(ledger, name, holder="b", ttl=1).try_acquire() is None


def test_hold_heartbeats_past_the_ttl_and_reports_a_loss(ledger, request):
    name = _name(request)
    a, b = Lease(ledger, name, holder="a", ttl=0.4), Lease(ledger, name, holder="b", ttl=60)
    with a.hold() as epoch:
        assert epoch is not None
        time.sleep(1.2)  # three TTLs: renewed by the heartbeat, so still held
        assert b.try_acquire() is None
        assert b.state().holder == "a"
    assert b.try_acquire() == epoch + 1  # released at the end of the block

    lost = []
    c = Lease(ledger, name, holder="c", ttl=60)
    b.release()
    with c.hold(on_lost=lambda: lost.append(True)) as epoch_c:
        with ledger.write() as s:  # someone steals it (as a takeover after expiry would)
            row = s.get(LeaseRow, name)
            row.holder, row.epoch = "thief", row.epoch + 1
        assert wait_until(lambda: bool(lost), timeout=60)
    assert epoch_c is not None and c.epoch is None
    assert b.state().holder == "thief"  # c's release did not release the thief's lease


def test_concurrent_acquirers_get_one_epoch_each(ledger, request):
    """Eight handles race for a free lease: exactly one wins, and the epoch grows by one."""
    import threading

    name = _name(request)
    handles = [Lease(ledger, name, holder=f"h{i}", ttl=60) for i in range(8)]
    got: list = [None] * len(handles)
    barrier = threading.Barrier(len(handles))

    def race(i: int) -> None:
        barrier.wait()
        got[i] = handles[i].try_acquire()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(handles))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [g for g in got if g is not None]
    assert winners == [1]
    with ledger.Session() as s:
        assert s.scalar(select(func.count()).select_from(LeaseRow).where(LeaseRow.name == name)) == 1


def test_expiry_is_on_the_database_clock(ledger, request, monkeypatch):
    """A replica whose clock runs an hour ahead must not take over a live lease (PostgreSQL: the
    expiry is compared on the server's clock). SQLite is one machine: its clock is the local one."""
    if ledger.dialect != "postgresql":
        pytest.skip("SQLite runs on one machine: the local clock is the database's")
    import s3t.store.lease as lease_module

    name = _name(request)
    assert Lease(ledger, name, holder="a", ttl=60).try_acquire() == 1
    real = time.time
    monkeypatch.setattr(lease_module.time, "time", lambda: real() + 3600)
    assert Lease(ledger, name, holder="skewed", ttl=60).try_acquire() is None
