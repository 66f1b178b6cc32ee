"""Clients with a safety plan: an urgent call task at once, a second alert at the end of that
working day, and a follow-up that is never closed silently.

A no-show of a client whose directory entry says ``safety_concern = yes`` gets, instead of
the next-business-day call task, a call task due at detection rendered from the
``safety_call`` template (the practice's ``[safety] protocol`` and the client's emergency
contact).  With an SMS phone step, the urgent call task goes to the therapist by email as a
notice and the text message stays as planned.  If the therapist has not recorded an outcome
by the end of that working day, a second alert goes to them.  Such a follow-up is never
skipped as ``too_late`` and stays in "needs attention" until the therapist records an
outcome (``reached``, ``optout``, or a resolve).  The emergency contact appears only in
messages to the therapist: it is a call-task-only template variable and never logged.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, time, timezone
from typing import Any

import sqlalchemy as sa

from connectors.channels.base import Message
from daemon.config.durations import WorkingHours
from daemon.engine import notices
from daemon.engine.context import CycleContext
from daemon.model import Client, PlannedStep, Trigger
from daemon.store import followups
from daemon.store import sessions as session_store
from daemon.store.tables import audit, dt, notices as notices_table, sequences, steps, ts

log = logging.getLogger(__name__)
TEMPLATE = "safety_call"
OUTCOMES = ("reached", "opted_out", "dismissed", "withdrawn", "therapist_cancelled")


def applies(trigger: Trigger, client: Client) -> bool:
    return trigger.kind == "no_show" and client.safety_concern


def adjust(ctx: CycleContext, conn: Any, trigger: Trigger, client: Client, planned: list[PlannedStep],
           seq: str, now: datetime) -> list[PlannedStep]:
    """The steps of a safety client's no-show: the urgent call task due now, and the second
    alert planned for the end of the working day."""
    if not applies(trigger, client):
        return planned
    out = list(planned)
    if ctx.phone.medium == "call-task" and out and out[0].channel == "phone":
        out[0] = replace(out[0], template=TEMPLATE, due_at=now)
    else:
        notices.create(conn, f"{seq}-urgent", "safety_call", now, now, sequence_id=seq)
    notices.create(conn, f"{seq}-alert", "safety_alert", now,
                   end_of_working_day(ctx.config.therapist_of(trigger.calendar).working_hours, now,
                                      ctx.config.practice.timezone),
                   sequence_id=seq)
    log.warning("follow-up %s: a client with a safety concern missed a session; urgent call task now", seq)
    return out


def end_of_working_day(hours: WorkingHours, now: datetime, tz: Any) -> datetime:
    """The close of the working hours ``now`` lies in, else of the next ones to open."""
    opens = hours.next_open(now, tz).astimezone(tz)
    for weekday, start, end in hours.spans:
        if weekday == opens.weekday() and start <= opens.time() < end:
            return datetime.combine(opens.date(), end, tzinfo=tz).astimezone(timezone.utc)
    return datetime.combine(now.astimezone(tz).date(), time(17), tzinfo=tz).astimezone(timezone.utc)


def is_safety(conn: Any, seq_id: str) -> bool:
    """Whether the follow-up is a safety client's no-show."""
    step = conn.execute(sa.select(steps.c.id).where(steps.c.sequence_id == seq_id,
                                                    steps.c.template == TEMPLATE)).first()
    return step is not None or bool(notices.for_sequence(conn, seq_id))


def outcome_recorded(conn: Any, seq_id: str | None) -> bool:
    """The therapist recorded what became of it: reached (CLI, calendar marker), opted out,
    resolved, dismissed, or the calendar no longer shows the no-show."""
    s = followups.sequence(conn, seq_id) if seq_id else None
    if s is None:
        return True
    if s["closed_reason"] in OUTCOMES:
        return True
    flag = followups.client_flag(conn, s["client_id"])
    if flag and ((flag["reached_at"] and flag["reached_at"] >= s["detected_at"]) or flag["opted_out_at"]):
        return True
    session = session_store.get(conn, s["calendar"], s["session_key"])
    if session is not None and session.reached:
        return True
    return conn.execute(sa.select(audit.c.id).where(audit.c.sequence_id == seq_id,
                                                    audit.c.event.in_(("resolved", "reached")))).first() is not None


def awaiting_outcome(conn: Any) -> list[Any]:
    """Safety follow-ups still waiting for the therapist's outcome (the sequence rows)."""
    ids = {r[0] for r in conn.execute(sa.select(steps.c.sequence_id).where(steps.c.template == TEMPLATE)).all()}
    ids |= {r[0] for r in conn.execute(sa.select(notices_table.c.sequence_id).where(
        notices_table.c.kind.in_(("safety_call", "safety_alert")))).all() if r[0]}
    rows = conn.execute(sa.select(sequences).where(sequences.c.id.in_(sorted(ids)))
                        .order_by(sequences.c.session_start)).mappings().all() if ids else []
    return [r for r in rows if not outcome_recorded(conn, r["id"])]


def call_task(ctx: CycleContext, conn: Any, seq_id: str, notice_id: str) -> Message:
    """The urgent call task as a notice (an SMS phone step): rendered from ``safety_call``."""
    from daemon.engine import messages

    s = followups.sequence(conn, seq_id)
    client = ctx.client_of(s["client_id"], s["client_name"], s["client_email"])
    step = {"id": notice_id, "sequence_id": seq_id, "session_start": s["session_start"], "due_at": s["detected_at"],
            "trigger": s["trigger"], "template": TEMPLATE, "calendar": s["calendar"]}
    return messages.build_for(step, client, "call-task", ctx.config, ctx.templates)


def alert_text(ctx: CycleContext, conn: Any, seq_id: str) -> tuple[str, str]:
    """The second alert: no outcome recorded by the end of the working day."""
    from daemon.templating.templates import readable_phone, when

    p = ctx.config.practice
    s = followups.sequence(conn, seq_id)
    client = ctx.client_of(s["client_id"], s["client_name"], s["client_email"])
    start = dt(s["session_start"])
    assert start is not None
    phone = readable_phone(client.phone, ctx.config.clients.default_region) or "no phone number on file"
    text = (f"Second alert: {client.name} ({phone}) did not come to the session on "
            f"{when(start, tz=p.timezone, locale=p.locale)}, and their directory entry notes a safety concern. "
            "You have not marked them reached today.\n\n"
            f"Your safety protocol:\n{ctx.config.safety.protocol}\n\n"
            f"Emergency contact: {client.emergency_contact or 'none on file'}\n\n"
            f"Once you have an outcome, record it: welcomeback reached \"{client.name}\" "
            "(this follow-up stays in 'needs your attention' until then).\n"
            "This note goes only to you.\n")
    return f"Second alert: {client.short_name} not reached yet", text
