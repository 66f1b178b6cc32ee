"""Hearing back: what arrived in the practice inbox, matched to follow-ups and applied.

A message refers to one of our steps when its In-Reply-To/References name the step's
Message-ID, when it was sent to the step's plus address (``[inbox] plus_address``), or when
it comes from the client's address (directory email, an email alias, the attendee address)
while the follow-up is open.  A person's answer stops the follow-up (``replied``) and tells
the therapist; an auto-reply is only recorded; a bounce fails the step, marks the address
undeliverable and asks the therapist to check it.  Each message is applied in the same
transaction that advances the folder's UID, so a restart neither loses nor repeats one.
Logs carry sequence and step ids only.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Callable

import sqlalchemy as sa

from connectors.inbox.imap import ImapInbox, ImapSettings, InboxError, Position
from connectors.inbox.parse import Inbound, parse
from daemon.config import Config
from daemon.engine.context import CycleContext
from daemon.engine.messages import message_id, step_token
from daemon.errors import ChannelError
from daemon.store import followups
from daemon.store import inbox as inbox_store
from daemon.store.tables import dt, sequences, steps, ts

log = logging.getLogger(__name__)
RECENT = timedelta(days=30)     # a closed follow-up still hears bounces and late replies this long


def inbox_for(config: Config, secret: Callable[[str], str]) -> ImapInbox | None:
    """The configured inbox reader, or None without ``[inbox]``."""
    c = config.inbox
    if c is None:
        return None
    settings = ImapSettings(host=c.host, port=c.port, security=c.security, username=c.username,
                            folder=c.folder, ca_file=config.resolve(c.ca_file) if c.ca_file else None,
                            timeout=c.timeout.seconds or 30.0)
    return ImapInbox(settings, secret)


def anything_due(ctx: CycleContext, now: datetime) -> bool:
    """Whether a step is due, so the inbox should be read before dispatch."""
    with ctx.store.transaction() as conn:
        return conn.execute(sa.select(steps.c.id).where(
            steps.c.state == "planned", steps.c.due_at <= ts(now)).limit(1)).first() is not None


def read(ctx: CycleContext, inbox: ImapInbox, now: datetime) -> Counter[str]:
    """Read what is new in the inbox and apply it; raises InboxError (nothing advanced then)."""
    s = inbox.settings
    account = f"{s.username}@{s.host}:{s.port}"
    with ctx.store.transaction() as conn:
        known = inbox_store.position(conn, account, s.folder)
    since = (now - ctx.config.detection.lookback.approx).date()
    result = inbox.read(Position(*known) if known else None, since=since)
    if known and known[0] != result.uidvalidity:
        log.warning("inbox folder UIDVALIDITY changed; re-reading the last %d days", ctx.config.detection.lookback.approx.days)
    counts: Counter[str] = Counter()
    for item in result.messages:
        try:
            inbound: Inbound | None = parse(item.raw)
        except Exception as exc:   # one unreadable message must not stop the inbox
            log.warning("inbox message uid %d could not be read (%s); skipped", item.uid, type(exc).__name__)
            inbound = None
        with ctx.store.transaction() as conn:   # what it did and the UID advance: one commit
            outcome = apply(ctx, conn, inbound, now) if inbound is not None else "unreadable"
            inbox_store.advance(conn, account, s.folder, result.uidvalidity, item.uid, now)
        counts[outcome] += 1
    if not result.messages and (known is None or known[0] != result.uidvalidity):
        with ctx.store.transaction() as conn:
            inbox_store.advance(conn, account, s.folder, result.uidvalidity, result.highest, now)
    with ctx.store.transaction() as conn:
        ctx.store.resolve(conn, "inbox", "")
    if result.messages:
        log.info("inbox: %d new message(s): %s", len(result.messages),
                 ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return counts


def read_safely(ctx: CycleContext, inbox: ImapInbox, now: datetime) -> Counter[str]:
    """``read``, an unreadable inbox reported to the therapist instead of raised."""
    try:
        return read(ctx, inbox, now)
    except InboxError as exc:
        log.warning("%s", exc.reason)
        with ctx.store.transaction() as conn:
            ctx.store.report(conn, now, "inbox", "", "", f"the practice inbox could not be read: {exc.reason}")
        return Counter({"error": 1})


def hear_all(ctx: CycleContext, inbox: ImapInbox | None, now: datetime) -> Counter[str]:
    """The inbox, then the texts (and uncertain texts settled); an unreadable source is
    reported, never raised."""
    counts: Counter[str] = read_safely(ctx, inbox, now) if inbox is not None else Counter()
    if counts.get("replied"):
        _note_call_tasks(ctx, now, "by email")
    counts += settle_email(ctx, now)
    reader = sms_reader(ctx)
    if reader is not None:
        try:
            sms = hear_sms(ctx, reader, now)
            counts += sms
            if sms.get("sms replied"):
                _note_call_tasks(ctx, now, "by text")
            counts += settle_uncertain(ctx, reader, now)
        except ChannelError as exc:
            log.warning("texts to the practice could not be read: %s", exc.reason)
            counts["sms error"] += 1
    return counts


def _note_call_tasks(ctx: CycleContext, now: datetime, how: str) -> None:
    """Tell the therapist in the call task's calendar entry too, where there is one."""
    note = getattr(ctx.phone, "note_answered", None)
    if note is None:
        return
    with ctx.store.transaction() as conn:
        rows = conn.execute(sa.select(steps.c.id).join(sequences, steps.c.sequence_id == sequences.c.id).where(
            sequences.c.closed_reason == "replied", sequences.c.closed_at == ts(now), steps.c.channel == "phone",
            steps.c.state == "sent")).all()
    for (step_id,) in rows:
        try:
            note(step_id, how)
        except ChannelError as exc:
            log.warning("step %s: the call task could not be marked answered: %s", step_id, exc.reason)


