"""Starting follow-ups, and keeping them true to the calendar after each poll.

Each trigger is considered once (its sequence id is deterministic).  A trigger that
does not become a follow-up is recorded closed with the reason: ambiguous client,
rescheduled (the client is coming back), a session already followed up, or a client
with a follow-up open already (``merged``).  After each poll, before new triggers are
planned, the calendar's open follow-ups are checked against the new snapshot: a marker
removed, a session restored or moved withdraws its follow-up at once, and a follow-up
that had given way to the withdrawn one gets its turn (the therapist's correction).
A correction never repeats to the client a message they already received.

The therapist's own cancellations (an out-of-office block, a therapist-cancel marker; see
``daemon.engine.detect``) are recorded closed as ``therapist_cancelled`` and the poll's
together become one reschedule task for the therapist; nobody else is contacted.  A safety
client's no-show gets its urgent call task (``daemon.engine.safety``); a cancellation that
makes a burst holds the burst (``daemon.engine.bursts``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Iterable

from daemon import rules
from daemon.engine import absences, bursts, notices, safety
from daemon.engine.cadence import plan, sequence_id
from daemon.engine.context import CycleContext
from daemon.model import PlannedStep, SessionRow, Trigger
from daemon.store import followups
from daemon.store import sessions as session_store
from daemon.store.tables import dt, ts

log = logging.getLogger(__name__)
CANCELS = rules.CANCELS
ALREADY_SENT = "already_sent"


def after_poll(ctx: CycleContext, conn: Any, calendar: str, triggers: list[Trigger], now: datetime, *,
               blocks: bool = True) -> int:
    """Review the calendar's open follow-ups, then consider the poll's triggers; returns how
    many follow-ups with steps to send were started.  ``blocks=False``: the store is known to
    hold no out-of-office block on the calendar's therapist's calendars (none was loaded or
    saved by this poll), so no session lies in one and that is not looked up."""
    theirs: list[str] = []
    started = review(ctx, conn, calendar, now, theirs, blocks=blocks)
    started += sum(start_follow_up(ctx, conn, t, now, theirs, blocks=blocks) for t in triggers)
    reschedule(conn, theirs, now)
    return started


def reschedule(conn: Any, sequence_ids: list[str], now: datetime) -> None:
    """One task for the therapist listing the sessions they cancelled in this poll."""
    if sequence_ids:
        digest = hashlib.sha256("|".join(sorted(sequence_ids)).encode()).hexdigest()[:12]
        notices.create(conn, f"reschedule-{digest}", "reschedule", now, now, refs=sorted(sequence_ids))
        log.info("%d session(s) the therapist cancelled: one reschedule task, no client follow-up",
                 len(sequence_ids))


def start_follow_up(ctx: CycleContext, conn: Any, trigger: Trigger, now: datetime,
                    theirs: list[str] | None = None, *, blocks: bool = True) -> int:
    """Returns 1 when a follow-up with steps to send was started, else 0.  The therapist's own
    cancellations are recorded and their sequence ids added to ``theirs``.  ``blocks``: as
    :func:`after_poll`'s."""
    seq = sequence_id(trigger)
    if followups.exists(conn, seq):
        return 0
    why_not = _why_not(ctx, conn, trigger, seq, blocks=blocks)
    if why_not:
        followups.create(conn, trigger, seq, [], now, closed_reason=why_not)
        if why_not == "therapist_cancelled":
            ctx.store.audit(conn, now, "therapist_cancelled", sequence_id=seq,
                            detail=trigger.by_therapist or "out_of_office")
            if theirs is not None and trigger.client_id:
                theirs.append(seq)
        if why_not == "ambiguous":
            ctx.store.report(conn, now, "ambiguous", trigger.calendar, trigger.session_key,
                                f"{trigger.kind} on {ts(trigger.session_start)}: {trigger.ambiguous}")
            log.warning("follow-up %s not started: the client needs the therapist's attention", seq)
        else:
            log.info("follow-up %s not started: %s", seq, why_not)
        return 0
    return _begin(ctx, conn, trigger, seq, now, reopen=False)


