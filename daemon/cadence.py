"""Planning: when each step of a follow-up lands, and whether it should still go.

Due times count from the missed session's start (calendar units on the
practice's wall clock) and land inside working hours; a trigger seen late
never plans a step in the past.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from daemon.config import Config
from daemon.model import Trigger


@dataclass(frozen=True)
class PlannedStep:
    id: str
    n: int
    channel: str
    template: str
    due_at: datetime


def sequence_id(trigger: Trigger) -> str:
    """Deterministic: the same trigger seen twice maps to the same sequence."""
    raw = f"{trigger.calendar}|{trigger.session_key}|{trigger.kind}".encode()
    return "s" + hashlib.sha256(raw).hexdigest()[:12]


def plan(config: Config, trigger: Trigger, seq_id: str) -> list[PlannedStep]:
    """The steps of a new sequence, each due inside working hours, none in the past."""
    practice = config.practice
    tz, hours = practice.timezone, practice.working_hours
    out = []
    for n, spec in enumerate(config.cadence.steps, start=1):
        due = spec.after.add_to(trigger.session_start, tz, hours.workdays)
        due = max(due, trigger.detected_at)
        due = hours.next_open(due, tz)
        out.append(PlannedStep(f"{seq_id}-{n}", n, spec.channel, spec.template, due))
    return out