# -- matching ---------------------------------------------------------------------------------
def _candidates(conn: Any, now: datetime) -> list[Any]:
    """Sequences open or closed recently, newest first."""
    return list(conn.execute(sa.select(sequences).where(sa.or_(
        sequences.c.closed_at.is_(None), sequences.c.closed_at >= ts(now - RECENT)))
        .order_by(sequences.c.detected_at.desc())).mappings().all())


def _steps_of(conn: Any, seq_id: str) -> list[Any]:
    return list(conn.execute(sa.select(steps).where(steps.c.sequence_id == seq_id)
                             .order_by(steps.c.n)).mappings().all())


def _addresses(ctx: CycleContext, seq: Any) -> set[str]:
    client = ctx.directory.by_id(seq["client_id"])
    found = {seq["client_email"] or ""}
    if client is not None:
        found |= {client.email or "", *(a for a in client.aliases if "@" in a)}
    return {a.strip().lower() for a in found if a.strip()}


def match(ctx: CycleContext, conn: Any, item: Inbound, now: datetime) -> tuple[Any, Any] | None:
    """(sequence, step or None) the message is about, else None."""
    sender = ctx.config.email.common.sender
    refs, tokens = set(item.refs), set(item.tokens)
    by_sender = None
    for seq in _candidates(conn, now):
        rows = _steps_of(conn, seq["id"])
        for row in rows:
            if message_id(row["id"], sender).lower() in refs or step_token(row["id"]) in tokens:
                return seq, row
        addresses = _addresses(ctx, seq)
        from_client = item.sender in addresses or (item.kind == "bounce" and bool(addresses & set(item.failed)))
        if by_sender is None and from_client and _in_lifetime(seq, item, now):
            sent = [r for r in rows if r["channel"] == "email" and r["state"] in ("sent", "uncertain")]
            by_sender = (seq, sent[-1] if sent else None)
    return by_sender


def _in_lifetime(seq: Any, item: Inbound, now: datetime) -> bool:
    when = item.date or now
    detected = dt(seq["detected_at"])
    assert detected is not None
    if when < detected - timedelta(minutes=5):
        return False
    return seq["closed_at"] is None or item.kind == "bounce"


