"""CalDAV calendars (``kind = "caldav"``): ``source`` is the calendar collection's URL.

Each poll first asks the server what changed since the stored sync token
(RFC 6578 sync-collection; the ``caldav`` library emulates it with an ETag
hash where a server cannot).  Nothing changed and the window still on the
same day: "unchanged" for one request.  Otherwise only the changed objects
are fetched (calendar-multiget) and the result is a delta: their occurrences
plus tombstones for the keys they no longer produce.  Once a day (the window
moved) every object is read again and the result is a complete snapshot.

Objects are expanded client-side over the window by the ICS parser
(recurring-ical-events), never by the server.  The state keeps, per object
href, its ETag, UIDs and the occurrence keys with their starts: ids and
times only.  An object that cannot be read keeps its last good keys and is
reported as a warning, so a typo never looks like a cancellation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectors.calendars.base import CalendarSource, FetchResult, Occurrence, Window
from connectors.calendars.caldav_sync import (
    SECRET,
    damaged_object,
    emulated_token,
    failure_reason,
    href_of,
    poll_day,
    state_entry,
    sync_state,
    tombstones_for,
)
from connectors.calendars.ics import IcsSource
from daemon.config.fields import option
from daemon.errors import SecretMissing, SourceError

log = logging.getLogger(__name__)
MULTIGET_CHUNK = 200
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class CaldavOptions:
    """Keys of a ``kind = "caldav"`` calendar (besides name, kind, source, poll_every, timeout)."""

    username: str = option("", doc="User name for the CalDAV server; its password is the secret "
                                   "caldav_password.  Empty: the server needs no sign-in.")
    verify_tls: bool = option(True, doc="Verify the server's TLS certificate (leave on).")
    ca_file: str = option("", doc="A CA bundle (PEM, relative to this file) for a server with a "
                                  "private certificate authority; empty: the system's.")


class CaldavSource(CalendarSource):
    kind = "caldav"
    supports_incremental = True
    Options = CaldavOptions

    # -- set-up ------------------------------------------------------------------
    @property
    def opts(self) -> CaldavOptions:
        return self.options if isinstance(self.options, CaldavOptions) else CaldavOptions()

    def check(self) -> list[str]:
        parts = urlsplit(self.source)
        problems = []
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"calendar '{self.name}': source must be the calendar's http(s) URL")
        elif parts.scheme == "http" and self.opts.username and parts.hostname not in LOOPBACK:
            problems.append(f"calendar '{self.name}': a password is sent only over https")
        if self.opts.ca_file and not self._ca_path().is_file():
            problems.append(f"calendar '{self.name}': ca_file {self._ca_path()} not found")
        if self.opts.username:
            try:
                self.context.secret(SECRET)
            except SecretMissing as exc:
                problems.append(f"calendar '{self.name}': {exc}")
        return problems

    def _ca_path(self) -> Path:
        p = Path(self.opts.ca_file).expanduser()
        return p if p.is_absolute() else self.context.base_dir / p

    def _calendar(self) -> Any:
        """The caldav Calendar for ``source`` (no request is made here)."""
        if getattr(self, "_dav", None) is None:
            import caldav

            password = None
            if self.opts.username:
                try:
                    password = self.context.secret(SECRET)
                except SecretMissing:
                    raise self._error(f"secret '{SECRET}' not found (see `welcomeback check`)") from None
            verify: bool | str = str(self._ca_path()) if self.opts.ca_file else self.opts.verify_tls
            self._dav = caldav.DAVClient(  # type: ignore[operator]  # caldav exports it lazily
                url=self.source, username=self.opts.username or None, password=password,
                timeout=int(self.timeout) or 30, ssl_verify_cert=verify, enable_rfc6764=False)
        return self._dav.calendar(url=self.source)

    def close(self) -> None:
        dav, self._dav = getattr(self, "_dav", None), None
        if dav is not None:
            dav.close()

    def _error(self, reason: str) -> SourceError:
        return SourceError(self.name, self.display_source, reason)

    # -- fetching ----------------------------------------------------------------
    def fetch(self, window: Window, state: dict[str, Any]) -> FetchResult:
        """A delta since the sync token, a daily complete snapshot, or "unchanged".  Raises SourceError."""
        try:
            return self._fetch(window, state)
        except SourceError:
            raise
        except Exception as exc:  # the library and its HTTP stack raise many kinds
            self.close()
            log.debug("calendar %s: %s", self.name, type(exc).__name__, exc_info=True)
            raise self._error(failure_reason(exc)) from None

    def _fetch(self, window: Window, state: dict[str, Any]) -> FetchResult:
        cal = self._calendar()
        token, day = state.get("sync_token"), poll_day(window)
        known: dict[str, Any] = state.get("objects") or {}
        if token and state.get("window_day") == day:
            listing = cal.get_objects_by_sync_token(token, load_objects=False)
            _complete_listing(self, listing)
            if not len(listing) and not listing.deleted_urls:
                return FetchResult(None, {**state, "sync_token": listing.sync_token})
            if not emulated_token(listing.sync_token):
                return self._delta(cal, listing, window, known, day)
        else:
            listing = cal.get_objects_by_sync_token(None, load_objects=False)
            _complete_listing(self, listing)
        return self._full(cal, listing, window, known, day)

    def _delta(self, cal: Any, listing: Any, window: Window, known: dict[str, Any],
               day: str) -> FetchResult:
        """The changed objects' occurrences plus tombstones for what they (or deleted objects) lost."""
        objects = dict(known)
        out: list[Occurrence] = []
        warnings: list[str] = []
        gone = {href_of(u) for u in listing.deleted_urls}
        loaded = self._load(cal, [o for o in listing if href_of(o.url) not in gone])
        gone |= {h for h, (_, data) in loaded.items() if data is None}
        for href in gone:
            old = objects.pop(href, None)
            if old:
                out.extend(tombstones_for(old, set(), window, deleted=True))
        for href, (etag, data) in loaded.items():
            if data is None:
                continue
            occs = self._parse(href, data, window, warnings)
            if occs is None:
                continue
            entry = state_entry(etag, occs)
            if href in objects:
                out.extend(tombstones_for(objects[href], set(entry["keys"]), window, deleted=False))
            objects[href] = entry
            out.extend(occs)
        return FetchResult(out, sync_state(listing, day, objects), complete=False, warnings=warnings)

    def _full(self, cal: Any, listing: Any, window: Window, known: dict[str, Any],
              day: str) -> FetchResult:
        """Every object read again: a complete snapshot, or a delta if a known object is unreadable."""
        loaded = self._load(cal, [o for o in listing if o.url.canonical() not in listing.deleted_urls])
        objects: dict[str, Any] = {}
        occurrences: list[Occurrence] = []
        warnings: list[str] = []
        kept = False
        for href, (etag, data) in loaded.items():
            occs = self._parse(href, data, window, warnings) if data is not None else None
            if occs is None:
                if data is not None and href in known:
                    objects[href], kept = known[href], True
                continue
            objects[href] = state_entry(etag, occs)
            occurrences.extend(occs)
        new_state = sync_state(listing, day, objects)
        if not kept:
            return FetchResult(occurrences, new_state, complete=True, warnings=warnings)
        tombs = [t for href, old in known.items() if objects.get(href) is not old
                 for t in tombstones_for(old, set(objects.get(href, {}).get("keys", {})), window,
                                      deleted=href not in objects)]
        return FetchResult(occurrences + tombs, new_state, complete=False, warnings=warnings)

    def _load(self, cal: Any, objs: list[Any]) -> dict[str, tuple[str, bytes | None]]:
        """href → (etag, data): None when the object is gone, b"" when it cannot be read now."""
        out: dict[str, tuple[str, bytes | None]] = {}
        missing = []
        for obj in objs:
            if obj.raw_data:
                out[href_of(obj.url)] = (obj.etag or "", obj.raw_data)
            else:
                missing.append(obj)
        for i in range(0, len(missing), MULTIGET_CHUNK):
            chunk = missing[i:i + MULTIGET_CHUNK]
            got = {href_of(o.url): o for o in cal.multiget([o.url for o in chunk])}
            for obj in chunk:
                found = got.get(href_of(obj.url))
                if found is not None and found.raw_data:
                    out[href_of(obj.url)] = (found.etag or obj.etag or "", found.raw_data)
                else:
                    out[href_of(obj.url)] = self._load_one(obj)
        return out

    def _load_one(self, obj: Any) -> tuple[str, bytes | None]:
        """An object the multiget left out: None when it is gone, b"" when it cannot be read now."""
        from caldav.lib import error

        try:
            obj.load()
        except error.NotFoundError:
            return obj.etag or "", None
        except error.DAVError as exc:
            log.info("calendar %s: one object unreadable (%s)", self.name, type(exc).__name__)
            return obj.etag or "", b""
        return obj.etag or "", obj.raw_data or b""

    def _parse(self, href: str, data: bytes, window: Window, warnings: list[str]) -> list[Occurrence] | None:
        """The object's occurrences in the window, or None (with a warning) when it cannot be read."""
        try:
            if damaged_object(data):
                raise self._error("damaged time properties")
            occs, notes = IcsSource(self.name, self.source, None, self.context, self.timeout).parse(data, window)
        except SourceError:
            warnings.append(f"object {href.rsplit('/', 1)[-1]} skipped: not readable as iCalendar")
            return None
        warnings.extend(f"object {href.rsplit('/', 1)[-1]}: {n}" for n in notes)
        return occs


def _complete_listing(source: CaldavSource, listing: Any) -> None:
    if getattr(listing, "truncated", False):
        raise source._error("the server truncated the list of changes; will retry")


