"""Reading the practice's mailbox over IMAP, read-only.

The folder is opened with ``EXAMINE`` (never ``SELECT``), messages are fetched with
``BODY.PEEK[]`` so the \\Seen flag stays as it was, and nothing is stored, moved or
deleted.  What comes back are raw bytes with their UID; the caller records how far it got
(UIDVALIDITY and the last UID) in the same transaction as what it did with each message, so
a restart neither loses nor repeats one.  Raises ``InboxError`` with a text safe to log.
"""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable

from connectors.channels.mime import is_loopback

log = logging.getLogger(__name__)
SECURITY = ("tls", "starttls", "none")
BATCH = 50


class InboxError(Exception):
    """The inbox could not be read (network, login, folder); the text names no person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    security: str = "tls"
    username: str = ""
    folder: str = "INBOX"
    ca_file: Path | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class Position:
    """How far the folder was read: its UIDVALIDITY and the last UID dealt with."""

    uidvalidity: int
    last_uid: int


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes


@dataclass(frozen=True)
class ReadResult:
    uidvalidity: int
    highest: int                 # the folder's highest UID so far (UIDNEXT - 1)
    messages: list[Fetched]


class ImapInbox:
    """One IMAP folder, read-only.  ``secret`` returns the password (``imap_password``)."""

    def __init__(self, settings: ImapSettings, secret: Callable[[str], str]) -> None:
        if settings.security not in SECURITY:
            raise ValueError(f"security must be one of {', '.join(SECURITY)}")
        if settings.security == "none" and not is_loopback(settings.host):
            raise ValueError("security = \"none\" is allowed only for a loopback host")
        self.settings = settings
        self.secret = secret

    def _ssl_context(self) -> ssl.SSLContext:
        ca = self.settings.ca_file
        return ssl.create_default_context(cafile=str(ca) if ca else None)

    def _connect(self) -> Any:
        import imapclient

        s = self.settings
        try:
            client = imapclient.IMAPClient(s.host, port=s.port, use_uid=True, ssl=s.security == "tls",
                                           ssl_context=self._ssl_context() if s.security == "tls" else None,
                                           timeout=s.timeout)
            if s.security == "starttls":
                client.starttls(self._ssl_context())
        except ssl.SSLError as exc:
            raise InboxError(f"inbox {s.host}:{s.port}: TLS failed ({exc.reason or type(exc).__name__})") from None
        except (OSError, socket.timeout, imapclient.exceptions.IMAPClientError) as exc:
            raise InboxError(f"inbox {s.host}:{s.port}: cannot connect ({type(exc).__name__})") from None
        try:
            client.login(s.username, self.secret("imap_password"))
        except imapclient.exceptions.LoginError:
            _logout(client)
            raise InboxError(f"inbox {s.host}:{s.port}: login refused for the configured username; "
                             "check the app password (secret imap_password)") from None
        except Exception:
            _logout(client)
            raise
        return client

    def read(self, position: Position | None, *, since: date | None = None,
             limit: int = 500) -> ReadResult:
        """The folder's UIDVALIDITY and the messages after ``position`` (all since ``since`` when
        there is no position or the folder's UIDVALIDITY changed), oldest first, at most
        ``limit``.  Raises InboxError."""
        import imapclient

        client = self._connect()
        try:
            info = client.select_folder(self.settings.folder, readonly=True)   # EXAMINE
            validity = int(info[b"UIDVALIDITY"])
            highest = int(info.get(b"UIDNEXT", 1)) - 1
            if position is not None and position.uidvalidity == validity:
                uids = [u for u in client.search(["UID", f"{position.last_uid + 1}:*"])
                        if u > position.last_uid]
            else:
                uids = client.search(["SINCE", since]) if since else client.search(["ALL"])
            uids = sorted(uids)[:limit]
            fetched: list[Fetched] = []
            for start in range(0, len(uids), BATCH):
                part = uids[start:start + BATCH]
                data = client.fetch(part, ["BODY.PEEK[]"])
                fetched += [Fetched(uid, data[uid][b"BODY[]"]) for uid in part if uid in data]
            return ReadResult(validity, highest, fetched)
        except imapclient.exceptions.IMAPClientError as exc:
            raise InboxError(f"inbox folder '{self.settings.folder}': {type(exc).__name__}") from None
        except (OSError, socket.timeout) as exc:
            raise InboxError(f"inbox {self.settings.host}: connection lost ({type(exc).__name__})") from None
        finally:
            _logout(client)

    def check(self) -> list[str]:
        """Problems visible without reading (the secret)."""
        try:
            self.secret("imap_password")
        except Exception as exc:
            return [f"[inbox]: {exc}"]
        return []


def _logout(client: Any) -> None:
    try:
        client.logout()
    except Exception:   # closing must never mask the outcome
        log.debug("inbox logout failed")
