"""Hearing back by text message: Twilio's Messages list read through the real twilio client
against the loopback fake (tests/fakes/twilio_server.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from daemon.store.tables import steps
from tests.conftest import local, make_practice
from tests.fakes.twilio_server import FakeTwilio, hang, message
from tests.stories import jane_no_show

SID = "AC" + "0" * 32
PRACTICE = "+15550109999"
JANE = "+15550100201"


@pytest.fixture
def sms(tmp_path, monkeypatch):
    monkeypatch.setenv("WELCOMEBACK_TWILIO_AUTH_TOKEN", "test-token")
    with FakeTwilio(SID) as twilio:
        p = make_practice(tmp_path / "p")
        text = p.config.read_text().replace(
            'backend = "therapist-email"',
            f'backend = "twilio-sms"\naccount_sid = "{SID}"\nfrom_number = "{PRACTICE}"\n'
            f'api_base = "{twilio.url}"\ntimeout = 5')
        p.config.write_text(text)
        (p.root / "templates").mkdir()
        (p.root / "templates" / "phone_call.txt").write_text(
            "Subject: Hello\n\nHi {{ client_first_name }}, {{ therapist_first_name }} here. Call when you like.\n")
        yield p, twilio


def _text_sent(p, twilio):
    jane_no_show(p)
    p.once(local(2026, 11, 4, 10, 5))
    assert len(twilio.requests) == 1


def test_a_text_reply_stops_the_email(sms, capsys):
    p, twilio = sms
    _text_sent(p, twilio)
    twilio.messages.append(message(JANE, PRACTICE, "Thanks, I'll call you back", local(2026, 11, 9, 18)))
    twilio.messages.append(message("+15550107777", PRACTICE, "Wrong number?", local(2026, 11, 9, 19)))
    p.once(local(2026, 11, 10, 10, 5))
    assert [(s["state"], s["reason"]) for s in p.status(capsys)] == [("sent", None), ("skipped", "replied")]
    assert p.mails_to("jane.doe@example.com") == []
    assert twilio.reads, "the Messages list was read"
    assert "To=%2B15550109999" in twilio.reads[0].path


SERVICE = "MG" + "1" * 32


def test_a_reply_to_a_messaging_service_number_stops_the_email(sms, capsys):
    """Without a from_number, the practice's numbers are its Messaging Service's."""
    p, twilio = sms
    p.config.write_text(p.config.read_text().replace(f'from_number = "{PRACTICE}"',
                                                      f'messaging_service_sid = "{SERVICE}"'))
    twilio.services[SERVICE] = ["+15550108888", PRACTICE]
    _text_sent(p, twilio)
    twilio.messages.append(message(JANE, PRACTICE, "Thanks, I'll call you back", local(2026, 11, 9, 18)))
    p.once(local(2026, 11, 10, 10, 5))
    assert [(s["state"], s["reason"]) for s in p.status(capsys)] == [("sent", None), ("skipped", "replied")]
    assert any(f"/v1/Services/{SERVICE}/PhoneNumbers" in r.path for r in twilio.reads)
    assert any("To=%2B15550109999" in r.path for r in twilio.reads)


def test_stop_keeps_its_opt_out_meaning(sms, capsys):
    p, twilio = sms
    _text_sent(p, twilio)
    twilio.messages.append(message(JANE, PRACTICE, "stop", local(2026, 11, 9, 18)))
    p.once(local(2026, 11, 10, 10, 5))
    # STOP is an opt-out of texts, not an answer: the email still goes
    assert [(s["state"], s["reason"]) for s in p.status(capsys)] == [("sent", None), ("sent", None)]
    assert len(p.mails_to("jane.doe@example.com")) == 1
    from daemon.store.tables import client_flags

    engine = sa.create_engine(f"sqlite:///{p.root / 'state.db'}")
    with engine.connect() as conn:
        assert [r.opted_out_channels for r in conn.execute(sa.select(client_flags))] == ["sms"]
    engine.dispose()


def test_each_text_is_applied_once(sms, capsys):
    p, twilio = sms
    _text_sent(p, twilio)
    twilio.messages.append(message(JANE, PRACTICE, "ok", local(2026, 11, 9, 18)))
    p.once(local(2026, 11, 9, 18, 30))
    p.once(local(2026, 11, 10, 10, 5))
    from daemon.store.tables import audit

    engine = sa.create_engine(f"sqlite:///{p.root / 'state.db'}")
    with engine.connect() as conn:
        assert [r.event for r in conn.execute(sa.select(audit.c.event))].count("replied") == 1
    engine.dispose()


def _uncertain(p, twilio, capsys):
    """The first text's hand-off hangs: uncertain, never re-sent.  The hang lasts the channel's
    configured timeout, so only that send runs with a short one; the reads after it keep 5 s."""
    twilio.script(hang())
    jane_no_show(p)
    config = p.config.read_text()
    p.config.write_text(config.replace("\ntimeout = 5", "\ntimeout = 0.5"))
    p.once(local(2026, 11, 4, 10, 5))
    p.config.write_text(config)
    assert [s["state"] for s in p.status(capsys)][0] == "uncertain"
    engine = sa.create_engine(f"sqlite:///{p.root / 'state.db'}")
    with engine.connect() as conn:
        claimed = conn.execute(sa.select(steps.c.claimed_at).where(steps.c.n == 1)).scalar_one()
    engine.dispose()
    from daemon.store.tables import dt

    return dt(claimed)


@pytest.mark.parametrize("status,settled", [("delivered", "sent"), ("undelivered", "failed"), (None, "uncertain")])
def test_uncertain_texts_are_settled_from_twilio(sms, capsys, status, settled):
    p, twilio = sms
    claimed = _uncertain(p, twilio, capsys)
    posted = twilio.requests[0].form()["Body"]        # what the hung hand-off had sent
    if status:
        twilio.messages.append(message(PRACTICE, JANE, posted, claimed + timedelta(seconds=20),
                                       direction="outbound-api", status=status))
    twilio.messages.append(message(PRACTICE, JANE, "an older text", claimed - timedelta(days=3),
                                   direction="outbound-api", status="delivered"))
    p.once(local(2026, 11, 4, 12))
    (first, _second) = p.status(capsys)
    assert first["state"] == settled
    assert len(twilio.requests) == 1, "never re-sent"


def test_another_text_to_the_client_in_the_window_is_not_taken_for_ours(sms, capsys):
    """The therapist texted Jane from the same number a minute after the hung hand-off: that one
    is delivered, ours never reached Twilio.  Only the marker (the digest of our text) tells
    them apart; the step stays for the therapist."""
    p, twilio = sms
    claimed = _uncertain(p, twilio, capsys)
    twilio.messages.append(message(PRACTICE, JANE, "Running 5 min late, sorry!", claimed + timedelta(minutes=1),
                                   direction="outbound-api", status="delivered"))
    p.once(local(2026, 11, 4, 12))
    assert p.status(capsys)[0]["state"] == "uncertain"
    posted = twilio.requests[0].form()["Body"]
    twilio.messages.append(message(PRACTICE, JANE, posted, claimed + timedelta(seconds=30),
                                   direction="outbound-api", status="delivered"))
    p.once(local(2026, 11, 4, 12, 30))
    first = p.status(capsys)[0]
    assert first["state"] == "sent"
    assert len(twilio.requests) == 1, "never re-sent"
    engine = sa.create_engine(f"sqlite:///{p.root / 'state.db'}")
    with engine.connect() as conn:
        kept = conn.execute(sa.select(steps.c.provider_id).where(steps.c.n == 1)).scalar_one()
    engine.dispose()
    assert kept.startswith("SM"), "the SID replaced the marker"
