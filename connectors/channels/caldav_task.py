"""Phone step as a call task in the therapist's own CalDAV calendar (``[channels.phone] backend = "caldav"``).

Apple Calendar, Nextcloud, Fastmail, Radicale: ``url`` is a calendar the therapist
made for follow-ups, or a collection under which this channel makes one
(MKCALENDAR).  Each phone step is one object, a VEVENT (``item = "event"``) or a
VTODO (``item = "todo"``), whose UID and URL are derived from the step id and
which is written with ``If-None-Match: *``: a second hand-off of the same step
(after a crash, a lost answer) meets 412 and finds the task there instead of
writing another.  The object holds the call script and the client's number as a
``tel:`` URI, for the therapist only; no attendee, no alarm, nobody is invited.

``feedback`` reads the calendar back on every dispatch with one sync-collection
REPORT (or, where a server lacks it, one ETag listing): a task whose title gained
a reached word, or a VTODO marked completed, means the client was reached; a
deleted task dismisses the follow-up; a moved one is only a moved call.  Only
objects whose ETag changed are fetched.  The state file keeps hrefs, ETags and
step ids: never a name, number or script.

Plain HTTP (``requests``, a core dependency) rather than the ``caldav`` library:
the create must be exactly one conditional PUT and an unchanged calendar exactly
one request, which the library (UID searches before a save, server-quirk
fallbacks) does not promise; and the backend then works without the extra.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectors.calendars.caldav_sync import SECRET
from connectors.calendars.google_api import write_private
from connectors.channels.base import Channel, Message, Receipt, read_state
from connectors.channels.caldav_dav import DavClient, DavFailure, path_of
from connectors.channels.caldav_ics import call_task_ics, outcome_of
from connectors.channels.calendar_task import _minutes, _seconds, _words, has_word
from connectors.channels.mime import is_loopback
from connectors.http import redact_url
from daemon.config.fields import option
from daemon.errors import ChannelError, SecretMissing

log = logging.getLogger(__name__)
STATE_FILE = "caldav-call-tasks.json"
KEEP_DAYS = 120                     # a task this long past due is no longer read back
CHILD = {"event": "welcomeback-follow-ups/", "todo": "welcomeback-follow-up-tasks/"}
COMPONENT = {"event": "VEVENT", "todo": "VTODO"}


@dataclass
class CaldavTaskOptions:
    """Keys of ``[channels.phone]`` with ``backend = "caldav"``."""

    url: str = option(doc="The calendar collection for call tasks, or the collection (e.g. your "
                          "calendar home) under which welcomeback creates one.",
                      example="https://dav.example.org/calendars/ana/follow-ups/")
    username: str = option("", doc="User name for the CalDAV server; its password is the secret "
                                   "caldav_password.  Empty: the server needs no sign-in.")
    item: str = option("event", choices=("event", "todo"),
                       doc="event (shown by Apple Calendar and every calendar app) or todo "
                           "(Nextcloud Tasks, Thunderbird, tasks.org via DAVx5).")
    verify_tls: bool = option(True, doc="Verify the server's TLS certificate (leave on).")
    ca_file: str = option("", doc="A CA bundle (PEM, relative to this file) for a server with a "
                                  "private certificate authority; empty: the system's.")
    reached_words: tuple[str, ...] = option(
        default_factory=lambda: ("reached", "done", "✓"), parse=_words,
        doc="A call task whose title gains one of these words (whole word, any case) marks the client reached.")
    calendar_name: str = option("welcomeback follow-ups",
                                doc="Display name of the calendar created when url is not a calendar.")
    task_minutes: int = option(30, parse=_minutes, doc="Length of a call task event in minutes.")
    timeout: float = option(30.0, parse=_seconds, doc="Network timeout for one request, in seconds.")

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url: expected the http(s) URL of a calendar collection, e.g. "
                             "https://dav.example.org/calendars/ana/follow-ups/")
        if not self.url.endswith("/"):
            self.url += "/"


def task_uid(step_id: str) -> str:
    """The object's UID (and file name): the same step, the same object."""
    return "welcomeback-" + hashlib.sha256(f"welcomeback:{step_id}".encode()).hexdigest()[:32]


