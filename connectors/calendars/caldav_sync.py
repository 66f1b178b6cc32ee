"""The CalDAV source's bookkeeping between polls: the sync state kept per object (ETag and the
occurrences it gave), the tombstones of objects that went away, and readable failure reasons."""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

from connectors.calendars.base import Occurrence, Window
from connectors.calendars.ics_values import TIME_PROPS

SECRET = "caldav_password"   # the CalDAV app password, looked up like every secret


def damaged_object(data: bytes) -> bool:
    """A VEVENT whose times cannot be read: the parser would silently skip it (skip_bad_series)."""
    import icalendar

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calendars = icalendar.Calendar.from_ical(data.decode("utf-8", errors="replace"), multiple=True)
    except Exception:  # the parser proper reports this one
        return False
    return any(name.upper() in TIME_PROPS for cal in calendars for ev in cal.walk("VEVENT")
               for name, _ in getattr(ev, "errors", ()))


def emulated_token(token: Any) -> bool:
    """The library's ETag-hash token for servers without sync-collection: a full listing."""
    return isinstance(token, str) and token.startswith("fake-")


def href_of(url: Any) -> str:
    return unquote(urlsplit(str(url)).path)


def poll_day(window: Window) -> str:
    return window.start.date().isoformat()


def utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def state_entry(etag: str, occs: list[Occurrence]) -> dict[str, Any]:
    return {"etag": etag, "uids": sorted({o.uid for o in occs}),
            "keys": {o.key: utc_text(o.start) for o in occs if o.start is not None}}


def sync_state(listing: Any, day: str, objects: dict[str, Any]) -> dict[str, Any]:
    return {"sync_token": str(listing.sync_token or ""), "window_day": day, "objects": objects}


def tombstones_for(old: dict[str, Any], keep: set[str], window: Window, *, deleted: bool) -> list[Occurrence]:
    """Tombstones for an object's old keys that are gone and started inside the window."""
    out = []
    uids = old.get("uids") or []
    for key, start in (old.get("keys") or {}).items():
        when = datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        if key in keep or not window.start <= when < window.end:
            continue
        uid = next((u for u in uids if key == u or key.startswith(u + "@")), key)
        out.append(Occurrence(key=key, uid=uid, tombstone=True, deleted=deleted))
    return out


def failure_reason(exc: Exception) -> str:
    """A reason free of server text: the failure's kind and HTTP status."""
    from caldav.lib import error

    status = getattr(exc, "status", None)
    code = f"HTTP {status}: " if status else ""
    if isinstance(exc, error.AuthorizationError):
        return f"{code}unauthorized or forbidden: check username and the secret '{SECRET}'"
    if isinstance(exc, error.NotFoundError):
        return f"{code}not found: was the calendar deleted or its URL changed?"
    if isinstance(exc, error.RateLimitError):
        return f"{code}rate limited by the server; will retry"
    if isinstance(exc, error.DAVError):
        return f"{code}the server refused the request ({type(exc).__name__})"
    name = type(exc).__name__
    if "Timeout" in name:
        return f"timed out ({name})"
    if "Connection" in name or isinstance(exc, OSError):
        return f"cannot connect ({name})"
    if "SSL" in name or "Certificate" in name:
        return f"TLS failure ({name}); see verify_tls / ca_file"
    return f"unexpected failure ({name})"
