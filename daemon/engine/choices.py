"""The therapist's choice of client for an ambiguous event, remembered per calendar event (UID).

A session whose title or attendees fit several directory clients is never followed up on a
guess; the console lists it with its candidates.  The therapist's choice is kept in
``event_choices``: every later poll identifies the event (each occurrence of a series) as
that client while the client is still one of the candidates (``daemon.engine.identify``).
Choosing also settles what is already stored: the event's sessions name the client, the
follow-ups recorded closed as ``ambiguous`` start for them (one open follow-up per client,
as always), the ``ambiguous`` reports go, and the client's contact log says who chose.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from daemon.engine.context import CycleContext
from daemon.errors import UserError
from daemon.model import Client, Trigger
from daemon.store import followups
from daemon.store.tables import event_choices, sequences, sessions, ts

log = logging.getLogger(__name__)
_CHOICES = sa.text("SELECT uid, client_id FROM event_choices WHERE calendar = :calendar")   # text: compiled in a fraction of Core's time


def load(conn: Connection, calendar: str) -> dict[str, str]:
    """UID → the chosen client id, for one calendar."""
    rows = conn.execute(_CHOICES, {"calendar": calendar}).all()
    return {r[0]: r[1] for r in rows}


def waiting(conn: Connection) -> list[dict[str, Any]]:
    """The ambiguous events still on the calendars: calendar, uid, why, their candidates (ids)
    and the starts of their sessions, earliest first."""
    rows = conn.execute(sa.select(sessions.c.calendar, sessions.c.uid, sessions.c.start, sessions.c.ambiguous,
                                  sessions.c.candidates)
                        .where(sessions.c.ambiguous != "", sessions.c.present.is_(True))
                        .order_by(sessions.c.start)).mappings().all()
    events: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        event = events.setdefault((r["calendar"], r["uid"]), {
            "calendar": r["calendar"], "uid": r["uid"], "why": r["ambiguous"], "starts": [],
            "candidates": candidate_ids(r["candidates"])})
        event["starts"].append(r["start"])
    return list(events.values())


def candidate_ids(text: str | None) -> list[str]:
    try:
        found = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(x) for x in found] if isinstance(found, list) else []


def choose(ctx: CycleContext, calendar: str, uid: str, client_id: str, now: datetime, by: str) -> int:
    """Remember ``client_id`` for the event and settle its stored sessions and follow-ups;
    returns how many follow-ups with steps to send were started.  Raises UserError when the
    event is not waiting for a choice or the client is not one of its candidates."""
    from daemon.engine import planning

    started = 0
    with ctx.store.transaction() as conn:
        rows = conn.execute(sa.select(sessions).where(sessions.c.calendar == calendar, sessions.c.uid == uid,
                                                      sessions.c.ambiguous != "")).mappings().all()
        if not rows:
            raise UserError("that appointment is no longer waiting for a choice; open the page again")
        allowed = {i for r in rows for i in candidate_ids(r["candidates"])}
        client = ctx.directory.by_id(client_id)
        if client is None or client_id not in allowed:
            raise UserError("choose one of the clients listed for that appointment")
        conn.execute(event_choices.delete().where(event_choices.c.calendar == calendar, event_choices.c.uid == uid))
        conn.execute(event_choices.insert().values(calendar=calendar, uid=uid, client_id=client.id, at=ts(now)))
        keys = [r["key"] for r in rows]
        conn.execute(sessions.update().where(sessions.c.calendar == calendar, sessions.c.key.in_(keys)).values(
            client_id=client.id, client_name=client.name, client_email=client.email or "", ambiguous="",
            candidates=""))
        for key in keys:
            ctx.store.resolve(conn, "ambiguous", calendar, key)
        ctx.store.audit(conn, now, "client_chosen", client_id=client.id,
                        detail=f"chosen for an appointment that fitted several clients, {by}")
        started = _start(ctx, conn, calendar, keys, client, now, planning)
    log.info("client chosen for an ambiguous appointment (console); %d follow-up(s) started", started)
    return started


def _start(ctx: CycleContext, conn: Connection, calendar: str, keys: list[str], client: Client,
           now: datetime, planning: Any) -> int:
    """The event's follow-ups recorded closed as ``ambiguous`` start for ``client`` (earliest
    session first; one that cannot start now is recorded with the reason, as planning does)."""
    lookback = ctx.config.detection.lookback.approx
    started = 0
    closed = conn.execute(sa.select(sequences).where(
        sequences.c.calendar == calendar, sequences.c.session_key.in_(keys),
        sequences.c.closed_reason == "ambiguous").order_by(sequences.c.session_start)).mappings().all()
    for row in closed:
        conn.execute(sequences.update().where(sequences.c.id == row["id"]).values(
            client_id=client.id, client_name=client.name, client_email=client.email or ""))
        missed = followups.missed_of(row)
        if missed.start < now - lookback:
            continue
        trigger = Trigger(row["trigger"], calendar, row["session_key"], missed.start, client.id, client.name,
                          client.email or "", "", missed.detected_at)
        why_not = planning._why_not(ctx, conn, trigger, row["id"])
        if why_not is None:
            started += planning._begin(ctx, conn, trigger, row["id"], now, reopen=True)
        else:
            conn.execute(sequences.update().where(sequences.c.id == row["id"]).values(closed_reason=why_not))
    return started
