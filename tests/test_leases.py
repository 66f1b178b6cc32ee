"""Calendar leases (daemon/store/leases.py) on SQLite and the real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.store import leases
from daemon.store.db import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
TTL = timedelta(minutes=4)          # two poll intervals of 2 minutes


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'state.db'}")
    url = request.getfixturevalue("pg_schema").replace("postgresql://", "postgresql+psycopg://", 1)
    s = Store(url)
    request.addfinalizer(s.engine.dispose)
    return s


def test_one_holder_renewal_and_takeover(store: Store) -> None:
    e = store.engine
    assert leases.take(e, "main", "a", T0, TTL) is True
    assert leases.take(e, "main", "b", T0 + timedelta(minutes=1), TTL) is False
    assert leases.take(e, "main", "a", T0 + timedelta(minutes=2), TTL) is True       # renewed
    assert leases.take(e, "main", "b", T0 + timedelta(minutes=5), TTL) is False      # renewal held
    assert leases.holder_of(e, "main", T0 + timedelta(minutes=5)) == "a"
    # a dies: b takes over once the lease expires, within two intervals of a's last renewal
    assert leases.take(e, "main", "b", T0 + timedelta(minutes=6), TTL) is True
    assert leases.take(e, "main", "a", T0 + timedelta(minutes=7), TTL) is False
    assert leases.take(e, "other", "a", T0, TTL) is True                            # per calendar
    leases.release(e, "main", "b")
    assert leases.holder_of(e, "main", T0 + timedelta(minutes=7)) is None
    assert leases.take(e, "main", "a", T0 + timedelta(minutes=7), TTL) is True


def test_racing_replicas_get_one_lease(store: Store) -> None:
    if store.is_sqlite:
        pytest.skip("replicas share PostgreSQL; SQLite has one process")
    wins = _race(store, T0)
    assert len(wins) == 1
    assert leases.holder_of(store.engine, "main", T0) == wins[0]


def test_racing_takeover_of_an_expired_lease_has_one_winner(store: Store) -> None:
    if store.is_sqlite:
        pytest.skip("replicas share PostgreSQL; SQLite has one process")
    assert leases.take(store.engine, "main", "dead", T0, TTL)
    later = T0 + 2 * TTL
    wins = _race(store, later)
    assert len(wins) == 1 and wins[0] != "dead"


def _race(store: Store, now: datetime) -> list[str]:
    """Six replicas ask for the lease of "main" at the same instant; who won."""
    wins: list[str] = []
    barrier = threading.Barrier(6)

    def race(who: str) -> None:
        barrier.wait()
        if leases.take(store.engine, "main", who, now, TTL):
            wins.append(who)

    threads = [threading.Thread(target=race, args=(f"r{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wins
