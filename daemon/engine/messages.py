"""Turning a due step into a Message for its channel (the one place context is built)."""

from __future__ import annotations

import hashlib
from typing import Any

from connectors.channels.base import Channel, Message
from daemon.config import Config
from daemon.errors import TemplateError
from daemon.model import Client
from daemon.store.tables import dt
from daemon.templating.templates import Templates, babel_locale, context_for, readable_phone, when


def message_id(step_id: str, sender: str) -> str:
    """Deterministic per step, so a provider or mail server can spot a repeat."""
    domain = sender.rsplit("@", 1)[-1] if "@" in sender else "welcomeback.invalid"
    return f"<wb-{step_id}-{step_token(step_id)}@{domain}>"


def step_token(step_id: str) -> str:
    """The per-step token carried in the Message-ID and, with ``[inbox] plus_address``, in the
    Reply-To (``local+wb-TOKEN@domain``), so a reply is matched when headers are rewritten."""
    return hashlib.sha256(step_id.encode()).hexdigest()[:10]


def plus_address(address: str, step_id: str) -> str:
    local, at, domain = address.rpartition("@")
    return f"{local.split('+', 1)[0]}+wb-{step_token(step_id)}@{domain}" if at else address


def contact_missing(channel: Channel, client: Client) -> bool:
    """Whether the client lacks what this channel needs (phone or email)."""
    if channel.medium == "email":
        return not client.email
    return not client.phone


def build(step: Any, client: Client, channel: Channel, config: Config, templates: Templates, *,
          notes: list[str] | None = None) -> Message:
    """Render the step's template for ``client`` on ``channel``; raises TemplateError.
    ``notes`` are lines for the therapist at the top of a call task (a pattern)."""
    return build_for(step, client, channel.medium, config, templates, notes=notes)


def build_for(step: Any, client: Client, medium: str, config: Config, templates: Templates, *,
              notes: list[str] | None = None) -> Message:
    """The Message for ``medium`` (``email``, ``sms`` or ``call-task``); raises TemplateError.
    Dates and the template follow the client's ``language`` when the directory gives one."""
    p = config.practice
    therapist = config.therapist_of(calendar_of(step))
    session_start = dt(step["session_start"])
    assert session_start is not None
    region = config.clients.default_region
    ctx = context_for(client, session_start, step["trigger"], tz=p.timezone,
                      locale=babel_locale(client.language, p.locale),
                      therapist=therapist.name, practice=p.name, practice_phone=therapist.phone or p.phone,
                      rebooking_link=p.rebooking_link, region=region, safety_protocol=config.safety.protocol)
    rendered = templates.with_own(therapist.templates).render(
        step["template"], ctx, audience="therapist" if medium == "call-task" else "client",
        language=client.language)
    sender = config.email.common.sender
    reply_to = therapist.email if therapist.listed else (config.email.common.reply_to or p.therapist_email)
    if medium == "email" and config.inbox is not None and config.inbox.plus_address:
        reply_to = plus_address(reply_to, step["id"])
    base = dict(step_id=step["id"], sequence_id=step["sequence_id"], message_id=message_id(step["id"], sender),
                due_at=dt(step["due_at"]), reply_to=reply_to)
    if medium == "call-task":
        local = session_start.astimezone(p.timezone)
        header = ((f"For: {therapist.name}\n" if config.therapists else "")   # a shared task calendar
                  + f"Client: {client.name}\nPhone: {readable_phone(client.phone, region) or 'none on file'}\n"
                  f"Missed: {when(session_start, tz=p.timezone, locale=p.locale)} ({_label(step['trigger'])})\n"
                  f"Follow-up: {step['sequence_id']}\n"
                  + "".join(f"Note for you: {n}\n" for n in notes or ())
                  + "\nSuggested words:\n\n")
        return Message(audience="therapist", to_address=therapist.email, to_name=therapist.name,
                       subject=rendered.subject or f"Call {client.short_name}", text=header + rendered.text,
                       html=None, meta={"phone": client.phone, "session_local": local.isoformat()}, **base)
    if medium == "sms":
        return Message(audience="client", to_address=client.phone, to_name=client.name, subject="",
                       text=rendered.text.strip(), html=None, **base)
    if not rendered.subject:
        raise TemplateError(f"template '{step['template']}' has no 'Subject:' first line; an email needs one")
    text, html = signed(rendered.text, rendered.html, therapist.signature)
    return Message(audience="client", to_address=client.email, to_name=client.name,
                   subject=rendered.subject, text=text, html=html, **base)


def calendar_of(step: Any) -> str:
    """The calendar of a step (or notice) row: whose session it is about ("" when unknown)."""
    try:
        return str(step["calendar"] or "")
    except (KeyError, IndexError):
        return ""


def signed(text: str, html: str | None, signature: str) -> tuple[str, str | None]:
    """A client email closed with the therapist's ``signature`` (none: unchanged)."""
    lines = [line.rstrip() for line in signature.strip().splitlines()]
    if not lines:
        return text, html
    text = text.rstrip("\n") + "\n\n-- \n" + "\n".join(lines) + "\n"
    if html is not None:
        from markupsafe import escape

        html = html.rstrip("\n") + "\n<p>" + "<br>".join(str(escape(line)) for line in lines) + "</p>\n"
    return text, html


def _label(trigger: str) -> str:
    return {"no_show": "did not come", "late_cancel": "cancelled at short notice",
            "cancelled": "cancelled"}.get(trigger, trigger)
