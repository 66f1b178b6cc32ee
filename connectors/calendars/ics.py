"""iCal files and feeds (``kind = "ics"``): a local path or an http(s) URL.

Unchanged content is never parsed again: a 304 from a conditional GET, or the
same SHA-256 of the body, returns "unchanged" (re-expanded only when the
window has moved to a new day).  Changed content is parsed only where it
changed (connectors.calendars.ics_delta): the events whose text differs.  Recurrences are expanded with
recurring-ical-events over the window; X-WR-TIMEZONE, Windows zone names and
floating times (taken in the practice's zone) are handled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings as warnings_module
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator


from connectors import http
from connectors.calendars.base import (
    Attendee,
    CalendarSource,
    FetchResult,
    Occurrence,
    Window,
)
from connectors.calendars.ics_values import (
    attendees_of,
    aware_time,
    category_words,
    damaged_events,
    mail_address,
    plain_text,
    recurring_uids,
    split_by_uid,
)
from connectors.calendars import ics_delta
from connectors.calendars.ics_delta import KEPT
from connectors.calendars.ics_split import without_distant_events
from daemon.errors import SourceError

log = logging.getLogger(__name__)
MAX_OCCURRENCES = 50_000
MAX_BYTES = 64 * 1024 * 1024


class IcsSource(CalendarSource):
    kind = "ics"
    supports_incremental = False

    @property
    def is_url(self) -> bool:
        return self.source.lower().startswith(("http://", "https://", "webcal://"))

    def path(self) -> Path:
        p = Path(self.source).expanduser()
        return p if p.is_absolute() else self.context.base_dir / p

    def check(self) -> list[str]:
        if not self.is_url and not self.path().is_file():
            return [f"calendar '{self.name}': source file {self.path()} not found"]
        return []

    def fetch(self, window: Window, state: dict[str, Any]) -> FetchResult:
        day = _day(window)
        body, new_state = self._read(state)
        if body is None:
            if state.get("window_day") == day:
                return FetchResult(None, {**state, **new_state})
            body, new_state = self._read({})      # a 304, but the window moved: read it again
            assert body is not None
        digest = hashlib.sha256(body).hexdigest()
        if digest == state.get("sha256") and state.get("window_day") == day:
            return FetchResult(None, {**{k: v for k, v in state.items() if k in KEPT}, **new_state})
        new_state.update(sha256=digest, window_day=day)
        return ics_delta.poll(self, body, window, state, new_state)

    # -- reading -----------------------------------------------------------------
    def _read(self, state: dict[str, Any]) -> tuple[bytes | None, dict[str, Any]]:
        """Return (body or None when the server said 304, new HTTP state)."""
        if not self.is_url:
            try:
                with open(self.path(), "rb") as fh:
                    if os.fstat(fh.fileno()).st_size > MAX_BYTES:
                        raise SourceError(self.name, str(self.path()), f"larger than {MAX_BYTES // 2**20} MiB")
                    return fh.read(), {}
            except OSError as exc:
                raise SourceError(self.name, str(self.path()), f"cannot read file: {exc.strerror or exc}") from None
        url = "https://" + self.source[len("webcal://"):] if self.source.lower().startswith("webcal://") else self.source
        headers = {"Accept": "text/calendar, */*;q=0.5"}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if state.get("last_modified"):
            headers["If-Modified-Since"] = state["last_modified"]
        import requests       # here, not at the top: `status` and `check` never fetch

        try:
            resp = http.get(url, headers=headers, timeout=self.timeout, attempts=2)
        except requests.RequestException as exc:
            raise SourceError(self.name, self.display_source, f"cannot fetch: {type(exc).__name__}") from None
        kept = {k: v for k, v in (("etag", resp.headers.get("etag")),
                                  ("last_modified", resp.headers.get("last-modified"))) if v}
        if resp.status == 304:
            return None, kept
        if resp.status != 200:
            raise SourceError(self.name, self.display_source, f"HTTP {resp.status}{_hint(resp.status)}")
        return resp.body, kept

    # -- parsing -----------------------------------------------------------------
    def parse(self, body: bytes, window: Window) -> tuple[list[Occurrence], list[str]]:
        """Expand ``body`` into occurrences inside ``window``; raises SourceError."""
        occurrences, warnings, _ = self.parse_full(body, window)
        return occurrences, warnings

    def parse_full(self, body: bytes, window: Window, *, skip_distant: bool = True
                   ) -> tuple[list[Occurrence], list[str], set[str]]:
        """Occurrences, warnings, and the UIDs of events too damaged to read; raises SourceError.

        ``skip_distant`` sets aside, unparsed, one-off events that cannot reach the window."""
        return self.parse_text(self.prepare(body), window, skip_distant=skip_distant)

    @property
    def where(self) -> str:
        return self.display_source if self.is_url else str(self.path())

    def prepare(self, body: bytes) -> str:
        """The feed's text, one calendar at least, checked whole; raises SourceError."""
        where = self.where
        if len(body) > MAX_BYTES:
            raise SourceError(self.name, where, f"larger than {MAX_BYTES // 2**20} MiB")
        text = body.decode("utf-8-sig", errors="replace").lstrip()
        if not text:
            raise SourceError(self.name, where, "empty: no calendar data")
        if text[:12].upper().startswith("BEGIN:VEVENT"):
            text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + text.rstrip() + "\r\nEND:VCALENDAR\r\n"
        if not text[:15].upper().startswith("BEGIN:VCALENDAR"):
            looks = "an HTML page (a login or error page?)" if text[:1] == "<" else "not iCalendar data"
            raise SourceError(self.name, where, f"not a calendar: {looks}")
        if not _ends_every_calendar(text):
            # A cut-off download: reading what is there would make the rest look deleted.
            raise SourceError(self.name, where, "truncated: no END:VCALENDAR at the end (a partial download?)")
        return text

    def parse_text(self, text: str, window: Window, *, skip_distant: bool = True
                   ) -> tuple[list[Occurrence], list[str], set[str]]:
        """:meth:`parse_full` of text that :meth:`prepare` returned."""
        where = self.where
        if skip_distant:
            text = without_distant_events(text, window)    # history icalendar need not read
        import icalendar      # here, not at the top: `status` and `check` never parse

        try:
            with _quiet():
                calendars = icalendar.Calendar.from_ical(text, multiple=True)
        except Exception as exc:  # icalendar raises many kinds on broken input
            raise SourceError(self.name, where, f"cannot parse: {_short(exc)}") from None
        occurrences: list[Occurrence] = []
        warnings: list[str] = []
        unreadable: set[str] = set()
        with _quiet():
            for cal in calendars:
                occurrences.extend(self._expand(cal, window, where, warnings, unreadable))
        return occurrences, warnings, unreadable

    def _expand(self, cal: Any, window: Window, where: str, warnings: list[str],
                unreadable: set[str]) -> list[Occurrence]:
        """Expand the whole calendar; if that fails, each event on its own, skipping broken ones.

        Events whose times cannot be read are set aside (their UIDs in ``unreadable``):
        the recurrence library would silently drop them and they would look cancelled.
        """
        damaged = damaged_events(cal)
        if damaged:
            # By identity: events without a UID share "", and a readable one must stay.
            gone = {id(c) for c in damaged}
            uids = {str(c.get("UID") or "").strip() for c in damaged}
            cal.subcomponents = [c for c in cal.subcomponents
                                 if c.name != "VEVENT" or (id(c) not in gone and (
                                     not str(c.get("UID") or "").strip()
                                     or str(c.get("UID") or "").strip() not in uids))]
            unreadable.update(uids)
            warnings.append(f"{len(uids)} event(s) with unreadable times kept as they were")
        recurring = recurring_uids(cal)
        try:
            return self._expand_all(cal, window, where, recurring, warnings, unreadable)
        except SourceError as whole:
            groups = split_by_uid(cal)
            if len(groups) <= 1:
                raise
            out: list[Occurrence] = []
            for part in groups:
                try:
                    out.extend(self._expand_all(part, window, where, recurring, warnings, unreadable))
                except SourceError as exc:
                    if "more than" in exc.reason:
                        raise
                    warnings.append(f"one event skipped: {exc.reason}")
                    unreadable.update(str(c.get("UID") or "").strip() for c in part.walk("VEVENT"))
            if not out and warnings:
                raise whole
            return out

    def _expand_all(self, cal: Any, window: Window, where: str, recurring: set[str],
                    warnings: list[str], unreadable: set[str]) -> list[Occurrence]:
        import recurring_ical_events

        try:
            query = recurring_ical_events.of(cal, skip_bad_series=True)
            skipped = _skipped_series(cal, query)
            if skipped:
                # A rule the library cannot expand is a damaged event, not a cancelled one.
                unreadable.update(skipped)
                warnings.append(f"{len(skipped)} series with a rule that cannot be expanded kept as they were")
            # between() is ~9x faster than walking after() on big exports; runaway rules
            # (more often than hourly) were set aside as damaged, so the result is bounded.
            found = _occurrences_between(query, window)
            if len(found) > MAX_OCCURRENCES:
                raise SourceError(self.name, where, f"more than {MAX_OCCURRENCES} occurrences in the window")
            fixed: dict[int, _Fixed] = {}
            out = [self._from_library(o, query, recurring, fixed) for o in found]
            return [o for o in out if o is not None]
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(self.name, where, f"cannot expand recurrences: {_short(exc)}") from None

    def _from_library(self, o: Any, query: Any, recurring: set[str], fixed: dict[int, _Fixed]) -> Occurrence | None:
        """The occurrence the library found, read without copying its component when it can be.

        ``query.between`` copies the series' component for every occurrence and sets DTSTART,
        DTEND and (when absent) RECURRENCE-ID on the copy; everything else is the component's
        own.  So a plain occurrence is read from its start, end and source component, whose
        other properties are read once per component (``fixed``), not once per occurrence."""
        source = _plain_source(o)
        if source is None:
            copied = o.as_component(query.keep_recurrence_attributes) if hasattr(o, "as_component") else o
            return self._occurrence(copied, recurring)
        key = id(source)
        if key not in fixed:
            fixed[key] = self._fixed(source)
        rid = source.get("RECURRENCE-ID")
        return self._build(o.start, o.end, None, o.start if rid is None else rid, fixed[key], recurring)

    def _occurrence(self, c: Any, recurring: set[str]) -> Occurrence | None:
        raw_start = c.get("DTSTART")
        if raw_start is None:
            return None
        duration = None
        if c.get("DURATION") is not None:
            try:
                duration = c.decoded("DURATION")
            except Exception:
                duration = None
        return self._build(raw_start, c.get("DTEND"), duration, c.get("RECURRENCE-ID"), self._fixed(c), recurring)

    def _fixed(self, c: Any) -> _Fixed:
        """What every occurrence of component ``c`` shares."""
        tz = self.context.timezone
        return _Fixed(
            uid=str(c.get("UID") or "").strip(), summary_key=str(c.get("SUMMARY", "")),
            status=str(c.get("STATUS") or "CONFIRMED").strip().lower(),
            summary=plain_text(c.get("SUMMARY")), description=plain_text(c.get("DESCRIPTION")),
            categories=category_words(c.get("CATEGORIES")),
            attendees=attendees_of(c.get("ATTENDEE"), organizer=mail_address(c.get("ORGANIZER"))),
            color=plain_text(c.get("COLOR")) or None, last_modified=aware_time(c.get("LAST-MODIFIED"), tz))

    def _build(self, raw_start: Any, raw_end: Any, duration: Any, raw_rid: Any, f: _Fixed,
               recurring: set[str]) -> Occurrence | None:
        tz = self.context.timezone
        start_value = getattr(raw_start, "dt", raw_start)
        all_day = isinstance(start_value, date) and not isinstance(start_value, datetime)
        start = aware_time(raw_start, tz)
        end = aware_time(raw_end, tz)
        if end is None and duration is not None and start is not None:
            try:
                end = start + duration
            except Exception:
                end = None
        if start is None:
            return None
        if end is None or end < start:
            end = start + (timedelta(days=1) if all_day else timedelta(0))
        uid = f.uid or "nouid-" + hashlib.sha1(f"{start.isoformat()}|{f.summary_key}".encode()).hexdigest()[:16]
        key = uid
        if uid in recurring:
            rid = aware_time(raw_rid, tz) or start
            key = f"{uid}@{rid.astimezone(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
        return Occurrence(
            key=key, uid=uid, start=start, end=end, all_day=all_day, status=f.status,
            summary=f.summary, description=f.description, categories=f.categories, attendees=f.attendees,
            color=f.color, last_modified=f.last_modified,
        )


