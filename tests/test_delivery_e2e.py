"""Real delivery through the whole engine: the phone step as an SMS through the real
twilio client, the email through the real sendgrid client, both against loopback fakes."""

from __future__ import annotations

import pytest

from tests.conftest import local, make_practice
from tests.fakes import twilio_server
from tests.fakes.sendgrid_server import FakeSendGrid, error
from tests.fakes.twilio_server import FakeTwilio
from tests.stories import jane_no_show

SID = "AC" + "0" * 32


@pytest.fixture
def providers(tmp_path, monkeypatch):
    monkeypatch.setenv("WELCOMEBACK_TWILIO_AUTH_TOKEN", "test-token")
    monkeypatch.setenv("WELCOMEBACK_SENDGRID_API_KEY", "SG.test")
    with FakeTwilio(SID) as twilio, FakeSendGrid() as sendgrid:
        p = make_practice(tmp_path / "p")
        text = p.config.read_text()
        text = text.replace('backend = "outbox"\noutbox = "outbox"',
                            f'backend = "sendgrid"\napi_base = "{sendgrid.url}"\ntimeout = 5')
        text = text.replace('backend = "therapist-email"',
                            f'backend = "twilio-sms"\naccount_sid = "{SID}"\nfrom_number = "+15550109999"\n'
                            f'api_base = "{twilio.url}"\ntimeout = 5')
        p.config.write_text(text)
        short = "Subject: Hello\n\nHi {{ client_first_name }}, {{ therapist_first_name }} here. No rush; call when you like.\n"
        (p.root / "templates").mkdir()
        (p.root / "templates" / "phone_call.txt").write_text(short)
        yield p, twilio, sendgrid


def test_sms_then_email_through_the_real_clients(providers, capsys):
    p, twilio, sendgrid = providers
    assert p.cli("check") == 0
    jane_no_show(p)
    p.once(local(2026, 11, 4, 10, 5))
    assert len(twilio.requests) == 1
    form = twilio.requests[0].form()
    assert form["To"] == "+15550100201" and "Jane" in form["Body"] and "{{" not in form["Body"]
    p.once(local(2026, 11, 10, 10, 5))
    assert len(sendgrid.requests) == 1
    body = sendgrid.requests[0].json()
    assert body["personalizations"][0]["to"][0]["email"] == "jane.doe@example.com"
    step_ids = {s["state"] for s in p.status(capsys)}
    assert step_ids == {"sent"}


def test_stop_reply_opts_out_of_sms_but_not_email(providers, capsys):
    p, twilio, sendgrid = providers
    twilio.script(twilio_server.opted_out("+15550100201"))
    jane_no_show(p)
    p.once(local(2026, 11, 4, 10, 5))
    p.once(local(2026, 11, 10, 10, 5))
    steps = p.status(capsys)
    assert [(s["state"]) for s in steps] == ["failed", "sent"]
    assert "+1555" not in (steps[0]["reason"] or "")
    assert len(twilio.requests) == 1 and len(sendgrid.requests) == 1


@pytest.mark.shows_client_data
def test_rejected_email_fails_once_and_is_reported(providers, capsys):
    p, twilio, sendgrid = providers
    sendgrid.script(error(400, "The to email does not contain a valid address.", "personalizations.0.to"))
    jane_no_show(p)
    p.once(local(2026, 11, 4, 10, 5))
    for day in (10, 11, 12):
        p.once(local(2026, 11, day, 10, 5))
    assert len(sendgrid.requests) == 1
    assert [s["state"] for s in p.status(capsys)] == ["sent", "failed"]
    capsys.readouterr()
    p.cli("status")
    assert "failed" in capsys.readouterr().out


def test_a_phone_shared_by_two_clients_gets_no_text(providers, capsys):
    p, twilio, sendgrid = providers
    rows = (p.root / "clients.csv").read_text().replace(
        "Omar Haddad,,omar.h@example.org,+1 555 010 0202", "Omar Haddad,,omar.h@example.org,+1 555 010 0201")
    (p.root / "clients.csv").write_text(rows)
    jane_no_show(p)
    p.once(local(2026, 11, 4, 10, 5))
    assert twilio.requests == []
    assert p.status(capsys)[0]["reason"] == "no_contact_details"
