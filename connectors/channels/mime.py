"""What the real channels share: the RFC 5322 message, privacy scrubbing of
provider answers, and the small option parsers their ``Options`` use.

``build_email`` is the one place a ``Message`` becomes an ``EmailMessage``;
``email_bytes`` (what SMTP sends and the outbox backend writes) serialises it, or, for
the usual message, writes the same bytes directly (``direct_bytes``: the email
package's header folder is most of a dispatched step's cost).  ``scrub`` makes a provider's
error text safe for logs, the store and the digest: provider answers can echo
the recipient's address or number.
"""

from __future__ import annotations

import base64
import email.policy
import functools
import hashlib
import re
import sys
import time
from email import quoprimime
from email.errors import MessageError
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Callable
from urllib.parse import urlsplit

from connectors.channels.base import ChannelContext, Message
from daemon.config.durations import parse_duration
from daemon.hosts import is_loopback  # noqa: F401  (re-exported for the channels)

class _Headers(HeaderRegistry):
    """The standard header registry, making each header's class once: the stock one builds
    a new class for every header of every message (about a third of building one)."""

    @functools.lru_cache(maxsize=None)
    def __getitem__(self, name: str) -> Any:
        return super().__getitem__(name)


POLICY = email.policy.default.clone(header_factory=_Headers())
_EMAIL = re.compile(r"[\w.+\-']+@[\w\-]+(?:\.[\w\-]+)+")
_PHONE = re.compile(r"\+?\d[\d\s().\-]{5,}\d")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
MAX_REASON = 300


class Unencodable(ValueError):
    """The message cannot be written as email (a permanent local problem; the text is safe to log)."""


def build_email(message: Message, context: ChannelContext, *, eight_bit: bool = False) -> EmailMessage:
    """The RFC 5322 message for ``message``: text plus an optional HTML alternative.

    Message-ID is ``message.message_id`` (deterministic per step), Date comes from
    the context's clock.  ``eight_bit`` writes non-ASCII text as 8bit UTF-8 (an .eml
    file readable with ``cat``) instead of quoted-printable (7-bit clean for any SMTP
    server).  Raises Unencodable naming what cannot be encoded (never its value).
    """
    try:
        return _build(message, context, eight_bit)
    except Unencodable:
        raise
    except (ValueError, TypeError, MessageError) as exc:   # email's own header checks (e.g. a@b@example.org)
        raise Unencodable(f"the message cannot be encoded as email ({type(exc).__name__})") from None


def email_bytes(message: Message, context: ChannelContext, *, eight_bit: bool = False,
                linesep: str = "\n") -> bytes:
    """``build_email`` serialised; raises Unencodable.

    The usual message is written directly (``direct_bytes``: the same headers, structure and
    bodies, about a tenth of the cost); anything it is not certain of goes the email
    package's way, which also raises the Unencodable of a message that fails validation."""
    data = direct_bytes(message, context, eight_bit=eight_bit, linesep=linesep)
    if data is not None:
        return data
    mail = build_email(message, context, eight_bit=eight_bit)
    try:
        return mail.as_bytes(policy=mail.policy.clone(linesep=linesep))
    except (ValueError, TypeError, MessageError) as exc:
        raise Unencodable(f"the message cannot be encoded as email ({type(exc).__name__})") from None


