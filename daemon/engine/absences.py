"""The therapist's out-of-office blocks, kept per calendar as each poll last showed them, so a
session cancelled on one calendar inside a block on another is the therapist's too."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

import sqlalchemy as sa

from daemon.store.tables import absences, dt, ts


def load(conn: Any, calendars: Any = None) -> tuple[tuple[datetime, datetime], ...]:
    """Every known block, on any calendar (or only on ``calendars``: a therapist's own): (start, end)."""
    out = []
    query = sa.select(absences.c.start, absences.c.end)
    if calendars is not None:
        query = query.where(absences.c.calendar.in_(sorted(calendars)))
    for r in conn.execute(query).all():
        start, end = dt(r.start), dt(r.end)
        if start is not None and end is not None:
            out.append((start, end))
    return tuple(out)


def save(conn: Any, calendar: str, blocks: list[tuple[str, datetime, datetime]], *, complete: bool,
         seen: Iterable[str]) -> None:
    """Replace the calendar's blocks (a complete poll), or those among the keys a delta poll showed."""
    query = absences.delete().where(absences.c.calendar == calendar)
    if not complete:
        keys = list(seen)
        if not keys:
            return
        query = query.where(absences.c.key.in_(keys))
    conn.execute(query)
    rows = {key: {"calendar": calendar, "key": key, "start": ts(start), "end": ts(end)}
            for key, start, end in blocks}
    if rows:
        conn.execute(absences.insert(), list(rows.values()))


def overlapping(conn: Any, start: datetime, end: datetime, calendars: Any = None) -> bool:
    """Whether a session from ``start`` to ``end`` lies (partly) inside a known block (only the
    blocks on ``calendars`` when given: a group practice's therapist's own)."""
    query = sa.select(absences.c.key).where(absences.c.start < ts(end), absences.c.end > ts(start))
    if calendars is not None:
        query = query.where(absences.c.calendar.in_(sorted(calendars)))
    return conn.execute(query).first() is not None