# -- applying ---------------------------------------------------------------------------------
def apply(ctx: CycleContext, conn: Any, item: Inbound, now: datetime) -> str:
    """What one message does; returns the outcome (``replied``, ``auto_reply``, ``bounced``,
    ``unmatched``, ``forwarded``)."""
    found = match(ctx, conn, item, now)
    if found is None:
        return "unmatched"
    seq, step = found
    step_id = step["id"] if step is not None else None
    if item.kind == "auto_reply":
        ctx.store.audit(conn, now, "auto_reply", sequence_id=seq["id"], step_id=step_id,
                        detail="an automatic reply (out of office); not counted as an answer")
        log.info("follow-up %s: an automatic reply arrived; not counted", seq["id"])
        return "auto_reply"
    if item.kind == "bounce":
        return _bounced(ctx, conn, seq, step, item, now)
    if item.forwarded and item.sender not in _addresses(ctx, seq):
        return "forwarded"
    return _replied(ctx, conn, seq, step, now)


def _replied(ctx: CycleContext, conn: Any, seq: Any, step: Any, now: datetime, *, how: str = "by email") -> str:
    if seq["closed_at"] is not None and seq["closed_reason"] == "replied":
        return "replied"
    rows = _steps_of(conn, seq["id"])
    skipped = followups.stop(conn, seq["id"], "replied", now) if seq["closed_at"] is None else 0
    ref = step or next((r for r in rows if r["state"] == "skipped" and r["reason"] == "replied"), None) or rows[-1]
    ctx.store.audit(conn, now, "replied", sequence_id=seq["id"], step_id=ref["id"],
                    detail=f"the client answered {how}; {skipped} later step(s) not sent")
    ctx.store.report(conn, now, "replied", seq["calendar"], ref["id"],
                     f"the client answered {how}; the follow-up stopped")
    log.info("follow-up %s stopped: replied", seq["id"])
    return "replied"


def _bounced(ctx: CycleContext, conn: Any, seq: Any, step: Any, item: Inbound, now: datetime) -> str:
    addresses = _addresses(ctx, seq)
    email_step = step is not None and step["channel"] == "email"
    failed = [a for a in item.failed if a in addresses]
    if not item.failed and email_step and not failed:
        client = ctx.directory.by_id(seq["client_id"])
        failed = [(client.email if client and client.email else seq["client_email"] or "").lower()]
    failed = [a for a in failed if a]      # a bounce of the therapist's own call task marks no client
    reason = f"bounced: {item.reason}; check the client's email address"
    for address in failed:
        inbox_store.mark_undeliverable(conn, address, step["id"] if step is not None else None, item.reason, now)
    if email_step and (failed or not item.failed) and step["state"] in ("sent", "uncertain"):
        followups.finish(conn, step["id"], "failed", now, reason=reason, provider_id=step["provider_id"])
        ctx.store.report(conn, now, "failed", seq["calendar"], step["id"], reason)
        log.warning("step %s failed: the email bounced", step["id"])
    ctx.store.audit(conn, now, "bounced", sequence_id=seq["id"], step_id=step["id"] if step is not None else None,
                    detail=reason)
    return "bounced"


# -- text messages (Twilio) --------------------------------------------------------------------
SMS_SOURCE = "twilio-sms"


def sms_reader(ctx: CycleContext) -> Any:
    """The phone channel's reader of inbound messages (Twilio), else None."""
    reader = getattr(ctx.phone, "reader", None)
    return reader() if callable(reader) else None


def hear_sms(ctx: CycleContext, reader: Any, now: datetime) -> Counter[str]:
    """Text messages to the practice's number: a reply stops the client's follow-up, STOP opts
    the client out of texts.  Each SID is applied once (recorded with its effect).
    Raises ChannelError when Twilio cannot be read."""
    since = now - ctx.config.detection.lookback.approx
    with ctx.store.transaction() as conn:
        known = inbox_store.position(conn, SMS_SOURCE, "inbound")
    if known:
        since = max(since, datetime.fromtimestamp(known[1], tz=now.tzinfo) - timedelta(days=1))
    counts: Counter[str] = Counter()
    newest = known[1] if known else 0
    for item in reader.inbound(since):
        with ctx.store.transaction() as conn:
            if inbox_store.seen(conn, SMS_SOURCE, item.sid):
                continue
            outcome = _apply_sms(ctx, conn, item, now)
            inbox_store.mark_seen(conn, SMS_SOURCE, item.sid, now)
            newest = max(newest, int((item.at or now).timestamp()))
            inbox_store.advance(conn, SMS_SOURCE, "inbound", 0, newest, now)
        counts[f"sms {outcome}"] += 1
    return counts


