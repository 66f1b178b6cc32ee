"""A loopback server speaking the Calendar v3 wire protocol that google-api-python-client uses.

Enough of Google for welcomeback: ``events.list`` (syncToken, pageToken with
configurable page sizes incl. empty pages, showDeleted, singleEvents, timeMin;
tombstones for cancelled items), ``events.get/insert/patch/delete``,
``calendarList.list``, ``calendars.insert`` and ``/token`` for OAuth.  Test
helpers add, change, cancel and delete events and instances of a recurring
event; faults are injected per request.  Every request is recorded; a write
without ``sendUpdates=none`` or touching an event with attendees is refused
(HTTP 400) and recorded as a violation.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

UTC = timezone.utc
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
RATE = {"domain": "usageLimits", "reason": "rateLimitExceeded", "message": "Rate Limit Exceeded"}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int = 0

    def param(self, name: str) -> str | None:
        return self.query.get(name, [None])[0]


@dataclass
class Fault:
    kind: str                     # "status" | "timeout" | "invalid_grant"
    status: int = 500
    reason: str = ""
    method: str | None = None
    path: str = "/events"
    skip: int = 0
    times: int = 1


@dataclass
class Stored:
    body: dict[str, Any]
    seq: int
    deleted: bool = False
    cal: str = "primary"


def when(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.isoformat()}


def instance_id(series: str, start: datetime) -> str:
    return f"{series}_{start.astimezone(UTC):%Y%m%dT%H%M%SZ}"


class FakeGoogleCalendar:
    """Start with ``with FakeGoogleCalendar() as fake:``; point clients at ``fake.api_endpoint``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.calendars: dict[str, dict[str, Any]] = {"primary": {"id": "primary", "summary": "Ana",
                                                                 "accessRole": "owner", "primary": True}}
        self.events: dict[tuple[str, str], Stored] = {}
        self.seq = 0
        self.min_sync = 0
        self.page_sizes: list[int] = [250]
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.faults: list[Fault] = []
        self.refresh_token = "fake-refresh"
        self.tokens: set[str] = set()
        self.revoked = False
        self.granted = ""             # scopes /token reports for a new sign-in ("" = as requested)
        self._pages: dict[str, tuple[list[dict[str, Any]], str, int]] = {}
        self._counter = itertools.count(1)
        self._release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.server.block_on_close = False

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> "FakeGoogleCalendar":
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def api_endpoint(self) -> str:
        return self.url + "/calendar/v3/"

    def authorized_user_json(self) -> str:
        return json.dumps({"type": "authorized_user", "client_id": "fake-client.apps.example",
                           "client_secret": "fake-secret", "refresh_token": self.refresh_token,
                           "token_uri": self.url + "/token"})

    # -- helpers for tests ---------------------------------------------------------------
    def _bump(self) -> int:
        self.seq += 1
        return self.seq

    def add_event(self, event_id: str | None = None, *, start: datetime, minutes: int = 50,
                  summary: str = "Session", cal: str = "primary", all_day: bool = False, **fields: Any) -> str:
        """A single event; ``fields`` are Calendar v3 event fields (attendees, colorId, …)."""
        event_id = event_id or uuid.uuid4().hex
        body = {"id": event_id, "status": "confirmed", "summary": summary, "start": when(start),
                "end": when(start + timedelta(minutes=minutes)), "iCalUID": f"{event_id}@google.com",
                **fields}
        if all_day:
            body.update(start={"date": start.date().isoformat()},
                        end={"date": (start.date() + timedelta(days=1)).isoformat()})
        with self.lock:
            self.events[(cal, event_id)] = Stored(self._stamp(body), self._bump(), cal=cal)
        return event_id

    def add_series(self, series: str, *, first: datetime, count: int, every: timedelta = timedelta(days=7),
                   minutes: int = 50, summary: str = "Session", cal: str = "primary", **fields: Any) -> list[str]:
        """Instances ``<series>_<YYYYMMDDTHHMMSSZ>`` of a recurring event (as singleEvents shows them)."""
        ids = []
        for n in range(count):
            start = first + n * every
            iid = instance_id(series, start)
            self.add_event(iid, start=start, minutes=minutes, summary=summary, cal=cal,
                           recurringEventId=series, originalStartTime=when(start),
                           iCalUID=f"{series}@google.com", **fields)
            ids.append(iid)
        return ids

    def update(self, event_id: str, cal: str = "primary", **fields: Any) -> None:
        with self.lock:
            stored = self.events[(cal, event_id)]
            stored.body.update(fields)
            self._stamp(stored.body)
            stored.seq = self._bump()

    def move(self, event_id: str, start: datetime, minutes: int = 50, cal: str = "primary") -> None:
        self.update(event_id, cal, start=when(start), end=when(start + timedelta(minutes=minutes)))

    def respond(self, event_id: str, email: str, status: str, cal: str = "primary") -> None:
        with self.lock:
            attendees = [dict(a) for a in self.events[(cal, event_id)].body.get("attendees", [])]
        for a in attendees:
            if a["email"] == email:
                a["responseStatus"] = status
        self.update(event_id, cal, attendees=attendees)

    def cancel(self, event_id: str, cal: str = "primary") -> None:
        """Cancel an instance or delete an event (Google shows both as status cancelled)."""
        with self.lock:
            stored = self.events[(cal, event_id)]
            stored.deleted = True
            stored.body["status"] = "cancelled"
            self._stamp(stored.body)
            stored.seq = self._bump()

    delete = cancel

    def get(self, event_id: str, cal: str = "primary") -> dict[str, Any]:
        with self.lock:
            return dict(self.events[(cal, event_id)].body)

    def expire_sync_tokens(self) -> None:
        self.min_sync = self.seq + 1

    def fail(self, status: int, reason: str = "", *, method: str | None = "GET", path: str = "/events",
             skip: int = 0, times: int = 1) -> None:
        self.faults.append(Fault("status", status, reason, method, path, skip, times))

    def rate_limit(self, times: int = 1, status: int = 403) -> None:
        reason = "rateLimitExceeded" if status == 403 else ""
        self.faults.append(Fault("status", status, reason, None, "/calendar/", 0, times))

    def timeout(self, *, method: str | None = "GET", path: str = "/events", skip: int = 0) -> None:
        self.faults.append(Fault("timeout", method=method, path=path, skip=skip))

    def revoke(self) -> None:
        """The refresh token is revoked: ``invalid_grant`` at /token, access tokens die (401)."""
        with self.lock:
            self.revoked = True
            self.tokens.clear()

    def api_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/calendar/")]

    def writes(self) -> list[Recorded]:
        return [r for r in self.api_requests() if r.method != "GET"]

    def clear_log(self) -> None:
        self.requests.clear()

    # -- internals -----------------------------------------------------------------
    def _stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        body["kind"] = "calendar#event"
        body["updated"] = (EPOCH + timedelta(seconds=self.seq + 1)).isoformat().replace("+00:00", "Z")
        body["etag"] = f'"{self.seq + 1}"'
        return body

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path in path and fault.method in (None, method):
                    if fault.skip:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def wait_released(self) -> None:
        self._release.wait(10)

    def tombstone(self, body: dict[str, Any]) -> dict[str, Any]:
        keep = ("kind", "etag", "id", "status", "recurringEventId", "originalStartTime")
        return {k: body[k] for k in keep if k in body}

    def list_events(self, cal: str, q: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """events.list: first page, or a following page by pageToken."""
        if q.get("pageToken"):
            return self._next_page(q["pageToken"], int(q.get("maxResults") or 250))
        if q.get("syncToken"):
            m = re.fullmatch(r"s(\d+)", q["syncToken"])
            if not m or int(m.group(1)) < self.min_sync:
                return 410, _error(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required.")
            since = int(m.group(1))
            chosen = sorted((s for (c, _), s in self.events.items() if c == cal and s.seq > since),
                            key=lambda s: s.seq)
        else:
            floor = datetime.fromisoformat(q["timeMin"]) if q.get("timeMin") else None
            show_deleted = q.get("showDeleted") == "true"
            chosen = sorted((s for (c, _), s in self.events.items() if c == cal
                             and (show_deleted or not s.deleted) and _ends_after(s.body, floor)),
                            key=lambda s: (s.body["start"].get("dateTime", ""), s.body["id"]))
        items = [self.tombstone(s.body) if s.deleted else dict(s.body) for s in chosen]
        token = f"p{next(self._counter)}"
        self._pages[token] = (items, f"s{self.seq}", 0)
        return self._next_page(token, int(q.get("maxResults") or 250))

    def _next_page(self, token: str, max_results: int) -> tuple[int, dict[str, Any]]:
        if token not in self._pages:
            return 400, _error(400, "invalid", "Invalid page token")
        items, sync, index = self._pages.pop(token)
        size = min(max_results, self.page_sizes[index % len(self.page_sizes)])
        page, rest = items[:size], items[size:]
        resp: dict[str, Any] = {"kind": "calendar#events", "items": page}
        if rest:
            following = f"p{next(self._counter)}"
            self._pages[following] = (rest, sync, index + 1)
            resp["nextPageToken"] = following
        else:
            resp["nextSyncToken"] = sync
        return 200, resp

    def check_write(self, method: str, path: str, q: dict[str, str], body: Any) -> str | None:
        """The server-side guard: every event write says sendUpdates=none, never touches attendees."""
        m = re.match(r"/calendar/v3/calendars/([^/]+)/events(?:/([^/]+))?$", path)
        if not m:
            return None
        if q.get("sendUpdates") != "none":
            return f"{method} {path} without sendUpdates=none"
        if isinstance(body, dict) and body.get("attendees"):
            return f"{method} {path} writes attendees"
        stored = self.events.get((unquote(m.group(1)), unquote(m.group(2) or "")))
        if stored is not None and stored.body.get("attendees") and method != "POST":
            return f"{method} {path} touches an event with attendees"
        return None


def _ends_after(body: dict[str, Any], floor: datetime | None) -> bool:
    if floor is None:
        return True
    end = body.get("end") or {}
    if end.get("dateTime"):
        return datetime.fromisoformat(end["dateTime"]) > floor
    return datetime.fromisoformat(end["date"]).replace(tzinfo=UTC) > floor


def _error(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "errors": [{"domain": "global", "reason": reason, "message": message}]}}


class Handler(BaseHTTPRequestHandler):
    """Routes one request to the fake; ``fake`` is bound by ``_handler``."""

    fake: FakeGoogleCalendar

    def log_message(self, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        raw = parse_qs(parts.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        body: Any = None
        if data and "json" in (self.headers.get("Content-Type") or ""):
            body = json.loads(data)
        elif data:
            body = {k: v[0] for k, v in parse_qs(data.decode()).items()}
        record = Recorded(method, unquote(parts.path), raw, body)
        fake = self.fake
        with fake.lock:
            fake.requests.append(record)
            fault = fake.take_fault(method, parts.path)
        if fault is not None and fault.kind == "timeout":
            fake.wait_released()
            return self._reply(record, 503, _error(503, "backendError", "too late"))
        if fault is not None:
            err = _error(fault.status, fault.reason or "backendError", "injected")
            return self._reply(record, fault.status, err)
        with fake.lock:
            status, payload = self._route(method, parts.path, {k: v[0] for k, v in raw.items()}, body)
        self._reply(record, status, payload)

    def _reply(self, record: Recorded, status: int, payload: Any) -> None:
        record.status = status
        data = b"" if status == 204 else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout fault)

    def _route(self, method: str, path: str, q: dict[str, str], body: Any) -> tuple[int, Any]:
        fake = self.fake
        if path == "/token":
            return self._token(body or {})
        auth = self.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in fake.tokens:
            return 401, _error(401, "authError", "Invalid Credentials")
        violation = fake.check_write(method, path, q, body) if method != "GET" else None
        if violation:
            fake.violations.append(violation)
            return 400, _error(400, "invalid", violation)
        if path == "/calendar/v3/users/me/calendarList" and method == "GET":
            return 200, {"kind": "calendar#calendarList", "items": list(fake.calendars.values())}
        if path == "/calendar/v3/calendars" and method == "POST":
            cal_id = f"c{uuid.uuid4().hex[:12]}@group.calendar.google.com"
            fake.calendars[cal_id] = {"id": cal_id, "accessRole": "owner", **(body or {})}
            return 200, {"kind": "calendar#calendar", **fake.calendars[cal_id]}
        m = re.fullmatch(r"/calendar/v3/calendars/([^/]+)/events(?:/([^/]+))?", path)
        if not m:
            return 404, _error(404, "notFound", "Not Found")
        cal, event_id = unquote(m.group(1)), unquote(m.group(2) or "")
        if cal not in fake.calendars:
            return 404, _error(404, "notFound", "Not Found")
        if not event_id:
            return fake.list_events(cal, q) if method == "GET" else self._insert(cal, body or {})
        return self._one(method, cal, event_id, body or {})

    def _token(self, form: dict[str, str]) -> tuple[int, Any]:
        fake = self.fake
        grant = form.get("grant_type", "")
        if fake.revoked or (
                grant == "refresh_token" and form.get("refresh_token") != fake.refresh_token):
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        token = f"at-{next(fake._counter)}"
        fake.tokens.add(token)
        answer = {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
        if grant == "authorization_code":
            answer.update(refresh_token=fake.refresh_token, **({"scope": fake.granted} if fake.granted else {}))
        return 200, answer

    def _insert(self, cal: str, body: dict[str, Any]) -> tuple[int, Any]:
        fake = self.fake
        event_id = body.get("id") or uuid.uuid4().hex
        if not re.fullmatch(r"[a-v0-9]{5,1024}", event_id):
            return 400, _error(400, "invalid", "Invalid resource id value.")
        if (cal, event_id) in fake.events:
            return 409, _error(409, "duplicate", "The requested identifier already exists.")
        event = {**body, "id": event_id, "status": "confirmed"}
        fake.events[(cal, event_id)] = Stored(fake._stamp(event), fake._bump(), cal=cal)
        return 200, event

    def _one(self, method: str, cal: str, event_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        fake = self.fake
        stored = fake.events.get((cal, event_id))
        if stored is None:
            return 404, _error(404, "notFound", "Not Found")
        if method == "GET":
            return 200, stored.body
        if method == "DELETE":
            if stored.deleted:
                return 410, _error(410, "deleted", "Resource has been deleted")
            fake.cancel(event_id, cal)
            return 204, None
        fake.update(event_id, cal, **body)
        return 200, stored.body


def _handler(fake: FakeGoogleCalendar) -> type[BaseHTTPRequestHandler]:
    return type("BoundHandler", (Handler,), {"fake": fake})
