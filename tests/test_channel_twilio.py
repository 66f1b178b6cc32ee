"""TwilioSmsChannel through the real ``twilio`` client against a loopback fake."""

from __future__ import annotations

import base64
import logging
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.channels.base import ChannelContext, Message
from connectors.channels.twilio_sms import TwilioOptions, TwilioSmsChannel, sms_problems
from daemon.clock import FixedClock
from daemon.config.fields import Problems, build
from daemon.errors import ChannelError, SecretMissing
from daemon.secrets import places
from tests.fakes.twilio_server import (
    FakeTwilio,
    created,
    error,
    hang,
    invalid_number,
    opted_out,
    server_error,
    too_many_requests,
)

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-test-token"
FROM = "+12025550123"
PHONE = "+14155552671"           # America/Los_Angeles
T0 = datetime(2026, 3, 2, 18, 0, tzinfo=timezone.utc)   # 10:00 in Los Angeles
BODY = "Hi Jordan, this is Riverside Office. Call 555-0100 to find a new time. Reply STOP to opt out."


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def server():
    with FakeTwilio(SID) as fake:
        yield fake


def make_context(tmp_path: Path, clock, secret=lambda name: TOKEN) -> ChannelContext:
    return ChannelContext(base_dir=tmp_path, state_dir=tmp_path, timezone=ZoneInfo("America/New_York"),
                          clock=clock, secret=secret, practice_name="Riverside Office",
                          therapist_name="Ana Ruiz", therapist_email="ana@riverside.example")


def make_message(text: str = BODY, to: str = PHONE) -> Message:
    return Message(step_id="step-9", sequence_id="seq-3", audience="client", to_address=to,
                   to_name="Jordan Quillfeather", subject="", text=text)


@pytest.fixture
def make_channel(tmp_path, clock, server):
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    def build_channel(secret=lambda name: TOKEN, **overrides) -> TwilioSmsChannel:
        fields = {"account_sid": SID, "from_number": FROM, "api_base": server.url, "timeout": 0.5}
        options = TwilioOptions(**{**fields, **overrides})
        channel = TwilioSmsChannel(options, make_context(tmp_path, clock, secret), sleep=sleep)
        channel.slept = slept  # type: ignore[attr-defined]
        return channel

    return build_channel


def assert_private(text: str) -> None:
    digits = PHONE.lstrip("+")
    for secret in (PHONE, digits, digits[1:], "415 555", "Jordan", "Quillfeather", "find a new time"):
        assert secret.lower() not in text.lower(), secret


def deliver_error(channel: TwilioSmsChannel, message: Message | None = None) -> ChannelError:
    with pytest.raises(ChannelError) as info:
        channel.send(message or make_message())
    assert_private(str(info.value))
    return info.value


def test_201_is_sent_with_the_sid(server, make_channel):
    server.script(created("SM" + "a" * 32))
    receipt = make_channel().send(make_message())
    assert receipt.provider_id == "SM" + "a" * 32
    (request,) = server.requests
    assert request.form() == {"To": PHONE, "From": FROM, "Body": BODY}
    expected = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"


def test_messaging_service_instead_of_a_number(server, make_channel):
    service = "MG" + "1" * 32
    make_channel(from_number="", messaging_service_sid=service).send(make_message())
    form = server.requests[0].form()
    assert form["MessagingServiceSid"] == service and "From" not in form


def test_21211_invalid_number_fails(server, make_channel):
    server.script(invalid_number(PHONE))
    err = deliver_error(make_channel())
    assert err.outcome == "failed" and not err.opted_out
    assert "21211" in err.reason and "not a valid phone number" in err.reason
    assert len(server.requests) == 1


def test_21610_stop_fails_and_marks_opted_out(server, make_channel):
    server.script(opted_out(PHONE))
    err = deliver_error(make_channel())
    assert err.outcome == "failed" and err.opted_out
    assert "21610" in err.reason
    assert len(server.requests) == 1


def test_401_pauses(server, make_channel):
    server.script(error(401, 20003, "Authenticate"))
    err = deliver_error(make_channel())
    assert err.outcome == "paused" and "twilio_auth_token" in err.reason


def test_429_waits_then_sends_once(server, make_channel):
    server.script(too_many_requests(retry_after=2), created("SM" + "b" * 32))
    channel = make_channel()
    assert channel.send(make_message()).provider_id == "SM" + "b" * 32
    assert len(server.requests) == 2
    assert len(channel.slept) == 1 and 2 <= channel.slept[0] <= 2.5


