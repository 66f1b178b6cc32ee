"""The therapist's daily digest: what to do today and what needs attention.

It says only what the therapist needs: calls to make today (name and number),
what was sent since the last digest, what failed or is uncertain and why (the
reason recorded in the store, never a message body), ambiguous client matches,
calendars that are degraded, and clients who missed twice or more in 60 days
(all of them in the first digest, later only on a day one of them missed again,
so the list does not repeat daily); held bursts and safety follow-ups waiting for an
outcome; patterns worth talking about together; and follow-ups that ended with the
invitation to return given (it suggests documenting it: nothing more is ever sent, and
never a discharge).

In a group practice (``[[therapists]]``) each therapist gets their own digest about the
sessions of their calendars only; what belongs to no calendar (a paused channel, a broken
template, the inbox) goes to the ``[practice]`` therapist.  Without ``[[therapists]]`` the one
digest has everything, as before.

Once a day per therapist at most: the day is claimed in the store (``daemon.store.digests``)
before the hand-off, like a step, so a second replica never sends the same day's digest
twice; a definite failure releases the claim, an interrupted one is taken over once (see
there).  Reports shown are marked ``notified`` and are not repeated.  Logs carry no client data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from babel.dates import format_date, format_time

from connectors.channels.base import Message
from daemon.engine import digest_practice, patterns, safety
from daemon.engine.context import CycleContext
from daemon.engine.messages import message_id, step_token
from daemon.engine.planning import rebooked
from daemon.errors import ChannelError
from daemon.rules import is_a_miss
from daemon.config.therapists import Therapist
from daemon.store import digests as claims
from daemon.store import followups
from daemon.store.tables import calendars, dt, reports, sequences, steps, ts

log = logging.getLogger(__name__)
ATTENTION = ("failed", "uncertain", "too_late", "paused", "ambiguous", "degraded", "template", "replied", "inbox")
STANDING = ("template",)   # shown every day until resolved: the steps using it are held
REPEAT_WINDOW = timedelta(days=60)
LABELS = {"no_show": "not attended", "late_cancel": "cancelled at short notice", "cancelled": "cancelled"}


@dataclass
class Digest:
    """The sections of one digest, as lines; ``report_ids`` are marked notified once sent."""

    calls: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    attention: list[str] = field(default_factory=list)
    calendars: list[str] = field(default_factory=list)
    repeats: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    invitations: list[str] = field(default_factory=list)
    report_ids: list[int] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.calls or self.sent or self.attention or self.calendars or self.repeats
                    or self.patterns or self.invitations)


@dataclass(frozen=True)
class Scope:
    """Whose digest: the calendars it covers (None: all, a practice without [[therapists]]) and
    whether it carries what belongs to no calendar."""

    calendars: frozenset[str] | None = None
    practice_wide: bool = True

    def owns(self, calendar: str | None) -> bool:
        if self.calendars is None:
            return True
        return calendar in self.calendars if calendar else self.practice_wide

    def rows(self, rows: Any) -> list[Any]:
        """The rows (with a ``calendar``) of this digest's calendars."""
        return [r for r in rows if self.calendars is None or r["calendar"] in self.calendars]


def scope_of(ctx: CycleContext, therapist: Therapist) -> Scope:
    config = ctx.config
    if not config.therapists:
        return Scope()
    mine = frozenset(c.name for c in config.calendars if config.therapist_of(c.name).key == therapist.key)
    return Scope(mine, therapist.key == config.practice_therapist.key)


class _Fmt:
    """Local dates and times in the practice's locale."""

    def __init__(self, ctx: CycleContext) -> None:
        self.tz = ctx.config.practice.timezone
        self.locale = ctx.config.practice.locale

    def when(self, value: str | None) -> str:
        moment = dt(value)
        if moment is None:
            return "-"
        local = moment.astimezone(self.tz)
        return (f"{format_date(local.date(), 'EEE MMM d', locale=self.locale)} "
                f"{format_time(local, 'short', tzinfo=self.tz, locale=self.locale)}")

    def time(self, value: str | None) -> str:
        moment = dt(value)
        return format_time(moment, "short", tzinfo=self.tz, locale=self.locale) if moment else "-"


