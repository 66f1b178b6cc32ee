"""SmtpChannel through the real ``smtplib`` against a real aiosmtpd server on loopback."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from connectors.channels.base import ChannelContext, Message
from connectors.channels.mime import build_email
from connectors.channels.smtp import SmtpChannel, SmtpOptions
from daemon.clock import FixedClock
from daemon.config.fields import Problems, build
from daemon.errors import ChannelError, SecretMissing
from daemon.secrets import places
from tests.fakes.smtp import LoopbackController

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=timezone.utc)
RECIPIENT = "jordan.client@mail.example"
NAME = "Jordan Quillfeather"
BODY = "Hi Jordan, we missed you. Reply any time to find a new time. Grüße"


class Recorder:
    """Accepts everything and keeps the envelopes; ``rcpt``/``data`` script replies."""

    def __init__(self, rcpt: str | None = None, data: str | None = None) -> None:
        self.envelopes: list = []
        self.rcpt_reply = rcpt
        self.data_reply = data

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return self.data_reply or "250 2.0.0 Ok: queued as 4XYZ"


class DropAfterData(Recorder):
    """Reads the whole message, then drops the connection without a final reply."""

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        server.transport.abort()
        return "250 never seen"


class DropAtRcpt(Recorder):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        server.transport.abort()
        return "250 never seen"


class HangAfterData(Recorder):
    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        await asyncio.Event().wait()  # cancelled when the controller stops


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"ana" \
        and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("pki")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    return folder / "ca.pem", server_ctx


def serve(handler, **kwargs) -> LoopbackController:
    controller = LoopbackController(handler, hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    return controller


@pytest.fixture
def running():
    started: list[LoopbackController] = []

    def start(handler, **kwargs) -> LoopbackController:
        started.append(serve(handler, **kwargs))
        return started[-1]

    yield start
    for controller in started:
        controller.stop()


def make_context(tmp_path: Path, secret=lambda name: "s3cret") -> ChannelContext:
    return ChannelContext(base_dir=tmp_path, state_dir=tmp_path, timezone=ZoneInfo("America/New_York"),
                          clock=FixedClock(T0), secret=secret, practice_name="Riverside Office",
                          therapist_name="Ana Ruiz", therapist_email="ana@riverside.example",
                          sender="office@riverside.example")


def make_message(html: str | None = "<p>Hi Jordan</p>") -> Message:
    return Message(step_id="step-42", sequence_id="seq-7", audience="client", to_address=RECIPIENT,
                   to_name=NAME, subject="Checking in", text=BODY, html=html,
                   message_id="<step-42@riverside.example>", reply_to="ana@riverside.example")


def channel_for(controller, tmp_path, security="none", **kw) -> SmtpChannel:
    options = SmtpOptions(host="127.0.0.1", port=controller.port, security=security, timeout=2.0, **kw)
    return SmtpChannel(options, make_context(tmp_path, kw.pop("secret", lambda n: "s3cret")))


def assert_private(text: str) -> None:
    for secret in (RECIPIENT, NAME, "Jordan", "Quillfeather", "we missed you"):
        assert secret.lower() not in text.lower()


def deliver_error(channel: SmtpChannel) -> ChannelError:
    with pytest.raises(ChannelError) as info:
        channel.send(make_message())
    assert_private(str(info.value))
    return info.value


def received(handler) -> email.message.EmailMessage:
    (envelope,) = handler.envelopes
    return email.message_from_bytes(envelope.content, policy=email.policy.default)


def test_plain_to_loopback_delivers_the_deterministic_message(running, tmp_path):
    handler = Recorder()
    receipt = channel_for(running(handler), tmp_path).send(make_message())
    mail = received(handler)
    assert receipt.provider_id == "<step-42@riverside.example>"
    assert mail["Message-ID"] == "<step-42@riverside.example>"
    assert mail["Date"] == "Mon, 02 Mar 2026 09:00:00 -0500"
    assert mail["Reply-To"] == "ana@riverside.example"
    assert mail["From"] == "Riverside Office <office@riverside.example>"
    assert mail.get_body(("plain",)).get_content().strip() == BODY
    assert mail.get_body(("html",)).get_content().strip() == "<p>Hi Jordan</p>"
    assert handler.envelopes[0].rcpt_tos == [RECIPIENT]
    assert handler.envelopes[0].mail_from == "office@riverside.example"


@pytest.mark.parametrize("address", ["jordan@home@example.org", "jordan@.example.org"])
def test_an_address_the_email_package_cannot_parse_fails_plainly_and_nothing_is_sent(running, tmp_path, address):
    """A malformed address (say an attendee's, as a calendar gave it) is a permanent failure
    naming the recipient's address, never an unexpected error (the step would be 'uncertain')."""
    import dataclasses

    handler = Recorder()
    with pytest.raises(ChannelError) as caught:
        channel_for(running(handler), tmp_path).send(dataclasses.replace(make_message(), to_address=address))
    assert caught.value.outcome == "failed" and "cannot be encoded as email" in caught.value.reason
    assert handler.envelopes == []
    assert_private(caught.value.reason)


def test_build_email_is_7bit_clean_and_text_only_without_html(tmp_path):
    mail = build_email(make_message(html=None), make_context(tmp_path))
    assert not mail.is_multipart() and mail.get_content().strip() == BODY
    assert mail.as_bytes().isascii()


def test_starttls_with_auth_and_a_trusted_ca(running, tmp_path, pki):
    ca_file, server_ctx = pki
    handler = Recorder()
    controller = running(handler, tls_context=server_ctx, require_starttls=True,
                         authenticator=authenticator, auth_required=True)
    channel = channel_for(controller, tmp_path, "starttls", username="ana", ca_file=str(ca_file))
    assert channel.check() == []
    channel.send(make_message())
    assert received(handler)["Message-ID"] == "<step-42@riverside.example>"


def test_implicit_tls(running, tmp_path, pki):
    ca_file, server_ctx = pki
    handler = Recorder()
    controller = running(handler, ssl_context=server_ctx)
    channel_for(controller, tmp_path, "tls", ca_file=str(ca_file)).send(make_message())
    assert len(handler.envelopes) == 1


def test_untrusted_certificate_is_retry_and_nothing_sent(running, tmp_path, pki):
    _, server_ctx = pki
    handler = Recorder()
    controller = running(handler, tls_context=server_ctx, require_starttls=True)
    err = deliver_error(channel_for(controller, tmp_path, "starttls"))
    assert err.outcome == "retry" and "nothing was sent" in err.reason
    assert handler.envelopes == []


def test_wrong_password_pauses(running, tmp_path, pki):
    ca_file, server_ctx = pki
    controller = running(Recorder(), tls_context=server_ctx, require_starttls=True,
                         authenticator=authenticator, auth_required=True)
    channel = SmtpChannel(SmtpOptions(host="127.0.0.1", port=controller.port, username="ana",
                                      ca_file=str(ca_file), timeout=2.0),
                          make_context(tmp_path, secret=lambda n: "wrong"))
    err = deliver_error(channel)
    assert err.outcome == "paused" and "smtp_password" in err.reason


def test_server_without_starttls_pauses_rather_than_send_in_clear(running, tmp_path):
    handler = Recorder()
    err = deliver_error(channel_for(running(handler), tmp_path, "starttls"))
    assert err.outcome == "paused"
    assert handler.envelopes == []


@pytest.mark.parametrize("handler, outcome", [
    (Recorder(rcpt=f"450 4.2.1 <{RECIPIENT}>: mailbox busy"), "retry"),
    (Recorder(data="451 4.3.0 Try again later"), "retry"),
    (Recorder(rcpt=f"550 5.1.1 <{RECIPIENT}>: Recipient address rejected"), "failed"),
    (Recorder(data="554 5.7.1 Message rejected as spam"), "failed"),
])
def test_reply_codes(running, tmp_path, handler, outcome):
    err = deliver_error(channel_for(running(handler), tmp_path))
    assert err.outcome == outcome
    assert err.reason.startswith("SMTP ")


def test_connection_dropped_after_data_is_uncertain(running, tmp_path):
    handler = DropAfterData()
    err = deliver_error(channel_for(running(handler), tmp_path))
    assert err.outcome == "uncertain"
    assert len(handler.envelopes) == 1  # the server had the whole message


def test_connection_dropped_before_data_is_retry(running, tmp_path):
    handler = DropAtRcpt()
    err = deliver_error(channel_for(running(handler), tmp_path))
    assert err.outcome == "retry" and "before the message was sent" in err.reason
    assert handler.envelopes == []


def test_timeout_after_data_is_uncertain(running, tmp_path):
    handler = HangAfterData()
    controller = running(handler)
    channel = SmtpChannel(SmtpOptions(host="127.0.0.1", port=controller.port, security="none",
                                      timeout=0.3), make_context(tmp_path))
    assert deliver_error(channel).outcome == "uncertain"


def test_connection_refused_is_retry(tmp_path):
    controller = serve(Recorder())
    port = controller.port
    controller.stop()
    channel = SmtpChannel(SmtpOptions(host="127.0.0.1", port=port, security="none", timeout=1.0),
                          make_context(tmp_path))
    assert deliver_error(channel).outcome == "retry"


def test_logs_carry_no_client_data(running, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    channel_for(running(Recorder()), tmp_path).send(make_message())
    with pytest.raises(ChannelError):
        channel_for(running(DropAfterData()), tmp_path).send(make_message())
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("connectors", "smtplib"))]
    assert ours and all("step-42" in line for line in ours)
    assert_private("\n".join(ours))


def test_check_names_the_missing_secret_and_the_places(tmp_path):
    def missing(name: str) -> str:
        raise SecretMissing(name, places(name))

    channel = SmtpChannel(SmtpOptions(host="smtp.example.com", username="ana", ca_file="nope.pem"),
                          make_context(tmp_path, secret=missing))
    problems = channel.check()
    assert any("smtp_password" in p and "WELCOMEBACK_SMTP_PASSWORD" in p for p in problems)
    assert any("nope.pem" in p for p in problems)


@pytest.mark.parametrize("data, message", [
    ({"host": "smtp.example.com", "security": "none"}, "only to localhost"),
    ({"host": "smtp.example.com", "security": "ssl"}, "not one of"),
    ({"host": "smtp.example.com", "timeout": 0}, "timeout"),
    ({}, "host"),
])
def test_options_are_validated(data, message):
    problems = Problems()
    assert build(SmtpOptions, data, "channels.email", problems) is None
    assert any(message in p for p in problems.items), problems.items


def test_none_is_fine_to_localhost():
    problems = Problems()
    opts = build(SmtpOptions, {"host": "localhost", "port": 25, "security": "none"}, "x", problems)
    assert problems.items == [] and opts.port == 25
