"""Rule 7: ``client_name`` and ``client_phone`` are for call tasks only: refused at save, by
``check`` and before every render of a message to the client (subject, text, HTML)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.errors import TemplateError
from daemon.templating.allowlist import ALLOWED, CALL_TASK_ONLY, client_facing_problems
from daemon.templating.templates import Templates, sample_context
from tests.conftest import make_practice
from tests.fakes.twilio_server import FakeTwilio
from tests.stories import jane_no_show
from tests.stories_rules import JANE, attention, call_tasks, journal, local
from tests.test_template_cli import TWILIO, editor

NAMED_SUBJECT = "Subject: For {{ client_name }}\n\nHi {{ client_first_name }}, just checking in.\n"
SID = "AC" + "0" * 32


def _template(practice, name: str, text: str) -> Path:
    folder = practice.root / "templates"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


@pytest.mark.shows_client_data  # the status table / check output is for the therapist
def test_a_full_name_in_the_email_subject_is_refused_by_check_and_never_sent(practice, capsys):
    path = _template(practice, "email_followup.txt", NAMED_SUBJECT)
    capsys.readouterr()
    assert practice.cli("check") == 2
    assert f"{path}:1: 'client_name' is for call tasks only" in capsys.readouterr().err
    jane_no_show(practice)
    practice.once(local(2026, 11, 4, 10, 5))
    practice.once(local(2026, 11, 10, 10, 5))
    assert [(r[4], r[5]) for r in journal(practice, capsys)] == [("phone", "sent"), ("email", "held")]
    assert len(call_tasks(practice)) == 1 and practice.mails_to(JANE) == []
    assert "email_followup" in attention(practice, capsys)
    path.write_text(NAMED_SUBJECT.replace("{{ client_name }}", "{{ practice }}"))
    practice.once(local(2026, 11, 10, 11))
    assert [r[5] for r in journal(practice, capsys)] == ["sent", "sent"]
    assert "Subject: For Riverside Counselling" in practice.mails_to(JANE)[0]


def test_a_phone_number_in_the_html_part_holds_the_email(practice, capsys):
    _template(practice, "email_followup.txt", "Subject: Checking in\n\nHi {{ client_first_name }}.\n")
    html = _template(practice, "email_followup.html", "<p>Hi {{ client_first_name }}.</p>\n<p>{{ client_phone }}</p>\n")
    capsys.readouterr()
    assert practice.cli("check") == 2
    assert f"{html}:2: 'client_phone' is for call tasks only and cannot be in the message" in capsys.readouterr().err
    jane_no_show(practice)
    for day in (4, 10, 11):
        practice.once(local(2026, 11, day, 10, 5))
    assert practice.mails_to(JANE) == []
    assert [r[5] for r in journal(practice, capsys)] == ["sent", "held"]


def test_a_text_message_template_with_the_clients_name_is_never_sent(tmp_path, monkeypatch, capsys):
    """The phone step texts the client (Twilio): the name is not for a lock screen."""
    monkeypatch.setenv("WELCOMEBACK_TWILIO_AUTH_TOKEN", "test-token")
    with FakeTwilio(SID) as twilio:
        practice = make_practice(tmp_path / "p")
        practice.config.write_text(practice.config.read_text().replace(
            'backend = "therapist-email"\n', TWILIO + f'api_base = "{twilio.url}"\ntimeout = 5\n'))
        path = _template(practice, "phone_call.txt", "Hi {{ client_name }}, it's {{ therapist_first_name }}.\n")
        capsys.readouterr()
        assert practice.cli("check") == 2
        assert f"{path}:1: 'client_name' is for call tasks only" in capsys.readouterr().err
        jane_no_show(practice)
        practice.once(local(2026, 11, 4, 10, 5))
        assert twilio.requests == []
        assert [r[5] for r in journal(practice, capsys)] == ["held", "planned"]


def test_a_call_task_may_carry_the_name_and_number(practice, capsys):
    _template(practice, "phone_call.txt", "Subject: Call {{ client_name }}\n\nCall {{ client_name }} on {{ client_phone }}.\n")
    capsys.readouterr()
    assert practice.cli("check") == 0
    jane_no_show(practice)
    practice.once(local(2026, 11, 4, 10, 5))
    task = call_tasks(practice)[0]
    assert "Subject: Call Jane Doe" in task and "Call Jane Doe on (555) 010-0201." in task


def test_templates_edit_refuses_to_install_a_name_in_a_client_email(practice, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VISUAL", editor(tmp_path, "Subject: Hello\n\nDear {{ client_name }},\nsee you.\n"))
    assert practice.cli("templates", "edit", "email_followup") == 1
    err = capsys.readouterr().err
    assert "email_followup.txt:3: 'client_name' is for call tasks only and cannot be in the message" in err
    assert "client_name" not in (practice.root / "templates" / "email_followup.txt").read_text()


def test_every_render_for_a_client_refuses_the_call_task_variables(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "mixed.txt").write_text("Subject: Hi\n\n{% set who = client_phone %}Hello.\n")
    (folder / "plain.txt").write_text("Subject: Hi {{ client_first_name }}\n\nHello.\n")
    (folder / "plain.html").write_text("<p>{{ client_name }}</p>\n")
    templates = Templates(folder)
    for name in ("mixed", "plain"):
        with pytest.raises(TemplateError, match="cannot be sent to a client"):
            templates.render(name, sample_context(), audience="client")
        assert templates.render(name, sample_context(), audience="therapist").text
    assert templates.validate("plain", client_facing=True) and not templates.validate("plain")


def test_the_documented_variables_match_the_rule():
    assert CALL_TASK_ONLY == {"client_name", "client_phone", "safety_protocol", "emergency_contact"}
    for name in CALL_TASK_ONLY:
        assert "call tasks only" in ALLOWED[name] and "never in a message to the client" in ALLOWED[name]
    assert client_facing_problems("Subject: {{ client_phone }}\n\nx\n", "t.txt") == [
        "t.txt:1: 'client_phone' is for call tasks only and cannot be in the subject of a template sent to the client"]
    assert client_facing_problems("Subject: {{ client_first_name }}\n\n{{ practice }}\n", "t.txt") == []