def day_of(ctx: CycleContext, now: datetime) -> str:
    """The practice's local date of ``now`` (what a digest day is)."""
    return now.astimezone(ctx.config.practice.timezone).date().isoformat()


def last_digest(ctx: CycleContext, therapist: Therapist | None = None, now: datetime | None = None) -> dict[str, Any]:
    """The therapist's previous digest (before today): ``day`` (local ISO date), ``at`` (store time), ``state``."""
    t = therapist or ctx.config.practice_therapist
    day = day_of(ctx, now or ctx.clock.now())
    with ctx.store.transaction() as conn:
        return claims.previous(conn, t.key, day, legacy=t.key == ctx.config.practice_therapist.key)


def build_digest(ctx: CycleContext, now: datetime, therapist: Therapist | None = None) -> Message | None:
    """Today's digest for the therapist (default: the [practice] one), or None when there is nothing to say."""
    prepared = prepare(ctx, now, therapist or ctx.config.practice_therapist)
    return prepared[0] if prepared else None


def prepare(ctx: CycleContext, now: datetime, therapist: Therapist, note: str = "") -> tuple[Message, Digest] | None:
    """The therapist's digest and its sections, or None when there is nothing to say; ``note``
    opens the text (a digest sent again)."""
    previous = last_digest(ctx, therapist, now)
    last = dt(previous.get("at"))
    since = last if last is not None and last < now else now - timedelta(days=1)
    found = collect(ctx, now, since=since, last=last, scope=scope_of(ctx, therapist))
    if found.empty():
        return None
    if previous.get("state") in ("sending", "uncertain"):     # never silently lost: said the next day
        found.attention.insert(0, f"DIGEST: your digest of {previous['day']} may not have reached you "
                                  "(sending it was interrupted); its open calls and problems are listed again here")
    p = ctx.config.practice
    day = now.astimezone(p.timezone).date()
    title = format_date(day, "EEEE, MMMM d", locale=p.locale)
    step_id = f"digest-{day.isoformat()}"
    if ctx.config.therapists and therapist.key != ctx.config.practice_therapist.key:
        step_id += "-" + step_token(therapist.key)[:8]      # each therapist's digest its own Message-ID
    message = Message(step_id=step_id, sequence_id="", audience="therapist", to_address=therapist.email,
                      to_name=therapist.name, subject=f"welcomeback: your day, {title}",
                      text=(note + "\n\n" if note else "") + _text(found, title),
                      message_id=message_id(step_id, ctx.config.email.common.sender))
    return message, found


def collect(ctx: CycleContext, now: datetime, *, since: datetime, last: datetime | None,
            scope: Scope | None = None) -> Digest:
    """Read every section from the store; ``last`` is the previous digest (None: the first);
    ``scope`` whose digest it is (default: everything)."""
    found = Digest()
    fmt = _Fmt(ctx)
    scope = scope or Scope()
    with ctx.store.transaction() as conn:
        if ctx.phone.medium != "sms":
            found.calls = _calls(ctx, conn, now, fmt, scope)
        found.sent = _sent(ctx, conn, now, since, fmt, scope)
        found.attention += digest_practice.attention(ctx, conn, fmt, scope)
        _reports(ctx, conn, found, fmt, scope)
        found.repeats = _repeats(ctx, conn, now, last, scope)
        found.patterns = digest_practice.patterns_since(ctx, conn, since, now, scope)
        found.invitations = digest_practice.invitations(ctx, conn, since, now, fmt, scope)
    return found


def _client(ctx: CycleContext, row: Any) -> Any:
    return ctx.client_of(row["client_id"], row["client_name"], row["client_email"])


