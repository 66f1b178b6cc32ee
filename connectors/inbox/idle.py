"""Hearing about new mail as it arrives: IMAP IDLE (RFC 2177) on a thread of its own.

The watcher only says "something arrived, read the inbox now"; reading, matching and the
UID bookkeeping stay with the inbox job, so a message is never handled twice and a watcher
that dies loses nothing — the job's own interval still reads the folder.  The folder is
opened read-only (``EXAMINE``) and IDLE is re-issued before the 29 minutes after which a
server may drop it.  A server without IDLE is read on the interval alone.  A lost
connection is retried with a growing pause.  Nothing about any message is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from connectors.inbox.imap import ImapInbox, InboxError, _logout

log = logging.getLogger(__name__)

RENEW = 25 * 60.0          # seconds: re-issue IDLE well inside the server's 29 minutes
CHECK = 1.0                # seconds between looks at the stop flag while idling
PAUSES = (5.0, 15.0, 60.0, 300.0)   # after a lost connection, before trying again


class IdleWatcher:
    """Calls ``on_new`` whenever the server announces new mail in the inbox's folder."""

    def __init__(self, inbox: ImapInbox, on_new: Callable[[], None], *, renew: float = RENEW,
                 check: float = CHECK, pauses: tuple[float, ...] = PAUSES) -> None:
        self.inbox = inbox
        self.on_new = on_new
        self.renew, self.check, self.pauses = renew, check, pauses
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.offered: bool | None = None      # None until the server said whether it has IDLE
        self.idling = threading.Event()       # set while an IDLE is in progress

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="inbox-idle", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if not self._watch():
                    return                     # the server has no IDLE: the interval reads it
                failures = 0
            except InboxError as exc:
                log.warning("inbox: waiting for new mail failed (%s); reading on the interval "
                            "until it works again", exc.reason)
                failures += 1
            except Exception as exc:   # the thread must not die silently; the interval still reads
                log.warning("inbox: waiting for new mail failed (%s); reading on the interval "
                            "until it works again", type(exc).__name__)
                failures += 1
            finally:
                self.idling.clear()
            if failures:
                self._stop.wait(self.pauses[min(failures, len(self.pauses)) - 1])

    def _watch(self) -> bool:
        """One connection: IDLE until stopped or the connection drops (raises InboxError).
        False when the server does not offer IDLE."""
        import imapclient

        client = self.inbox._connect()
        try:
            if b"IDLE" not in client.capabilities():
                self.offered = False
                log.info("inbox: the server does not offer IDLE; reading it on the interval")
                return False
            self.offered = True
            client.select_folder(self.inbox.settings.folder, readonly=True)   # EXAMINE
            log.info("inbox: waiting for new mail (IDLE)")
            while not self._stop.is_set():
                if self._idle_once(client):
                    self._notify()
            return True
        except imapclient.exceptions.IMAPClientError as exc:
            raise InboxError(f"inbox folder '{self.inbox.settings.folder}': {type(exc).__name__}") from None
        except OSError as exc:
            raise InboxError(f"inbox {self.inbox.settings.host}: connection lost ({type(exc).__name__})") from None
        finally:
            _logout(client)

    def _idle_once(self, client: Any) -> bool:
        """IDLE for up to ``renew`` seconds; True when the server announced new mail."""
        client.idle()
        self.idling.set()
        arrived = False
        until = time.monotonic() + self.renew
        try:
            while not self._stop.is_set() and time.monotonic() < until and not arrived:
                arrived = _announces_mail(client.idle_check(timeout=self.check))
        finally:
            self.idling.clear()
            _text, late = client.idle_done()       # what came between the last check and DONE
        return arrived or _announces_mail(late)

    def _notify(self) -> None:
        try:
            self.on_new()
        except Exception as exc:
            log.warning("inbox: could not ask for a read (%s)", type(exc).__name__)


def _announces_mail(responses: list[Any]) -> bool:
    return any(isinstance(r, tuple) and len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses)
