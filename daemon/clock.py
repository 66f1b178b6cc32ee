"""Time is an input: every component asks a Clock, never ``datetime.now()``."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FixedClock:
    """A clock that reads a set instant; ``advance`` moves it (demo, tests, ``--now``)."""

    def __init__(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = instant.astimezone(timezone.utc)

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = instant.astimezone(timezone.utc)

    def advance(self, delta) -> None:  # type: ignore[no-untyped-def]
        self._now = self._now + delta


class AcceleratedClock:
    """A virtual clock for rehearsals and tests (``run --now ISO --speed N``): it starts at
    ``start`` and advances ``speed`` times as fast as the wall clock."""

    def __init__(self, start: datetime, speed: float) -> None:
        if start.tzinfo is None:
            raise ValueError("AcceleratedClock needs an aware datetime")
        if not speed > 0:
            raise ValueError("speed must be a positive number")
        self.speed = float(speed)
        self._start = start.astimezone(timezone.utc)
        self._wall_start = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._wall_start) * self.speed)


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 instant that carries an offset (``--now``).

    Raises ValueError when the text is not ISO 8601 or has no offset.
    """
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"'{text}' has no UTC offset; write e.g. 2026-03-02T09:00:00-05:00")
    return value.astimezone(timezone.utc)
