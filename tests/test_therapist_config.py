"""A group practice's configuration: [[therapists]] errors name their key, `check` validates a
therapist's templates folder, and today's single-therapist configs load unchanged."""

from __future__ import annotations

import pytest

from daemon import config as config_mod
from tests.conftest import CONFIG, ROOT, make_practice
from tests.ics import write

GROUP = """
[[calendars]]
name = "groups"
kind = "ics"
source = "groups.ics"

[[calendars]]
name = "ben"
kind = "ics"
source = "ben.ics"

[[therapists]]
name = "Ana Ruiz"
email = "ana@riverside.example"
calendars = ["main", "groups"]

[[therapists]]
name = "Ben Marsh"
email = "ben@riverside.example"
calendars = ["ben"]
working_hours = "Mon-Fri 12:00-18:00"
signature = "Ben Marsh, LCSW\\nRiverside Counselling, room 4"
templates = "ben-templates"
phone = "+1 555 010 0400"
"""


def test_therapists_config_errors_name_the_key(tmp_path, capsys):
    p = make_practice(tmp_path / "p", extra=GROUP.replace('calendars = ["ben"]', 'calendars = ["x", "main"]')
                      .replace('email = "ben@riverside.example"', 'email = "ANA@riverside.example"'))
    assert p.cli("check") == 2
    err = capsys.readouterr().err
    assert "[therapists#2 (Ben Marsh)] calendars: no calendar named 'x'" in err
    assert "calendar 'main' already belongs to Ana Ruiz" in err
    assert "[therapists#2 (Ben Marsh)] email: 'ANA@riverside.example' is another therapist's email" in err
    assert "Traceback" not in err


def test_check_validates_a_therapists_templates_folder(tmp_path, capsys):
    p = make_practice(tmp_path / "p", extra=GROUP)
    for name in ("groups", "ben"):
        write(p.root / f"{name}.ics", [])
    assert p.cli("check") == 2
    err = capsys.readouterr().err
    assert "[[therapists]] #2 (Ben Marsh) templates:" in err and "is not a folder" in err
    (p.root / "ben-templates").mkdir()
    (p.root / "ben-templates" / "email_followup.txt").write_text("Subject: Hi\n\nHi {{ diagnosis }}\n")
    assert p.cli("check") == 2
    err = capsys.readouterr().err
    assert "ben-templates/email_followup.txt:3" in err and "diagnosis" in err
    (p.root / "ben-templates" / "email_followup.txt").write_text("Subject: Hi\n\nHi {{ client_first_name }}\n")
    assert p.cli("check") == 0
    assert "therapists: Ana Ruiz (main, groups); Ben Marsh (ben)" in capsys.readouterr().out


@pytest.mark.parametrize("path", ["tests", "example"])
def test_todays_single_therapist_configs_load_unchanged(tmp_path, path):
    """Without [[therapists]], [practice] is the one therapist of every calendar, with its own
    hours, phone and Reply-To: the rest of the suite runs these configs unchanged."""
    if path == "tests":
        file = tmp_path / "config.toml"
        file.write_text(CONFIG.format(store='path = "state.db"', extra=""))
    else:
        file = ROOT / "config.example.toml"
    cfg = config_mod.load(file)
    assert cfg.therapists == []
    for cal in cfg.calendars:
        t = cfg.therapist_of(cal.name)
        assert (t.name, t.email, t.working_hours, t.phone, t.templates, t.signature, t.listed) == (
            cfg.practice.therapist, cfg.practice.therapist_email, cfg.practice.working_hours, cfg.practice.phone,
            None, "", False)
    assert [t.email for t in cfg.all_therapists()] == [cfg.practice.therapist_email]