def _calls(ctx: CycleContext, conn: Any, now: datetime, fmt: _Fmt, scope: Scope) -> list[str]:
    tz = ctx.config.practice.timezone
    day = now.astimezone(tz).date()
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    window = ctx.config.detection.rebook_window.approx
    rows = [r for r in scope.rows(followups.all_steps(conn)) if r["channel"] == "phone" and r["due_at"] < ts(end)
            and ((r["state"] == "planned" and not rebooked(conn, r, window))
                 or (r["state"] == "sent" and r["due_at"] >= ts(start)))]
    out = []
    for r in sorted(rows, key=lambda r: r["due_at"]):
        client = _client(ctx, r)
        late = " (overdue)" if r["due_at"] < ts(start) else ""
        urgent = "URGENT (safety concern): " if r["template"] == safety.TEMPLATE else ""
        pattern = patterns.note(conn, ctx.config, r)
        out.append(f"{urgent}{client.name}, {client.phone or 'no phone number on file'} - "
                   f"{LABELS.get(r['trigger'], r['trigger'])} {fmt.when(r['session_start'])}; "
                   f"due {fmt.time(r['due_at'])}{late}" + (f"; {pattern}" if pattern else ""))
    return out


def _sent(ctx: CycleContext, conn: Any, now: datetime, since: datetime, fmt: _Fmt, scope: Scope) -> list[str]:
    rows = [r for r in scope.rows(followups.all_steps(conn))
            if r["state"] == "sent" and (ts(since) or "") < (r["finished_at"] or "") <= (ts(now) or "")]
    return [f"{_client(ctx, r).name}: {_what(ctx, r)} (step {r['n']}), {fmt.when(r['finished_at'])}"
            for r in sorted(rows, key=lambda r: r["finished_at"])]


def _what(ctx: CycleContext, row: Any) -> str:
    if row["channel"] == "email":
        return "email"
    return {"sms": "text message", "call-task": "call task"}.get(ctx.phone.medium, "phone step")


def _reports(ctx: CycleContext, conn: Any, found: Digest, fmt: _Fmt, scope: Scope) -> None:
    rows = conn.execute(sa.select(reports).where(reports.c.kind.in_(ATTENTION), sa.or_(
        reports.c.notified.is_(False), reports.c.kind.in_(STANDING)))
                        .order_by(reports.c.at, reports.c.id)).mappings().all()
    rows = [r for r in rows if scope.calendars is None or scope.owns(_report_calendar(conn, r))]
    for r in rows:
        found.report_ids.append(r["id"])
        if r["kind"] != "degraded":
            found.attention.append(_attention_line(ctx, conn, r, fmt))
    now_degraded = [c for c in conn.execute(sa.select(calendars).where(calendars.c.degraded.is_not(None)))
                    .mappings().all() if scope.owns(c["name"])]
    for c in now_degraded:
        found.calendars.append(f"{c['name']}: degraded since {fmt.when(c['degraded_since'])}: {c['degraded']}")
    named = {c["name"] for c in now_degraded}
    for r in rows:
        if r["kind"] == "degraded" and r["calendar"] not in named:
            named.add(r["calendar"])
            found.calendars.append(f"{r['calendar']}: was degraded at {fmt.when(r['at'])}: {r['detail']} "
                                   "(healthy again now)")


def _report_calendar(conn: Any, report: Any) -> str:
    """The calendar a report is about: its own, or its step's ("" for the practice as a whole)."""
    if report["calendar"]:
        return str(report["calendar"])
    step = followups.step_row(conn, report["ref"]) if report["ref"] else None
    return str(step["calendar"]) if step is not None else ""