@dataclass(frozen=True)
class _Fixed:
    """The properties every occurrence of one component shares, read once."""
    uid: str
    summary_key: str          # SUMMARY as the key of an event without a UID hashes it
    status: str
    summary: str
    description: str
    categories: tuple[str, ...]
    attendees: tuple[Attendee, ...]
    color: str | None
    last_modified: datetime | None


def _occurrences_between(query: Any, window: Window) -> list[Any]:
    """``query.between(window)`` before the library copies each occurrence's component.

    The library's own steps of ``between`` (recurring-ical-events 3.x); where they are not
    there, its copies, which :meth:`IcsSource._occurrence` reads."""
    between, to_datetime = getattr(query, "_occurrences_between", None), getattr(query, "to_datetime", None)
    if between is None or to_datetime is None:
        return list(query.between(window.start, window.end))
    return list(between(to_datetime(window.start), to_datetime(window.end)))


def _plain_source(o: Any) -> Any:
    """The component a library occurrence copies, when the copy changes DTSTART, DTEND and
    RECURRENCE-ID only (a plain event occurrence); else None."""
    import recurring_ical_events.occurrence as lib

    if type(o) is not lib.Occurrence:
        return None
    adapter = getattr(o, "_adapter", None)
    source = getattr(adapter, "_component", None)
    if source is None or getattr(adapter, "end_property", None) != "DTEND" or source.name != "VEVENT":
        return None
    return source


