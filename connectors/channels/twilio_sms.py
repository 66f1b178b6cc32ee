"""SMS through Twilio's Messages API, with the official ``twilio`` client.

A Twilio send is not idempotent: a 5xx, a timeout or a dropped connection after
the request was written is ``uncertain`` and never retried here.  A 429 with a
short ``Retry-After`` is retried once, after that real (wall-clock) wait.  Hard limits
from the TCPA healthcare exemption live in the sender: one GSM-7 segment
(``sms_problems``) and the recipient's local daytime (08:00-21:00).
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock_time
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_zones

from connectors.channels.base import Channel, ChannelContext, Message, Receipt
from connectors.channels.mime import (
    parse_api_base,
    parse_seconds,
    retry_after_seconds,
    scrub,
)
from daemon.config.fields import option
from daemon.errors import ChannelError, SecretMissing

log = logging.getLogger(__name__)
SECRET = "twilio_auth_token"
SMS_LIMIT = 160
GSM7_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
              "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENDED = "^{}\\[~]|€\f"   # each takes two of the 160 septets
SEND_FROM, SEND_UNTIL = clock_time(8), clock_time(21)
MAX_ATTEMPTS = 2          # one send plus at most one wait for a rate limit
MAX_INLINE_WAIT = 30.0
DEFAULT_WAIT = 60.0


def sms_problems(text: str) -> list[str]:
    """Why ``text`` does not fit one GSM-7 SMS (empty list: it fits)."""
    if not text.strip():
        return ["the SMS text is empty"]
    problems = []
    odd = sorted({c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENDED})
    for char in odd:
        problems.append(f"{char!r} (U+{ord(char):04X}) is not in the GSM-7 alphabet; "
                        "the SMS would be re-encoded and split")
    length = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
    if length > SMS_LIMIT:
        problems.append(f"the SMS is {length} GSM-7 characters; at most {SMS_LIMIT} fit "
                        "in one message")
    return problems


def _e164(value: Any) -> str:
    """A valid phone number in E.164 (+ and country code); raises ValueError."""
    if not isinstance(value, str):
        raise ValueError("expected a phone number in E.164 form, e.g. '+14155552671'")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_possible_number(number):
        raise ValueError(f"'{value}' is not a valid phone number in E.164 form "
                         "(e.g. '+14155552671')")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _sid(prefix: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(prefix + r"[0-9a-fA-F]{32}", value):
            raise ValueError(f"expected a Twilio SID: '{prefix}' and 32 hex digits")
        return value
    return parse


@dataclass
class TwilioOptions:
    account_sid: str = option(parse=_sid("AC"), doc="Twilio Account SID (the auth token is "
                              "the secret twilio_auth_token).", example="AC" + "0" * 32)
    from_number: str = option("", parse=_e164, doc="Sending number in E.164, e.g. +14155552671.")
    messaging_service_sid: str = option("", parse=_sid("MG"),
                                        doc="Messaging Service SID instead of from_number.")
    api_base: str = option("https://api.twilio.com", parse=parse_api_base,
                           doc="Twilio API base URL (a proxy or a test server).")
    timeout: float = option(30.0, parse=parse_seconds,
                            doc="Seconds to wait for Twilio to answer one request.")

    def __post_init__(self) -> None:
        if bool(self.from_number) == bool(self.messaging_service_sid):
            raise ValueError("set exactly one of from_number and messaging_service_sid")


class TwilioSmsChannel(Channel):
    """One GSM-7 SMS per step, only in the recipient's local daytime."""

    backend = "twilio-sms"
    medium = "sms"
    idempotent = False
    Options = TwilioOptions

    def __init__(self, options: TwilioOptions, context: ChannelContext, *,
                 sleep: Callable[[float], None] = time.sleep,
                 wall: Callable[[], float] = time.time) -> None:
        super().__init__(options, context)
        self.sleep = sleep
        self.wall = wall   # the real clock: a provider's wait is a wall-clock fact

    def check(self) -> list[str]:
        """A missing auth token; sends nothing."""
        try:
            self.context.secret(SECRET)
        except SecretMissing as exc:
            return [f"[channels.phone] backend twilio-sms: {exc}"]
        return []

    def reader(self) -> TwilioInbound:
        """Inbound messages and settling uncertain steps (daemon.engine.hearing)."""
        return TwilioInbound(self)

    def marker(self, message: Message) -> str | None:
        """A digest of the text as it is posted (never the text): an ``uncertain`` step is
        looked up in Twilio's Messages list by it."""
        return body_marker(message.text)

    def deliver(self, message: Message) -> Receipt:
        """Create the Message; 201 → Receipt(SID).  Raises ChannelError."""
        to = self._precheck(message)
        client = self._client()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            outcome = self._attempt(client, to, message)
            if isinstance(outcome, Receipt):
                return outcome
            if attempt == MAX_ATTEMPTS or outcome.retry_after is None \
                    or outcome.retry_after > MAX_INLINE_WAIT:
                raise outcome
            log.info("step %s: Twilio asked to wait %.1fs (attempt %d)",
                     message.step_id, outcome.retry_after, attempt)
            self.sleep(outcome.retry_after + random.uniform(0.05, 0.5))
        raise AssertionError("unreachable")

    def _precheck(self, message: Message) -> str:
        """Text, number and send window, before anything leaves; returns E.164."""
        problems = sms_problems(message.text)
        if problems:
            raise ChannelError("failed", "SMS not sendable: " + "; ".join(problems))
        try:
            to = _e164(message.to_address)
        except ValueError:
            raise ChannelError("failed", "the recipient's phone number is not a valid "
                               "E.164 number") from None
        wait = self._outside_daytime(to)
        if wait:
            raise ChannelError("retry", "outside the recipient's local 08:00-21:00",
                               retry_after=wait)
        return to

    def _outside_daytime(self, to: str) -> float | None:
        """Seconds until 08:00 at the recipient (their number's zone when it has
        exactly one, else the practice's), or None inside the window."""
        zones = phone_zones.time_zones_for_number(phonenumbers.parse(to, None))
        zone = self.context.timezone
        if len(zones) == 1 and zones[0] != "Etc/Unknown":
            try:
                zone = ZoneInfo(zones[0])
            except ZoneInfoNotFoundError:
                pass
        local = self.context.clock.now().astimezone(zone)
        if SEND_FROM <= local.time() < SEND_UNTIL:
            return None
        day = local.date() + timedelta(days=1 if local.time() >= SEND_UNTIL else 0)
        opens = datetime.combine(day, SEND_FROM, tzinfo=zone)
        return max(60.0, (opens - local).total_seconds())

    def _attempt(self, client: Any, to: str, message: Message) -> Receipt | ChannelError:
        """One POST.  Returns the receipt or a short-wait ``retry``; raises the rest."""
        from twilio.base.exceptions import TwilioRestException

        sender = ({"from_": self.options.from_number} if self.options.from_number
                  else {"messaging_service_sid": self.options.messaging_service_sid})
        try:
            created = client.messages.create(to=to, body=message.text, **sender)
        except TwilioRestException as exc:
            error = self._rest_error(exc, client.http_client.last_headers, message)
            if error.outcome == "retry":
                return error
            raise error from None
        except Exception as exc:
            raise _transport_error(exc) from None
        log.info("step %s: accepted by Twilio", message.step_id)
        return Receipt(provider_id=created.sid, detail=f"accepted by Twilio ({created.status})")

    def _rest_error(self, exc: Any, headers: dict[str, str], message: Message) -> ChannelError:
        """Map Twilio's status and error code to an outcome."""
        status, code = int(exc.status), exc.code
        text = f"Twilio {status} error {code}: {scrub(str(exc.msg), message)}"
        if status == 401 or code == 20003:
            return ChannelError("paused", f"{text} (check account_sid and the secret '{SECRET}')")
        if code == 21610:
            return ChannelError("failed", text + " (the recipient replied STOP)", opted_out=True)
        retry_after = retry_after_seconds(headers.get("retry-after"), self.wall)
        if status == 429 or code == 20429:
            return ChannelError("retry", text, retry_after=retry_after or DEFAULT_WAIT)
        if status == 503 and retry_after:
            return ChannelError("retry", text, retry_after=retry_after)
        if 400 <= status < 500:
            return ChannelError("failed", text)
        return ChannelError("uncertain", text + "; the SMS may have been sent, not re-sent "
                            "automatically")

    def _client(self) -> Any:
        """A Twilio client whose every request goes to ``api_base``."""
        from twilio.rest import Client

        try:
            token = self.context.secret(SECRET)
        except SecretMissing as exc:
            raise ChannelError("held", str(exc), hold="secret") from None
        client = Client(self.options.account_sid, token,
                        http_client=_http_client(self.options.timeout))
        client.edge = client.region = None  # TWILIO_EDGE/REGION must not move api_base
        client.api.base_url = self.options.api_base
        return client


