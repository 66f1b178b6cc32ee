"""Reading iCalendar values without quoting them anywhere: times made aware, text, categories
and attendees; one calendar split by UID; events whose times cannot be read, or whose rules would
run away, found before expansion."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any


from connectors.calendars.base import (
    Attendee,
)


def split_by_uid(cal: Any) -> list[Any]:
    """One calendar per UID, each with the calendar's time zones."""
    zones = [c for c in cal.subcomponents if c.name == "VTIMEZONE"]
    groups: dict[str, list[Any]] = {}
    for c in cal.subcomponents:
        if c.name == "VEVENT":
            groups.setdefault(str(c.get("UID") or id(c)), []).append(c)
    out = []
    for members in groups.values():
        import icalendar

        part = icalendar.Calendar()
        for k, v in cal.items():
            part[k] = v
        part.subcomponents = zones + members
        out.append(part)
    return out


TIME_PROPS = {"DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID"}


def damaged_events(cal: Any) -> list[Any]:
    """Events without a readable start or recurrence (icalendar keeps them as vBroken).

    Returned as components, not UIDs: several events without a UID share the UID "", and one
    damaged among them must not set the readable ones aside."""
    out = []
    for c in cal.walk("VEVENT"):
        broken = any(str(name).upper() in TIME_PROPS for name, _ in getattr(c, "errors", ()) or ())
        if broken or c.get("DTSTART") is None or runaway_rule(c.get("RRULE")):
            out.append(c)
    return out


def runaway_rule(rrule: Any) -> bool:
    """A rule recurring more often than hourly: never a therapy session, and unbounded to expand."""
    if rrule is None:
        return False
    rules = rrule if isinstance(rrule, list) else [rrule]
    return any(str(f).upper() in ("SECONDLY", "MINUTELY") for r in rules for f in (r.get("FREQ") or []))


def recurring_uids(cal: Any) -> set[str]:
    uids: set[str] = set()
    for c in cal.walk("VEVENT"):
        if c.get("RRULE") is not None or c.get("RDATE") is not None or c.get("RECURRENCE-ID") is not None:
            uids.add(str(c.get("UID") or "").strip())
    return uids


def aware_time(prop: Any, tz: Any) -> datetime | None:
    """A timezone-aware datetime from a DTSTART-like property (dates at local midnight)."""
    if prop is None:
        return None
    value = getattr(prop, "dt", prop)
    if isinstance(value, datetime):
        return value if value.tzinfo is not None and value.utcoffset() is not None else value.replace(tzinfo=tz)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=tz)
    return None


def plain_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(plain_text(v) for v in value)
    return str(value)


def category_words(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        cats = getattr(item, "cats", None)
        if cats is not None:
            out.extend(str(c) for c in cats)
        else:
            out.extend(s.strip() for s in str(item).split(",") if s.strip())
    return tuple(out)


def mail_address(value: Any) -> str:
    if value is None:
        return ""
    address = str(value[0] if isinstance(value, list) and value else value).strip()
    return (address[7:] if address.lower().startswith("mailto:") else address).strip().lower()


def attendees_of(value: Any, organizer: str = "") -> tuple[Attendee, ...]:
    """Attendees other than the organizer (the therapist's own calendar account)."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out = []
    for a in items:
        address = mail_address(a)
        if not address or address == organizer:
            continue
        params = getattr(a, "params", {}) or {}
        out.append(Attendee(email=address, name=str(params.get("CN", "")).strip(),
                            partstat=str(params.get("PARTSTAT", "NEEDS-ACTION")).upper()))
    return tuple(out)
