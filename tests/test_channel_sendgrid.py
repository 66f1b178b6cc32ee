"""SendGridChannel through the real ``sendgrid`` client against a loopback fake."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.channels.base import ChannelContext, Message
from connectors.channels.sendgrid import STEP_ARG, SendGridChannel, SendGridOptions
from daemon.clock import FixedClock
from daemon.errors import ChannelError, SecretMissing
from daemon.secrets import places
from tests.fakes.sendgrid_server import (
    FakeSendGrid,
    Reply,
    accepted,
    error,
    hang,
    rate_limited,
)

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=timezone.utc)
RECIPIENT = "jordan.client@mail.example"
NAME = "Jordan Quillfeather"
BODY = "Hi Jordan, we missed you. Reply any time to find a new time."


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def server():
    with FakeSendGrid() as fake:
        yield fake


def make_context(tmp_path: Path, clock: FixedClock, secret=lambda name: "SG.test-key") -> ChannelContext:
    return ChannelContext(base_dir=tmp_path, state_dir=tmp_path, timezone=ZoneInfo("America/New_York"),
                          clock=clock, secret=secret, practice_name="Riverside Office",
                          therapist_name="Ana Ruiz", therapist_email="ana@riverside.example",
                          sender="office@riverside.example")


def make_message(html: str | None = "<p>Hi Jordan, we missed you.</p>") -> Message:
    return Message(step_id="step-42", sequence_id="seq-7", audience="client", to_address=RECIPIENT,
                   to_name=NAME, subject="Checking in", text=BODY, html=html,
                   message_id="<step-42@riverside.example>", reply_to="ana@riverside.example")


@pytest.fixture
def make_channel(tmp_path, clock, server):
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    def build(**kw) -> SendGridChannel:
        options = SendGridOptions(api_base=server.url, timeout=0.5)
        channel = SendGridChannel(options, make_context(tmp_path, clock, **kw), sleep=sleep)
        channel.slept = slept  # type: ignore[attr-defined]
        return channel

    return build


def assert_private(text: str) -> None:
    for secret in (RECIPIENT, NAME, "Jordan", "Quillfeather", BODY, "we missed you"):
        assert secret.lower() not in text.lower()


def deliver_error(channel: SendGridChannel, message: Message | None = None) -> ChannelError:
    with pytest.raises(ChannelError) as info:
        channel.send(message or make_message())
    assert_private(info.value.reason)
    assert_private(str(info.value))
    return info.value


def test_202_is_sent_with_message_id_and_step_in_custom_args(server, make_channel):
    server.script(accepted("sg-abc-123"))
    receipt = make_channel().send(make_message())
    assert receipt.provider_id == "sg-abc-123"
    assert len(server.requests) == 1
    request = server.requests[0]
    assert request.headers["Authorization"] == "Bearer SG.test-key"
    body = request.json()
    assert body["custom_args"] == {STEP_ARG: "step-42"}
    assert body["from"] == {"email": "office@riverside.example", "name": "Riverside Office"}
    assert body["reply_to"] == {"email": "ana@riverside.example"}
    assert body["personalizations"][0]["to"] == [{"email": RECIPIENT, "name": NAME}]
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["content"][0]["value"] == BODY
    assert body["tracking_settings"]["open_tracking"]["enable"] is False


def test_text_only_when_there_is_no_html(server, make_channel):
    make_channel().send(make_message(html=None))
    assert [c["type"] for c in server.requests[0].json()["content"]] == ["text/plain"]


@pytest.mark.parametrize("status", [400, 403, 413])
def test_rejections_fail_without_retry_and_without_recipient(server, make_channel, status):
    server.script(error(status, f"The to address {RECIPIENT} ({NAME}) is invalid", "personalizations"))
    err = deliver_error(make_channel())
    assert err.outcome == "failed"
    assert f"SendGrid {status}" in err.reason and "is invalid" in err.reason
    assert len(server.requests) == 1


def test_401_pauses_the_channel(server, make_channel):
    server.script(error(401, "The provided authorization grant is invalid, expired, or revoked"))
    err = deliver_error(make_channel())
    assert err.outcome == "paused"
    assert "sendgrid_api_key" in err.reason and "authorization grant" in err.reason
    assert len(server.requests) == 1


def test_429_waits_for_the_reset_on_the_wall_clock_then_sends(server, make_channel, clock):
    """The cycle's clock reads T0 (months away from now): the reset is compared with real time."""
    reset = time.time() + 5
    server.script(rate_limited(reset), accepted("sg-after-wait"))
    channel = make_channel()
    receipt = channel.send(make_message())
    assert receipt.provider_id == "sg-after-wait"
    assert len(server.requests) == 2
    assert len(channel.slept) == 1 and 4 <= channel.slept[0] <= 5.5


