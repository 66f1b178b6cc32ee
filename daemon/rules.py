"""The clinical rules, one function each, so detection, planning, the re-check before
each step and the digest decide the same way (README "How it decides").

Pure functions over domain values: no store, no clock, no configuration object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from daemon.model import SessionRow

CANCELS = ("cancelled", "late_cancel")


@dataclass(frozen=True, kw_only=True)
class Missed:
    """The missed session a follow-up is about, as the follow-up recorded it."""

    calendar: str
    key: str
    start: datetime
    kind: str                   # cancelled | late_cancel | no_show
    detected_at: datetime
    client_id: str = ""         # whose follow-up it is ("": not checked)


def vanish_is_cancellation(session: SessionRow, last_seen_present: datetime | None) -> bool:
    """A session that disappeared from its calendar was cancelled only if it had not started
    when it was last seen there: feeds prune their history, therapists tidy old events."""
    if session.status != "active":
        return False
    return last_seen_present is None or session.start > last_seen_present


def coming_back(missed: Missed, sessions: Iterable[SessionRow], rebook_window: timedelta) -> SessionRow | None:
    """The client's session that shows they are coming back after ``missed``, else None.

    It must be booked (present, not cancelled, not itself marked missed), not the missed
    session, start after the miss (or after it was noticed, for a cancelled session with
    others before it), and either lie within ``rebook_window`` of the missed session or be a new booking:
    its event first appeared on the calendar since the miss.  An occurrence of a series
    the calendar already had, entering the look-ahead horizon as time passes, is not new.
    """
    since = min(missed.start, missed.detected_at)
    for s in sorted(sessions, key=lambda s: s.start):
        if (s.calendar, s.key) == (missed.calendar, missed.key):
            continue
        if not s.present or s.status != "active" or s.no_show or s.start <= since:
            continue
        if abs(s.start - missed.start) <= rebook_window or is_new_booking(s, since):
            return s
    return None


def is_new_booking(session: SessionRow, since: datetime) -> bool:
    """Whether the session's event first appeared on its calendar at or after ``since``
    (None: it was there when the calendar was first read, so not a new booking)."""
    return session.booked_at is not None and session.booked_at >= since


def booking_stops_step(kind: str, n: int) -> bool:
    """Whether a booking stops step ``n``: a no-show always gets its first, well-being step."""
    return not (kind == "no_show" and n == 1)


def trigger_withdrawn(missed: Missed, session: SessionRow | None, now: datetime) -> bool:
    """Whether the reason for the follow-up no longer holds in the latest snapshot.

    A no-show whose marker was removed, or whose session is cancelled; a cancellation whose
    session is back and active; a session that now names another client; and any missed
    session that was moved (see ``moved``).
    A session that vanished after it had started keeps what it last showed (rule of
    ``vanish_is_cancellation``): its follow-up stands.
    """
    if session is None:
        return True
    if moved(missed, session, now) or names_another_client(missed, session):
        return True
    if missed.kind == "no_show":
        return not session.no_show or session.status != "active"
    return session.present and session.status == "active"


def names_another_client(missed: Missed, session: SessionRow) -> bool:
    """The therapist corrected whose session it is: the follow-up is not this client's any more."""
    return bool(missed.client_id) and session.present and session.client_id is not None \
        and session.client_id != missed.client_id


def moved(missed: Missed, session: SessionRow, now: datetime) -> bool:
    """A missed session dragged to another date is a moved session, not a missed one:
    a cancelled session moved anywhere, a marked session moved later or into the future."""
    if session.start == missed.start:
        return False
    if missed.kind in CANCELS:
        return True
    return session.start > missed.start or session.start > now


def corrected_start(missed: Missed, session: SessionRow | None, now: datetime) -> datetime | None:
    """The new date of a marked session the therapist moved to an earlier (past) date, so no
    message names the old one; None when the date did not change or the follow-up is withdrawn."""
    if session is None or session.start == missed.start or trigger_withdrawn(missed, session, now):
        return None
    return session.start


def same_episode(first: datetime, second: datetime, rebook_window: timedelta) -> bool:
    """Two misses of one client within ``rebook_window`` of each other are one episode:
    a correction between them must not repeat to the client what it already received."""
    return abs(first - second) <= rebook_window


def is_a_miss(closed_reason: str | None, followed_up: bool) -> bool:
    """Whether a recorded trigger counts as a missed or cancelled session for the therapist:
    not a withdrawn one, not an unidentified client, not a reschedule that started nothing,
    not the therapist's own cancellation."""
    if closed_reason in ("withdrawn", "ambiguous", "therapist_cancelled"):
        return False
    return not (closed_reason == "rebooked" and not followed_up)