def _why_not(ctx: CycleContext, conn: Any, trigger: Trigger, seq: str, *, blocks: bool = True) -> str | None:
    if trigger.kind in CANCELS and (trigger.by_therapist or blocks and _in_absence(ctx, conn, trigger.calendar,
                                                                                   trigger.session_key)):
        return "therapist_cancelled"
    if trigger.ambiguous or not trigger.client_id:
        return "ambiguous"
    window = ctx.config.detection.rebook_window.approx
    missed = rules.Missed(calendar=trigger.calendar, key=trigger.session_key, start=trigger.session_start,
                          kind=trigger.kind, detected_at=trigger.detected_at)
    if trigger.kind in CANCELS and session_store.coming_back(conn, trigger.client_id, missed, window):
        return "rebooked"
    if followups.for_session(conn, trigger.calendar, trigger.session_key, exclude=seq):
        return "merged"          # this session was already followed up under another trigger
    if followups.open_for_client(conn, trigger.client_id, exclude=seq):
        return "merged"          # at most one open follow-up per client
    return None


def _begin(ctx: CycleContext, conn: Any, trigger: Trigger, seq: str, now: datetime, *, reopen: bool) -> int:
    """Plan the steps (from ``now``: a reconsidered follow-up never plans in the past)."""
    assert trigger.client_id is not None
    client = ctx.client_of(trigger.client_id, trigger.client_name, trigger.client_email)
    skip = "opted_out" if client.do_not_contact or followups.opted_out(conn, client.id) else None
    planned = plan(ctx.config, replace(trigger, detected_at=now), seq)
    if not skip:
        planned = safety.adjust(ctx, conn, trigger, client, planned, seq, now)
    skipped = _already_received(ctx, conn, trigger, planned)
    if reopen:
        followups.reopen(conn, seq, planned, now, skip_reason=skip, skipped=skipped)
    else:
        followups.create(conn, trigger, seq, planned, now, skip_reason=skip, skipped=skipped)
    if trigger.kind in CANCELS and not skip:
        bursts.check(ctx.store, conn, ctx.config, now)
    ctx.store.audit(conn, now, "reconsidered" if reopen else "detected", sequence_id=seq, detail=trigger.kind)
    log.info("follow-up %s %s (%s)%s", seq, "started after a correction" if reopen else "started",
             trigger.kind, " but opted out" if skip else "")
    return 0 if skip else 1


def _already_received(ctx: CycleContext, conn: Any, trigger: Trigger, planned: list[PlannedStep]) -> dict[int, str]:
    """Steps the client already received (or may have) under a withdrawn follow-up of the
    same episode: planned as skipped, so a correction never repeats a message to them.
    Call tasks go to the therapist and are planned again, with the corrected date."""
    assert trigger.client_id is not None
    facing = {"email"} | ({"phone"} if ctx.phone.medium != "call-task" else set())
    window = ctx.config.detection.rebook_window.approx
    received = {r["n"] for r in followups.delivered_in_withdrawn(conn, trigger.client_id)
                if r["channel"] in facing and rules.same_episode(dt(r["session_start"]) or trigger.session_start,
                                                                 trigger.session_start, window)}
    return {p.n: ALREADY_SENT for p in planned if p.n in received and p.channel in facing}


def _in_absence(ctx: CycleContext, conn: Any, calendar: str, key: str) -> bool:
    """Whether the session lies inside an out-of-office block known on any calendar of its therapist."""
    session = session_store.get(conn, calendar, key)
    return session is not None and absences.overlapping(conn, session.start, session.end,
                                                        ctx.config.same_therapist(calendar))



