"""A lease per calendar, so replicas sharing one store each poll a calendar once per interval.

A lease is one row: ``(name, holder, expires_at)``.  ``take`` is a single atomic statement — an
``INSERT`` when there is no row, otherwise an ``UPDATE … WHERE holder = me OR expires_at <= now``
— so two replicas never both hold it; the one whose statement changed a row holds it.  The
holder renews it by taking it again before it expires.  A dead holder's lease expires after
``ttl`` and the next replica to try takes it over.

Expiry is judged by the clock of the replica that tries (the injected clock, so accelerated
time in tests): replicas must keep their clocks in step (NTP); a skew shortens or lengthens a
lease by that much.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from daemon.store.tables import leases, ts


def take(engine: sa.engine.Engine, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease ``name`` for ``holder`` until ``now + ttl``; False when another
    holder's lease has not yet expired."""
    until, at = ts(now + ttl), ts(now)
    with engine.begin() as conn:
        changed = conn.execute(
            leases.update()
            .where(leases.c.name == name)
            .where(sa.or_(leases.c.holder == holder, leases.c.expires_at <= at))
            .values(holder=holder, expires_at=until)).rowcount
        if changed:
            return True
    try:
        with engine.begin() as conn:
            conn.execute(leases.insert().values(name=name, holder=holder, expires_at=until))
        return True
    except IntegrityError:       # a row exists (another replica inserted it or holds it)
        return False


def release(engine: sa.engine.Engine, name: str, holder: str) -> None:
    """Give the lease up (on a clean stop), so another replica need not wait for expiry."""
    with engine.begin() as conn:
        conn.execute(leases.delete().where(leases.c.name == name).where(leases.c.holder == holder))


def held_by(engine: sa.engine.Engine, holder: str, prefix: str, now: datetime) -> int:
    """How many unexpired leases whose name starts with ``prefix`` ``holder`` has."""
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(leases).where(
            leases.c.holder == holder, leases.c.name.startswith(prefix, autoescape=True),
            leases.c.expires_at > ts(now))).scalar_one())


def names(engine: sa.engine.Engine, prefix: str, now: datetime) -> set[str]:
    """The unexpired leases whose name starts with ``prefix``."""
    with engine.connect() as conn:
        return {str(r[0]) for r in conn.execute(sa.select(leases.c.name).where(
            leases.c.name.startswith(prefix, autoescape=True), leases.c.expires_at > ts(now)))}


def release_all(engine: sa.engine.Engine, holder: str) -> None:
    """Every lease of ``holder`` given up (a clean stop)."""
    with engine.begin() as conn:
        conn.execute(leases.delete().where(leases.c.holder == holder))


def purge(engine: sa.engine.Engine, prefix: str, before: datetime) -> int:
    """Delete the leases starting with ``prefix`` that expired before ``before`` (a dead
    replica's liveness is never taken again: its successor has a new name)."""
    with engine.begin() as conn:
        return int(conn.execute(leases.delete().where(
            leases.c.name.startswith(prefix, autoescape=True), leases.c.expires_at < ts(before))).rowcount)


def holder_of(engine: sa.engine.Engine, name: str, now: datetime) -> str | None:
    """Who holds ``name`` at ``now`` (None when free or expired)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(leases.c.holder, leases.c.expires_at)
                           .where(leases.c.name == name)).first()
    if row is None or row.expires_at <= ts(now):
        return None
    return str(row.holder)
