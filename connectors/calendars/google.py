"""Google Calendar (``kind = "google"``): incremental sync with ``events.list`` + ``syncToken``.

The first poll is a full sync from the window's start (no end: later deltas
only carry changes, so everything must be seen once); then each poll asks
only for what changed, which costs one request when nothing did.  A ``410
Gone`` drops the token and full-syncs again.  ``source`` is the calendar id
(``primary`` or an address).  Recurring events are expanded by Google
(``singleEvents``) and deleted items come back as tombstones (``showDeleted``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from datetime import time as dtime
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.calendars.base import (
    Attendee,
    CalendarSource,
    FetchResult,
    Occurrence,
    Window,
)
from connectors.calendars.google_api import GoogleClient, GoogleFailure, GoogleOptions
from daemon.errors import SourceError

log = logging.getLogger(__name__)
PAGE_SIZE = 250
MAX_PAGES = 2000
PARTSTAT = {"accepted": "ACCEPTED", "declined": "DECLINED", "tentative": "TENTATIVE",
            "needsAction": "NEEDS-ACTION"}
NOT_SESSIONS = frozenset({"workingLocation", "outOfOffice", "focusTime", "birthday"})


@dataclass
class GoogleSourceOptions(GoogleOptions):
    """Keys of a ``kind = "google"`` calendar (besides name, kind, source, poll_every, timeout)."""


class GoogleSource(CalendarSource):
    kind = "google"
    supports_incremental = True
    writable = True
    Options = GoogleSourceOptions

    sleep: Callable[[float], None] = staticmethod(time.sleep)  # tests inject a fake

    def _client(self) -> GoogleClient:
        if getattr(self, "_google", None) is None:
            self._google = GoogleClient(self.options or GoogleSourceOptions(), secret=self.context.secret,
                                        state_dir=self.context.state_dir, timeout=_seconds(self.timeout),
                                        sleep=self.sleep)
        return self._google

    def check(self) -> list[str]:
        from connectors.calendars.google_api import make_credentials, read_token

        try:
            make_credentials(read_token(self.context.secret, self.context.state_dir),
                             self.options or GoogleSourceOptions())
        except GoogleFailure as exc:
            return [f"calendar '{self.name}': {exc.reason}"]
        except ImportError:
            return [f"calendar '{self.name}': the Google libraries are missing; "
                    "install welcomeback[google]"]
        return []

    def fetch(self, window: Window, state: dict[str, Any]) -> FetchResult:
        """Full sync without a sync token, else a delta.  Raises SourceError."""
        token = state.get("sync_token")
        if token:
            try:
                items, new_token = self._list(syncToken=token)
            except GoogleFailure as exc:
                if exc.kind != "gone":
                    raise self._error(exc) from None
                log.info("calendar %s: sync token expired; full sync", self.name)
            else:
                if not items:
                    return FetchResult(None, {"sync_token": new_token}, complete=False)
                occurrences, warnings = self._convert(items)
                return FetchResult(occurrences, {"sync_token": new_token}, complete=False,
                                   warnings=warnings)
        try:
            items, new_token = self._list(timeMin=_rfc3339(window.start))
        except GoogleFailure as exc:
            raise self._error(exc) from None
        occurrences, warnings = self._convert(items)
        return FetchResult(occurrences, {"sync_token": new_token}, complete=True, warnings=warnings)

    def _list(self, **query: str) -> tuple[list[dict[str, Any]], str]:
        """All pages of one ``events.list``; returns (items, nextSyncToken).  Raises GoogleFailure."""
        client = self._client()
        items: list[dict[str, Any]] = []
        page: str | None = None
        for _ in range(MAX_PAGES):
            resp = client.call(lambda svc: svc.events().list(
                calendarId=self.source, singleEvents=True, showDeleted=True,
                maxResults=PAGE_SIZE, pageToken=page, **query))
            items.extend(i for i in resp.get("items") or () if isinstance(i, dict))
            page = resp.get("nextPageToken")
            if not page:
                if not resp.get("nextSyncToken"):
                    raise GoogleFailure("client", "Google's last page carried no sync token")
                return items, str(resp["nextSyncToken"])
        raise GoogleFailure("client", f"more than {MAX_PAGES} pages of events")

    def _error(self, exc: GoogleFailure) -> SourceError:
        return SourceError(self.name, self.display_source, exc.reason)

    def _convert(self, items: list[dict[str, Any]]) -> tuple[list[Occurrence], list[str]]:
        out: list[Occurrence] = []
        skipped = 0
        for item in items:
            try:
                occ = to_occurrence(item, self.context.timezone)
            except (ValueError, TypeError, KeyError, AttributeError):
                skipped += 1
                continue
            if occ is not None:
                out.append(occ)
        return out, [f"{skipped} event(s) with unreadable times ignored"] if skipped else []


def to_occurrence(item: dict[str, Any], tz: tzinfo) -> Occurrence | None:
    """Map one Calendar v3 event to an Occurrence; None for things that are never sessions.

    Raises ValueError (or TypeError/KeyError) for unreadable times.
    """
    event_id = item["id"]
    series = item.get("recurringEventId")
    uid = series or event_id
    status = str(item.get("status") or "confirmed").lower()
    if status == "cancelled" and not item.get("start"):
        return Occurrence(key=event_id, uid=uid, status="cancelled", tombstone=True,
                          deleted=series is None, extra=_extra(item))
    if item.get("eventType") in NOT_SESSIONS - {"outOfOffice"}:
        return None
    start, all_day = _when(item["start"], tz)
    end, _ = _when(item.get("end") or item["start"], tz)
    return Occurrence(
        key=event_id, uid=uid, start=start, end=end, all_day=all_day, status=status,
        summary=str(item.get("summary") or ""), description=str(item.get("description") or ""),
        attendees=tuple(_attendee(a) for a in item.get("attendees") or ()
                        if isinstance(a, dict) and a.get("email") and not a.get("resource")
                        and not a.get("self") and not a.get("organizer")),
        color=str(item["colorId"]) if item.get("colorId") else None,
        last_modified=_instant(item.get("updated")),
        deleted=status == "cancelled" and series is None, extra=_extra(item))


def _attendee(a: dict[str, Any]) -> Attendee:
    return Attendee(email=str(a["email"]).lower(), name=str(a.get("displayName") or ""),
                    partstat=PARTSTAT.get(str(a.get("responseStatus")), "NEEDS-ACTION"))


def _extra(item: dict[str, Any]) -> dict[str, str]:
    extra: dict[str, str] = {}
    if item.get("eventType") == "outOfOffice":   # the therapist away: never a session (daemon.engine.detect)
        extra["event_type"] = "outOfOffice"
    if item.get("recurringEventId"):
        extra["recurring_event_id"] = str(item["recurringEventId"])
    original = item.get("originalStartTime") or {}
    if original.get("dateTime") or original.get("date"):
        extra["original_start"] = str(original.get("dateTime") or original.get("date"))
    return extra


def _when(value: dict[str, Any], tz: tzinfo) -> tuple[datetime, bool]:
    """(aware datetime, all_day) from a Calendar v3 ``start``/``end`` object."""
    if value.get("dateTime"):
        moment = datetime.fromisoformat(str(value["dateTime"]))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_zone(value.get("timeZone"), tz))
        return moment, False
    day = date.fromisoformat(str(value["date"]))
    return datetime.combine(day, dtime(0), tzinfo=tz), True


def _zone(name: Any, fallback: tzinfo) -> tzinfo:
    try:
        return ZoneInfo(str(name)) if name else fallback
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def _instant(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("window bounds must be aware datetimes")
    return moment.isoformat()


def _seconds(timeout: Any) -> float:
    """The request timeout in seconds (a number, or a Duration from the config)."""
    approx = getattr(timeout, "approx", None)
    return float(approx.total_seconds() if approx is not None else timeout)
