"""A failure before the hand-off is never `uncertain`: a permanent local error fails at once with
its real cause; a local cause that can be fixed holds the step, which goes out once it is fixed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CLIENTS, ROOT, Practice, local, make_practice
from tests.fakes.sendgrid_server import FakeSendGrid
from tests.fakes.twilio_server import FakeTwilio
from tests.ics import Ev
from tests.stories import team

EMAIL_ONLY = """
[cadence]
steps = [{ channel = "email", after = "1 business day", template = "email_followup" }]
"""
DUE = local(2026, 11, 4, 10, 5)


def no_show(practice: Practice, summary: str, attendees: list[tuple[str, str, str]] | None = None) -> None:
    """A Tuesday 10:00 session seen on Monday and marked a no-show on Tuesday at 11:00."""
    session = Ev("s1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), summary, attendees=attendees or [])
    practice.calendar([team(), session])
    assert practice.once(local(2026, 11, 2, 8)) == 0
    session.summary = summary + " (no-show)"
    practice.calendar([team(), session])
    assert practice.once(local(2026, 11, 3, 11)) == 0


def email_practice(tmp_path: Path, **replace: str) -> Practice:
    p = make_practice(tmp_path / "p", extra=EMAIL_ONLY)
    text = p.config.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    p.config.write_text(text)
    return p


def only_step(practice: Practice, capsys: pytest.CaptureFixture[str]) -> dict:
    (step,) = practice.status(capsys)
    return step


def audit_events(practice: Practice, capsys: pytest.CaptureFixture[str], client: str) -> list[str]:
    capsys.readouterr()
    assert practice.cli("history", client, "--format", "csv") == 0
    return [line.split(",")[5] for line in capsys.readouterr().out.splitlines()[1:]]


@pytest.mark.shows_client_data  # prints whom it matched, the contact log or the status table
def test_an_address_no_email_can_carry_fails_at_once_with_its_cause(tmp_path, capsys):
    p = email_practice(tmp_path)
    no_show(p, "Session", [("zéphyrine.q@example.org", "Zephyrine Quillfeather", "ACCEPTED")])
    assert p.once(DUE) == 0
    step = only_step(p, capsys)
    assert step["state"] == "failed"
    assert "non-ASCII characters before the @" in step["reason"]
    assert "outbox folder" not in step["reason"] and "zéphyrine" not in step["reason"]
    for day in (5, 6, 9):                              # never retried, never a second attempt
        p.once(local(2026, 11, day, 10, 5))
    assert only_step(p, capsys)["state"] == "failed"
    assert audit_events(p, capsys, "zéphyrine.q@example.org").count("failed") == 1
    assert p.mails() == []


@pytest.mark.shows_client_data  # reads the status table
def test_a_name_with_a_line_break_protects_its_person_and_is_reported(tmp_path, capsys):
    """No channel can carry a line break in a name: the row is rejected (issue 9 rule 1), so the
    person it names is never contacted on a guess, and the therapist is told which line to fix."""
    p = email_practice(tmp_path)
    (p.root / "clients.csv").write_text(CLIENTS + '"Zephyrine\nQuillfeather",,zq.canary@example.org,,,false\n')
    no_show(p, "Session", [("zq.canary@example.org", "Z", "ACCEPTED")])
    assert p.once(DUE) == 0
    assert p.status(capsys) == [] and p.mails() == []
    capsys.readouterr()
    assert p.cli("status") == 1
    needs = capsys.readouterr().out.split("Needs your attention:", 1)[1]
    assert "clients.csv:8" in needs and "line break" in needs


@pytest.mark.shows_client_data  # prints whom it matched, the contact log or the status table
def test_an_outbox_folder_that_cannot_be_written_holds_the_step_until_fixed(tmp_path, capsys):
    p = email_practice(tmp_path, **{'outbox = "outbox"': 'outbox = "blocked/outbox"'})
    (p.root / "blocked").write_text("a file where the outbox folder should be\n")
    no_show(p, "Jane Doe")
    for day in (4, 5):
        assert p.once(local(2026, 11, day, 10, 5)) == 0
        step = only_step(p, capsys)
        assert (step["state"], step["reason"]) == ("held", "folder")
        assert "cannot write to the outbox folder" in step["detail"]
    capsys.readouterr()
    assert p.cli("status") == 1
    assert "held" in capsys.readouterr().out
    (p.root / "blocked").unlink()
    assert p.once(local(2026, 11, 5, 11)) == 0
    assert only_step(p, capsys)["state"] == "sent"
    assert len(list((p.root / "blocked" / "outbox").glob("*.eml"))) == 1
    capsys.readouterr()
    assert p.cli("status") == 0                     # nothing left to attend to


def test_a_missing_secret_holds_the_step_until_it_is_there(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WELCOMEBACK_SENDGRID_API_KEY", raising=False)
    with FakeSendGrid() as sendgrid:
        p = email_practice(tmp_path, **{'backend = "outbox"\noutbox = "outbox"':
                                        f'backend = "sendgrid"\napi_base = "{sendgrid.url}"\ntimeout = 5'})
        no_show(p, "Jane Doe")
        assert p.once(DUE) == 0
        step = only_step(p, capsys)
        assert (step["state"], step["reason"]) == ("held", "secret")
        assert "sendgrid_api_key" in step["detail"] and sendgrid.requests == []
        monkeypatch.setenv("WELCOMEBACK_SENDGRID_API_KEY", "SG.test")
        assert p.once(local(2026, 11, 4, 11)) == 0
        assert only_step(p, capsys)["state"] == "sent"
        assert len(sendgrid.requests) == 1


SID = "AC" + "0" * 32
BROKEN_TWILIO = 'raise ImportError("libtwilio-native.so: cannot open shared object file")\n'


def _once(p: Practice, now, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon.cli", "--config", str(p.config), "once", "--now",
                           now.isoformat()], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_library_that_cannot_be_imported_holds_the_step_until_it_can(tmp_path, capsys):
    """A broken twilio install shadows the real one: held (missing_library), then sent once it imports."""
    broken = tmp_path / "broken"
    (broken / "twilio").mkdir(parents=True)
    (broken / "twilio" / "__init__.py").write_text(BROKEN_TWILIO)
    with FakeTwilio(SID) as twilio:
        p = make_practice(tmp_path / "p")
        text = p.config.read_text().replace(
            'backend = "therapist-email"', f'backend = "twilio-sms"\naccount_sid = "{SID}"\n'
            f'from_number = "+15550109999"\napi_base = "{twilio.url}"\ntimeout = 5')
        p.config.write_text(text)
        (p.root / "templates").mkdir()
        (p.root / "templates" / "phone_call.txt").write_text("Hi {{ client_first_name }}, no rush; call any time.\n")
        no_show(p, "Jane Doe")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(WELCOMEBACK_TWILIO_AUTH_TOKEN="test-token", WELCOMEBACK_NO_KEYRING="1")
        first = _once(p, DUE, {**env, "PYTHONPATH": str(broken)})
        assert first.returncode == 0, first.stderr
        phone = p.status(capsys)[0]
        assert (phone["state"], phone["reason"]) == ("held", "missing_library")
        assert "pip install 'welcomeback[twilio]'" in phone["detail"] and twilio.requests == []
        second = _once(p, local(2026, 11, 4, 11), env)
        assert second.returncode == 0, second.stderr
        assert p.status(capsys)[0]["state"] == "sent"
        assert len(twilio.requests) == 1


def test_an_international_domain_is_written_in_idna_and_sent(tmp_path, capsys):
    p = email_practice(tmp_path)
    no_show(p, "Session", [("zq.canary@bücher.example", "Zephyrine Quillfeather", "ACCEPTED")])
    assert p.once(DUE) == 0
    assert only_step(p, capsys)["state"] == "sent"
    (mail,) = p.mails()
    assert "<zq.canary@xn--bcher-kva.example>" in mail and "=?utf-8?" not in mail.split("To:")[1].splitlines()[0]