@dataclass(frozen=True)
class InboundSms:
    """A text message to the practice's number: who sent it and what it means, never its body
    (``kind``: ``stop`` for STOP/UNSUBSCRIBE…, ``start`` for START/UNSTOP, else ``reply``)."""

    sid: str
    sender: str
    kind: str
    at: datetime | None


STOP_WORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT")
START_WORDS = ("START", "UNSTOP", "YES")
UNDELIVERED = ("failed", "undelivered", "canceled")


def body_marker(text: str) -> str:
    """``sms:`` and the first 32 hex digits of the text's SHA-256 (the text is never kept)."""
    return "sms:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _meaning(body: str) -> str:
    word = re.sub(r"[^A-Z]", "", (body or "").strip().upper())
    return "stop" if word in STOP_WORDS else "start" if word in START_WORDS else "reply"


class TwilioInbound:
    """Reading back from Twilio's Messages list (polling; no public webhook needed)."""

    def __init__(self, channel: "TwilioSmsChannel") -> None:
        self.channel = channel

    def inbound(self, since: datetime) -> list[InboundSms]:
        """Messages to the practice's numbers sent after ``since``, oldest first; raises
        ChannelError.  The numbers: ``from_number``, or those of the Messaging Service."""
        found = [m for number in self._numbers() for m in self._list(to=number, date_sent_after=since)]
        items = [InboundSms(m.sid, m.from_ or "", _meaning(m.body or ""), m.date_sent) for m in found
                 if (m.direction or "").startswith("inbound")]
        return sorted(items, key=lambda m: (m.at or since, m.sid))

    def settle(self, to: str, claimed_at: datetime, marker: str | None = None,
               window: timedelta = timedelta(minutes=15)) -> tuple[str, str] | None:
        """An ``uncertain`` step's SMS looked up by its marker (the digest of its text, kept from
        the claim) among the texts from our number to the client's around the hand-off:
        ("sent", SID) when Twilio has exactly that one, ("failed", why) when Twilio says it was
        not delivered, None when Twilio does not tell (never a guess).  A step claimed before
        markers were kept (``marker`` None) is matched by numbers and time alone."""
        sender = self.channel.options.from_number
        found = [m for m in self._list(to=_e164(to), date_sent_after=claimed_at - timedelta(minutes=1),
                                       date_sent_before=claimed_at + window)
                 if (m.direction or "").startswith("outbound") and (not sender or m.from_ == sender)
                 and m.date_sent is not None and claimed_at - timedelta(minutes=1) <= m.date_sent <= claimed_at + window
                 and (not marker or body_marker(m.body or "") == marker)]
        if len(found) != 1:
            return None
        m = found[0]
        if m.status in UNDELIVERED:
            return "failed", f"Twilio says the SMS was not delivered ({m.status}, error {m.error_code})"
        return "sent", str(m.sid)

    def _numbers(self) -> list[str]:
        """The practice's number, or every number of its Messaging Service."""
        options = self.channel.options
        if options.from_number:
            return [options.from_number]
        found = self._read(lambda client: client.messaging.v1.services(options.messaging_service_sid)
                           .phone_numbers.list(limit=100), "the Messaging Service's numbers")
        return [n.phone_number for n in found if n.phone_number]

    def _list(self, **filters: Any) -> list[Any]:
        return self._read(lambda client: client.messages.list(limit=200, **filters), "messages")

    def _read(self, call: Callable[[Any], Any], what: str) -> list[Any]:
        """One list read through the real client, every domain pointed at ``api_base``."""
        try:
            from twilio.base.exceptions import TwilioRestException

            client = self.channel._client()
        except ImportError:
            raise ChannelError("held", "the twilio library cannot be imported", hold="missing_library") from None
        client.http_client = _http_client(self.channel.options.timeout, quiet=True)
        client.messaging.base_url = self.channel.options.api_base
        try:
            return list(call(client))
        except TwilioRestException as exc:
            raise ChannelError("retry", f"Twilio {exc.status} error {exc.code} listing {what}") from None
        except Exception as exc:
            raise ChannelError("retry", f"cannot list Twilio {what} ({type(exc).__name__})") from None