def _attention_line(ctx: CycleContext, conn: Any, report: Any, fmt: _Fmt) -> str:
    kind = report["kind"].replace("_", " ").upper()
    if report["kind"] == "template":
        return (f"{kind}: '{report['ref']}' cannot be rendered ({report['detail']}); the steps using it wait "
                f"until you fix it: welcomeback templates edit {report['ref']}")
    if report["kind"] == "paused":
        return f"{kind}: the {report['ref']} channel is paused: {report['detail']}"
    if report["kind"] == "ambiguous":
        seq = conn.execute(sa.select(sequences).where(sequences.c.calendar == report["calendar"],
                                                      sequences.c.session_key == report["ref"])).mappings().first()
        when = f"{LABELS.get(seq['trigger'], seq['trigger'])} {fmt.when(seq['session_start'])}" if seq else "a session"
        reason = report["detail"].split(": ", 1)[-1]
        return f"{kind}: calendar '{report['calendar']}', {when}: {reason}; not followed up"
    step = followups.step_row(conn, report["ref"])
    if step is None:
        return f"{kind}: {report['detail']}"
    reason = " ".join((step["reason"] or report["detail"]).split())
    return f"{kind}: {_client(ctx, step).name}: {_what(ctx, step)} (step {step['n']}) - {reason}"


def _misses(conn: Any, now: datetime, scope: Scope) -> dict[str, tuple[int, str]]:
    """Client id → (missed sessions in 60 days, when the latest was noticed); one per session,
    whatever its triggers, counting only what ``rules.is_a_miss`` calls a miss."""
    followed = sa.select(steps.c.id).where(steps.c.sequence_id == sequences.c.id).exists()
    rows = conn.execute(sa.select(sequences.c.client_id, sequences.c.calendar, sequences.c.session_key,
                                  sequences.c.closed_reason, sequences.c.detected_at, followed.label("followed"))
                        .where(sequences.c.session_start >= ts(now - REPEAT_WINDOW), sequences.c.client_id != "")
                        ).mappings().all()
    sessions: dict[str, set[tuple[str, str]]] = {}
    latest: dict[str, str] = {}
    for r in scope.rows(rows):
        if is_a_miss(r["closed_reason"], bool(r["followed"])):
            sessions.setdefault(r["client_id"], set()).add((r["calendar"], r["session_key"]))
            latest[r["client_id"]] = max(latest.get(r["client_id"], ""), r["detected_at"])
    return {c: (len(found), latest[c]) for c, found in sessions.items() if len(found) >= 2}


def _repeats(ctx: CycleContext, conn: Any, now: datetime, last: datetime | None, scope: Scope) -> list[str]:
    """Clients with two or more misses in 60 days: all in the first digest, later only
    those who missed again since the previous one."""
    out = []
    for client_id, (count, latest) in sorted(_misses(conn, now, scope).items()):
        if last is None or latest > (ts(last) or ""):
            latest_row = conn.execute(sa.select(sequences).where(sequences.c.client_id == client_id)
                                      .order_by(sequences.c.detected_at.desc())).mappings().first()
            out.append(f"{_client(ctx, latest_row).name}: {count} missed or cancelled sessions in 60 days")
    return sorted(out)


def _text(found: Digest, title: str) -> str:
    parts = [f"Your welcomeback digest for {title}.", ""]
    sections = (("Calls to make today", found.calls), ("Sent since the last digest", found.sent),
                ("Needs your attention", found.attention), ("Calendars", found.calendars),
                ("Clients who missed more than once", found.repeats),
                ("Patterns worth talking about together", found.patterns),
                ("Invitations given", found.invitations))
    for heading, lines in sections:
        if lines:
            parts += [heading, *(f"  - {line}" for line in lines), ""]
    parts.append("This digest goes only to you; clients never see it.")
    return "\n".join(parts) + "\n"


def send_digest(ctx: CycleContext) -> bool:
    """Send today's digest to each therapist once; True when one was handed to the email
    channel (daemon.engine.digest_send)."""
    from daemon.engine.digest_send import send_all

    return send_all(ctx)
