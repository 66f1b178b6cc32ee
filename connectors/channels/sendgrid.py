"""Email through SendGrid's v3 mail/send, with the official ``sendgrid`` client.

SendGrid does not deduplicate: a 5xx or a timeout after the request was written
may still have queued the mail, so it is ``uncertain`` and never re-sent here.
Only answers that say "nothing was queued" (429, 503 with a wait) are retried:
once, after the wait they name, and only when that wait is short.  The wait is
measured on the wall clock (``X-RateLimit-Reset`` is a real Unix time), even when
``--now`` moves the cycle's clock.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from email.message import Message as HeaderMap
from typing import Any, Callable, Mapping

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
SECRET = "sendgrid_api_key"
STEP_ARG = "welcomeback_step"
MAX_ATTEMPTS = 2          # one send plus at most one wait for a rate limit
MAX_INLINE_WAIT = 30.0    # longer waits go back to the engine as ``retry``
DEFAULT_WAIT = 60.0       # when a 429/503 names no reset time


@dataclass
class SendGridOptions:
    api_base: str = option("https://api.sendgrid.com", parse=parse_api_base,
                           doc="SendGrid API base URL (a proxy, the EU endpoint "
                               "https://api.eu.sendgrid.com, or a test server).")
    timeout: float = option(30.0, parse=parse_seconds,
                            doc="Seconds to wait for SendGrid to answer one request.")


class SendGridChannel(Channel):
    """Multipart text + HTML email via SendGrid; the step id rides in ``custom_args``."""

    backend = "sendgrid"
    medium = "email"
    idempotent = False
    Options = SendGridOptions

    def __init__(self, options: SendGridOptions, context: ChannelContext, *,
                 sleep: Callable[[float], None] = time.sleep,
                 wall: Callable[[], float] = time.time) -> None:
        super().__init__(options, context)
        self.sleep = sleep
        self.wall = wall   # the real clock: a provider's reset time is a wall-clock fact
        _quiet_library_logs()

    def check(self) -> list[str]:
        """A missing API key or sender address; sends nothing."""
        problems = []
        try:
            self.context.secret(SECRET)
        except SecretMissing as exc:
            problems.append(f"[channels.email] backend sendgrid: {exc}")
        if not self.context.sender:
            problems.append("[channels.email] backend sendgrid: no From address (from = ...)")
        return problems

    def deliver(self, message: Message) -> Receipt:
        """POST mail/send; 202 → Receipt(X-Message-Id).  Raises ChannelError."""
        client = self._client()
        try:
            body = self._mail(message).get()
        except (ValueError, TypeError) as exc:   # before any request: nothing was sent
            raise ChannelError("failed", f"the message cannot be built for SendGrid "
                               f"({type(exc).__name__})") from None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            wait = self._attempt(client, body, message)
            if isinstance(wait, Receipt):
                return wait
            if attempt == MAX_ATTEMPTS or wait.retry_after is None \
                    or wait.retry_after > MAX_INLINE_WAIT:
                raise wait
            log.info("step %s: SendGrid asked to wait %.1fs (attempt %d)",
                     message.step_id, wait.retry_after, attempt)
            self.sleep(wait.retry_after + random.uniform(0.05, 0.5))
        raise AssertionError("unreachable")

    def _attempt(self, client: Any, body: dict, message: Message) -> Receipt | ChannelError:
        """One POST.  Returns the receipt or a ``retry`` error worth waiting for; raises
        every other ChannelError."""
        from python_http_client import exceptions as http_errors

        try:
            response = client.send(body)
        except http_errors.HTTPError as exc:
            error = self._http_error(exc.status_code, exc.body, exc.headers, message)
            if error.outcome == "retry":
                return error
            raise error from None
        except Exception as exc:
            raise _transport_error(exc) from None
        if response.status_code not in (200, 202):
            raise ChannelError("uncertain", f"SendGrid answered {response.status_code}, "
                               "expected 202")
        provider_id = _header(response.headers, "X-Message-Id")
        log.info("step %s: accepted by SendGrid", message.step_id)
        return Receipt(provider_id=provider_id, detail="accepted by SendGrid (202)")

    def reader(self) -> "SendGridActivity":
        """Settling uncertain steps from the Email Activity API (daemon.engine.hearing)."""
        return SendGridActivity(self)

    def _client(self) -> Any:
        """A SendGrid client for ``api_base``; without a key the step is held (nothing sent)."""
        from sendgrid import SendGridAPIClient

        try:
            key = self.context.secret(SECRET)
        except SecretMissing as exc:
            raise ChannelError("held", str(exc), hold="secret") from None
        client = SendGridAPIClient(api_key=key, host=self.options.api_base)
        client.client.timeout = self.options.timeout
        return client

    def _mail(self, message: Message) -> Any:
        """The v3 request body: From the practice, Reply-To the therapist, no tracking."""
        from sendgrid.helpers.mail import (
            ClickTracking,
            CustomArg,
            From,
            Mail,
            OpenTracking,
            ReplyTo,
            To,
            TrackingSettings,
        )

        sender_name = self.context.sender_name or self.context.practice_name
        mail = Mail(from_email=From(self.context.sender, sender_name or None),
                    to_emails=To(message.to_address, message.to_name or None),
                    subject=message.subject, plain_text_content=message.text,
                    html_content=message.html or None)
        if message.reply_to:
            mail.reply_to = ReplyTo(message.reply_to)
        mail.custom_arg = CustomArg(STEP_ARG, message.step_id)
        # No open pixels or rewritten links in a clinical follow-up.
        mail.tracking_settings = TrackingSettings(click_tracking=ClickTracking(False, False),
                                                  open_tracking=OpenTracking(False))
        return mail

    def _http_error(self, status: int, body: bytes, headers: Any,
                    message: Message) -> ChannelError:
        """Map an HTTP error answer to an outcome."""
        text = f"SendGrid {status}: {_error_text(body, message)}"
        if status == 401:
            return ChannelError("paused", text + " (check the API key in secret "
                                f"'{SECRET}')")
        if status == 429 or (status == 503 and _header(headers, "Retry-After")):
            return ChannelError("retry", text, retry_after=self._wait(headers))
        if 400 <= status < 500:
            return ChannelError("failed", text)
        return ChannelError("uncertain", text + "; the mail may have been queued, "
                            "not re-sent automatically")

    def _wait(self, headers: Any) -> float:
        """Seconds until the rate limit resets (X-RateLimit-Reset is a Unix time, compared
        with the wall clock, never with the cycle's clock)."""
        reset = _header(headers, "X-RateLimit-Reset")
        now = self.wall()
        try:
            if reset:
                return max(1.0, float(reset) - now)
            retry_after = retry_after_seconds(_header(headers, "Retry-After"), self.wall)
            if retry_after is not None:
                return retry_after
        except ValueError:
            pass
        return DEFAULT_WAIT


class SendGridActivity:
    """The Email Activity API (an add-on of some SendGrid plans): where the account has it, an
    ``uncertain`` step is looked up by its marker (the step id in ``custom_args``)."""

    def __init__(self, channel: SendGridChannel) -> None:
        self.channel = channel

    def settle(self, step_id: str) -> tuple[str, str] | None:
        """("sent", msg_id) when SendGrid has the message, ("failed", why) when it says it was
        not delivered, None when it cannot tell (no add-on, not found, unreadable): the step is
        then left to the therapist, never re-sent on a guess."""
        try:
            from python_http_client import exceptions as http_errors
        except ImportError:
            return None
        query = f"unique_args['{STEP_ARG}']=\"{step_id}\""
        try:
            response = self.channel._client().client.messages.get(query_params={"query": query, "limit": 10})
            found = json.loads(response.body or b"{}").get("messages") or []
        except http_errors.HTTPError as exc:
            log.debug("step %s: Email Activity not available (%s)", step_id, exc.status_code)
            return None
        except Exception as exc:
            log.debug("step %s: Email Activity not readable (%s)", step_id, type(exc).__name__)
            return None
        if len(found) != 1:
            return None
        status = str(found[0].get("status") or "")
        if status == "delivered":
            return "sent", str(found[0].get("msg_id") or "")
        if status == "not_delivered":
            return "failed", "SendGrid says the email was not delivered"
        return None


def _transport_error(exc: Exception) -> ChannelError:
    """urllib wraps failures while connecting or writing in URLError: nothing was
    accepted.  Anything after the request was written (timeout, dropped
    connection) leaves the outcome open."""
    from urllib.error import URLError

    kind = type(exc).__name__
    if isinstance(exc, URLError):
        reason = type(exc.reason).__name__ if not isinstance(exc.reason, str) else "URLError"
        return ChannelError("retry", f"cannot reach SendGrid ({reason}); nothing was sent")
    return ChannelError("uncertain", f"no answer from SendGrid after the request was sent "
                        f"({kind}); the mail may have been queued, not re-sent automatically")


def _error_text(body: bytes | str | None, message: Message) -> str:
    """SendGrid's error messages (``errors[].message``), scrubbed of recipient details."""
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        errors = json.loads(raw).get("errors") or []
        texts = [str(e.get("message", "")) for e in errors if isinstance(e, dict)]
        raw = "; ".join(t for t in texts if t) or raw
    except (ValueError, AttributeError):
        pass
    return scrub(raw, message) or "no error text"


def _header(headers: Mapping[str, str] | HeaderMap | None, name: str) -> str | None:
    """Case-insensitive header lookup on dicts and http.client messages."""
    if headers is None:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, Mapping):
        lowered = {k.lower(): v for k, v in headers.items()}
        value = lowered.get(name.lower())
    return value


class _DropDebug(logging.Filter):
    """python_http_client logs request payloads (recipient, body) at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


def _quiet_library_logs() -> None:
    logger = logging.getLogger("python_http_client.client")
    if not any(isinstance(f, _DropDebug) for f in logger.filters):
        logger.addFilter(_DropDebug())
