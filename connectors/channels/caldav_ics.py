"""The iCalendar of a CalDAV call task, and what the therapist did to it.

Written: one VEVENT (DTSTART/DTEND) or VTODO (DUE) at the step's due time in the
practice's time zone (with its VTIMEZONE), the call script in DESCRIPTION, the
client's number as a ``tel:`` URI, private and transparent, without ORGANIZER,
ATTENDEE or VALARM: nobody but the therapist is ever notified.
Read back: reached (a reached word the title did not have, a completed VTODO),
dismissed (STATUS:CANCELLED), or nothing (a moved or edited task).
"""

from __future__ import annotations

import re
import warnings
from datetime import datetime, timedelta, timezone, tzinfo

from connectors.channels.base import Message
from connectors.channels.calendar_task import has_word

PRODID = "-//welcomeback//call task//EN"


def tel_uri(phone: str) -> str:
    """``+1 555 010 0199`` → ``tel:+15550100199`` (empty when there is no number)."""
    digits = re.sub(r"[^\d+]", "", phone)
    return f"tel:{digits}" if digits else ""


def call_task_ics(message: Message, uid: str, *, item: str, tz: tzinfo, now: datetime,
                  minutes: int) -> bytes:
    """The object to PUT: one VCALENDAR with one VEVENT (``item="event"``) or VTODO."""
    import icalendar

    assert message.due_at is not None
    due = message.due_at.astimezone(tz if getattr(tz, "key", None) else timezone.utc)
    tel = tel_uri(message.meta.get("phone", ""))
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    comp = icalendar.Event() if item == "event" else icalendar.Todo()
    comp.add("uid", uid)
    comp.add("dtstamp", now.astimezone(timezone.utc))
    comp.add("created", now.astimezone(timezone.utc))
    comp.add("summary", message.subject)
    comp.add("description", message.text.rstrip() + (f"\n\nCall: {tel}" if tel else ""))
    if tel:
        comp.add("url", tel, parameters={"VALUE": "URI"})
    comp.add("class", "PRIVATE")
    if item == "event":
        comp.add("dtstart", due)
        comp.add("dtend", due + timedelta(minutes=minutes))
        comp.add("transp", "TRANSPARENT")
    else:
        comp.add("due", due)
        comp.add("status", "NEEDS-ACTION")
    comp.add("x-welcomeback-step", message.step_id)
    comp.add("x-welcomeback-sequence", message.sequence_id)
    cal.add_component(comp)
    if getattr(tz, "key", None):
        cal.add_missing_timezones(first_date=(due - timedelta(days=366)).date(),
                                  last_date=(due + timedelta(days=732)).date())
    return bytes(cal.to_ical())


def outcome_of(data: bytes, words: tuple[str, ...], title_had_word: bool) -> str | None:
    """``reached``, ``dismissed`` or None for one object as the server holds it now."""
    import icalendar

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cal = icalendar.Calendar.from_ical(data.decode("utf-8", errors="replace"))
    except Exception:      # unreadable now: no conclusion, the next change is read again
        return None
    for comp in cal.walk():
        if comp.name not in ("VEVENT", "VTODO"):
            continue
        status = str(comp.get("STATUS", "")).upper()
        if status == "CANCELLED":
            return "dismissed"
        if comp.name == "VTODO" and (status == "COMPLETED" or _percent(comp.get("PERCENT-COMPLETE")) >= 100
                                     or comp.get("COMPLETED") is not None):
            return "reached"
        if not title_had_word and has_word(str(comp.get("SUMMARY", "")), words):
            return "reached"
    return None


def _percent(value: object) -> int:
    try:
        return int(str(value)) if value is not None else 0
    except ValueError:
        return 0