class CaldavCallTask(Channel):
    backend = "caldav"
    medium = "call-task"
    idempotent = True
    Options = CaldavTaskOptions
    _client: DavClient | None = None

    @property
    def opts(self) -> CaldavTaskOptions:
        return self.options

    def check(self) -> list[str]:
        """Local problems only (no request is made): URL, TLS file, secret."""
        problems = []
        host = urlsplit(self.opts.url).hostname or ""
        if self.opts.username and urlsplit(self.opts.url).scheme == "http" and not is_loopback(host):
            problems.append("[channels.phone] caldav: url must be https: a password is sent only over https")
        if self.opts.ca_file and not self._ca_path().is_file():
            problems.append(f"[channels.phone] caldav: ca_file {self._ca_path()} not found")
        if self.opts.username:
            try:
                self.context.secret(SECRET)
            except SecretMissing as exc:
                problems.append(f"[channels.phone] caldav: {exc}")
        return problems

    def _ca_path(self) -> Path:
        p = Path(self.opts.ca_file).expanduser()
        return p if p.is_absolute() else self.context.base_dir / p

    def _dav(self) -> DavClient:
        if self._client is None:
            password = None
            if self.opts.username:
                try:
                    password = self.context.secret(SECRET)
                except SecretMissing:
                    raise ChannelError("held", f"secret '{SECRET}' not found (see `welcomeback check`)",
                                       hold="secret") from None
            verify: bool | str = str(self._ca_path()) if self.opts.ca_file else self.opts.verify_tls
            self._client = DavClient(username=self.opts.username, password=password, verify=verify,
                                     timeout=self.opts.timeout)
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- delivery ----------------------------------------------------------------------
    def deliver(self, message: Message) -> Receipt:
        """PUT the call task (create only).  Raises ChannelError."""
        if message.due_at is None or message.due_at.tzinfo is None:
            raise ChannelError("failed", "a call task needs an aware due time")
        state = self._state()
        collection = self._collection(state)
        assert collection is not None
        uid = task_uid(message.step_id)
        url = collection + uid + ".ics"
        tasks = state.setdefault("tasks", {})
        tasks[path_of(url)] = {"step": message.step_id, "etag": "", "seen": False,
                               "due": message.due_at.timestamp(), "outcome": None,
                               "title_has_word": has_word(message.subject, self.opts.reached_words)}
        self._save(state)        # before the PUT: a deletion is then always recognised as ours
        ics = call_task_ics(message, uid, item=self.opts.item, tz=self.context.timezone,
                            now=self.context.clock.now(), minutes=self.opts.task_minutes)
        try:
            etag, detail = self._dav().put_new(url, ics), "call task in calendar"
        except DavFailure as exc:
            if not _exists(exc):
                raise self._send_error(exc, state) from None
            etag, detail = "", "call task was already in the calendar"
            log.info("step %s: call task already in the calendar", message.step_id)
        tasks[path_of(url)].update(etag=etag, seen=True)
        self._save(state)
        log.info("step %s: call task created", message.step_id)
        return Receipt(provider_id=uid, detail=detail)

    def _send_error(self, exc: DavFailure, state: dict[str, Any]) -> ChannelError:
        if exc.kind in ("not_found", "conflict"):   # the follow-ups calendar went away: find or make it again
            self._forget_collection(state)
            return ChannelError("retry", f"{exc.reason}: the follow-ups calendar is gone; it is made again")
        if exc.kind == "lost":
            # The PUT may have been stored.  Sending it again is safe (same URL, If-None-Match: *):
            # the next attempt either creates the task or meets 412 and counts it as sent.
            return ChannelError("retry", f"{exc.reason}; the next attempt finds the task if it was stored")
        return _channel_error(exc)

    # -- the follow-ups collection -------------------------------------------------------
    def _collection(self, state: dict[str, Any], *, create: bool = True) -> str | None:
        """The calendar the tasks go to (cached; found, or made when ``create``, on first use).
        Raises ChannelError."""
        if state.get("collection") and state.get("for") == [self.opts.url, self.opts.item]:
            return str(state["collection"])
        try:
            collection = self._find_or_make(create)
        except DavFailure as exc:
            error = _channel_error(exc)
            if error.outcome == "failed":     # nothing to send is wrong yet: the url is; wait for a fix
                error = ChannelError("paused", f"{exc.reason}: [channels.phone] url cannot be used as "
                                               "a calendar for call tasks")
            raise error from None
        if collection is None:
            return None
        state.update({"for": [self.opts.url, self.opts.item], "collection": collection, "sync_token": "",
                      "mode": "sync"})
        for task in (state.get("tasks") or {}).values():
            task["seen"] = False         # a new collection: absence there proves nothing yet
        self._save(state)
        return collection

    def _find_or_make(self, create: bool) -> str | None:
        dav, url, comp = self._dav(), self.opts.url, COMPONENT[self.opts.item]
        found = dav.describe(url)
        if found is None:
            raise DavFailure("config", f"{redact_url(url)} not found: check [channels.phone] url")
        if "calendar" in found.types:
            _accepts(found.components, comp, url)
            return url
        if "collection" not in found.types:
            raise DavFailure("config", f"{redact_url(url)} is not a collection: check [channels.phone] url")
        child = url + CHILD[self.opts.item]
        there = dav.describe(child)
        if there is None and not create:
            return None
        if there is None:
            dav.make_calendar(child, self.opts.calendar_name, comp)
            log.info("created the follow-ups calendar")
            return child
        if "calendar" not in there.types:
            raise DavFailure("config", f"{redact_url(child)} exists and is not a calendar")
        _accepts(there.components, comp, child)
        return child

    def _forget_collection(self, state: dict[str, Any]) -> None:
        state.update({"collection": "", "sync_token": ""})
        self._save(state)

    # -- feedback ----------------------------------------------------------------------
    def feedback(self) -> dict[str, str]:
        """``{step_id: "reached" | "dismissed"}`` from the follow-ups calendar.  Raises ChannelError.

        Nothing delivered yet: no request at all.
        """
        state = self._state()
        tasks: dict[str, Any] = state.get("tasks") or {}
        self._prune(tasks)
        if tasks:
            collection = self._collection(state, create=False)
            try:
                if collection is not None:
                    self._read_back(state, collection, tasks)
            except DavFailure as exc:
                if exc.kind == "not_found":
                    self._forget_collection(state)
                raise _channel_error(exc) from None
            self._save(state)
        return {t["step"]: t["outcome"] for t in tasks.values() if t.get("outcome")}

    def _read_back(self, state: dict[str, Any], collection: str, tasks: dict[str, Any]) -> None:
        changed, gone = self._changes(state, collection, tasks)
        for href in gone:
            task = tasks.get(href)
            if task and task.get("seen") and not task.get("outcome"):
                task["outcome"] = "dismissed"
                log.info("step %s: call task deleted in the calendar", task["step"])
        fetch = [href for href, etag in changed.items()
                 if href in tasks and not tasks[href].get("outcome") and etag != tasks[href].get("etag")]
        for href in changed:
            if href in tasks:
                tasks[href]["seen"] = True
        if not fetch:
            return
        for entry in self._dav().multiget(collection, fetch):
            task = tasks.get(entry.href)
            if task is None or entry.data is None:
                continue
            task["etag"] = entry.etag or changed.get(entry.href, "")
            result = outcome_of(entry.data, self.opts.reached_words, task.get("title_has_word", False))
            if result:
                task["outcome"] = result
                log.info("step %s: call task %s in the calendar", task["step"], result)

    def _changes(self, state: dict[str, Any], collection: str,
                 tasks: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
        """(href → ETag of members that changed, hrefs that are gone): one request when nothing changed."""
        dav, token = self._dav(), str(state.get("sync_token") or "")
        if state.get("mode") != "etag":
            try:
                entries, state["sync_token"] = dav.sync(collection, token)
            except DavFailure as exc:
                if exc.kind not in ("forbidden", "precondition", "conflict", "refused") or exc.status == 401:
                    raise
                if token:                  # the token expired: start over from a full listing
                    entries, state["sync_token"] = dav.sync(collection, "")
                    token = ""
                else:                      # no sync-collection here: compare ETags instead
                    state["mode"] = "etag"
                    return self._changes(state, collection, tasks)
            changed = {e.href: e.etag for e in entries if e.status != 404}
            gone = {e.href for e in entries if e.status == 404}
            if not token:                  # a full listing: what is not in it is gone
                gone |= {h for h in tasks if h.startswith(path_of(collection)) and h not in changed}
            return changed, gone
        listing = {e.href: e.etag for e in dav.etags(collection) if e.status != 404}
        gone = {h for h in tasks if h.startswith(path_of(collection)) and h not in listing}
        return {h: e for h, e in listing.items() if h not in tasks or tasks[h].get("etag") != e}, gone

    def _prune(self, tasks: dict[str, Any]) -> None:
        cutoff = (self.context.clock.now() - timedelta(days=KEEP_DAYS)).timestamp()
        for href in [h for h, t in tasks.items() if float(t.get("due") or 0) < cutoff]:
            del tasks[href]

    # -- local state: the collection, the sync token, href → step ------------------------
    def _state(self) -> dict[str, Any]:
        return read_state(self.context.state_dir / STATE_FILE)

    def _save(self, data: dict[str, Any]) -> None:
        try:
            write_private(self.context.state_dir / STATE_FILE, json.dumps(data))
        except OSError as exc:
            raise ChannelError("held", f"cannot write {STATE_FILE} in the state folder ({exc.strerror})",
                               hold="folder") from None


def _exists(exc: DavFailure) -> bool:
    """412 to If-None-Match: *, or a server refusing a second object with this UID: it is there."""
    return exc.kind == "precondition" or (exc.kind in ("forbidden", "conflict") and b"no-uid-conflict" in exc.body)


def _accepts(components: set[str] | None, comp: str, url: str) -> None:
    if components and comp not in components:
        other = "todo" if comp == "VEVENT" else "event"
        raise DavFailure("config", f"the calendar {redact_url(url)} does not accept {comp}: "
                                   f"set [channels.phone] item = \"{other}\" or use another calendar")


def _channel_error(exc: DavFailure) -> ChannelError:
    """Map a DAV failure to a channel outcome (nothing here was possibly stored)."""
    if exc.kind == "auth":
        return ChannelError("paused", f"{exc.reason}: unauthorized: check [channels.phone] username "
                                      f"and the secret '{SECRET}'")
    if exc.kind == "forbidden":
        return ChannelError("paused", f"{exc.reason}: forbidden: the user may not write to "
                                      f"[channels.phone] url; check it and the secret '{SECRET}'")
    if exc.kind in ("config", "redirect"):
        return ChannelError("paused", exc.reason)
    if exc.kind == "rate":
        return ChannelError("retry", f"{exc.reason}: the server asks to wait", retry_after=exc.retry_after)
    if exc.kind in ("down", "lost", "server", "not_found", "conflict", "bad"):
        return ChannelError("retry", exc.reason)
    return ChannelError("failed", f"{exc.reason}: the server refused the call task")
