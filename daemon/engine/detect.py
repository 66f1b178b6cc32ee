"""Detection: which occurrences are sessions, and what changed since the last poll.

Pure functions over values; the engine feeds them from the source and the
store.  Rules (DESIGN.md, README "How it decides"): cancelled = STATUS:CANCELLED,
a Google tombstone, the client attendee DECLINED, an Outlook "Cancelled:" title,
or an occurrence that vanished before it had started; no-show = a therapist's
marker word or colour; sessions that ended before the calendar was first seen
are historical; a vanish of whole events beyond the breaker's share holds the
whole poll back.  A session that a rejected client-directory row names is
reported, never followed up.

The therapist's own cancellations: an event that is not a session and is an out-of-office
block (Google ``eventType: outOfOffice``, or a title with one of ``out_of_office_words``,
timed or all-day) makes every session cancelled or vanished inside it the therapist's; so
does a therapist-cancel marker on the session itself (which also means cancelled).  Each of
those is its own trigger, marked ``by_therapist``: planning records it, never contacts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from connectors.calendars.base import Occurrence, Window
from daemon.clients import Directory
from daemon.config import Detection
from daemon.engine.identify import Classified, classify, word_pattern
from daemon.model import SessionRow, Trigger
from daemon.rules import vanish_is_cancellation


@dataclass(kw_only=True, frozen=True)
class Context:
    """What one reconcile of one calendar needs (built with keywords; ``replace`` to vary it)."""

    calendar: str
    now: datetime
    window: Window
    baseline: bool                  # the first successful poll of this calendar
    first_seen_at: datetime         # when this calendar was first read
    prev_poll_at: datetime | None
    rules: Detection
    directory: Directory
    therapist_email: str
    staff: frozenset[str] = frozenset()        # every [[therapists]] address (lower case): never a client
    unreadable: frozenset[str] = frozenset()   # UIDs present but damaged: kept as they were
    absences: tuple[tuple[datetime, datetime], ...] = ()   # out-of-office blocks known from the store
    events: dict[str, datetime | None] = field(default_factory=dict)   # UID → booked_at (set by reconcile)
    identities: dict[Any, Any] = field(default_factory=dict)   # (title, attendees) → client, once per reconcile
    chosen: dict[str, str] = field(default_factory=dict)   # UID → the client the therapist chose (ambiguous events)
    # (present sessions in the window, active upcoming ones) when ``prev`` holds only a delta's rows
    window_counts: tuple[int, int] | None = None


@dataclass
class Outcome:
    rows: list[SessionRow] = field(default_factory=list)      # present sessions, to upsert
    gone: list[SessionRow] = field(default_factory=list)      # no longer present
    triggers: list[Trigger] = field(default_factory=list)
    tripped: str = ""                                          # the breaker's reason
    held: frozenset[str] = frozenset()                         # the keys it held back
    warnings: list[str] = field(default_factory=list)
    absences: list[tuple[str, datetime, datetime]] = field(default_factory=list)   # this poll's blocks


def _row(c: Classified, prev: SessionRow | None, ctx: Context, cancel_time: datetime | None) -> SessionRow:
    occ = c.occ
    assert occ.start is not None and occ.end is not None
    cancelled_at = None
    if c.cancelled:
        cancelled_at = prev.cancelled_at if prev and prev.status == "cancelled" and prev.cancelled_at \
            else cancel_time
    return SessionRow(
        calendar=ctx.calendar, key=occ.key, uid=occ.uid, start=occ.start, end=occ.end,
        status="cancelled" if c.cancelled else "active",
        client_id=c.client.id if c.client else None,
        client_name=c.client.name if c.client else "", client_email=c.client.email if c.client else "",
        ambiguous=c.ambiguous, no_show=c.no_show, reached=c.reached, present=True,
        first_seen_at=prev.first_seen_at if prev and prev.first_seen_at else ctx.now,
        last_seen_at=ctx.now, cancelled_at=cancelled_at, booked_at=_booked_at(occ, prev, ctx),
        candidates=json.dumps(list(c.candidates)) if c.candidates else "")


def _booked_at(occ: Occurrence, prev: SessionRow | None, ctx: Context) -> datetime | None:
    """When the session's event first appeared: an occurrence of a series already on the
    calendar (entering the horizon as time passes) is as old as its series."""
    if prev is not None:
        return prev.booked_at
    if ctx.baseline:
        return None
    return ctx.events.get(occ.uid, ctx.now)


def _cancel_time(occ: Occurrence, ctx: Context) -> datetime:
    """When the cancellation happened: LAST-MODIFIED if it falls since the last poll, else now."""
    lm = occ.last_modified
    if lm is not None and ctx.prev_poll_at is not None and ctx.prev_poll_at <= lm <= ctx.now:
        return lm
    return ctx.now


def reconcile(prev: dict[str, SessionRow], occurrences: list[Occurrence], complete: bool,
              ctx: Context) -> Outcome:
    """Compare a poll with the stored sessions of one calendar.

    ``complete`` means ``occurrences`` is the whole window; otherwise it is a
    delta where absent keys are unchanged and tombstones mark removals.
    """
    out = Outcome()
    ctx = replace(ctx, events=_known_events(prev))
    current: dict[str, Classified] = {}
    seen_keys: set[str] = set()
    tombstones: dict[str, Occurrence] = {}
    for occ in occurrences:
        if occ.tombstone or (occ.deleted and occ.start is None):
            tombstones[occ.key] = occ
            continue
        seen_keys.add(occ.key)
        c = None if is_out_of_office_event(occ) else classify(occ, ctx)
        if c is None:
            if occ.start is not None and occ.end is not None and is_absence(occ, ctx.rules):
                out.absences.append((occ.key, occ.start, occ.end))
            continue
        if not c.cancelled and has_words(ctx.rules.therapist_cancel_markers, _text(occ)):
            c = replace(c, cancelled=True)
        current[occ.key] = c
    vanished, whole = _vanished(prev, seen_keys, tombstones, occurrences, complete, ctx)
    out.tripped = _breaker(prev, vanished, whole, occurrences, complete, ctx)
    if out.tripped:
        out.held = frozenset(vanished)
        return out
    lost: list[tuple[SessionRow, datetime]] = []
    for key, c in current.items():
        p = prev.get(key)
        cancel_time = _cancel_time(c.occ, ctx)
        row = _row(c, p, ctx, cancel_time if c.cancelled else None)
        out.rows.append(row)
        if c.cancelled and p is not None and p.present and p.status == "active" and not ctx.baseline:
            lost.append((row, cancel_time))
        elif not c.cancelled and c.no_show and row.start <= ctx.now and not _historical(row, ctx):
            out.triggers.append(_trigger("no_show", row, ctx))
    for key, p in prev.items():
        if key in current or not p.present:
            continue
        if key in vanished:
            gone = replace(p, present=False)
            if vanish_is_cancellation(p, ctx.prev_poll_at):
                gone = replace(gone, status="cancelled", cancelled_at=ctx.now)
                if not ctx.baseline:
                    lost.append((gone, ctx.now))
            out.gone.append(gone)
        elif key in seen_keys:    # still there, but no longer a session: no marker on it either
            out.gone.append(replace(p, present=False, no_show=False, reached=False))
    blocks = [(a, b) for _, a, b in out.absences] + list(ctx.absences)
    theirs = [(row, when) for row, when in lost if therapist_cancelled(row, current.get(row.key), blocks, ctx)]
    out.triggers.extend(_therapist_triggers(theirs, current, ctx))
    out.triggers.extend(_lost_triggers([x for x in lost if x not in theirs], ctx))
    return out


def is_out_of_office_event(occ: Occurrence) -> bool:
    """Google Calendar's own out-of-office event type."""
    return occ.extra.get("event_type") == "outOfOffice"


