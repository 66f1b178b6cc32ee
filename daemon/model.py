"""Domain values shared by detection, cadence, store and CLI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

# Triggers: cancelled, late_cancel, no_show.  Skip reasons: rebooked, reached, dismissed,
# opted_out, withdrawn, too_late, no_contact_details, therapist_cancelled (DESIGN.md).


class State(str, Enum):
    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


OPEN_STATES = (State.PLANNED.value, State.SENDING.value)


@dataclass(frozen=True)
class Client:
    """A client from the directory (or known only by an attendee address)."""

    id: str
    name: str
    aliases: tuple[str, ...] = ()
    email: str = ""
    phone: str = ""
    preferred_channel: str = ""
    do_not_contact: bool = False
    in_directory: bool = True
    safety_concern: bool = False    # a safety plan: a no-show gets an urgent call task
    emergency_contact: str = ""     # free text, shown only to the therapist
    language: str = ""              # BCP 47 (e.g. "es"); "" = the practice's locale

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.split() else self.name

    @property
    def short_name(self) -> str:
        """'Jane D.' — what a call task title shows."""
        parts = self.name.split()
        return parts[0] if len(parts) < 2 else f"{parts[0]} {parts[-1][0]}."


@dataclass
class SessionRow:
    """What the store keeps of one session between polls (no titles, no notes)."""

    calendar: str
    key: str
    uid: str
    start: datetime
    end: datetime
    status: str = "active"          # active | cancelled
    client_id: str | None = None
    client_name: str = ""
    client_email: str = ""
    ambiguous: str = ""             # why the client could not be told apart
    no_show: bool = False
    reached: bool = False
    present: bool = True
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    cancelled_at: datetime | None = None
    booked_at: datetime | None = None   # when its event first appeared; None: there at the first read
    candidates: str = ""            # an ambiguous one: JSON list of the directory ids it could be


@dataclass(frozen=True)
class Trigger:
    """A detected reason to follow up."""

    kind: str                       # cancelled | late_cancel | no_show
    calendar: str
    session_key: str
    session_start: datetime
    client_id: str | None
    client_name: str
    client_email: str
    ambiguous: str
    detected_at: datetime
    by_therapist: str = ""          # "out_of_office" | "marker": the therapist's own cancellation


@dataclass(frozen=True)
class PlannedStep:
    """One step of a follow-up as planned: which channel and template, and when it is due."""

    id: str
    n: int
    channel: str
    template: str
    due_at: datetime
