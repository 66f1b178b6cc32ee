"""The therapist's daily digest for a seeded day, through the real CLI, engine and a real SMTP server.

Seeded story (practice time, America/New_York):
* Lee Fox and Omar Haddad miss Monday Oct 26; their call tasks go out Oct 27.
* Omar misses again Oct 28 (a repeated miss); Mia Stone misses Oct 30.
* Mon Nov 2: Mia's call task is sent; Lee's email is handed to the server, which
  drops the connection after DATA (uncertain); the server refuses Omar's
  address with 550 (failed); Jane Doe misses and Chris Park (two clients of
  that name) misses (ambiguous).
* Digest Tue Nov 3, 07:30: Jane's call is due today.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from email import message_from_bytes, policy

import pytest

from daemon import config as config_mod
from daemon.clock import FixedClock
from daemon.engine.cycle import Engine
from daemon.engine.digest import build_digest
from tests.conftest import CLIENTS, Practice, local
from tests.fakes.smtp import serve, use_smtp
from tests.ics import Ev

THERAPIST = "ana@riverside.example"
CALL_SCRIPT = "wanted to check in and see how you're doing"     # from templates/phone_call.txt
EMAIL_BODY = "I wanted to reach out since we haven't connected"  # from templates/email_followup.txt


class Server:
    """Refuses Omar's address, drops the connection after Lee's DATA, keeps the rest."""

    def __init__(self) -> None:
        self.mails: list = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address == "omar.h@example.org":
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if "lee.fox@example.com" in envelope.rcpt_tos:
            server.transport.abort()
            return "250 never seen"
        with self.lock:
            self.mails.append(message_from_bytes(envelope.original_content or envelope.content,
                                                 policy=policy.default))
        return "250 OK"

    def to(self, address: str) -> list:
        return [m for m in self.mails if address in str(m["To"])]

    def digests(self) -> list:
        return [m for m in self.to(THERAPIST) if str(m["Subject"]).startswith("welcomeback: your day")]


@pytest.fixture
def smtp():
    server = Server()
    with serve(server) as port:
        yield port, server


def smtp_practice(practice: Practice, port: int) -> Practice:
    use_smtp(practice, port)
    (practice.root / "clients.csv").write_text(CLIENTS + "Lee Fox,,lee.fox@example.com,+1 555 010 0207,,false\n")
    return practice


def session(uid: str, start: datetime, who: str) -> Ev:
    return Ev(uid, start, start.replace(minute=50), who)


def seed(practice: Practice) -> None:
    team = Ev("team", local(2026, 10, 2, 12), local(2026, 10, 2, 13), "Team meeting", rrule="FREQ=WEEKLY;BYDAY=FR")
    events = {e.uid: e for e in [
        team, session("lee", local(2026, 10, 26, 10), "Lee Fox"), session("om1", local(2026, 10, 26, 15), "Omar Haddad"),
        session("om2", local(2026, 10, 28, 15), "Omar Haddad"), session("mia", local(2026, 10, 30, 10), "Mia Stone"),
        session("jane", local(2026, 11, 2, 10), "Jane Doe"), session("chris", local(2026, 11, 2, 11), "Chris Park")]}

    def mark(*uids: str) -> None:
        for uid in uids:
            events[uid].summary += " no-show"
        practice.calendar(list(events.values()))

    practice.calendar(list(events.values()))
    for now, marks in [(local(2026, 10, 23, 8), ()), (local(2026, 10, 26, 16), ("lee", "om1")),
                       (local(2026, 10, 27, 15, 5), ()), (local(2026, 10, 28, 16), ("om2",)),
                       (local(2026, 10, 30, 11), ("mia",)), (local(2026, 11, 2, 11, 30), ("jane", "chris")),
                       (local(2026, 11, 2, 15, 5), ())]:
        mark(*marks)
        practice.once(now)


def digest_engine(practice: Practice, now: datetime) -> Engine:
    return Engine(config_mod.load(practice.config), FixedClock(now))


def test_the_digest_has_calls_failures_uncertain_and_ambiguous_and_no_bodies(practice, smtp, capsys, caplog):
    port, server = smtp
    p = smtp_practice(practice, port)
    seed(p)
    states = {(s["client"], s["step"]): (s["state"], s["reason"]) for s in p.status(capsys)}
    assert states[("Omar Haddad", 2)][0] == "failed" and states[("Lee Fox", 2)][0] == "uncertain"
    assert states[("Jane Doe", 1)] == ("planned", None) and states[("Mia Stone", 1)][0] == "sent"
    assert any(CALL_SCRIPT in m.get_body(("plain",)).get_content() for m in server.to(THERAPIST))
    assert server.digests() == []

    caplog.set_level(logging.DEBUG)
    engine = digest_engine(p, local(2026, 11, 3, 7, 30))
    try:
        assert engine.send_digest() is True
        assert engine.send_digest() is False              # the same day: never twice
    finally:
        engine.close()
    [digest] = server.digests()
    text = digest.get_body(("plain",)).get_content().replace("\r\n", "\n")
    calls = text.split("Calls to make today", 1)[1].split("\n\n", 1)[0]
    assert "Jane Doe, +15550100201" in calls and "due 10:00" in calls
    assert "Mia Stone: call task (step 1)" in text         # sent yesterday
    assert "FAILED: Omar Haddad: email (step 2)" in text and "550" in text
    assert "UNCERTAIN: Lee Fox: email (step 2)" in text
    assert "AMBIGUOUS: calendar 'main'" in text and "several clients" in text
    assert "Omar Haddad: 2 missed or cancelled sessions in 60 days" in text
    for body in (CALL_SCRIPT, EMAIL_BODY, "Suggested words", "Hi Jane", "Hi Omar"):
        assert body not in text
    assert str(digest["To"]).endswith(f"<{THERAPIST}>") and "digest-2026-11-03" in str(digest["Message-ID"])
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for private in ("Jane", "Omar", "Lee Fox", "Mia", "+1555", "@example"):
        assert private not in logged

    again = digest_engine(p, local(2026, 11, 3, 18))
    try:
        assert again.send_digest() is False                # another process, later the same day
    finally:
        again.close()
    assert len(server.digests()) == 1


def test_reports_are_not_repeated_and_an_empty_day_sends_nothing(practice, smtp, capsys):
    port, server = smtp
    p = smtp_practice(practice, port)
    seed(p)
    first = digest_engine(p, local(2026, 11, 3, 7, 30))
    try:
        assert first.send_digest() is True
    finally:
        first.close()
    p.once(local(2026, 11, 3, 10, 5))                      # Jane's call task goes out
    nxt = digest_engine(p, local(2026, 11, 4, 7, 30))
    try:
        message = build_digest(nxt.context, local(2026, 11, 4, 7, 30))
        assert message is not None
        assert "Jane Doe: call task (step 1)" in message.text
        assert "FAILED" not in message.text and "AMBIGUOUS" not in message.text
        assert nxt.send_digest() is True
    finally:
        nxt.close()
    quiet = digest_engine(p, local(2026, 11, 5, 7, 30))
    try:
        assert build_digest(quiet.context, local(2026, 11, 5, 7, 30)) is None
        assert quiet.send_digest() is False
    finally:
        quiet.close()
    assert len(server.digests()) == 2


def test_a_disabled_digest_is_never_sent(practice, smtp):
    port, server = smtp
    p = smtp_practice(practice, port)
    p.config.write_text(p.config.read_text() + "\n[digest]\nenabled = false\n")
    seed(p)
    engine = digest_engine(p, local(2026, 11, 3, 7, 30))
    try:
        assert engine.send_digest() is False
    finally:
        engine.close()
    assert server.digests() == []


def test_a_broken_template_is_in_every_digest_until_fixed(practice, capsys):
    (practice.root / "templates").mkdir()
    (practice.root / "templates" / "phone_call.txt").write_text("Subject: Call\n\n{{ diagnosis }}\n")
    jane = session("jane", local(2026, 11, 2, 10), "Jane Doe")
    practice.calendar([jane])
    practice.once(local(2026, 10, 30, 8))
    jane.summary += " no-show"
    practice.calendar([jane])
    practice.once(local(2026, 11, 2, 11))
    practice.once(local(2026, 11, 3, 10, 5))             # held: the template cannot be rendered
    for day in (4, 5):
        engine = digest_engine(practice, local(2026, 11, day, 7, 30))
        try:
            message = build_digest(engine.context, local(2026, 11, day, 7, 30))
            assert message is not None and "TEMPLATE: 'phone_call' cannot be rendered" in message.text
            assert "Jane Doe, +15550100201" in message.text and "(overdue)" in message.text
            assert engine.send_digest() is True
        finally:
            engine.close()
    assert len([m for m in practice.mails_to(THERAPIST) if "welcomeback: your day" in m]) == 2


def test_digest_command_sends_once_a_day(practice, capsys):
    from tests.conftest import local
    from tests.stories import jane_no_show

    jane_no_show(practice)
    capsys.readouterr()
    assert practice.cli("digest", "--now", local(2026, 11, 4, 7, 30).isoformat()) == 0
    assert "digest sent" in capsys.readouterr().out
    assert practice.cli("digest", "--now", local(2026, 11, 4, 8).isoformat()) == 0
    assert "no digest" in capsys.readouterr().out
    digests = [m for m in practice.mails() if "digest" in m.lower()]
    assert len(digests) == 1 and "Jane Doe" in digests[0]
