"""Bad input gets a clear error and loses nothing; the rest carries on."""

from __future__ import annotations

import pytest

from tests.conftest import local
from tests.ics import Ev, write
from tests.stories import team


def _marked(practice, title="Jane Doe"):
    session = Ev("s1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), title)
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    session.summary = title + " no-show"
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 3, 11))


@pytest.mark.shows_client_data
def test_broken_template_holds_the_step_until_fixed(practice, capsys):
    _marked(practice)
    folder = practice.root / "templates"
    folder.mkdir()
    (folder / "phone_call.txt").write_text("Subject: Call\n\nHi {{ client_first_name }} {{ mood }}\n")
    practice.once(local(2026, 11, 4, 10, 5))
    assert practice.mails() == []
    assert (practice.status(capsys)[0]["state"], practice.status(capsys)[0]["reason"]) == ("held", "template")
    capsys.readouterr()
    practice.cli("status")
    assert "phone_call.txt" in capsys.readouterr().out
    (folder / "phone_call.txt").write_text("Subject: Call\n\nHi {{ client_first_name }}\n")
    practice.once(local(2026, 11, 4, 11))
    assert len(practice.mails()) == 1


def test_a_bad_directory_row_skips_that_client_only(practice, capsys):
    rows = (practice.root / "clients.csv").read_text() + "Bad Row,,not-an-email,,,false\n"
    (practice.root / "clients.csv").write_text(rows)
    assert practice.cli("check") == 2
    assert "clients.csv:8" in capsys.readouterr().err
    _marked(practice)
    practice.once(local(2026, 11, 4, 10, 5))
    assert len(practice.mails()) == 1


def test_one_broken_calendar_does_not_stop_the_others(practice, capsys):
    cfg = practice.config.read_text() + '\n[[calendars]]\nname = "second"\nkind = "ics"\nsource = "second.ics"\n'
    practice.config.write_text(cfg)
    write(practice.root / "second.ics", [])
    _marked(practice)
    (practice.root / "second.ics").write_text("<html>login</html>")
    capsys.readouterr()
    assert practice.once(local(2026, 11, 4, 10, 5)) == 1
    err = capsys.readouterr().err
    assert "second" in err and "second.ics" in err and "not a calendar" in err and "Traceback" not in err
    assert len(practice.mails()) == 1
