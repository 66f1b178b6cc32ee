"""Small calendar stories shared by the end-to-end tests (fictional people only)."""

from __future__ import annotations

from tests.conftest import Practice, local
from tests.ics import Ev


def team() -> Ev:
    """An unrelated weekly meeting, so a calendar never becomes empty."""
    return Ev("team", local(2026, 9, 4, 12), local(2026, 9, 4, 13), "Team meeting", rrule="FREQ=WEEKLY;BYDAY=FR")


def jane_no_show(practice: Practice, marker: str = "no-show") -> Ev:
    """Jane's Tuesday 10:00 session, seen on Monday, marked a no-show at 11:00 on Tuesday."""
    session = Ev("s1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Jane Doe")
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    session.summary = f"Jane Doe {marker}"
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 3, 11))
    return session
