"""Store access for sessions (the latest snapshot of each calendar)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from daemon import rules
from daemon.model import SessionRow
from daemon.rules import Missed
from daemon.store.tables import dt, sessions, text_update, ts

CHUNK = 500
# Every column, read by name: compiles about 4x faster than 18 labelled columns, which counts
# where each statement is compiled once (a ``once`` process; a poll's first delta).
_ALL: sa.Select[Any] = sa.select(sa.literal_column("*")).select_from(sessions)
# A delta poll's statements as text, which compiles ~5x faster still (the same SQL as Core's).
_SOME = sa.text('SELECT * FROM sessions WHERE calendar = :calendar AND "key" IN :keys UNION ALL '
                "SELECT * FROM sessions WHERE calendar = :calendar AND uid IN :uids").bindparams(
    sa.bindparam("keys", expanding=True), sa.bindparam("uids", expanding=True))
_OF_CLIENT = sa.text("SELECT * FROM sessions WHERE client_id = :client_id")


def _from_db(r: Any) -> SessionRow:
    return SessionRow(
        calendar=r.calendar, key=r.key, uid=r.uid, start=dt(r.start), end=dt(r.end),  # type: ignore[arg-type]
        status=r.status, client_id=r.client_id, client_name=r.client_name or "",
        client_email=r.client_email or "", ambiguous=r.ambiguous or "", no_show=bool(r.no_show),
        reached=bool(r.reached), present=bool(r.present), first_seen_at=dt(r.first_seen_at),
        last_seen_at=dt(r.last_seen_at), cancelled_at=dt(r.cancelled_at), booked_at=dt(r.booked_at),
        candidates=r.candidates or "")


def from_prefixed(r: Any, prefix: str) -> SessionRow:
    """The SessionRow in mapping ``r`` whose session columns are named ``prefix`` + column
    (a session joined into another query)."""
    def v(name: str) -> Any:
        return r[prefix + name]

    return SessionRow(
        calendar=v("calendar"), key=v("key"), uid=v("uid"), start=dt(v("start")), end=dt(v("end")),  # type: ignore[arg-type]
        status=v("status"), client_id=v("client_id"), client_name=v("client_name") or "",
        client_email=v("client_email") or "", ambiguous=v("ambiguous") or "", no_show=bool(v("no_show")),
        reached=bool(v("reached")), present=bool(v("present")), first_seen_at=dt(v("first_seen_at")),
        last_seen_at=dt(v("last_seen_at")), cancelled_at=dt(v("cancelled_at")), booked_at=dt(v("booked_at")),
        candidates=v("candidates") or "")


def _to_db(row: SessionRow) -> dict[str, Any]:
    return {"calendar": row.calendar, "key": row.key, "uid": row.uid, "start": ts(row.start),
            "end": ts(row.end), "status": row.status, "client_id": row.client_id,
            "client_name": row.client_name, "client_email": row.client_email,
            "ambiguous": row.ambiguous, "no_show": row.no_show, "reached": row.reached,
            "present": row.present, "first_seen_at": ts(row.first_seen_at),
            "last_seen_at": ts(row.last_seen_at), "cancelled_at": ts(row.cancelled_at),
            "booked_at": ts(row.booked_at), "candidates": row.candidates}


def load(conn: Connection, calendar: str) -> dict[str, SessionRow]:
    rows = conn.execute(_ALL.where(sessions.c.calendar == calendar)).all()
    return {r.key: _from_db(r) for r in rows}


def load_some(conn: Connection, calendar: str, keys: set[str], uids: set[str]) -> dict[str, SessionRow]:
    """The calendar's sessions with one of ``keys`` or of one of the events ``uids`` (a delta's):
    one statement when both fit in one chunk (a small delta's, the usual), else by chunks of each.
    The statement is a UNION ALL, not an OR: the keys are looked up in the primary key, and only
    the UIDs (which no index covers) scan the calendar's rows, once."""
    out: dict[str, SessionRow] = {}
    if len(keys) + len(uids) <= CHUNK:
        for r in conn.execute(_SOME, {"calendar": calendar, "keys": sorted(keys), "uids": sorted(uids)}).all():
            if r.key not in out:
                out[r.key] = _from_db(r)
        return out
    for column, values in ((sessions.c.key, sorted(keys)), (sessions.c.uid, sorted(uids))):
        for i in range(0, len(values), CHUNK):
            rows = conn.execute(_ALL.where(sessions.c.calendar == calendar,
                                           column.in_(values[i:i + CHUNK]))).all()
            out.update((r.key, _from_db(r)) for r in rows if r.key not in out)
    return out


def window_counts(conn: Connection, calendar: str, start: datetime, end: datetime,
                  now: datetime) -> tuple[int, int]:
    """(present sessions starting in [start, end), the active ones among them after ``now``):
    what the vanish breaker weighs a delta against when only its rows were loaded."""
    shown = sa.and_(sessions.c.calendar == calendar, sessions.c.present.is_(True),
                    sessions.c.start >= ts(start), sessions.c.start < ts(end))
    ahead = sa.case((sa.and_(sessions.c.status == "active", sessions.c.start > ts(now)), 1), else_=0)
    n, upcoming = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(ahead), 0))
                               .select_from(sessions).where(shown)).one()     # one pass, not two
    return int(n), int(upcoming)


def get(conn: Connection, calendar: str, key: str) -> SessionRow | None:
    r = conn.execute(_ALL.where(sessions.c.calendar == calendar,
                                sessions.c.key == key)).first()
    return _from_db(r) if r else None


def save(conn: Connection, rows: list[SessionRow], previous: dict[str, SessionRow]) -> None:
    """Insert new rows and update the ones that changed (``last_seen_at`` alone is no change),
    each in the columns that changed (``previous``: the rows as stored)."""
    inserts = [_to_db(r) for r in rows if r.key not in previous]
    if inserts:
        conn.execute(sessions.insert(), inserts)
    for r in rows:
        old = previous.get(r.key)
        if old is None or replace(old, last_seen_at=r.last_seen_at) == r:
            continue
        was, now = _to_db(old), _to_db(r)      # the stored row is ``was``: set only what differs
        changed = {k: v for k, v in now.items() if v != was[k]}
        conn.execute(text_update("sessions", tuple(changed), ("calendar", "key")),
                     {**changed, "at_calendar": r.calendar, "at_key": r.key})


def for_client(conn: Connection, client_id: str) -> list[SessionRow]:
    rows = conn.execute(_OF_CLIENT, {"client_id": client_id}).all()
    return [_from_db(r) for r in rows]


def for_clients(conn: Connection, client_ids: set[str]) -> dict[str, list[SessionRow]]:
    """Client id → that client's sessions on every calendar, for several clients at once."""
    ids = sorted(client_ids)
    out: dict[str, list[SessionRow]] = {}
    for i in range(0, len(ids), CHUNK):
        for r in conn.execute(_ALL.where(sessions.c.client_id.in_(ids[i:i + CHUNK]))).all():
            out.setdefault(r.client_id, []).append(_from_db(r))
    return out


def coming_back(conn: Connection, client_id: str, missed: Missed, rebook_window: timedelta) -> SessionRow | None:
    """The client's session (on any calendar) that shows they are coming back after
    ``missed`` (``daemon.rules.coming_back``), else None."""
    return rules.coming_back(missed, for_client(conn, client_id), rebook_window)
