"""Replicas sharing one PostgreSQL store: who polls which calendar, who reads the inbox, and
which ``sending`` rows belong to a replica that is gone.

Everything is a lease in the store (daemon/store/leases.py), judged by the replica's clock:

* ``replica:<worker>`` — this replica is alive.  Renewed by every poll, every step and the
  service's heartbeat; it lapses ``live_for`` after the replica died.  Only then do its
  ``sending`` rows become ``uncertain`` (never sent again).
* ``poll:<calendar>`` — the one replica polling that calendar, for one and a half poll
  intervals, renewed at each poll (a holder whose poll job runs late loses it to another).  A replica holds at most its fair share (calendars ÷ live replicas,
  rounded up) and gives back what is over it, so replicas that start later get their share.
  A dead replica's calendars are taken over at the first poll after its leases and its
  liveness lapsed: within two and a half intervals of its last poll.
* ``job:<name>`` — the inbox and the texts to the practice are read by one replica at a time
  (held only while reading, so whichever replica is about to dispatch can read first).
* ``process:<worker>`` — a one-off command (``once``) alive on the store: its hand-offs are
  not taken for abandoned, but it does not count towards the replicas that share polling.

Any replica dispatches: due steps are claimed row by row (``FOR UPDATE SKIP LOCKED``,
daemon/store/followups.claim), so a step is still handed off once.  On SQLite there is one
process (the file lock) and nothing here writes to the store.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from daemon.store import leases

log = logging.getLogger(__name__)

REPLICA, PROCESS, POLL, JOB = "replica:", "process:", "poll:", "job:"
HEARTBEAT_WALL = 5.0            # seconds of wall time between the service's heartbeats
LEASE = 1.5                     # a calendar's lease lasts this many of its poll intervals


class Replicas:
    def __init__(self, store: Any, worker: str, *, shared: bool, calendars: dict[str, timedelta],
                 speed: float = 1.0, service: bool = True) -> None:
        self.store = store
        self.worker = worker
        self.shared = shared
        self.calendars = calendars
        self.role = REPLICA if service else PROCESS
        self._renewed: datetime | None = None
        longest = max(calendars.values(), default=timedelta(minutes=2))
        # lapses only after several missed renewals, whatever the clock's speed
        self.live_for = max(LEASE * longest, timedelta(minutes=2), timedelta(seconds=3 * HEARTBEAT_WALL * speed))

    # -- liveness ---------------------------------------------------------------------------
    def alive(self, now: datetime, *, force: bool = False) -> None:
        """Renew this replica's liveness (at most every quarter of ``live_for`` unless
        ``force``; a no-op on SQLite)."""
        if not self.shared:
            return
        if not force and self._renewed is not None and timedelta(0) <= now - self._renewed < self.live_for / 4:
            return
        if self._guard(leases.take, self.store.engine, self.role + self.worker, self.worker, now, self.live_for):
            self._renewed = now
            for prefix in (REPLICA, PROCESS):        # replicas that died long ago
                self._guard(leases.purge, self.store.engine, prefix, now - self.live_for)

    def live_workers(self, now: datetime) -> set[str]:
        """Every worker, replica or one-off process, whose liveness has not lapsed (this one too)."""
        if not self.shared:
            return {self.worker}
        names = leases.names(self.store.engine, REPLICA, now) | leases.names(self.store.engine, PROCESS, now)
        return {name.split(":", 1)[1] for name in names} | {self.worker}

    def replicas(self, now: datetime) -> int:
        """How many service replicas share the polling (at least this one)."""
        names = {n[len(REPLICA):] for n in leases.names(self.store.engine, REPLICA, now)}
        return len(names | ({self.worker} if self.role == REPLICA else set()))

    # -- polling ----------------------------------------------------------------------------
    def may_poll(self, calendar: str, now: datetime) -> bool:
        """Whether this replica polls ``calendar`` now (always, on SQLite)."""
        if not self.shared:
            return True
        self.alive(now)
        name, ttl = POLL + calendar, LEASE * self.calendars.get(calendar, timedelta(minutes=2))
        share = math.ceil(len(self.calendars) / max(1, self.replicas(now)))
        mine = leases.held_by(self.store.engine, self.worker, POLL, now)
        holds = leases.holder_of(self.store.engine, name, now) == self.worker
        if holds and mine > share and self.role == REPLICA:
            leases.release(self.store.engine, name, self.worker)    # over my share: another replica takes it
            log.info("calendar %s handed to another replica (this one holds %d, its share is %d)",
                     calendar, mine, share)
            return False
        if not holds and mine >= share and self.role == REPLICA:
            return False
        return bool(leases.take(self.store.engine, name, self.worker, now, ttl))

    # -- one-replica jobs -------------------------------------------------------------------
    @contextmanager
    def exclusive(self, job: str, now: datetime, ttl: timedelta) -> Iterator[bool]:
        """Hold ``job:<job>`` while the block runs (yields False when another replica is in it);
        the lease lapses after ``ttl`` should this replica die inside."""
        if not self.shared:
            yield True
            return
        got = bool(leases.take(self.store.engine, JOB + job, self.worker, now, ttl))
        try:
            yield got
        finally:
            if got:
                leases.release(self.store.engine, JOB + job, self.worker)

    def release(self) -> None:
        """A clean stop: every lease given back, so nobody waits for them to lapse."""
        if self.shared:
            try:
                leases.release_all(self.store.engine, self.worker)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("could not give the leases back (%s); they lapse by themselves",
                            type(exc).__name__)

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _guard(func: Any, *args: Any) -> Any:
        """Run a lease write; None when the store does not answer (the service's heartbeat
        reports that: daemon/service/run.py)."""
        try:
            return func(*args)
        except sa.exc.SQLAlchemyError as exc:
            log.debug("liveness not renewed (%s)", type(exc).__name__)
            return None