def test_429_is_retried_exactly_once(server, make_channel):
    server.script(*[rate_limited(time.time() + 2 + 10 * i) for i in range(10)])
    channel = make_channel()
    err = deliver_error(channel)
    assert err.outcome == "retry" and err.retry_after is not None and err.retry_after > 0
    assert len(server.requests) == 2 and len(channel.slept) == 1


def test_429_with_a_long_reset_goes_back_to_the_engine(server, make_channel):
    server.script(rate_limited(time.time() + 3600))
    channel = make_channel()
    err = deliver_error(channel)
    assert err.outcome == "retry" and err.retry_after == pytest.approx(3600, abs=5)
    assert len(server.requests) == 1 and channel.slept == []


def test_503_retry_after_as_an_http_date_is_read_on_the_wall_clock(server, make_channel):
    from email.utils import formatdate

    server.script(error(503, "service unavailable", Retry_After=formatdate(time.time() + 600, usegmt=True)))
    err = deliver_error(make_channel())
    assert err.outcome == "retry" and err.retry_after == pytest.approx(600, abs=5)


def test_500_is_uncertain_and_never_resent(server, make_channel):
    server.script(error(500, f"internal error for {RECIPIENT}"))
    err = deliver_error(make_channel())
    assert err.outcome == "uncertain"
    assert len(server.requests) == 1


def test_503_with_retry_after_is_retry(server, make_channel):
    server.script(*[error(503, "service unavailable", Retry_After="120")] * 3)
    err = deliver_error(make_channel())
    assert err.outcome == "retry" and err.retry_after == pytest.approx(120)
    assert len(server.requests) == 1


def test_503_without_retry_after_is_uncertain(server, make_channel):
    server.script(Reply(503, {"errors": [{"message": "service unavailable"}]}))
    assert deliver_error(make_channel()).outcome == "uncertain"
    assert len(server.requests) == 1


def test_timeout_after_the_body_was_sent_is_uncertain(server, make_channel):
    server.script(hang())
    err = deliver_error(make_channel())
    assert err.outcome == "uncertain"
    assert len(server.requests) == 1
    assert server.requests[0].json()["custom_args"][STEP_ARG] == "step-42"  # body arrived whole


def test_connection_refused_is_retry(tmp_path, clock):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = SendGridChannel(SendGridOptions(api_base=f"http://127.0.0.1:{port}", timeout=0.5),
                              make_context(tmp_path, clock), sleep=lambda s: None)
    assert deliver_error(channel).outcome == "retry"


def missing(name: str) -> str:
    raise SecretMissing(name, places(name))


def test_missing_key_holds_the_step_and_check_names_secret(server, make_channel):
    channel = make_channel(secret=missing)
    problems = channel.check()
    assert len(problems) == 1 and "sendgrid_api_key" in problems[0]
    assert "WELCOMEBACK_SENDGRID_API_KEY" in problems[0]
    err = deliver_error(channel)
    assert (err.outcome, err.hold) == ("held", "secret")
    assert server.requests == []


def test_check_is_clean_with_a_key_and_sends_nothing(server, make_channel):
    assert make_channel().check() == []
    assert server.requests == []


def test_dry_run_sends_nothing(server, make_channel):
    channel = make_channel()
    channel.context = replace(channel.context, dry_run=True)   # contexts are frozen
    assert channel.send(make_message()).provider_id == "dry-run"
    assert server.requests == []


def test_logs_carry_no_client_data(server, make_channel, caplog):
    caplog.set_level(logging.DEBUG)
    server.script(error(400, f"bad address {RECIPIENT}"), rate_limited(time.time() + 1),
                  accepted(), error(500, f"oops {NAME}"))
    channel = make_channel()
    for _ in range(3):
        try:
            channel.send(make_message())
        except ChannelError:
            pass
    assert len(server.requests) == 4
    assert caplog.records, "expected some log lines"
    assert_private(caplog.text)
    assert any("step-42" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("bad", ["ftp://x", "http://api.sendgrid.com", "not a url"])
def test_api_base_must_be_https_except_loopback(bad):
    from daemon.config.fields import Problems, build

    problems = Problems()
    assert build(SendGridOptions, {"api_base": bad}, "channels.email", problems) is None
    assert problems.items and "api_base" in problems.items[0]
