"""Build small practice calendars for tests (fictional people only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path


def _fmt(value: datetime, tzid: str | None) -> str:
    if tzid:
        return f";TZID={tzid}:{value.strftime('%Y%m%dT%H%M%S')}"
    return ":" + value.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


@dataclass
class Ev:
    uid: str
    start: datetime
    end: datetime
    summary: str = ""
    status: str = ""
    rrule: str = ""
    exdates: list[datetime] = field(default_factory=list)
    recurrence_id: datetime | None = None
    attendees: list[tuple[str, str, str]] = field(default_factory=list)  # email, name, partstat
    categories: str = ""
    description: str = ""
    all_day: bool = False
    last_modified: datetime | None = None
    tzid: str | None = "America/New_York"

    def lines(self) -> list[str]:
        out = ["BEGIN:VEVENT", f"UID:{self.uid}", "DTSTAMP:20260101T000000Z"]
        if self.all_day:
            out += [f"DTSTART;VALUE=DATE:{self.start.strftime('%Y%m%d')}",
                    f"DTEND;VALUE=DATE:{self.end.strftime('%Y%m%d')}"]
        else:
            out += ["DTSTART" + _fmt(self.start, self.tzid), "DTEND" + _fmt(self.end, self.tzid)]
        if self.recurrence_id:
            out.append("RECURRENCE-ID" + _fmt(self.recurrence_id, self.tzid))
        if self.rrule:
            out.append(f"RRULE:{self.rrule}")
        for ex in self.exdates:
            out.append("EXDATE" + _fmt(ex, self.tzid))
        if self.summary:
            out.append(f"SUMMARY:{self.summary}")
        if self.description:
            out.append(f"DESCRIPTION:{self.description}")
        if self.status:
            out.append(f"STATUS:{self.status}")
        if self.categories:
            out.append(f"CATEGORIES:{self.categories}")
        if self.last_modified:
            out.append("LAST-MODIFIED:" + self.last_modified.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
        for email, name, partstat in self.attendees:
            out.append(f"ATTENDEE;CN={name};PARTSTAT={partstat}:mailto:{email}")
        out.append("END:VEVENT")
        return out


def calendar(events: list[Ev]) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//welcomeback tests//EN"]
    for e in events:
        lines += e.lines()
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


def write(path: Path, events: list[Ev]) -> None:
    path.write_text(calendar(events), encoding="utf-8")