# The direct writer: what the email package writes for the usual message, without its
# header parser and folder.  tests/test_mime_fast.py compares the two over random messages;
# each helper returns None where it is not certain, and the email package takes over.
_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_ADDRESS = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")
_MESSAGE_ID = re.compile(r"<[A-Za-z0-9._+=-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>\Z")
_DATE = re.compile(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\Z")
_SPECIALS = frozenset('()<>@,:;."[]\\')
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q = tuple(chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in range(256))
_PART_TYPE = 'Content-Type: text/{}; charset="utf-8"'


def direct_bytes(message: Message, context: ChannelContext, *, eight_bit: bool = False,
                 linesep: str = "\n") -> bytes | None:
    """What ``email_bytes`` returns, written directly; None when the message needs the email
    package (which then also raises the right Unencodable: validation fails here as None)."""
    try:
        return _direct(message, context, eight_bit, linesep)
    except (ValueError, TypeError):   # Unencodable, or e.g. a lone surrogate in the text
        return None


def _direct(message: Message, context: ChannelContext, eight_bit: bool, linesep: str) -> bytes | None:
    sender = _mailbox("From", _name(context.sender_name or context.practice_name, "the sender's name"),
                      ascii_address(context.sender, "the From address"))
    to = _mailbox("To", _name(message.to_name, "the recipient's name"),
                  ascii_address(message.to_address, "the recipient's address"))
    if _CONTROL.search(message.subject):
        return None
    reply_to = ascii_address(message.reply_to, "the Reply-To address") if message.reply_to else None
    subject = _subject(message.subject)
    message_id = message.message_id or fallback_message_id(message, context)
    if (sender is None or to is None or not _MESSAGE_ID.match(message_id)
            or len(message_id) > 900
            or (reply_to is not None and (not _ADDRESS.match(reply_to) or len(reply_to) > 68))):
        return None
    body = _bodies(message, message_id, eight_bit)
    if body is None:
        return None
    date = format_datetime(context.clock.now().astimezone(context.timezone))
    if not _DATE.match(date):
        return None
    head = [sender, to, subject, "Date: " + date, "Message-ID: " + message_id]
    if reply_to is not None:
        head.append("Reply-To: " + reply_to)
    text = "\n".join(head) + "\n" + body
    if linesep != "\n":
        text = text.replace("\n", linesep)
    return text.encode("ascii", "surrogateescape")


def _mailbox(field: str, name: str, address: str) -> str | None:
    """``From: name <address>`` as the email package writes it, folded before the address
    when long; a non-ASCII name as one encoded word."""
    if not _ADDRESS.match(address):
        return None
    if not name:
        return f"{field}: {address}" if len(field) + len(address) <= 76 else None
    if not name.isprintable() or name != name.strip(" ") or "  " in name or "=?" in name:
        return None               # (other spaces and format characters: the parser's quirks)
    if not name.isascii():
        phrase, limit = _encoded_word(name, 76 - len(field) - 2), 76
        if phrase is None:
            return None
    else:
        phrase, limit = name, 78
        if not _SPECIALS.isdisjoint(name):
            phrase = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    line = f"{field}: {phrase}"
    if len(line) > limit:
        return None
    if len(line) + len(address) + 3 <= limit:
        return f"{line} <{address}>"
    return f"{line}\n <{address}>" if len(address) <= 75 else None


def _encoded_word(text: str, room: int) -> str | None:
    """``text`` as one encoded word (Q or B, the shorter) of at most ``room`` characters."""
    data = text.encode("utf-8")
    word = _word(data, _prefer_q(data))
    return word if len(word) <= room else None


def _subject(subject: str) -> str:
    """The Subject line: a short ASCII one as it is; any other as the email package folds it
    (its encoded words and its whitespace quirks on long lines: what recipients see today)."""
    if subject.isascii() and "=?" not in subject and len(subject) <= 69:
        return "Subject: " + subject
    return POLICY.header_factory("Subject", subject).fold(policy=POLICY).rstrip("\n")


def _prefer_q(data: bytes) -> bool:
    """Q unless it is 5 or more characters longer than B (the email package's choice)."""
    return sum(len(_Q[b]) for b in data) - (len(data) + 2) // 3 * 4 < 5


def _word(data: bytes, q: bool) -> str:
    if q:
        return "=?utf-8?q?" + "".join([_Q[b] for b in data]) + "?="
    return "=?utf-8?b?" + base64.b64encode(data).decode("ascii") + "?="


def _bodies(message: Message, message_id: str, eight_bit: bool) -> str | None:
    """The MIME headers and body after the addressing headers (lines end with "\n"; 8-bit
    text as surrogate escapes); None when a part's body contains the boundary."""
    text_cte = _cte(message.text, eight_bit)
    text = _part(message.text, "plain", text_cte)
    if not message.html:
        return f"{text[0]}MIME-Version: 1.0\n\n{text[1]}"
    html = _part(message.html, "html", _cte(message.html, eight_bit))
    token = int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:8], "big") % sys.maxsize
    boundary = f"==============={token:019d}=="
    if boundary in text[1] or boundary in html[1]:
        return None
    return (f'MIME-Version: 1.0\nContent-Type: multipart/alternative;\n boundary="{boundary}"\n\n'
            f"--{boundary}\n{text[0]}\n{text[1]}\n--{boundary}\n{html[0]}MIME-Version: 1.0\n\n"
            f"{html[1]}\n--{boundary}--\n")


def _part(content: str, subtype: str, cte: str | None) -> tuple[str, str]:
    """A text part's Content-Type and CTE lines and its body, as ``set_content`` makes them."""
    lines = content.encode("utf-8").splitlines()
    raw = b"\n".join(lines) + b"\n"
    if cte == "quoted-printable":
        body = quoprimime.body_encode(raw.decode("latin-1"), POLICY.max_line_length or 78)
    else:
        body = raw.decode("ascii", "surrogateescape")
    return f"{_PART_TYPE.format(subtype)}\nContent-Transfer-Encoding: {cte}\n", body


def _build(message: Message, context: ChannelContext, eight_bit: bool) -> EmailMessage:
    mail = EmailMessage(policy=POLICY)
    sender_name = context.sender_name or context.practice_name
    mail["From"] = Address(display_name=_name(sender_name, "the sender's name"),
                           addr_spec=ascii_address(context.sender, "the From address"))
    mail["To"] = Address(display_name=_name(message.to_name, "the recipient's name"),
                         addr_spec=ascii_address(message.to_address, "the recipient's address"))
    if _CONTROL.search(message.subject):
        raise Unencodable("the subject contains a line break or control character; check the template")
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime(context.clock.now().astimezone(context.timezone))
    mail["Message-ID"] = message.message_id or fallback_message_id(message, context)
    if message.reply_to:
        mail["Reply-To"] = ascii_address(message.reply_to, "the Reply-To address")
    mail.set_content(message.text, cte=_cte(message.text, eight_bit))
    if message.html:
        mail.add_alternative(message.html, subtype="html", cte=_cte(message.html, eight_bit))
    return mail


