"""What one inbound email is: a person's answer, an auto-reply or a bounce.

Parsed with the standard ``email`` package into a plain ``Inbound`` record the engine
matches against its follow-ups.  The record holds addresses and message ids only in memory;
nothing here logs or stores a sender, subject or body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime
from datetime import datetime

from connectors.channels.mime import scrub

EMAIL = re.compile(r"<?[\w.+\-']+@[\w\-]+(?:\.[\w\-]+)+>?")

TOKEN = re.compile(r"\+wb-([0-9a-f]{10})@", re.IGNORECASE)
MSGID = re.compile(r"<[^<>\s]+>")
FORWARD = re.compile(r"^\s*(fwd?|wg|tr|rv|i)\s*:", re.IGNORECASE)
OUT_OF_OFFICE = re.compile(
    r"out of (the )?office|automatic reply|auto(matic)?[- ]?re(ply|sponse)|\bauto:|away from (my|the) "
    r"|on (vacation|holiday|leave)|abwesenheit|absence|autosvar|r[ée]ponse automatique|respuesta autom",
    re.IGNORECASE)
BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status notification|failure|has failed)|returned mail|failure notice"
    r"|mail delivery (failed|system)|could not be delivered|nicht zustellbar", re.IGNORECASE)
BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster)@|^mail delivery", re.IGNORECASE)
PRECEDENCE = ("bulk", "auto_reply", "junk", "list")


@dataclass(frozen=True)
class Inbound:
    """One message as the engine needs it (``kind``: reply, auto_reply or bounce)."""

    kind: str
    sender: str
    recipients: tuple[str, ...]
    refs: tuple[str, ...]            # Message-IDs this message refers to (lower case)
    tokens: tuple[str, ...]          # per-step tokens (plus addresses)
    forwarded: bool = False
    date: datetime | None = None
    failed: tuple[str, ...] = ()     # a bounce: the recipients that failed (lower case)
    reason: str = ""                 # a bounce: status and diagnostic, scrubbed of addresses


def parse(raw: bytes) -> Inbound:
    """Classify one RFC 5322 message; never raises for malformed mail."""
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    sender = _first_address(msg.get_all("From", []))
    recipients = tuple(a for _, a in _addresses(msg, "To", "Cc", "Delivered-To", "X-Original-To") if a)
    refs = _ids(msg.get_all("In-Reply-To", []) + msg.get_all("References", []))
    subject = _text(msg.get("Subject", ""))
    tokens = tuple(dict.fromkeys(t.lower() for r in recipients for t in TOKEN.findall(r)))
    base = dict(sender=sender, recipients=recipients, tokens=tokens,
                date=_date(msg.get("Date")), forwarded=bool(FORWARD.match(subject)))
    bounce = _bounce(msg, sender, subject)
    if bounce is not None:
        failed, reason, original = bounce
        return Inbound(kind="bounce", refs=tuple(dict.fromkeys(refs + original)), failed=failed,
                       reason=reason, **base)  # type: ignore[arg-type]
    kind = "auto_reply" if _automatic(msg, subject) else "reply"
    return Inbound(kind=kind, refs=refs, **base)  # type: ignore[arg-type]


def _text(value: object) -> str:
    return str(value or "")


def _addresses(msg: Message, *names: str) -> list[tuple[str, str]]:
    values = [str(v) for n in names for v in (msg.get_all(n) or [])]
    return [(name, addr.strip().lower()) for name, addr in getaddresses(values)]


def _first_address(values: list[object]) -> str:
    found = getaddresses([str(v) for v in values])
    return found[0][1].strip().lower() if found else ""


def _ids(values: list[object]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m.lower() for v in values for m in MSGID.findall(str(v))))


def _date(value: object) -> datetime | None:
    try:
        found = parsedate_to_datetime(str(value)) if value else None
    except (TypeError, ValueError):
        return None
    return found if found is not None and found.tzinfo is not None else None


def _automatic(msg: Message, subject: str) -> bool:
    """RFC 3834 Auto-Submitted, the common X- headers, Precedence, out-of-office subjects."""
    submitted = _text(msg.get("Auto-Submitted", "")).strip().lower()
    if submitted and submitted != "no":
        return True
    if any(msg.get(h) is not None for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress-All")):
        return True
    if _text(msg.get("X-Autoreply", "")).strip():
        return True
    if _text(msg.get("Precedence", "")).strip().lower() in PRECEDENCE:
        return True
    return bool(OUT_OF_OFFICE.search(subject))


def _bounce(msg: EmailMessage, sender: str, subject: str) -> tuple[tuple[str, ...], str, tuple[str, ...]] | None:
    """(failed recipients, reason, Message-IDs of the original) for a delivery failure, else None.

    RFC 3464 (multipart/report; report-type=delivery-status) first; then the common
    non-standard ones: a mailer daemon's message with ``X-Failed-Recipients`` (Exim) or a
    bounce subject, with the original message or its headers attached or quoted."""
    is_dsn = msg.get_content_type() == "multipart/report" and \
        str(msg.get_param("report-type", "")).lower() == "delivery-status"
    daemonish = bool(BOUNCE_SENDER.search(sender) or BOUNCE_SENDER.search(_text(msg.get("From", "")).strip()))
    x_failed = [a.lower() for _, a in getaddresses([str(v) for v in msg.get_all("X-Failed-Recipients", [])]) if a]
    if not is_dsn and not x_failed and not (daemonish and BOUNCE_SUBJECT.search(subject)):
        return None
    failed, statuses, original = list(x_failed), [], []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            f, s = _dsn_fields(part)
            failed += f
            statuses += s
        elif ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            original += _original_ids(part)
    if not is_dsn:
        body = _plain_text(msg)
        original += [m.lower() for m in re.findall(r"^message-id:\s*(<[^<>\s]+>)", body, re.I | re.M)]
        statuses += re.findall(r"\b[45]\.\d{1,3}\.\d{1,3}\b", body)[:1]
    if is_dsn and not failed and not statuses:
        return None       # a DSN that reports success or delay only
    reason = _safe("; ".join(dict.fromkeys(statuses))) or "the receiving server refused the message"
    return tuple(dict.fromkeys(failed)), reason, tuple(dict.fromkeys(original))


def _safe(text: str) -> str:
    """A status and diagnostic without addresses (they echo the recipient); one short line.
    Status codes stay (``5.1.1``), so scrub's phone-number rule is applied only after them."""
    text = EMAIL.sub("<address>", " ".join(text.split()))
    codes = re.match(r"^(\s*[245]\.\d{1,3}\.\d{1,3}(\s+\d{3})?(\s+[245]\.\d{1,3}\.\d{1,3})?)", text)
    head = codes.group(1) if codes else ""
    text = re.sub(r"^smtp;\s*", "", text[len(head):].strip())
    rest = re.sub(r"\b[245]\.\d{1,3}\.\d{1,3}\b|\b\d{3}\b", "", text)
    return (head.strip() + " " + scrub(rest)).strip()[:300]