def is_absence(occ: Occurrence, rules: Detection) -> bool:
    """An event that is not a session and marks the therapist away (timed or all-day)."""
    if occ.status == "cancelled" or occ.tombstone:
        return False
    return is_out_of_office_event(occ) or has_words(rules.out_of_office_words, occ.summary)


def therapist_cancelled(row: SessionRow, c: Classified | None, blocks: list[tuple[datetime, datetime]],
                        ctx: Context) -> str:
    """Why a lost session is the therapist's own cancellation ("marker", "out_of_office"), or ""."""
    if c is not None and has_words(ctx.rules.therapist_cancel_markers, _text(c.occ)):
        return "marker"
    if any(row.start < end and row.end > start for start, end in blocks):
        return "out_of_office"
    return ""


def _therapist_triggers(lost: list[tuple[SessionRow, datetime]], current: dict[str, Classified],
                        ctx: Context) -> list[Trigger]:
    """One trigger per session the therapist cancelled (each is recorded, none followed up)."""
    blocks = list(ctx.absences)
    out = []
    for row, when in lost:
        if _historical(row, ctx) or row.start < ctx.now - ctx.rules.lookback.approx:
            continue
        late = row.start - when <= ctx.rules.late_cancel_within.approx
        why = therapist_cancelled(row, current.get(row.key), blocks, ctx) or "out_of_office"
        out.append(replace(_trigger("late_cancel" if late else "cancelled", row, ctx), by_therapist=why))
    return out


