"""Planning: when each step of a follow-up lands, and whether it should still go.

Due times count from the missed session's start (calendar units on the
practice's wall clock) and land inside working hours; a trigger seen late
never plans a step in the past, and the steps keep the cadence's spacing.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from daemon.config import Config
from daemon.model import PlannedStep, Trigger


def sequence_id(trigger: Trigger) -> str:
    """Deterministic: the same trigger seen twice maps to the same sequence."""
    raw = f"{trigger.calendar}|{trigger.session_key}|{trigger.kind}".encode()
    return "s" + hashlib.sha256(raw).hexdigest()[:12]


def plan(config: Config, trigger: Trigger, seq_id: str) -> list[PlannedStep]:
    """The steps of a new sequence, each due inside working hours, none in the past."""
    specs = config.cadence.steps
    dues = due_times(config, trigger.session_start, trigger.detected_at, calendar=trigger.calendar)
    return [PlannedStep(f"{seq_id}-{n}", n, spec.channel, spec.template, due)
            for n, (spec, due) in enumerate(zip(specs, dues), start=1)]


def due_times(config: Config, session_start: datetime, earliest: datetime, *,
              calendar: str = "") -> list[datetime]:
    """When each step is due: no earlier than its ``after`` from the session, than
    ``earliest`` (when the trigger was noticed), and than the previous step's due time
    plus the gap the cadence puts between them; then moved into working hours (those of the
    calendar's therapist).  So a no-show marked ten days late still gets its call first and
    its email a gap later."""
    tz, hours = config.practice.timezone, config.therapist_of(calendar).working_hours
    out: list[datetime] = []
    for n, gap in enumerate(gaps(config, session_start, calendar=calendar)):
        ideal = config.cadence.steps[n].after.add_to(session_start, tz, hours.workdays)
        due = max(ideal, earliest, out[-1] + gap if out else earliest)
        out.append(hours.next_open(due, tz))
    return out


def gaps(config: Config, session_start: datetime, *, calendar: str = "") -> list[timedelta]:
    """The time the cadence puts between each step and the one before it, for a session
    at ``session_start`` (the first step's gap is zero): e.g. "1 business day" then
    "7 days" after a Tuesday session is six days."""
    tz, workdays = config.practice.timezone, config.therapist_of(calendar).working_hours.workdays
    ideal = [spec.after.add_to(session_start, tz, workdays) for spec in config.cadence.steps]
    return [timedelta(0)] + [max(b - a, timedelta(0)) for a, b in zip(ideal, ideal[1:])]


def gap_before(config: Config, session_start: datetime, n: int, *, calendar: str = "") -> timedelta:
    """The gap before step ``n`` (1-based); zero for a step the cadence no longer has."""
    found = gaps(config, session_start, calendar=calendar)
    return found[n - 1] if 1 <= n <= len(found) else timedelta(0)
