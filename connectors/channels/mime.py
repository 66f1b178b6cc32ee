"""What the real channels share: the RFC 5322 message, privacy scrubbing of
provider answers, and the small option parsers their ``Options`` use.

``build_email`` is the one place a ``Message`` becomes an ``EmailMessage``
(SMTP sends it, the outbox backend writes it).  ``scrub`` makes a provider's
error text safe for logs, the store and the digest: provider answers can echo
the recipient's address or number.
"""

from __future__ import annotations

import email.policy
import functools
import re
import time
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
    except (ValueError, TypeError) as exc:   # email's own header checks (defects are ValueErrors)
        raise Unencodable(f"the message cannot be encoded as email ({type(exc).__name__})") from None


def email_bytes(message: Message, context: ChannelContext, *, eight_bit: bool = False,
                linesep: str = "\n") -> bytes:
    """``build_email`` serialised; raises Unencodable."""
    mail = build_email(message, context, eight_bit=eight_bit)
    try:
        return mail.as_bytes(policy=mail.policy.clone(linesep=linesep))
    except (ValueError, TypeError) as exc:
        raise Unencodable(f"the message cannot be encoded as email ({type(exc).__name__})") from None


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