def _text(occ: Occurrence) -> str:
    return " ".join([occ.summary, occ.description, " ".join(occ.categories)])


_WORDS: dict[tuple[str, ...], object] = {}


def has_words(words: tuple[str, ...], text: str) -> bool:
    """Whether one of ``words`` appears in ``text`` as whole words (any case)."""
    if words not in _WORDS:
        _WORDS[words] = word_pattern(words)
    pattern = _WORDS[words]
    return bool(pattern is not None and pattern.search(text))  # type: ignore[attr-defined]


def _vanished(prev: dict[str, SessionRow], seen_keys: set[str], tombstones: dict[str, Occurrence],
              occurrences: list[Occurrence], complete: bool, ctx: Context) -> tuple[set[str], set[str]]:
    """Keys that disappeared inside the window, and those whose whole event is gone."""
    vanished: set[str] = set()
    whole: set[str] = set()
    present_uids = {o.uid for o in occurrences if not o.tombstone and not o.deleted}
    for key, p in prev.items():
        if not p.present or p.uid in ctx.unreadable:
            continue
        if complete:
            in_window = ctx.window.start <= p.start < ctx.window.end
            if key not in seen_keys and in_window:
                vanished.add(key)
                if p.uid not in present_uids:
                    whole.add(key)
        elif key in tombstones:
            vanished.add(key)
            t = tombstones[key]
            if t.deleted or (p.uid not in present_uids and t.uid == key):
                whole.add(key)
    return vanished, whole


def _breaker(prev: dict[str, SessionRow], vanished: set[str], whole: set[str],
             occurrences: list[Occurrence], complete: bool, ctx: Context) -> str:
    """Why the poll is held back, or "": whole events vanishing beyond the breaker's share of
    the upcoming sessions, or of all the window's sessions counting past ones too (a feed
    that suddenly drops history and future alike)."""
    if ctx.baseline:
        return ""
    if ctx.window_counts is None:
        shown = [p for p in prev.values() if p.present and ctx.window.start <= p.start < ctx.window.end]
        n_shown, n_upcoming = len(shown), sum(1 for p in shown if p.status == "active" and p.start > ctx.now)
    else:
        n_shown, n_upcoming = ctx.window_counts
    if complete and not occurrences and n_shown:
        return f"the feed came back with no events; {n_shown} session(s) held"
    lost = [prev[k] for k in whole]
    lost_upcoming = [p for p in lost if p.status == "active" and p.start > ctx.now]
    for part, base, of in ((lost_upcoming, n_upcoming, "the upcoming sessions"),
                           (lost, n_shown, "the calendar's sessions")):
        if _trips(part, base, ctx.rules):
            share = round(100 * len(part) / base)
            return (f"{len({p.uid for p in part})} events vanished at once, {share} % of {of} "
                    f"(breaker at {round(ctx.rules.vanish_breaker * 100)} %); no cancellations inferred")
    return ""


def _trips(lost: list[SessionRow], base: int, rules: Detection) -> bool:
    events = {p.uid for p in lost}
    return bool(base) and len(events) >= rules.vanish_breaker_min and len(lost) > rules.vanish_breaker * base


def _known_events(prev: dict[str, SessionRow]) -> dict[str, datetime | None]:
    """UID → when the event was first booked, as far as the store knows (None: it was there
    at the calendar's first read)."""
    out: dict[str, datetime | None] = {}
    for p in prev.values():
        if p.uid in out and out[p.uid] is None:
            continue
        known = out.get(p.uid, p.booked_at)
        out[p.uid] = None if p.booked_at is None or known is None else min(known, p.booked_at)
    return out


def _historical(row: SessionRow, ctx: Context) -> bool:
    return row.end <= ctx.first_seen_at


def _trigger(kind: str, row: SessionRow, ctx: Context) -> Trigger:
    return Trigger(kind, ctx.calendar, row.key, row.start, row.client_id, row.client_name,
                   row.client_email, row.ambiguous, ctx.now)


def _lost_triggers(lost: list[tuple[SessionRow, datetime]], ctx: Context) -> list[Trigger]:
    """One trigger per client, on the earliest lost session (a series ended early)."""
    earliest: dict[str, tuple[SessionRow, datetime]] = {}
    for row, when in lost:
        if _historical(row, ctx) or row.start < ctx.now - ctx.rules.lookback.approx:
            continue
        group = row.client_id or f"ambiguous:{row.key}"
        if group not in earliest or row.start < earliest[group][0].start:
            earliest[group] = (row, when)
    out = []
    for row, when in earliest.values():
        late = row.start - when <= ctx.rules.late_cancel_within.approx
        out.append(_trigger("late_cancel" if late else "cancelled", row, ctx))
    return out
