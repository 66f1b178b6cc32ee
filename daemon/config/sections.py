"""The configuration's typed sections: one schema for validation, config.example.toml
and the reference docs (tests keep them in step).  Loading lives in ``daemon.config``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from email_validator import EmailNotValidError, validate_email

from daemon.backends import EMAIL_BACKENDS, PHONE_ALIASES, PHONE_BACKENDS, SOURCES
from daemon.config.durations import (
    Duration,
    WorkingHours,
    parse_duration,
    parse_working_hours,
)
from daemon.config.fields import option
from daemon.config.therapists import Therapist


def _zone(value: Any) -> ZoneInfo:
    if not isinstance(value, str):
        raise ValueError("expected an IANA time zone name like 'America/New_York'")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{value}' is not a known time zone; expected an IANA name "
                         "like 'America/New_York' or 'Europe/Berlin'") from None


def _email(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected an email address")
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"'{value}' is not a valid email address ({exc})") from None


def _locale(value: Any) -> str:
    try:
        Locale.parse(str(value))
    except (UnknownLocaleError, ValueError):
        raise ValueError(f"'{value}' is not a known locale; expected e.g. 'en_US', 'de_DE'") from None
    return str(value)


def _share(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{value!r} is not a share between 0 and 1 (e.g. 0.3 for 30 %)")
    return float(value)


def _duration(value: Any) -> Duration:
    return parse_duration(value)


def _hours(value: Any) -> WorkingHours:
    return parse_working_hours(value)


def _words(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("expected a list of words, e.g. [\"no-show\", \"DNA\"]")
    return tuple(v.strip() for v in value)


@dataclass
class Practice:
    name: str = option(doc="The practice's name, as clients know it.", example="Riverside Counselling")
    therapist: str = option(doc="The therapist's name, used in messages.", example="Ana Ruiz")
    therapist_email: str = option(parse=_email, doc="Where call tasks, notices and the digest go.",
                                  example="ana@riverside.example")
    timezone: ZoneInfo = option(parse=_zone, doc="IANA time zone of the practice.",
                                example="America/New_York")
    working_hours: WorkingHours = option(parse=_hours, doc="When steps may land.",
                                         default_factory=lambda: parse_working_hours("Mon-Fri 09:00-17:00"))
    locale: str = option("en_US", parse=_locale, doc="Formats dates and times in messages.")
    rebooking_link: str = option("", doc="Optional link where clients can book again.")
    phone: str = option("", doc="Optional practice phone number shown in messages.")


@dataclass
class Store:
    path: str = option("state.db", doc="SQLite file, relative to the config file.")
    url: str = option("", doc="Database URL instead of path, e.g. postgresql://host/db (multi-replica).")


@dataclass
class CalendarCommon:
    name: str = option(doc="A short name for this calendar, shown in messages and status.")
    kind: str = option(doc="Which kind of calendar.", choices=SOURCES.names())
    source: str = option(doc="ics: a path (relative to this file) or an https URL; "
                             "google: the calendar id; caldav: the calendar URL.")
    poll_every: Duration = option(default_factory=lambda: parse_duration("2 minutes"),
                                  parse=_duration, doc="How often the calendar is read.")
    timeout: Duration = option(default_factory=lambda: parse_duration("30s"), parse=_duration,
                               doc="Network timeout for one request.")


@dataclass
class CalendarConfig:
    name: str
    kind: str
    source: str
    poll_every: Duration
    timeout: Duration
    options: Any


@dataclass
class Clients:
    directory: str = option("", doc="CSV (name,aliases,email,phone,preferred_channel,do_not_contact) "
                                    "or .vcf file, relative to this file.")
    default_region: str = option("US", doc="Region for phone numbers written without +country code.")


def _positive(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what}: expected a whole number of at least 1, found {value!r}")


@dataclass
class Pattern:
    misses: int = option(3, doc="No-shows and late cancellations that make a pattern...")
    within: Duration = option(default_factory=lambda: parse_duration("90 days"), parse=_duration,
                              doc="...within this window (the call task and the digest say so).")

    def __post_init__(self) -> None:
        _positive("misses", self.misses)


@dataclass
class Burst:
    count: int = option(3, doc="Cancellations of different clients that make a burst...")
    within: Duration = option(default_factory=lambda: parse_duration("30 minutes"), parse=_duration,
                              doc="...noticed within this window: held until you confirm or dismiss.")

    def __post_init__(self) -> None:
        _positive("count", self.count)
        if self.count < 2:
            raise ValueError(f"count: a burst is at least 2 cancellations, found {self.count}")


@dataclass
class Detection:
    no_show_markers: tuple[str, ...] = option(
        default_factory=lambda: ("no-show", "no show", "noshow", "DNA"), parse=_words,
        doc="Words in a title, description or CATEGORIES that mark a no-show.")
    no_show_colors: tuple[str, ...] = option(default_factory=tuple, parse=_words,
                                             doc="Google colorId values that mark a no-show.")
    reached_markers: tuple[str, ...] = option(
        default_factory=lambda: ("reached", "✓"), parse=_words,
        doc="Words the therapist adds to a missed session or call task once the client was reached.")
    cancelled_prefixes: tuple[str, ...] = option(
        default_factory=lambda: ("Cancelled:", "Canceled:"), parse=_words,
        doc="Title prefixes that mean cancelled (Outlook keeps cancelled meetings that way).")
    late_cancel_within: Duration = option(default_factory=lambda: parse_duration("24h"),
                                          parse=_duration, doc="A cancellation this close to the start is late.")
    rebook_window: Duration = option(default_factory=lambda: parse_duration("14 days"), parse=_duration,
                                     doc="Another session booked this close to a cancelled one means it was moved.")
    lookback: Duration = option(default_factory=lambda: parse_duration("30 days"), parse=_duration,
                                doc="How far back sessions are read and compared.")
    horizon: Duration = option(default_factory=lambda: parse_duration("120 days"), parse=_duration,
                               doc="How far ahead sessions are read and compared.")
    vanish_breaker: float = option(0.3, parse=_share,
                                   doc="Share of upcoming sessions whose events may vanish at once "
                                       "before the calendar is held as degraded.")
    vanish_breaker_min: int = option(3, doc="…and at least this many events must vanish to trip it.")
    breaker_accept_after: Duration = option(
        default_factory=lambda: parse_duration("24h"), parse=_duration,
        doc="A held feed that stays exactly the same this long is accepted as the new normal, "
            "still without inferring cancellations from what vanished.")
    pattern: Pattern = option(default_factory=Pattern,
                              doc="Repeated misses worth talking about: { misses = 3, within = \"90 days\" }.")
    out_of_office_words: tuple[str, ...] = option(
        default_factory=lambda: ("out of office", "OOO", "vacation", "holiday", "sick"), parse=_words,
        doc="A calendar event (timed or all-day, not a session) whose title has one of these is your "
            "out-of-office block; sessions cancelled inside it are your own cancellations.")
    therapist_cancel_markers: tuple[str, ...] = option(
        default_factory=lambda: ("therapist cancelled", "therapist canceled"), parse=_words,
        doc="Words on a session that mean you cancelled it (no client follow-up; a reschedule task).")
    burst: Burst = option(default_factory=Burst,
                          doc="Several clients cancelling at once is held for you: "
                              "{ count = 3, within = \"30 minutes\" }.")


@dataclass
class StepSpec:
    channel: str = option(doc="phone or email.", choices=("phone", "email"))
    after: Duration = option(parse=_duration, doc="Counted from the missed session's start.")
    template: str = option(doc="Template name in the templates folder.")


def _default_steps() -> list[StepSpec]:
    return [StepSpec("phone", parse_duration("1 business day"), "phone_call"),
            StepSpec("email", parse_duration("7 days"), "email_followup")]


@dataclass
class Cadence:
    steps: list[StepSpec] = field(default_factory=_default_steps)
    max_lateness: Duration = field(default_factory=lambda: parse_duration("3 days"))
    max_messages_per_hour: int = 100


@dataclass
class CadenceCommon:
    steps: list = option(default_factory=list, doc="The follow-up steps, in order.")
    max_lateness: Duration = option(default_factory=lambda: parse_duration("3 days"), parse=_duration,
                                    doc="A step later than this (service was down) is skipped as too_late.")
    max_messages_per_hour: int = option(100, doc="A safety cap on messages to clients per hour; "
                                                 "beyond it steps wait and the therapist is told.")


@dataclass
class EmailCommon:
    sender: str = option(parse=_email, key="from", doc="The From address.",
                         example="ana@riverside.example")
    backend: str = option("outbox", doc="How email leaves.", choices=EMAIL_BACKENDS.names())
    sender_name: str = option("", doc="Display name in From (default: the practice name).")
    reply_to: str = option("", doc="Reply-To (default: the therapist's email; the clients of a "
                                   "[[therapists]] therapist always reply to that therapist).")


@dataclass
class PhoneCommon:
    backend: str = option("therapist-email", doc="How the phone step reaches the therapist or client.",
                          choices=PHONE_BACKENDS.names() + tuple(PHONE_ALIASES))


@dataclass
class ChannelConfig:
    backend: str
    common: Any
    options: Any


@dataclass
class Digest:
    enabled: bool = option(True, doc="Send the therapist a daily digest email.")
    at: str = option("07:30", doc="Local time of the digest (HH:MM).")


@dataclass
class Retention:
    purge_after: Duration | None = option(None, parse=_duration,
                                          doc="Delete closed follow-ups older than this (e.g. '24 months').")


@dataclass
class Inbox:
    host: str = option(doc="IMAP server.", example="imap.example.org")
    username: str = option(doc="The mailbox login.", example="ana@riverside.example")
    backend: str = option("imap", doc="How the practice inbox is read (read-only; secret imap_password).",
                          choices=("imap",))
    port: int = option(993, doc="IMAP port (993 for tls, 143 for starttls).")
    security: str = option("tls", doc="tls | starttls | none (none only for a loopback host).",
                           choices=("tls", "starttls", "none"))
    ca_file: str = option("", doc="Optional CA certificate (PEM) to trust, relative to this file.")
    folder: str = option("INBOX", doc="The folder replies arrive in.")
    poll_every: Duration = option(default_factory=lambda: parse_duration("5 minutes"), parse=_duration,
                                  doc="How often the inbox is read (it is also read right before a step "
                                      "to a client who may have answered).")
    timeout: Duration = option(default_factory=lambda: parse_duration("30s"), parse=_duration,
                               doc="Network timeout for one IMAP command.")
    plus_address: bool = option(False, doc="Give each email a Reply-To like you+wb-TOKEN@domain so a "
                                           "reply is matched even when headers are rewritten (the "
                                           "mailbox must deliver plus addresses).")


@dataclass
class Templates:
    folder: str = option("templates", doc="The therapist's templates, relative to this file "
                                          "(defaults are copied there on first use).")


def _listen(value: Any) -> str:
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{value}' is not HOST:PORT, e.g. 127.0.0.1:8765")
    return text


@dataclass
class Web:
    listen: str | None = option(None, parse=_listen, example="127.0.0.1:8765",
                                doc="Where the therapist's console listens; `run` serves it too when set "
                                    "(`welcomeback web` alone serves it on 127.0.0.1:8765 by default).")
    idle_timeout: Duration = option(default_factory=lambda: parse_duration("30 minutes"), parse=_duration,
                                    doc="Sign the console out after this long without use.")
    tls_cert: str | None = option(None, doc="A TLS certificate file (relative to this file); with tls_key "
                                            "allows a non-loopback listen address.")
    tls_key: str | None = option(None, doc="The TLS key file for tls_cert.")
    trusted_proxy: str | None = option(None, doc="The address of the reverse proxy that terminates TLS in "
                                                 "front of the console; allows a non-loopback listen address.")


@dataclass
class Safety:
    protocol: str = option(
        "Follow your safety protocol: try the client again, and if you cannot reach them, call their "
        "emergency contact. If you believe they are in immediate danger, call emergency services.",
        doc="Shown in the urgent call task when a client with a safety concern misses a session.")


@dataclass
class Config:
    path: Path
    practice: Practice
    store: Store
    calendars: list[CalendarConfig]
    clients: Clients
    detection: Detection
    cadence: Cadence
    email: ChannelConfig
    phone: ChannelConfig
    dry_run: bool
    digest: Digest
    retention: Retention
    templates: Templates
    web: Web = field(default_factory=Web)
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    safety: Safety = field(default_factory=Safety)
    inbox: Inbox | None = None
    therapists: list[Therapist] = field(default_factory=list)   # [[therapists]]; none: [practice] is the one

    @property
    def practice_therapist(self) -> Therapist:
        """The [practice] therapist (their [[therapists]] entry when one has their email)."""
        p = self.practice
        for t in self.therapists:
            if t.email.lower() == p.therapist_email.lower():
                return t
        return Therapist(p.therapist, p.therapist_email, (), p.working_hours, phone=p.phone)

    def therapist_of(self, calendar: str) -> Therapist:
        """A session's therapist: its calendar's; a calendar no [[therapists]] lists is the [practice] one's."""
        for t in self.therapists:
            if calendar in t.calendars:
                return t
        return self.practice_therapist

    def same_therapist(self, calendar: str) -> list[str] | None:
        """The calendars of ``calendar``'s therapist (None without [[therapists]]: all are one's)."""
        if not self.therapists:
            return None
        mine = self.therapist_of(calendar).key
        return [c.name for c in self.calendars if self.therapist_of(c.name).key == mine]

    def all_therapists(self) -> list[Therapist]:
        """Everyone who has calendars (the [practice] therapist included when a calendar is left to them)."""
        found = {t.key: t for c in self.calendars for t in [self.therapist_of(c.name)]}
        return list(found.values()) or [self.practice_therapist]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(os.path.expanduser(relative))
        return p if p.is_absolute() else self.base_dir / p