def review(ctx: CycleContext, conn: Any, calendar: str, now: datetime, theirs: list[str] | None = None, *,
           blocks: bool = True) -> int:
    """Withdraw the calendar's open follow-ups whose trigger no longer holds (marker removed,
    session restored or moved) and follow a corrected date; returns follow-ups started instead.
    A cancellation that now lies inside an out-of-office block (added after it) becomes the
    therapist's own: closed ``therapist_cancelled`` and added to ``theirs``.  ``blocks``: as
    :func:`after_poll`'s."""
    started = 0
    for row in followups.open_on_calendar(conn, calendar):
        missed = followups.missed_of(row)
        session = session_store.get(conn, calendar, row["session_key"])
        if missed.kind in CANCELS and session is not None and blocks and absences.overlapping(
                conn, session.start, session.end, ctx.config.same_therapist(calendar)):
            followups.stop(conn, row["id"], "therapist_cancelled", now)
            ctx.store.audit(conn, now, "therapist_cancelled", sequence_id=row["id"], detail="out_of_office")
            log.info("follow-up %s: the session lies in an out-of-office block; closed as the therapist's", row["id"])
            if theirs is not None:
                theirs.append(row["id"])
            continue
        if rules.trigger_withdrawn(missed, session, now):
            followups.stop(conn, row["id"], "withdrawn", now)
            ctx.store.audit(conn, now, "withdrawn", sequence_id=row["id"])
            log.info("follow-up %s withdrawn: the calendar no longer shows the missed session", row["id"])
            started += reconsider(ctx, conn, row["client_id"], now, blocks=blocks)
            continue
        corrected = rules.corrected_start(missed, session, now)
        if corrected is not None:
            followups.set_session_start(conn, row["id"], corrected)
            ctx.store.audit(conn, now, "corrected", sequence_id=row["id"], detail="session date")
            log.info("follow-up %s: the missed session's date was corrected", row["id"])
    return started


def reconsider(ctx: CycleContext, conn: Any, client_id: str, now: datetime, *, blocks: bool = True) -> int:
    """Give the client's merged follow-ups their turn (earliest session first) once the one
    they gave way to is withdrawn; returns how many were started.  ``blocks``: as
    :func:`after_poll`'s."""
    if not client_id:
        return 0
    lookback = ctx.config.detection.lookback.approx
    started = 0
    for row in followups.merged_for_client(conn, client_id):
        missed = followups.missed_of(row)
        session = session_store.get(conn, row["calendar"], row["session_key"])
        if missed.start < now - lookback or rules.trigger_withdrawn(missed, session, now):
            continue
        trigger = Trigger(row["trigger"], row["calendar"], row["session_key"], missed.start, client_id,
                          row["client_name"], row["client_email"], "", missed.detected_at)
        if _why_not(ctx, conn, trigger, row["id"], blocks=blocks) is None:
            started += _begin(ctx, conn, trigger, row["id"], now, reopen=True)
    return started


def rebooked(conn: Any, step: Any, rebook_window: timedelta) -> bool:
    """Whether step ``step`` (a step row joined with its sequence) stops because the client
    is coming back; the one rule the re-check before sending and the digest both use."""
    if not rules.booking_stops_step(step["trigger"], step["n"]):
        return False
    return rebooked_among(step, session_store.for_client(conn, step["client_id"]), rebook_window)


def rebooked_among(step: Any, theirs: Iterable[SessionRow], rebook_window: timedelta) -> bool:
    """``rebooked`` with the client's sessions already read."""
    if not rules.booking_stops_step(step["trigger"], step["n"]):
        return False
    return rules.coming_back(followups.missed_of(step), theirs, rebook_window) is not None


def note_invitation(conn: Any, seq_id: str, now: datetime, *, first: dict[str, Any] | None = None) -> None:
    """A follow-up whose every step went out (just closed ``sent``: the caller knows) has given
    the invitation to return: the contact log says so once, after ``first`` (the last step's
    own entry, written in the same statement).  Nothing more is ever sent, and never a discharge."""
    followups.audit_once(conn, now, seq_id, "invitation_given",
                         "every step went out; the invitation to return was given and nothing more is sent",
                         first=first)