def ascii_address(address: str, what: str) -> str:
    """``address`` as plain email can carry it: the domain IDNA-encoded; raises Unencodable
    for a non-ASCII local part (that needs SMTPUTF8, which welcomeback does not use)."""
    local, at, domain = (address or "").rpartition("@")
    if not at or not local or not domain:
        raise Unencodable(f"{what} is not an email address")
    if not local.isascii():
        raise Unencodable(f"{what} has non-ASCII characters before the @, which email without "
                          "SMTPUTF8 cannot carry; correct it in the client directory")
    if _CONTROL.search(address):
        raise Unencodable(f"{what} contains a line break or control character")
    try:
        return f"{local}@{domain if domain.isascii() else domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        raise Unencodable(f"the domain of {what} cannot be written as an international domain name") from None


def _name(name: str, what: str) -> str:
    if _CONTROL.search(name or ""):
        raise Unencodable(f"{what} contains a line break or control character; correct it in the "
                          "client directory")
    return name or ""


def _cte(text: str, eight_bit: bool) -> str | None:
    """7bit for ASCII and 8bit UTF-8 when asked, as long as every line fits (998 octets), so
    a long paragraph stays readable with ``cat``; else quoted-printable (7-bit clean)."""
    fits = all(len(line.encode("utf-8")) <= 998 for line in text.splitlines())
    if fits and text.isascii():
        return "7bit"
    if fits and eight_bit:
        return "8bit"
    return "quoted-printable"


def fallback_message_id(message: Message, context: ChannelContext) -> str:
    """A deterministic Message-ID from the step id, for messages built without one."""
    domain = context.sender.rpartition("@")[2] or "welcomeback.invalid"
    safe = re.sub(r"[^A-Za-z0-9.\-_]", "-", message.step_id)
    return f"<step-{safe}@{domain}>"


def scrub(text: str, message: Message | None = None) -> str:
    """``text`` without recipient details: the message's address, name, body and
    subject, any email address or phone-number-like digits; one short line."""
    out = _CONTROL.sub(" ", text or "")
    if message is not None:
        for secret in _private_strings(message):
            out = re.sub(re.escape(secret), "…", out, flags=re.IGNORECASE)
    out = _EMAIL.sub("<address>", out)
    out = _PHONE.sub("<number>", out)
    out = re.sub(r"\s+", " ", out).strip()
    return out if len(out) <= MAX_REASON else out[: MAX_REASON - 1] + "…"


def _private_strings(message: Message) -> list[str]:
    """Longest first, so a full name goes before its parts."""
    parts = [message.to_address, message.to_name, message.text, message.subject,
             message.html or ""]
    parts += [w for w in re.split(r"[\s,]+", message.to_name or "") if len(w) >= 3]
    digits = re.sub(r"\D", "", message.to_address)
    if len(digits) >= 6:
        parts.append(digits)
    return sorted({p.strip() for p in parts if p and p.strip()}, key=len, reverse=True)


def retry_after_seconds(value: str | None, wall: Callable[[], float] = time.time) -> float | None:
    """A ``Retry-After`` header (seconds, or an HTTP date compared with the wall clock)
    as seconds to wait, at least 1; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(1.0, float(value))
    except ValueError:
        pass
    try:
        return max(1.0, parsedate_to_datetime(value).timestamp() - wall())
    except (TypeError, ValueError):
        return None


def parse_seconds(value: Any) -> float:
    """A timeout: a number of seconds or a duration like "30s"; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected seconds (e.g. 30) or a duration like \"30s\"")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        d = parse_duration(value)
        if d.days or d.business_days or d.months:
            raise ValueError(f"'{value}' is too long for a network timeout; use seconds")
        seconds = d.seconds
    if not 0 < seconds <= 600:
        raise ValueError(f"{value!r}: a timeout must be more than 0 and at most 600 seconds")
    return seconds


def parse_api_base(value: Any) -> str:
    """An https base URL (plain http only to loopback, for tests and local proxies)."""
    if not isinstance(value, str) or "://" not in value:
        raise ValueError(f"{value!r} is not a URL like 'https://api.example.com'")
    parts = urlsplit(value)
    if not parts.hostname:
        raise ValueError(f"'{value}' has no host name")
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(parts.hostname)):
        raise ValueError(f"'{value}': expected https:// (http:// is allowed only to localhost)")
    if parts.query or parts.fragment:
        raise ValueError(f"'{value}': expected a base URL without query or fragment")
    return value.rstrip("/")
