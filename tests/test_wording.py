"""Every default template read as a client and as a therapist would, for a cancellation, a late
cancellation and a no-show; the call task; .eml files readable with `cat`; preview's samples."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

from connectors.channels.twilio_sms import sms_problems
from daemon import config as config_mod
from daemon.engine import messages
from daemon.model import Client
from daemon.store.tables import ts
from daemon.templating.templates import Templates, defaults_dir, readable_phone
from tests.conftest import NY, ROOT, local, make_practice
from tests.stories import jane_no_show

TRIGGERS = ("cancelled", "late_cancel", "no_show")
MEDIUM = {"phone_call": "call-task", "email_followup": "email", "sms_checkin": "sms"}
START = datetime(2026, 3, 2, 10, 0, tzinfo=NY)                # a Monday
JANE = Client(id="dir:jane.doe@example.com", name="Jane Doe", email="jane.doe@example.com", phone="+15550100201")
SMALL_WORDS = {"that", "this", "with", "your", "you're", "from", "when", "there's", "have", "will", "would"}


def _config(tmp_path: Path, *, phone: str = "", link: str = "") -> config_mod.Config:
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace('phone = ""', f'phone = "{phone}"', 1).replace('rebooking_link = ""', f'rebooking_link = "{link}"', 1)
    path = tmp_path / "config.toml"
    path.write_text(text)
    return config_mod.load(path)


def _render(config: config_mod.Config, template: str, trigger: str, client: Client = JANE,
            templates: Templates | None = None) -> messages.Message:
    step = {"id": "s-1", "sequence_id": "s", "session_start": ts(START), "due_at": ts(START),
            "trigger": trigger, "template": template}
    return messages.build_for(step, client, MEDIUM.get(template, "email"), config,
                              templates or Templates(config.resolve("no-such-folder")))


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def _repeated_words(sentence: str) -> list[str]:
    words = [w.lower() for w in re.findall(r"[A-Za-z']+", sentence) if len(w) >= 4]
    return sorted({w for w in words if words.count(w) > 1 and w not in SMALL_WORDS})


def test_every_default_template_is_covered() -> None:
    """Language variants (NAME.es.txt) and the safety call task: tests/test_practice_rules.py."""
    names = {item.name.rsplit(".", 1)[0] for item in defaults_dir().iterdir() if item.name.endswith(".txt")}
    assert {n for n in names if "." not in n} - {"safety_call"} == set(MEDIUM)


@pytest.mark.parametrize("template", sorted(MEDIUM))
@pytest.mark.parametrize("trigger", TRIGGERS)
@pytest.mark.parametrize("extras", [{}, {"phone": "+1 555 010 0100", "link": "https://book.example/r"}])
def test_default_wording_reads_well(tmp_path, template, trigger, extras) -> None:
    message = _render(_config(tmp_path, **extras), template, trigger)
    text = message.text + (message.html or "")
    for sentence in _sentences(re.sub(r"<[^>]+>", " ", text)):
        assert _repeated_words(sentence) == [], sentence          # e.g. "since ... since"
    assert "{{" not in text and "{%" not in text and "  " not in message.text
    if template != "sms_checkin":
        assert "Monday, March 2 at 10:00 AM" in message.text      # the session as people say it
    if trigger == "no_show":
        assert "cancel" not in message.text.split("Suggested words:")[-1].lower()
    else:
        for wrong in ("didn't get to meet", "missed you", "did not come"):
            assert wrong not in text.lower(), wrong
    if extras:
        assert "(555) 010-0100" in message.text or template == "sms_checkin"
    if template == "sms_checkin":
        assert sms_problems(message.text) == []


def test_the_call_task_subject_comes_from_the_template(tmp_path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "phone_call.txt").write_text("Subject: Ring {{ client_first_name }} back\n\nHello {{ client_first_name }}.\n")
    message = _render(_config(tmp_path), "phone_call", "no_show", templates=Templates(folder))
    assert message.subject == "Ring Jane back"
    assert _render(_config(tmp_path), "phone_call", "no_show").subject == "Call Jane"


@pytest.mark.parametrize("number, region, shown", [
    ("+15550100201", "US", "(555) 010-0201"),
    ("+442079460958", "US", "+44 20 7946 0958"),
    ("+442079460958", "GB", "020 7946 0958"),
])
def test_the_call_task_phone_reads_as_in_the_practice_region(tmp_path, number, region, shown) -> None:
    config = _config(tmp_path)
    config.clients.default_region = region
    message = _render(config, "phone_call", "cancelled", Client(id="x", name="Jane Doe", phone=number))
    assert f"Phone: {shown}\n" in message.text
    assert readable_phone(number, region) == shown
    assert message.meta["phone"] == number                       # a tel: link keeps E.164


def test_outbox_files_are_8bit_utf8_readable_with_cat(tmp_path, capsys) -> None:
    p = make_practice(tmp_path / "p")
    p.config.write_text(p.config.read_text().replace('name = "Riverside Counselling"', 'name = "Zoë’s Counselling"'))
    jane_no_show(p)
    assert p.once(local(2026, 11, 4, 10, 5)) == 0
    (eml,) = p.outbox.glob("*.eml")
    raw = eml.read_bytes()
    assert b"Content-Transfer-Encoding: 8bit" in raw and b"quoted-printable" not in raw
    assert "this is Ana from Zoë’s Counselling.".encode() in raw


def test_plain_ascii_outbox_files_keep_long_lines_readable_with_cat(tmp_path, capsys) -> None:
    """The default call task has lines over 78 characters: still 7bit, never quoted-printable."""
    p = make_practice(tmp_path / "p")
    jane_no_show(p)
    assert p.once(local(2026, 11, 4, 10, 5)) == 0
    (eml,) = p.outbox.glob("*.eml")
    raw = eml.read_bytes()
    assert b"Content-Transfer-Encoding: 7bit" in raw and b"quoted-printable" not in raw
    assert max(len(line) for line in raw.splitlines()) > 78 and b"=\n" not in raw


def test_preview_without_a_client_says_it_shows_samples_matching_the_config(tmp_path, capsys) -> None:
    p = make_practice(tmp_path / "p")
    assert p.cli("preview", "email_followup") == 0
    captured = capsys.readouterr()
    assert "sample values" in captured.err and "fictional" in captured.err
    assert "Riverside Counselling" in captured.out and "call" not in captured.out.lower()  # no phone configured
    assert not re.search(r"\d{3}\D{0,2}\d{3}\D\d{4}", captured.out)
    p.config.write_text(p.config.read_text().replace('timezone = "America/New_York"',
                                                     'timezone = "America/New_York"\nphone = "+1 555 010 0100"'))
    assert p.cli("preview", "email_followup", "--trigger", "cancelled") == 0
    captured = capsys.readouterr()
    assert "(555) 010-0100" in captured.out and "was cancelled" in captured.out and "cancelled" in captured.err