def _ends_every_calendar(text: str) -> bool:
    """Whether an END:VCALENDAR line follows the last BEGIN:VCALENDAR (trailing junk is allowed)."""
    upper = text.upper()
    begin = upper.rfind("BEGIN:VCALENDAR")
    end = upper.rfind("END:VCALENDAR")
    if end > begin and (end == 0 or upper[end - 1] in "\r\n"):
        return True        # the usual case, without a case-blind scan of the whole feed
    return _END_LINE.search(text, begin) is not None


_END_LINE = re.compile(r"^END:VCALENDAR", re.IGNORECASE | re.MULTILINE)


def _skipped_series(cal: Any, query: Any) -> set[str]:
    """UIDs ("" when absent) of the events the recurrence library set aside as bad series."""
    uids = {str(c.get("UID")) for c in cal.walk("VEVENT") if c.get("UID") is not None}
    kept = {str(s.uid) for s in query.series}
    skipped = {u.strip() for u in uids - kept}
    # Events without a UID are one series each, named by an id the library makes up: count them.
    without = sum(1 for c in cal.walk("VEVENT") if c.get("UID") is None)
    if without > len(kept - uids):
        skipped.add("")
    return skipped


@contextmanager
def _quiet() -> Iterator[None]:
    """icalendar's guesses (vendor TZIDs) are not the therapist's business: keep stderr clean."""
    with warnings_module.catch_warnings():
        warnings_module.simplefilter("ignore")
        yield


def _day(window: Window) -> str:
    return window.start.date().isoformat()


def _hint(status: int) -> str:
    return {401: " (unauthorized: the feed address or password changed?)",
            403: " (forbidden: is the calendar still shared?)",
            404: " (not found: was the calendar deleted or its address reset?)",
            410: " (gone: the feed address was reset)"}.get(status, "")


def _short(exc: Exception) -> str:
    """The kind of error only: parser messages quote calendar lines, which may name clients."""
    return f"{type(exc).__name__} (the file is not valid iCalendar)"


