"""Replicas sharing one PostgreSQL store (daemon/engine/replicas.py): each calendar polled by one
replica, shares handed over as replicas come and go, any replica dispatching with every step
handed off once, and a dead replica's hand-offs left ``uncertain`` only once it is gone.

Engines in one test process on virtual clocks (each its own, as separate machines would be);
the real-process kill test is tests/test_replica_kill.py."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from daemon.clock import FixedClock
from daemon.config import load
from daemon.engine.cycle import Engine
from daemon.store.tables import audit, calendars, steps, ts
from tests.conftest import Practice, local, make_practice, postgres_available, store_rows
from tests.ics import Ev, write
from tests.stories import team

pytestmark = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not reachable on 127.0.0.1:5432")

T0 = local(2026, 11, 2, 8)
EVERY = timedelta(minutes=2)
NAMES = [f"room{i}" for i in range(6)]


def _calendars(names: list[str]) -> str:
    return "".join(f'\n[[calendars]]\nname = "{n}"\nkind = "ics"\nsource = "{n}.ics"\npoll_every = "2 minutes"\n'
                   for n in names)


@pytest.fixture
def six(tmp_path: Path, pg_schema: str) -> Practice:
    p = make_practice(tmp_path / "p", store=f'url = "{pg_schema}"', extra=_calendars(NAMES))
    for n in NAMES:
        write(p.root / f"{n}.ics", [team()])
    return p


class Replica:
    """One replica: an Engine as `run` builds it, on its own virtual clock."""

    def __init__(self, p: Practice, at: datetime) -> None:
        self.clock = FixedClock(at)
        self.engine = Engine(load(p.config), self.clock, replica=True)

    def poll(self, at: datetime) -> set[str]:
        """Run every poll job at ``at``; the calendars this replica read."""
        self.clock.set(at)
        return {r.calendar for r in self.engine.poll() if not r.elsewhere}

    def close(self) -> None:
        self.engine.close()


@pytest.fixture
def replicas(six: Practice) -> Iterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for r in made:
        r.close()


def test_polling_is_shared_handed_over_and_taken_over(six: Practice, replicas: list[Replica]) -> None:
    a = Replica(six, T0)
    replicas.append(a)
    assert a.poll(T0) == set(NAMES) | {"main"}          # alone: every calendar
    b = Replica(six, T0 + timedelta(seconds=10))
    replicas.append(b)
    assert b.poll(T0 + timedelta(seconds=10)) == set()  # all held by a
    kept = a.poll(T0 + EVERY)                           # a gives back what is over its share
    assert len(kept) == 4                               # 7 calendars, 2 replicas: 4 each at most
    taken = b.poll(T0 + EVERY + timedelta(seconds=10))
    assert taken == (set(NAMES) | {"main"}) - kept
    for n in range(2, 5):                               # steady: each calendar once per interval
        at = T0 + n * EVERY
        first, second = a.poll(at), b.poll(at + timedelta(seconds=10))
        assert not first & second and first | second == set(NAMES) | {"main"}
        assert (first, second) == (kept, taken)
    # b dies (no clean stop): its leases lapse an interval and a half after its last poll, then
    # a takes over
    last_b = T0 + 4 * EVERY + timedelta(seconds=10)
    assert a.poll(last_b + 1.5 * EVERY - timedelta(seconds=20)) == kept
    assert a.poll(last_b + 1.5 * EVERY + timedelta(seconds=5)) == set(NAMES) | {"main"}


def test_a_clean_stop_hands_the_calendars_over_at_once(six: Practice, replicas: list[Replica]) -> None:
    a, b = Replica(six, T0), Replica(six, T0)
    replicas.append(a)
    a.poll(T0)
    b.close()                                           # b never polled; a keeps everything
    c = Replica(six, T0 + timedelta(seconds=5))
    replicas.append(c)
    a.poll(T0 + EVERY)
    assert c.poll(T0 + EVERY + timedelta(seconds=5))    # c got its share
    c.close()
    replicas.remove(c)
    assert a.poll(T0 + EVERY + timedelta(seconds=30)) == set(NAMES) | {"main"}   # no waiting for lapses


def test_once_does_not_poll_what_a_replica_polls(six: Practice, replicas: list[Replica],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    a = Replica(six, T0)
    replicas.append(a)
    a.poll(T0)
    assert six.once(T0 + timedelta(seconds=30)) == 0
    assert _last_polls(six) == {n: ts(T0) for n in [*NAMES, "main"]}
    a.close()
    replicas.remove(a)
    assert six.once(T0 + timedelta(seconds=40)) == 0     # nobody holds them now
    assert set(_last_polls(six).values()) == {ts(T0 + timedelta(seconds=40))}


def _last_polls(p: Practice) -> dict[str, str]:
    return {r.name: r.last_poll_at for r in store_rows(p, sa.select(calendars.c.name, calendars.c.last_poll_at))}


# -- dispatch -------------------------------------------------------------------------------
CLIENTS = 30
ONE_EMAIL = """
[cadence]
steps = [{ channel = "email", after = "1 business day", template = "email_followup" }]
"""


@pytest.fixture
def thirty_due(tmp_path: Path, pg_schema: str) -> Practice:
    """Thirty clients missed their Tuesday session; their emails are all due on Wednesday."""
    p = make_practice(tmp_path / "p", store=f'url = "{pg_schema}"', extra=ONE_EMAIL)
    people = [f"Client{i:02d} Test" for i in range(CLIENTS)]
    (p.root / "clients.csv").write_text("name,aliases,email,phone,preferred_channel,do_not_contact\n" + "".join(
        f"{n},,c{i}@example.com,,email,false\n" for i, n in enumerate(people)))
    sessions = [Ev(f"s{i}", local(2026, 11, 3, 8) + timedelta(minutes=20 * i),
                   local(2026, 11, 3, 8, 15) + timedelta(minutes=20 * i), n) for i, n in enumerate(people)]
    p.calendar([team(), *sessions])
    assert p.once(local(2026, 11, 2, 8)) == 0
    for s in sessions:
        s.summary += " no-show"
    p.calendar([team(), *sessions])
    assert p.once(local(2026, 11, 3, 20)) == 0
    return p


def test_replicas_dispatching_at_once_hand_each_step_off_once(thirty_due: Practice,
                                                              replicas: list[Replica]) -> None:
    due = local(2026, 11, 5, 12)
    two = [Replica(thirty_due, due), Replica(thirty_due, due)]
    replicas.extend(two)
    counts: list[dict[str, int]] = []
    barrier = threading.Barrier(2)

    def dispatch(r: Replica) -> None:
        barrier.wait()
        counts.append(r.engine.dispatch())

    threads = [threading.Thread(target=dispatch, args=(r,)) for r in two]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    sent = [c.get("sent", 0) for c in counts]
    assert sum(sent) == CLIENTS, counts                 # every step handed off once, by one of them
    assert all(sent), f"one replica did all the work: {counts}"
    states = [r.state for r in store_rows(thirty_due, sa.select(steps.c.state))]
    assert states == ["sent"] * CLIENTS
    events = [r.step_id for r in store_rows(thirty_due, sa.select(audit.c.step_id).where(audit.c.event == "sent"))]
    assert len(events) == len(set(events)) == CLIENTS


def test_a_hand_off_of_a_live_replica_is_not_taken_for_abandoned(thirty_due: Practice,
                                                                 replicas: list[Replica]) -> None:
    due = local(2026, 11, 5, 12)
    other = Replica(thirty_due, due)                    # mid-hand-off of one step
    replicas.append(other)
    with other.engine.store.transaction() as conn:
        step_id = conn.execute(sa.select(steps.c.id).limit(1)).scalar_one()
        conn.execute(steps.update().where(steps.c.id == step_id).values(
            state="sending", claimed_by=other.engine.worker, claimed_at=ts(due)))
    a = Replica(thirty_due, due + timedelta(minutes=1))
    replicas.append(a)
    a.engine.dispatch()
    assert _state(thirty_due, step_id) == "sending"     # other is alive: its hand-off is its own
    # other dies; once its liveness has lapsed, its hand-off is uncertain (never sent again)
    a.clock.set(due + other.engine.replicas.live_for + timedelta(minutes=1))
    a.engine.dispatch()
    assert _state(thirty_due, step_id) == "uncertain"


def _state(p: Practice, step_id: str) -> str:
    (row,) = store_rows(p, sa.select(steps.c.state).where(steps.c.id == step_id))
    return str(row.state)