def _dsn_fields(part: Message) -> tuple[list[str], list[str]]:
    """Failed recipients and ``status diagnostic`` lines of a delivery-status part."""
    payload = part.get_payload()
    blocks = payload if isinstance(payload, list) else []
    text = "\n\n".join(b.as_string() if isinstance(b, Message) else str(b) for b in blocks) \
        if blocks else _part_text(part)
    failed, statuses = [], []
    for block in re.split(r"\n\s*\n", text):
        fields = _fields(block)
        action = fields.get("action", "").lower()
        if action and action != "failed":
            continue
        status = fields.get("status", "")
        if not action and not status.startswith("5"):
            continue
        rcpt = fields.get("final-recipient") or fields.get("original-recipient") or ""
        if rcpt:
            failed.append(rcpt.split(";", 1)[-1].strip().strip("<>").lower())
            diag = fields.get("diagnostic-code", "").split(";", 1)[-1].strip()
            statuses.append(" ".join(filter(None, (status, diag[:200]))))
    return failed, statuses


def _fields(block: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    last = ""
    for line in block.splitlines():
        if line[:1] in (" ", "\t") and last:
            fields[last] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            last = key.strip().lower()
            fields[last] = value.strip()
    return fields


def _part_text(part: Message) -> str:
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(part.get_payload())


def _original_ids(part: Message) -> list[str]:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return list(_ids(list(payload[0].get_all("Message-ID") or [])))
    text = _part_text(part)
    return [m.lower() for m in re.findall(r"^message-id:\s*(<[^<>\s]+>)", text, re.I | re.M)]


def _plain_text(msg: EmailMessage) -> str:
    texts = []
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            try:
                texts.append(str(part.get_content()))
            except (LookupError, ValueError):
                texts.append(_part_text(part))
    return "\n".join(texts)
