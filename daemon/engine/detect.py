"""Detection: which occurrences are sessions, and what changed since the last poll.

Pure functions over values; the engine feeds them from the source and the
store.  Rules (DESIGN.md, README "How it decides"): cancelled = STATUS:CANCELLED,
a Google tombstone, the client attendee DECLINED, an Outlook "Cancelled:" title,
or an occurrence that vanished before it had started; no-show = a therapist's
marker word or colour; sessions that ended before the calendar was first seen
are historical; a vanish of whole events beyond the breaker's share holds the
whole poll back.  A session that a rejected client-directory row names is
reported, never followed up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Iterable

from connectors.calendars.base import Occurrence, Window
from daemon.clients import Directory
from daemon.config import Detection
from daemon.model import Client, SessionRow, Trigger
from daemon.rules import vanish_is_cancellation


@dataclass(frozen=True)
class Classified:
    """An occurrence that is a session, with what it says about its client."""

    occ: Occurrence
    client: Client | None
    ambiguous: str
    cancelled: bool
    no_show: bool
    reached: bool


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
    unreadable: frozenset[str] = frozenset()   # UIDs present but damaged: kept as they were
    events: dict[str, datetime | None] = field(default_factory=dict)   # UID → booked_at (set by reconcile)


@dataclass
class Outcome:
    rows: list[SessionRow] = field(default_factory=list)      # present sessions, to upsert
    gone: list[SessionRow] = field(default_factory=list)      # no longer present
    triggers: list[Trigger] = field(default_factory=list)
    tripped: str = ""                                          # the breaker's reason
    held: frozenset[str] = frozenset()                         # the keys it held back
    warnings: list[str] = field(default_factory=list)


def word_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    parts = [r"\s*[-_ ]?\s*".join(map(re.escape, w.split())) if " " in w else re.escape(w)
             for w in words if w]
    if not parts:
        return None
    return re.compile(r"(?<![\w])(?:" + "|".join(parts) + r")(?![\w])", re.IGNORECASE)


def identify(occ: Occurrence, directory: Directory, therapist_email: str) -> tuple[Client | None, str]:
    """The one client of a session, or (None, why it is ambiguous), or (None, "")."""
    therapist = therapist_email.lower()
    people = [a for a in occ.attendees if a.email and a.email.lower() != therapist]
    protected = directory.rejected_naming(emails=[a.email for a in people],
                                          texts=[occ.summary, *(a.name for a in people if a.name)])
    if protected is not None:
        return None, protected.attention()
    found: dict[str, Client] = {}
    for a in people:
        matches = directory.by_email(a.email)
        if len(matches) > 1:
            return None, "an attendee address belongs to several clients"
        client = matches[0] if matches else Client(
            id="email:" + a.email.lower(), name=a.name or a.email.split("@")[0], email=a.email.lower(),
            in_directory=False)
        found.setdefault(client.id, client)
    if len(found) > 1:
        return None, "several attendees"
    if found:
        conflict = _names_someone_else(occ, next(iter(found.values())), people, directory)
        if conflict:
            return None, conflict
    if not found:
        named = directory.named_in(occ.summary)
        if len(named) > 1:
            return None, "the title matches several clients"
        found = {c.id: c for c in named}
    if not found:
        return None, ""
    client = next(iter(found.values()))
    if client.email and client.email.lower() == therapist:
        return None, "the client's address is the therapist's own"
    protected = directory.rejected_protecting(client)
    if protected is not None:
        return None, protected.attention()
    return client, ""


def _names_someone_else(occ: Occurrence, client: Client, people: list, directory: Directory) -> str:
    """The title or the attendee's name points to another directory client than the address."""
    named = directory.named_in(occ.summary) + [c for a in people if a.name for c in directory.named_in(a.name)]
    if any(c.id != client.id for c in named):
        return "the attendee's address and the name on the session belong to different clients"
    return ""


def classify(occ: Occurrence, ctx: Context) -> Classified | None:
    """A session if timed and with an identifiable (or ambiguous) client, else None."""
    if occ.tombstone or occ.all_day or occ.start is None:
        return None
    client, ambiguous = identify(occ, ctx.directory, ctx.therapist_email)
    if client is None and not ambiguous:
        return None
    rules = ctx.rules
    text = " ".join([occ.summary, occ.description, " ".join(occ.categories)])
    no_show = bool(_matches(rules.no_show_markers, text)) or (
        occ.color is not None and occ.color in rules.no_show_colors)
    reached = bool(_matches(rules.reached_markers, occ.summary + " " + occ.description))
    declined = _declined(occ, client, ctx.therapist_email)
    prefixed = any(occ.summary.strip().lower().startswith(p.lower()) for p in rules.cancelled_prefixes)
    cancelled = occ.status == "cancelled" or declined or prefixed
    return Classified(occ, client, ambiguous, cancelled, no_show, reached)


def _declined(occ: Occurrence, client: Client | None, therapist_email: str) -> bool:
    """The client's answer is 'declined'; for a session whose client cannot be told apart,
    any invited person's (so it is still reported to the therapist)."""
    if client is None:
        return any(a.partstat == "DECLINED" and a.email.lower() != therapist_email.lower() for a in occ.attendees)
    return bool(client.email) and any(a.email.lower() == client.email.lower() and a.partstat == "DECLINED"
                                      for a in occ.attendees)


_PATTERNS: dict[tuple[str, ...], re.Pattern[str] | None] = {}


def _matches(words: tuple[str, ...], text: str) -> bool:
    if words not in _PATTERNS:
        _PATTERNS[words] = word_pattern(words)
    pattern = _PATTERNS[words]
    return bool(pattern and pattern.search(text))


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
        last_seen_at=ctx.now, cancelled_at=cancelled_at, booked_at=_booked_at(occ, prev, ctx))


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
        c = classify(occ, ctx)
        if c is not None:
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
    out.triggers.extend(_lost_triggers(lost, ctx))
    return out


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
    shown = [p for p in prev.values() if p.present and ctx.window.start <= p.start < ctx.window.end]
    upcoming = [p for p in shown if p.status == "active" and p.start > ctx.now]
    if complete and not occurrences and shown:
        return f"the feed came back with no events; {len(shown)} session(s) held"
    lost = [prev[k] for k in whole]
    lost_upcoming = [p for p in lost if p.status == "active" and p.start > ctx.now]
    for part, base, of in ((lost_upcoming, upcoming, "the upcoming sessions"),
                           (lost, shown, "the calendar's sessions")):
        if _trips(part, base, ctx.rules):
            share = round(100 * len(part) / len(base))
            return (f"{len({p.uid for p in part})} events vanished at once, {share} % of {of} "
                    f"(breaker at {round(ctx.rules.vanish_breaker * 100)} %); no cancellations inferred")
    return ""


def _trips(lost: list[SessionRow], base: list[SessionRow], rules: Detection) -> bool:
    events = {p.uid for p in lost}
    return bool(base) and len(events) >= rules.vanish_breaker_min and len(lost) > rules.vanish_breaker * len(base)


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
