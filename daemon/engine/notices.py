"""Messages to the therapist alone, outside any client's cadence: the one reschedule task
listing the sessions the therapist cancelled, and the safety alerts.

Each notice is a durable row claimed before its hand-off like a step (planned → sending →
sent), so a restart never sends one twice.  They go through the email channel addressed
to the therapist; nothing here ever reaches a client.  Logs carry notice ids only.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from connectors.channels.base import Message
from daemon.engine.context import CycleContext
from daemon.engine.messages import message_id
from daemon.errors import ChannelError, TemplateError
from daemon.store import followups
from daemon.store.tables import dt, notices, ts

log = logging.getLogger(__name__)


def create(conn: Any, notice_id: str, kind: str, now: datetime, due_at: datetime, *,
           sequence_id: str | None = None, refs: list[str] | None = None) -> bool:
    """Plan a notice once (its id is deterministic); True when it is new."""
    if conn.execute(sa.select(notices.c.id).where(notices.c.id == notice_id)).first() is not None:
        return False
    conn.execute(notices.insert().values(id=notice_id, kind=kind, sequence_id=sequence_id,
                                         refs=json.dumps(refs or []), created_at=ts(now), due_at=ts(due_at),
                                         state="planned"))
    return True


def for_sequence(conn: Any, sequence_id: str) -> list[Any]:
    return list(conn.execute(sa.select(notices).where(notices.c.sequence_id == sequence_id)
                             .order_by(notices.c.due_at)).mappings().all())


def send_due(ctx: CycleContext, counts: dict[str, int]) -> dict[str, int]:
    """Send every notice that is due, and a digest interrupted earlier today; returns ``counts``
    with ``notice`` added."""
    now = ctx.clock.now()
    with ctx.store.transaction() as conn:
        due = [r[0] for r in conn.execute(sa.select(notices.c.id).where(
            notices.c.state == "planned", notices.c.due_at <= ts(now)).order_by(notices.c.due_at)).all()]
    for notice_id in due:
        if ctx.stopping.is_set():
            break
        outcome = _one(ctx, notice_id, now)
        if outcome:
            counts[f"notice {outcome}"] = counts.get(f"notice {outcome}", 0) + 1
    from daemon.engine.digest_send import resume

    if not ctx.stopping.is_set() and resume(ctx):     # a digest whose hand-off was interrupted
        counts["digest resent"] = counts.get("digest resent", 0) + 1
    return counts


def _one(ctx: CycleContext, notice_id: str, now: datetime) -> str:
    from daemon.engine import safety

    with ctx.store.transaction() as conn:
        row = conn.execute(sa.select(notices).where(notices.c.id == notice_id)).mappings().first()
        if row is None or row["state"] != "planned":
            return ""
        if row["kind"] == "safety_alert" and safety.outcome_recorded(conn, row["sequence_id"]):
            _finish(conn, notice_id, "skipped", now, "the client was reached")
            log.info("notice %s not needed: the outcome is recorded", notice_id)
            return "skipped"
        try:
            message = build(ctx, conn, row)
        except TemplateError as exc:
            conn.execute(notices.update().where(notices.c.id == notice_id)
                         .values(reason=f"held: template: {str(exc).splitlines()[0][:300]}"))
            ctx.store.report(conn, now, "template", "", "safety_call", str(exc).splitlines()[0][:500])
            log.error("notice %s held: its template cannot be rendered", notice_id)
            return "held"
        claimed = conn.execute(notices.update().where(notices.c.id == notice_id, notices.c.state == "planned")
                               .values(state="sending")).rowcount == 1
    if not claimed:
        return ""
    state, reason = "sent", None
    try:
        ctx.email.send(message)
    except ChannelError as exc:
        state, reason = ("planned", exc.reason) if exc.outcome in ("retry", "paused", "held") \
            else (exc.outcome if exc.outcome in ("failed", "uncertain") else "failed", exc.reason)
    except Exception as exc:  # it may have gone out: never again automatically
        state, reason = "uncertain", f"unexpected error {type(exc).__name__}"
    with ctx.store.transaction() as conn:
        _finish(conn, notice_id, state, now, reason)
        if state != "planned":       # the contact log of each follow-up it is about
            for seq_id in [row["sequence_id"]] if row["sequence_id"] else json.loads(row["refs"] or "[]"):
                ctx.store.audit(conn, now, f"{row['kind']}_{state}", sequence_id=seq_id, detail="to the therapist")
        if state in ("failed", "uncertain"):
            ctx.store.report(conn, now, "failed", "", notice_id, f"a note to you could not be sent: {reason}"[:500])
    log.log(logging.INFO if state == "sent" else logging.WARNING, "notice %s (%s): %s", notice_id, row["kind"], state)
    return state


def _finish(conn: Any, notice_id: str, state: str, now: datetime, reason: str | None) -> None:
    conn.execute(notices.update().where(notices.c.id == notice_id).values(
        state=state, reason=reason, finished_at=None if state == "planned" else ts(now)))


def build(ctx: CycleContext, conn: Any, row: Any) -> Message:
    """The message of one notice, addressed to the therapist; raises TemplateError."""
    from daemon.engine import safety

    therapist = ctx.config.therapist_of(calendar_of_notice(conn, row))
    if row["kind"] == "reschedule":
        subject, text = reschedule_text(ctx, conn, json.loads(row["refs"] or "[]"))
    elif row["kind"] == "safety_call":
        return safety.call_task(ctx, conn, row["sequence_id"], row["id"])
    else:
        subject, text = safety.alert_text(ctx, conn, row["sequence_id"])
    return Message(step_id=row["id"], sequence_id=row["sequence_id"] or "", audience="therapist",
                   to_address=therapist.email, to_name=therapist.name, subject=subject, text=text,
                   message_id=message_id(row["id"], ctx.config.email.common.sender), due_at=dt(row["due_at"]))


def calendar_of_notice(conn: Any, row: Any) -> str:
    """The calendar a notice is about (its sequence's, or its first listed one's): whose it is."""
    refs = [row["sequence_id"]] if row["sequence_id"] else json.loads(row["refs"] or "[]")
    s = followups.sequence(conn, refs[0]) if refs else None
    return s["calendar"] if s is not None else ""


def reschedule_text(ctx: CycleContext, conn: Any, sequence_ids: list[str]) -> tuple[str, str]:
    """One task listing the sessions the therapist cancelled, so they can offer new times."""
    from daemon.templating.templates import readable_phone, when

    p = ctx.config.practice
    region = ctx.config.clients.default_region
    lines = []
    for seq_id in sequence_ids:
        s = followups.sequence(conn, seq_id)
        if s is None:
            continue
        client = ctx.client_of(s["client_id"], s["client_name"], s["client_email"])
        start = dt(s["session_start"])
        assert start is not None
        phone = readable_phone(client.phone, region) or "no phone number on file"
        lines.append(f"  - {client.name}, {phone}: {when(start, tz=p.timezone, locale=p.locale)}")
    n = len(lines)
    subject = f"Reschedule: {n} session{'s' if n != 1 else ''} you cancelled"
    text = (f"You cancelled {'these sessions' if n != 1 else 'this session'} yourself (out of office, or "
            "marked as your cancellation), so welcomeback does not follow up with the "
            f"client{'s' if n != 1 else ''}. Offer new times when it suits you:\n\n" + "\n".join(lines) +
            "\n\nNothing was sent to any client. This note goes only to you.\n")
    return subject, text
