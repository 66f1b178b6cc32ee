"""Which connector serves each configured name: a lazy name → ``module:Class`` registry.

The tables are data (strings), so configuration can validate a backend's keys and the engine can
load only what is configured (the SDKs load on demand), without the config layer importing any
connector module.  A new source, channel or inbox is one line here.
"""


from __future__ import annotations

import importlib
from typing import Any


class Registry:
    """Maps a configured name (``ics``, ``sendgrid``) to ``module:Class`` and loads it on demand."""

    def __init__(self, what: str, entries: dict[str, str]) -> None:
        self.what = what
        self.entries = entries

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def load(self, name: str) -> Any:
        """Import and return the class for ``name``; raises KeyError when unknown."""
        target = self.entries[name]
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


SOURCES = Registry("calendar kind", {
    "ics": "connectors.calendars.ics:IcsSource",
    "google": "connectors.calendars.google:GoogleSource",
    "caldav": "connectors.calendars.caldav:CaldavSource",
})

EMAIL_BACKENDS = Registry("email backend", {
    "outbox": "connectors.channels.outbox:OutboxChannel",
    "smtp": "connectors.channels.smtp:SmtpChannel",
    "sendgrid": "connectors.channels.sendgrid:SendGridChannel",
})

PHONE_BACKENDS = Registry("phone backend", {
    "therapist-email": "connectors.channels.call_task:TherapistEmailCallTask",
    "calendar": "connectors.channels.calendar_task:CalendarCallTask",
    "caldav": "connectors.channels.caldav_task:CaldavCallTask",
    "twilio-sms": "connectors.channels.twilio_sms:TwilioSmsChannel",
})
# DESIGN.md also says "twilio"; accept it as another name for the same backend.
PHONE_ALIASES = {"twilio": "twilio-sms"}
