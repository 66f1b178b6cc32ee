"""The one interface every calendar source implements.

A source turns the outside calendar into ``Occurrence`` values inside a time
window.  It knows nothing about clients, triggers or the store: detection
happens in ``daemon.engine.detect`` for every source alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Callable, ClassVar

from daemon.clock import Clock


@dataclass(frozen=True)
class Attendee:
    email: str
    name: str = ""
    partstat: str = "NEEDS-ACTION"   # ACCEPTED, DECLINED, TENTATIVE, NEEDS-ACTION


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of a calendar event, as the source shows it now.

    ``key`` identifies the occurrence inside its calendar across polls (UID plus
    original start for a recurring event; the UID alone for a single event;
    Google's instance id).  ``uid`` groups the occurrences of one event.
    A ``tombstone`` carries only ``key`` (and ``uid`` where known): the source
    says it is cancelled or deleted without details.  ``deleted`` means the
    whole event is gone, not one instance.
    """

    key: str
    uid: str
    start: datetime | None = None
    end: datetime | None = None
    all_day: bool = False
    status: str = "confirmed"        # confirmed | tentative | cancelled
    summary: str = ""
    description: str = ""
    categories: tuple[str, ...] = ()
    attendees: tuple[Attendee, ...] = ()
    color: str | None = None
    last_modified: datetime | None = None
    tombstone: bool = False
    deleted: bool = False
    extra: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


@dataclass
class FetchResult:
    """What one poll returned.

    ``occurrences`` is None when the source is unchanged since the state it was
    given.  ``complete`` is True for a full snapshot of the window and False for
    a delta (only what changed).  ``state`` is persisted and handed back next time.
    ``warnings`` are per-item problems that did not stop the poll (no event text).
    ``unreadable`` names events that are still there but could not be read: their
    sessions are kept as they were instead of looking cancelled.
    """

    occurrences: list[Occurrence] | None
    state: dict[str, Any]
    complete: bool = True
    warnings: list[str] = field(default_factory=list)
    unreadable: set[str] = field(default_factory=set)   # UIDs present but damaged: never "vanished"
    kept: dict[str, tuple[str, str] | None] | None = None   # per-event records for the store (below)
    kept_reset: bool = False


# Per-event records a source keeps in the store between polls (``SourceContext.memo`` reads them
# back): id (a UID) → (hash of its text, what the source needs next time, as JSON text).  In a
# ``FetchResult``, ``kept`` maps an id to its new record, or to None to forget it; ``kept_reset``
# means "these are all of them" (the others are forgotten).  They are written in the same
# transaction as ``state``, and only when the poll is applied (not while the breaker holds it).
class Kept:
    """One calendar's records as a poll reads them: every hash at once, what each event's
    record holds only for the ids asked (a one-change poll needs one of hundreds)."""

    def __init__(self, hashes: dict[str, str], fetch: Callable[[list[str]], dict[str, str]]) -> None:
        self.hashes = hashes
        self._fetch = fetch

    @classmethod
    def of(cls, records: dict[str, tuple[str, str]]) -> Kept:
        """Records already in memory: id → (hash, data)."""
        return cls({k: h for k, (h, _) in records.items()}, lambda ids: {k: records[k][1] for k in ids})

    def data(self, ids: list[str]) -> dict[str, str]:
        """id → its record's data, for those of ``ids`` that have a record."""
        wanted = [k for k in ids if k in self.hashes]
        return self._fetch(wanted) if wanted else {}


Memo = Callable[[str], Kept]     # ``SourceContext.memo``: a calendar's records


def apply_kept(records: dict[str, tuple[str, str]], result: FetchResult) -> None:
    """Update ``records`` (one calendar's, in memory) with what ``result`` keeps."""
    if result.kept is None:
        return
    if result.kept_reset:
        records.clear()
    for uid, record in result.kept.items():
        if record is None:
            records.pop(uid, None)
        else:
            records[uid] = record


@dataclass(kw_only=True, frozen=True)
class SourceContext:
    """What a source may use from the engine (built with keywords)."""

    base_dir: Path
    timezone: tzinfo
    clock: Clock
    secret: Callable[[str], str]
    state_dir: Path
    memo: Memo | None = None     # calendar name → its records in the store; None: nothing is kept


class NoOptions:
    """For sources without kind-specific keys."""


class CalendarSource(ABC):
    """A calendar the service watches.

    Capabilities are class attributes.  ``Options`` is a dataclass of the
    kind-specific keys of a ``[[calendars]]`` table (validated with the rest of
    the config).  ``fetch`` raises ``daemon.errors.SourceError`` naming the
    calendar and its source when the calendar cannot be read or parsed; a
    source must never raise anything else for bad data.
    """

    kind: ClassVar[str] = ""
    writable: ClassVar[bool] = False
    supports_incremental: ClassVar[bool] = False
    Options: ClassVar[type] = NoOptions

    def __init__(self, name: str, source: str, options: Any, context: SourceContext,
                 timeout: float = 30.0) -> None:
        self.name = name
        self.source = source
        self.options = options
        self.context = context
        self.timeout = timeout

    @property
    def display_source(self) -> str:
        """The source as shown in messages (secrets in URLs masked)."""
        from connectors.http import redact_url

        return redact_url(self.source)

    @abstractmethod
    def fetch(self, window: Window, state: dict[str, Any]) -> FetchResult:
        """Read the calendar; raises SourceError."""

    def check(self) -> list[str]:
        """Problems visible without contacting the calendar (``welcomeback check``)."""
        return []

    def close(self) -> None:
        """Release connections."""
