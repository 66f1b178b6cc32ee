"""Durations ("7 days", "1 business day", "24h", "14d") and working hours.

Calendar units (days, weeks, business days, months) move the wall clock in the
practice's time zone, so "7 days" after 09:00 EST is 09:00 EDT; hours and
smaller units are exact elapsed time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo

_UNITS = {
    "s": "seconds", "sec": "seconds", "secs": "seconds", "second": "seconds", "seconds": "seconds",
    "m": "minutes", "min": "minutes", "mins": "minutes", "minute": "minutes", "minutes": "minutes",
    "h": "hours", "hr": "hours", "hrs": "hours", "hour": "hours", "hours": "hours",
    "d": "days", "day": "days", "days": "days",
    "w": "weeks", "wk": "weeks", "week": "weeks", "weeks": "weeks",
    "bd": "business_days", "business day": "business_days", "business days": "business_days",
    "mo": "months", "month": "months", "months": "months",
}
_TOKEN = re.compile(
    r"(\d+(?:\.\d+)?)\s*(business\s+days?|[a-z]+)", re.IGNORECASE
)
DURATION_HINT = 'a duration like "7 days", "1 business day", "24h", "14d" or "2 minutes"'


@dataclass(frozen=True)
class Duration:
    """A length of time: exact seconds plus calendar days, business days and months."""

    seconds: float = 0.0
    days: int = 0
    business_days: int = 0
    months: int = 0
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{self.seconds}s"

    @property
    def approx(self) -> timedelta:
        """A timedelta of about this length (business day = 1.4 days), for comparisons."""
        return timedelta(seconds=self.seconds, days=self.days + self.business_days * 1.4
                         + self.months * 30.44)

    def add_to(self, instant: datetime, tz: tzinfo, workdays: frozenset[int]) -> datetime:
        """Return ``instant`` moved by this duration, DST-correct in ``tz``."""
        local = instant.astimezone(tz)
        if self.months:
            local = _add_months(local, self.months)
        if self.days:
            local = _wall(local.date() + timedelta(days=self.days), local.timetz(), tz)
        if self.business_days:
            d = local.date()
            left = self.business_days
            while left > 0:
                d += timedelta(days=1)
                if d.weekday() in workdays:
                    left -= 1
            local = _wall(d, local.timetz(), tz)
        return (local.astimezone(timezone.utc) + timedelta(seconds=self.seconds))


def _wall(day: date, at: time, tz: tzinfo) -> datetime:
    """The instant that reads ``day at`` on a wall clock in ``tz`` (gaps roll forward)."""
    naive = datetime.combine(day, at.replace(tzinfo=None))
    candidate = naive.replace(tzinfo=tz)
    # zoneinfo maps non-existent times using the offset before the gap; round-trip to
    # normalise so 02:30 on a spring-forward day becomes 03:30.
    return candidate.astimezone(timezone.utc).astimezone(tz)


def _add_months(local: datetime, months: int) -> datetime:
    y, m = divmod(local.month - 1 + months, 12)
    year, month = local.year + y, m + 1
    day = min(local.day, [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28,
                          31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1])
    return _wall(date(year, month, day), local.timetz(), local.tzinfo)  # type: ignore[arg-type]


def parse_duration(text: str) -> Duration:
    """Parse a duration; raises ValueError with the expected form."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected {DURATION_HINT}")
    raw = text.strip().lower()
    pos, parts = 0, {"seconds": 0.0, "days": 0, "business_days": 0, "months": 0}
    compact = raw.replace(",", " ").replace(" and ", " ")
    for match in _TOKEN.finditer(compact):
        if compact[pos:match.start()].strip():
            raise ValueError(f"'{text}' is not {DURATION_HINT}")
        number, unit = float(match.group(1)), re.sub(r"\s+", " ", match.group(2))
        kind = _UNITS.get(unit)
        if kind is None:
            raise ValueError(f"'{text}': unknown unit '{unit}'; expected {DURATION_HINT}")
        if kind in ("days", "weeks", "business_days", "months") and number != int(number):
            raise ValueError(f"'{text}': {unit} must be a whole number")
        if kind == "weeks":
            parts["days"] += int(number) * 7
        elif kind in ("days", "business_days", "months"):
            parts[kind] += int(number)
        else:
            parts["seconds"] += number * {"seconds": 1, "minutes": 60, "hours": 3600}[kind]
        pos = match.end()
    if pos == 0 or compact[pos:].strip():
        raise ValueError(f"'{text}' is not {DURATION_HINT}")
    return Duration(seconds=parts["seconds"], days=int(parts["days"]),
                    business_days=int(parts["business_days"]), months=int(parts["months"]),
                    text=text.strip())


_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_HOURS_HINT = 'working hours like "Mon-Fri 09:00-17:00" (several separated by ",")'


@dataclass(frozen=True)
class WorkingHours:
    """Weekly opening hours in the practice's zone: weekday → list of (start, end)."""

    spans: tuple[tuple[int, time, time], ...]
    text: str = ""

    @property
    def workdays(self) -> frozenset[int]:
        return frozenset(day for day, _, _ in self.spans)

    def next_open(self, instant: datetime, tz: tzinfo) -> datetime:
        """The first instant at or after ``instant`` that lies inside working hours."""
        local = instant.astimezone(tz)
        for offset in range(0, 15):
            day = local.date() + timedelta(days=offset)
            for weekday, start, end in sorted(self.spans, key=lambda s: s[1]):
                if weekday != day.weekday():
                    continue
                opens, closes = _wall(day, start, tz), _wall(day, end, tz)
                if offset == 0 and opens <= local < closes:
                    return instant.astimezone(timezone.utc)
                if opens > local:
                    return opens.astimezone(timezone.utc)
        return instant.astimezone(timezone.utc)  # no working hours at all: send when due


def parse_working_hours(text: str) -> WorkingHours:
    """Parse "Mon-Fri 09:00-17:00, Sat 10:00-13:00"; raises ValueError."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected {_HOURS_HINT}")
    spans: list[tuple[int, time, time]] = []
    for chunk in text.split(","):
        m = re.fullmatch(
            r"\s*([A-Za-z]{3})(?:\s*-\s*([A-Za-z]{3}))?\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*",
            chunk)
        if not m:
            raise ValueError(f"'{chunk.strip()}' is not {_HOURS_HINT}")
        first, last = m.group(1).lower(), (m.group(2) or m.group(1)).lower()
        if first not in _DAYS or last not in _DAYS:
            raise ValueError(f"'{chunk.strip()}': days are Mon, Tue, Wed, Thu, Fri, Sat, Sun")
        try:
            start = time(int(m.group(3)), int(m.group(4)))
            end = time(int(m.group(5)), int(m.group(6))) if m.group(5) != "24" else time(23, 59)
        except ValueError:
            raise ValueError(f"'{chunk.strip()}': hours are 00:00 to 23:59") from None
        if end <= start:
            raise ValueError(f"'{chunk.strip()}': the end must be after the start")
        a, b = _DAYS.index(first), _DAYS.index(last)
        days = range(a, b + 1) if a <= b else list(range(a, 7)) + list(range(0, b + 1))
        spans.extend((d, start, end) for d in days)
    return WorkingHours(spans=tuple(spans), text=text.strip())