def _apply_sms(ctx: CycleContext, conn: Any, item: Any, now: datetime) -> str:
    clients = ctx.directory.by_phone(item.sender)
    if len(clients) != 1:
        return "unmatched"          # unknown, or a number several clients share: no guess
    client = clients[0]
    if item.kind == "stop":
        flag = followups.client_flag(conn, client.id)
        channels = set(filter(None, ((flag["opted_out_channels"] if flag else "") or "").split(","))) | {"sms"}
        followups.set_client_flag(conn, client.id, opted_out_at=ts(now), opted_out_channels=",".join(sorted(channels)))
        ctx.store.audit(conn, now, "opted_out", client_id=client.id, detail="the client texted STOP")
        log.info("a client texted STOP: no more text messages to them")
        return "stop"
    if item.kind == "start":
        return "start"
    seq_id = followups.open_for_client(conn, client.id)
    seq = followups.sequence(conn, seq_id) if seq_id else None
    if seq is None or (item.at is not None and dt(seq["detected_at"]) > item.at):  # type: ignore[operator]
        return "unmatched"
    return _replied(ctx, conn, seq, None, now, how="by text message")


def settle_email(ctx: CycleContext, now: datetime) -> Counter[str]:
    """``uncertain`` emails looked up by the email channel where it can tell (SendGrid's Email
    Activity API); left to the therapist otherwise."""
    reader = getattr(ctx.email, "reader", None)
    if not callable(reader):
        return Counter()
    activity = reader()
    with ctx.store.transaction() as conn:
        rows = [r for r in followups.all_steps(conn) if r["state"] == "uncertain" and r["channel"] == "email"]
    counts: Counter[str] = Counter()
    for row in rows:
        found = activity.settle(row["id"])
        if found is not None:
            _settle(ctx, row, found, now, "SendGrid")
            counts[f"settled {found[0]}"] += 1
    return counts


def _settle(ctx: CycleContext, row: Any, found: tuple[str, str], now: datetime, where: str) -> None:
    state, detail = found
    with ctx.store.transaction() as conn:
        followups.finish(conn, row["id"], state, now, reason=None if state == "sent" else detail,
                         provider_id=detail if state == "sent" else row["provider_id"])
        ctx.store.resolve(conn, "uncertain", row["calendar"], row["id"])
        if state == "failed":
            ctx.store.report(conn, now, "failed", row["calendar"], row["id"], detail)
        followups.close_if_done(conn, row["sequence_id"], now)
        ctx.store.audit(conn, now, f"settled {state}", sequence_id=row["sequence_id"], step_id=row["id"],
                        detail=f"looked up at {where}")
    log.info("step %s settled as %s (%s)", row["id"], state, where)


def settle_uncertain(ctx: CycleContext, reader: Any, now: datetime) -> Counter[str]:
    """``uncertain`` text messages looked up at Twilio: settled as sent or failed when Twilio
    can tell, left to the therapist otherwise (never re-sent on a guess)."""
    counts: Counter[str] = Counter()
    with ctx.store.transaction() as conn:
        rows = [r for r in followups.all_steps(conn) if r["state"] == "uncertain" and r["channel"] == "phone"]
    for row in rows:
        client = ctx.client_of(row["client_id"], row["client_name"], row["client_email"])
        claimed = dt(row["claimed_at"])
        if not client.phone or claimed is None:
            continue
        marker = row["provider_id"] if str(row["provider_id"] or "").startswith("sms:") else None
        found = reader.settle(client.phone, claimed, marker)
        if found is not None:
            _settle(ctx, row, found, now, "Twilio")
            counts[f"settled {found[0]}"] += 1
    return counts
