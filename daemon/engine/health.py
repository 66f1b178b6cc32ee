"""What one cycle reports: each calendar's poll, what dispatch did, and the service's health
(the watchdog pings only while it is ok)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PollResult:
    calendar: str
    ok: bool
    error: str = ""
    triggers: int = 0
    degraded: str = ""
    elsewhere: bool = False     # another replica polls this calendar (shared store)


@dataclass
class CycleReport:
    polls: list[PollResult] = field(default_factory=list)
    dispatched: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> list[PollResult]:
        return [p for p in self.polls if not p.ok]


@dataclass
class Health:
    ok: bool
    calendars: int
    due: int
    degraded: list[str]
    uncertain: int
    failed: int
    store_down: str = ""        # the store does not answer: why (an exception's type)

    @property
    def summary(self) -> str:
        parts = [f"{self.calendars} calendar(s) watched", f"{self.due} step(s) due"]
        if self.degraded:
            parts.append(f"{len(self.degraded)} degraded")
        if self.uncertain:
            parts.append(f"{self.uncertain} uncertain")
        return ", ".join(parts)
