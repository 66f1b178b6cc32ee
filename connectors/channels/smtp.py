"""Email through an SMTP server: STARTTLS or implicit TLS with certificate
verification, optional AUTH, and the connection closed on every path.

Reply codes map to outcomes (4xx ``retry``, 5xx ``failed``).  Once the message
data and its final dot were written, a dropped connection or a timeout leaves
the outcome open: ``uncertain``, never re-sent here.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from typing import Any

from connectors.channels.base import Channel, Message, Receipt
from connectors.channels.mime import (
    Unencodable,
    ascii_address,
    email_bytes,
    fallback_message_id,
    is_loopback,
    parse_seconds,
    scrub,
)
from daemon.config.fields import option
from daemon.errors import ChannelError, SecretMissing

log = logging.getLogger(__name__)
SECRET = "smtp_password"
SECURITY = ("starttls", "tls", "none")


@dataclass
class SmtpOptions:
    host: str = option(doc="SMTP server host name.", example="smtp.example.com")
    port: int = option(587, doc="SMTP port: 587 for starttls, usually 465 for tls.")
    security: str = option("starttls", choices=SECURITY,
                           doc="starttls, tls (implicit TLS) or none (only to localhost).")
    username: str = option("", doc="AUTH user name; the password is the secret smtp_password.")
    timeout: float = option(30.0, parse=parse_seconds, doc="Seconds to wait for the server.")
    ca_file: str = option("", doc="Extra CA bundle (PEM) to trust, relative to the config file.")

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ValueError("host: expected the SMTP server's host name")
        if not 0 < self.port < 65536:
            raise ValueError(f"port: {self.port} is not a TCP port")
        if self.security == "none" and not is_loopback(self.host):
            raise ValueError(f"security = \"none\" is allowed only to localhost, not "
                             f"'{self.host}'; use starttls or tls")


class _Tracking:
    """Remembers whether the message data, with its final dot, was written."""

    data_written = False

    def send(self, s: Any) -> None:
        super().send(s)  # type: ignore[misc]
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.data_written = True


class _SMTP(_Tracking, smtplib.SMTP):
    pass


class _SMTPSSL(_Tracking, smtplib.SMTP_SSL):
    pass


class SmtpChannel(Channel):
    """RFC 5322 email over SMTP with a deterministic Message-ID per step."""

    backend = "smtp"
    medium = "email"
    idempotent = False
    Options = SmtpOptions

    def check(self) -> list[str]:
        """Missing password, From address or CA file; connects to nothing."""
        problems = []
        where = "[channels.email] backend smtp"
        if self.options.username:
            try:
                self.context.secret(SECRET)
            except SecretMissing as exc:
                problems.append(f"{where}: {exc}")
        if not self.context.sender:
            problems.append(f"{where}: no From address (from = ...)")
        if self.options.ca_file and not self._ca_path().is_file():
            problems.append(f"{where}: ca_file '{self.options.ca_file}' not found")
        if self.options.security == "tls" and self.options.port == 587:
            problems.append(f"{where}: port 587 is the STARTTLS port; implicit TLS usually "
                            "listens on 465 (set port or security = \"starttls\")")
        return problems

    def deliver(self, message: Message) -> Receipt:
        """Send one message.  Raises ChannelError with the outcome.

        Everything local is settled before connecting: a message or address that cannot
        be encoded fails (permanent), a missing password holds the step.
        """
        try:
            data = email_bytes(message, self.context, linesep="\r\n")
            envelope = (ascii_address(self.context.sender, "the From address"),
                        ascii_address(message.to_address, "the recipient's address"))
        except Unencodable as exc:
            raise ChannelError("failed", str(exc)) from None
        password = self._password()
        smtp = self._connect()
        done = False
        try:
            self._login(smtp, password)
            reply = self._transmit(smtp, data, envelope, message)
            done = True
        finally:
            _close(smtp, polite=done)
        log.info("step %s: accepted by the SMTP server", message.step_id)
        return Receipt(provider_id=message.message_id or fallback_message_id(message, self.context),
                       detail=reply)

    def _password(self) -> str | None:
        """The AUTH password when a username is set; a missing one holds the step."""
        if not self.options.username:
            return None
        try:
            return self.context.secret(SECRET)
        except SecretMissing as exc:
            raise ChannelError("held", str(exc), hold="secret") from None

    def _connect(self) -> _SMTP | _SMTPSSL:
        """Open the connection and secure it.  Nothing has been sent on failure."""
        opts = self.options
        smtp: _SMTP | _SMTPSSL | None = None
        try:
            if opts.security == "tls":
                smtp = _SMTPSSL(opts.host, opts.port, timeout=opts.timeout,
                                context=self._tls_context())
            else:
                smtp = _SMTP(opts.host, opts.port, timeout=opts.timeout)
            if opts.security == "starttls":
                smtp.ehlo()
                smtp.starttls(context=self._tls_context())
            smtp.ehlo_or_helo_if_needed()
            return smtp
        except smtplib.SMTPNotSupportedError:
            _close(smtp)
            raise ChannelError("paused", f"{opts.host} does not offer STARTTLS; refusing "
                               "to send in the clear") from None
        except (smtplib.SMTPException, OSError) as exc:
            _close(smtp)
            raise ChannelError("retry", f"cannot open a secure SMTP connection to "
                               f"{opts.host}:{opts.port} ({_describe(exc)}); nothing was sent") from None

    def _login(self, smtp: smtplib.SMTP, password: str | None) -> None:
        """AUTH when a username is configured; a refused login pauses the channel."""
        if password is None:
            return
        try:
            smtp.login(self.options.username, password)
        except smtplib.SMTPAuthenticationError as exc:
            raise ChannelError("paused", f"SMTP login refused ({exc.smtp_code}); check the "
                               f"username and the secret '{SECRET}'") from None
        except smtplib.SMTPNotSupportedError:
            raise ChannelError("paused", "the SMTP server offers no AUTH on this connection") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelError("retry", f"SMTP login failed ({_describe(exc)}); nothing was sent") from None

    def _transmit(self, smtp: _SMTP | _SMTPSSL, data: bytes, envelope: tuple[str, str],
                  message: Message) -> str:
        """MAIL, RCPT, DATA; returns the final reply text (scrubbed)."""
        sender, recipient = envelope
        try:
            steps = (("MAIL", lambda: smtp.mail(sender)),
                     ("RCPT", lambda: smtp.rcpt(recipient)),
                     ("DATA", lambda: smtp.data(data)))
            for name, step in steps:
                code, text = step()
                if not 200 <= code < 300:
                    raise _reply_error(name, code, text, message)
            return scrub(f"{code} {_text(text)}", message)
        except smtplib.SMTPResponseException as exc:
            raise _reply_error("DATA", exc.smtp_code, exc.smtp_error, message) from None
        except (smtplib.SMTPException, OSError) as exc:
            if smtp.data_written:
                raise ChannelError("uncertain", f"the SMTP connection ended after the message "
                                   f"was sent ({_describe(exc)}); not re-sent automatically") from None
            raise ChannelError("retry", f"the SMTP connection ended before the message was "
                               f"sent ({_describe(exc)})") from None

    def _tls_context(self) -> ssl.SSLContext:
        """System CAs plus ``ca_file``; verification and host names always checked."""
        context = ssl.create_default_context()
        if self.options.ca_file:
            context.load_verify_locations(cafile=str(self._ca_path()))
        return context

    def _ca_path(self) -> Any:
        from pathlib import Path

        path = Path(self.options.ca_file).expanduser()
        return path if path.is_absolute() else self.context.base_dir / path


def _reply_error(command: str, code: int, text: bytes | str, message: Message) -> ChannelError:
    """4xx: try later; 5xx: permanent; anything else: the server is misbehaving."""
    reason = f"SMTP {command} answered {code} {scrub(_text(text), message)}".strip()
    if 400 <= code < 500:
        return ChannelError("retry", reason)
    if 500 <= code < 600:
        return ChannelError("failed", reason)
    return ChannelError("uncertain" if command == "DATA" else "retry", reason)


def _text(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def _describe(exc: BaseException) -> str:
    """The exception's kind and, for TLS, its short reason: never addresses."""
    detail = getattr(exc, "reason", None) or getattr(exc, "verify_message", None)
    return f"{type(exc).__name__}: {detail}" if isinstance(detail, str) else type(exc).__name__


def _close(smtp: smtplib.SMTP | None, polite: bool = False) -> None:
    """QUIT after a clean exchange, otherwise just drop the socket (a timed-out
    server would make QUIT wait again); never raises."""
    if smtp is None:
        return
    try:
        if polite:
            smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()