def test_429_is_retried_exactly_once_then_retry(server, make_channel):
    server.script(*[too_many_requests(retry_after=1)] * 10)
    channel = make_channel()
    err = deliver_error(channel)
    assert err.outcome == "retry" and err.retry_after == pytest.approx(1)
    assert len(server.requests) == 2 and len(channel.slept) == 1


def test_429_without_a_short_wait_goes_back_to_the_engine(server, make_channel):
    server.script(too_many_requests())
    channel = make_channel()
    err = deliver_error(channel)
    assert err.outcome == "retry" and err.retry_after == pytest.approx(60)
    assert len(server.requests) == 1 and channel.slept == []


def test_500_is_uncertain_and_never_retried(server, make_channel):
    server.script(server_error())
    err = deliver_error(make_channel())
    assert err.outcome == "uncertain"
    assert len(server.requests) == 1


def test_timeout_after_sending_is_uncertain(server, make_channel):
    server.script(hang())
    err = deliver_error(make_channel())
    assert err.outcome == "uncertain"
    assert len(server.requests) == 1 and server.requests[0].form()["Body"] == BODY


def test_connection_refused_is_retry(tmp_path, clock):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = TwilioOptions(account_sid=SID, from_number=FROM, api_base=f"http://127.0.0.1:{port}",
                            timeout=0.5)
    err = deliver_error(TwilioSmsChannel(options, make_context(tmp_path, clock)))
    assert err.outcome == "retry"


@pytest.mark.parametrize("text", ["x" * 161, "Hi Jordan – call us", "Hi {name}" + "€" * 76])
def test_unsendable_text_fails_before_sending(server, make_channel, text):
    err = deliver_error(make_channel(), make_message(text=text))
    assert err.outcome == "failed" and "SMS not sendable" in err.reason
    assert server.requests == []


def test_invalid_recipient_number_fails_before_sending(server, make_channel):
    err = deliver_error(make_channel(), make_message(to="+1555123"))
    assert err.outcome == "failed"
    assert server.requests == []


def test_outside_the_recipients_daytime_is_retry_until_08(server, make_channel, clock):
    clock.set(datetime(2026, 3, 3, 5, 0, tzinfo=timezone.utc))  # 21:00 in Los Angeles
    err = deliver_error(make_channel())
    assert err.outcome == "retry" and err.retry_after == pytest.approx(11 * 3600)
    assert server.requests == []


def test_missing_token_is_named_by_check_and_holds_the_step(server, make_channel):
    def missing(name: str) -> str:
        raise SecretMissing(name, places(name))

    channel = make_channel(secret=missing)
    (problem,) = channel.check()
    assert "twilio_auth_token" in problem and "WELCOMEBACK_TWILIO_AUTH_TOKEN" in problem
    err = deliver_error(channel)
    assert (err.outcome, err.hold) == ("held", "secret")
    assert server.requests == []


def test_logs_carry_no_phone_or_body(server, make_channel, caplog):
    caplog.set_level(logging.DEBUG)
    server.script(invalid_number(PHONE), too_many_requests(1), created(), server_error())
    channel = make_channel()
    for _ in range(3):
        try:
            channel.send(make_message())
        except ChannelError:
            pass
    assert len(server.requests) == 4
    assert any("step-9" in r.getMessage() for r in caplog.records)
    assert_private(caplog.text)


def test_sms_problems():
    assert sms_problems(BODY) == []
    assert sms_problems("a" * 160) == []
    assert any("161" in p for p in sms_problems("a" * 161))
    assert any("162 GSM-7 characters" in p for p in sms_problems("[" * 81))
    (problem,) = sms_problems("See you ’soon’")
    assert "U+2019" in problem
    assert sms_problems("   ") == ["the SMS text is empty"]


@pytest.mark.parametrize("data, message", [
    ({"account_sid": SID}, "exactly one"),
    ({"account_sid": SID, "from_number": FROM, "messaging_service_sid": "MG" + "1" * 32}, "exactly one"),
    ({"account_sid": SID, "from_number": "555-0100"}, "E.164"),
    ({"account_sid": "nope", "from_number": FROM}, "SID"),
    ({"account_sid": SID, "from_number": FROM, "api_base": "http://api.twilio.com"}, "https"),
])
def test_options_are_validated(data, message):
    problems = Problems()
    assert build(TwilioOptions, data, "channels.phone", problems) is None
    assert any(message in p for p in problems.items), problems.items


def test_options_normalise_the_number():
    problems = Problems()
    opts = build(TwilioOptions, {"account_sid": SID, "from_number": "+1 (202) 555-0123"}, "x", problems)
    assert problems.items == [] and opts.from_number == FROM