LOOKUP_LOG = logging.getLogger(__name__ + ".lookup")
LOOKUP_LOG.setLevel(logging.WARNING)   # the library logs a list's query (phone numbers) at INFO


def _http_client(timeout: float, *, quiet: bool = False) -> Any:
    """The library's own HTTP client, remembering the last response's headers
    (TwilioRestException does not carry them; 429/503 need Retry-After).  ``quiet``: for
    list reads, whose query parameters (numbers) the library would log."""
    from twilio.http.http_client import TwilioHttpClient

    class HeaderKeepingClient(TwilioHttpClient):
        last_headers: dict[str, str] = {}

        def request(self, *args: Any, **kwargs: Any) -> Any:
            self.last_headers = {}
            response = super().request(*args, **kwargs)
            self.last_headers = {k.lower(): v for k, v in (response.headers or {}).items()}
            return response

    return HeaderKeepingClient(timeout=timeout, logger=LOOKUP_LOG if quiet else logging.getLogger(__name__ + ".http"))


def _transport_error(exc: Exception) -> ChannelError:
    """Never connected (refused, DNS, TLS, connect timeout) → retry; anything after
    the request was written → uncertain."""
    import requests

    kind = type(exc).__name__
    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)) \
            or (isinstance(exc, requests.exceptions.ConnectionError) and _never_connected(exc)):
        return ChannelError("retry", f"cannot reach Twilio ({kind}); nothing was sent")
    return ChannelError("uncertain", f"no answer from Twilio after the request was sent "
                        f"({kind}); the SMS may have been sent, not re-sent automatically")


def _never_connected(exc: BaseException) -> bool:
    """True when the cause chain shows the TCP connection was never established."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (NewConnectionError, ConnectTimeoutError, ConnectionRefusedError)):
            return True
        if isinstance(item, BaseException):
            todo += [*item.args, item.__cause__, item.__context__, getattr(item, "reason", None)]
    return False
