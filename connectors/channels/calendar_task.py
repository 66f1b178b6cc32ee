"""Phone step as a call task in the therapist's Google Calendar (``[channels.phone] backend = "calendar"``).

``deliver`` inserts a 30-minute event, without attendees and with
``sendUpdates="none"``, in a follow-ups calendar this app created (found by
name with ``calendarList.list``, created with ``calendars.insert`` if
missing).  The event id is derived from the step id, so a second hand-off of
the same step finds it already there (409) instead of making a second task.
``feedback`` reads that calendar back: a task whose title gained a reached
word means the client was reached; a deleted task dismisses the sequence.
This channel only ever writes into its own calendar: besides inserting, its one edit is
``note_answered`` prefixing one of its own call tasks' titles when the client answered, so
it can never touch a client's session.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from connectors.calendars.google_api import (
    GoogleClient,
    GoogleFailure,
    GoogleOptions,
    write_private,
)
from connectors.channels.base import Channel, Message, Receipt, read_state
from daemon.config.fields import option
from daemon.errors import ChannelError

log = logging.getLogger(__name__)
STATE_FILE = "google-call-tasks.json"
FEEDBACK_DAYS = 90


def _words(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError('expected a list of words, e.g. ["reached", "done", "✓"]')
    return tuple(v.strip() for v in value)


def _minutes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 5 <= value <= 240:
        raise ValueError(f"{value!r} is not a number of minutes between 5 and 240")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 300:
        raise ValueError(f"{value!r} is not a number of seconds between 0 and 300")
    return float(value)


@dataclass
class CalendarTaskOptions(GoogleOptions):
    """Keys of ``[channels.phone]`` with ``backend = "calendar"``."""

    calendar_name: str = option("welcomeback follow-ups",
                                doc="The calendar the call tasks go to (created if missing).")
    reached_words: tuple[str, ...] = option(
        default_factory=lambda: ("reached", "done", "✓"), parse=_words,
        doc="A call task whose title gains one of these words (whole word, any case) "
            "marks the client reached.")
    task_minutes: int = option(30, parse=_minutes, doc="Length of a call task in minutes.")
    timeout: float = option(30.0, parse=_seconds, doc="Network timeout for one request, in seconds.")


def task_event_id(step_id: str) -> str:
    """A Calendar event id (base32hex) derived from the step id: the same step, the same event."""
    digest = hashlib.sha256(f"welcomeback:{step_id}".encode()).digest()[:20]
    return base64.b32hexencode(digest).decode().lower().rstrip("=")


def has_word(title: str, words: tuple[str, ...]) -> bool:
    """True when ``title`` contains one of ``words`` as a whole word, any case."""
    return any(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", title, re.IGNORECASE) for w in words)


class CalendarCallTask(Channel):
    backend = "calendar"
    medium = "call-task"
    idempotent = True
    Options = CalendarTaskOptions

    sleep: Callable[[float], None] = staticmethod(time.sleep)  # tests inject a fake

    @property
    def opts(self) -> CalendarTaskOptions:
        return self.options or CalendarTaskOptions()

    def _client(self) -> GoogleClient:
        if getattr(self, "_google", None) is None:
            self._google = GoogleClient(self.opts, secret=self.context.secret,
                                        state_dir=self.context.state_dir, timeout=self.opts.timeout,
                                        sleep=self.sleep)
        return self._google

    def check(self) -> list[str]:
        from connectors.calendars.google_api import make_credentials, read_token

        try:
            make_credentials(read_token(self.context.secret, self.context.state_dir), self.opts)
        except GoogleFailure as exc:
            return [f"[channels.phone] calendar: {exc.reason}"]
        except ImportError:
            return ["[channels.phone] calendar: the Google libraries are missing; install welcomeback[google]"]
        return []

    # -- delivery ----------------------------------------------------------------------
    def deliver(self, message: Message) -> Receipt:
        """Insert the call task.  Raises ChannelError."""
        if message.due_at is None or message.due_at.tzinfo is None:
            raise ChannelError("failed", "a call task needs an aware due time")
        try:
            calendar_id = self._calendar_id(create=True)
        except GoogleFailure as exc:
            raise _channel_error(exc, sent=False) from None
        body = self._task(message)
        try:
            created = self._client().call(lambda svc: svc.events().insert(
                calendarId=calendar_id, body=body, sendUpdates="none"))
        except GoogleFailure as exc:
            if exc.kind == "not_found":   # the follow-ups calendar was deleted: find or make it again
                self._save({**self._state(), "calendar": {}})
                raise ChannelError("retry", exc.reason) from None
            if exc.kind != "conflict":
                raise _channel_error(exc, sent=True) from None
            log.info("step %s: call task already in the calendar", message.step_id)
            created = {"id": body["id"]}
        self._remember(str(created.get("id") or body["id"]), message.step_id)
        log.info("step %s: call task created", message.step_id)
        return Receipt(provider_id=str(created.get("id") or body["id"]), detail="call task in calendar")

    def _task(self, message: Message) -> dict[str, Any]:
        assert message.due_at is not None
        zone = getattr(self.context.timezone, "key", None)
        start = message.due_at.astimezone(self.context.timezone)
        end = start + timedelta(minutes=self.opts.task_minutes)
        phone = re.sub(r"[^\d+]", "", message.meta.get("phone", ""))
        text = message.text.rstrip() + (f"\n\nCall: tel:{phone}" if phone else "")

        def at(moment: Any) -> dict[str, str]:
            return {"dateTime": moment.isoformat(), **({"timeZone": zone} if zone else {})}

        return {"id": task_event_id(message.step_id), "summary": message.subject, "description": text,
                "start": at(start), "end": at(end), "transparency": "transparent",
                "visibility": "private", "reminders": {"useDefault": True},
                "extendedProperties": {"private": {"welcomeback_step": message.step_id,
                                                   "welcomeback_sequence": message.sequence_id}}}

    def note_answered(self, step_id: str, how: str) -> bool:
        """Prefix the step's call task title with ``Answered {how}:`` (the client wrote back, the
        follow-up stopped); True when the task was there.  Raises ChannelError."""
        try:
            calendar_id = self._calendar_id(create=False)
            if calendar_id is None:
                return False
            event_id = task_event_id(step_id)
            task = self._client().call(lambda svc: svc.events().get(calendarId=calendar_id, eventId=event_id))
            prefix = f"Answered {how}:"
            summary = str(task.get("summary") or "")
            if task.get("status") == "cancelled" or summary.startswith(prefix):
                return task.get("status") != "cancelled"
            self._client().call(lambda svc: svc.events().patch(
                calendarId=calendar_id, eventId=event_id, sendUpdates="none",
                body={"summary": f"{prefix} {summary}"}))
        except GoogleFailure as exc:
            if exc.kind == "not_found":
                return False
            raise _channel_error(exc, sent=False) from None
        log.info("step %s: call task marked answered", step_id)
        return True

    # -- the follow-ups calendar ---------------------------------------------------------
    def _calendar_id(self, *, create: bool) -> str | None:
        """The follow-ups calendar's id (cached in the state file).  Raises GoogleFailure."""
        state = self._state()
        cached = state.get("calendar") or {}
        if cached.get("name") == self.opts.calendar_name and cached.get("id"):
            return str(cached["id"])
        found = self._find_calendar()
        if found is None and create:
            made = self._client().call(lambda svc: svc.calendars().insert(body={
                "summary": self.opts.calendar_name,
                **({"timeZone": self.context.timezone.key} if hasattr(self.context.timezone, "key") else {})}))
            found = str(made["id"])
            log.info("created the follow-ups calendar")
        if found is not None:
            self._save({**self._state(), "calendar": {"name": self.opts.calendar_name, "id": found}})
        return found

    def _find_calendar(self) -> str | None:
        page: str | None = None
        for _ in range(100):
            resp = self._client().call(lambda svc: svc.calendarList().list(pageToken=page))
            for item in resp.get("items") or ():
                if item.get("summary") == self.opts.calendar_name and item.get("id"):
                    return str(item["id"])
            page = resp.get("nextPageToken")
            if not page:
                break
        return None

    # -- feedback ----------------------------------------------------------------------
    def feedback(self) -> dict[str, str]:
        """``{step_id: "reached" | "dismissed"}`` read from the follow-ups calendar.  Raises ChannelError."""
        try:
            calendar_id = self._calendar_id(create=False)
            if calendar_id is None:
                return {}
            items = self._tasks(calendar_id)
        except GoogleFailure as exc:
            if exc.kind == "not_found":
                self._save({**self._state(), "calendar": {}})
            raise _channel_error(exc, sent=False) from None
        known: dict[str, str] = self._state().get("tasks") or {}
        out: dict[str, str] = {}
        for item in items:
            private = (item.get("extendedProperties") or {}).get("private") or {}
            step = private.get("welcomeback_step") or known.get(str(item.get("id")))
            if not step or item.get("attendees"):
                continue
            if item.get("status") == "cancelled":
                out[step] = "dismissed"
            elif has_word(str(item.get("summary") or ""), self.opts.reached_words):
                out[step] = "reached"
        return out

    def _tasks(self, calendar_id: str) -> list[dict[str, Any]]:
        since = (self.context.clock.now() - timedelta(days=FEEDBACK_DAYS)).isoformat()
        items: list[dict[str, Any]] = []
        page: str | None = None
        for _ in range(1000):
            resp = self._client().call(lambda svc: svc.events().list(
                calendarId=calendar_id, singleEvents=True, showDeleted=True, timeMin=since,
                maxResults=250, pageToken=page))
            items.extend(i for i in resp.get("items") or () if isinstance(i, dict))
            page = resp.get("nextPageToken")
            if not page:
                break
        return items

    # -- local state: the calendar id and event id → step id ----------------------------
    def _state(self) -> dict[str, Any]:
        return read_state(self.context.state_dir / STATE_FILE)

    def _save(self, data: dict[str, Any]) -> None:
        try:
            write_private(self.context.state_dir / STATE_FILE, json.dumps(data))
        except OSError as exc:
            log.warning("cannot write %s: %s", STATE_FILE, exc.strerror)

    def _remember(self, event_id: str, step_id: str) -> None:
        state = self._state()
        tasks = dict(state.get("tasks") or {})
        tasks[event_id] = step_id
        self._save({**state, "tasks": dict(list(tasks.items())[-5000:])})


def _channel_error(exc: GoogleFailure, *, sent: bool) -> ChannelError:
    """Map a Google failure to a channel outcome; ``sent``: the insert may have reached Google."""
    if exc.kind in ("auth", "config"):
        return ChannelError("paused", exc.reason)
    if exc.kind == "rate":
        return ChannelError("retry", exc.reason, retry_after=60.0)
    if exc.kind == "quota":
        return ChannelError("retry", exc.reason, retry_after=900.0)
    if exc.kind in ("server", "timeout"):
        return ChannelError("uncertain" if sent else "retry", exc.reason)
    return ChannelError("failed", exc.reason)
