"""Config errors reported together; CLI exit codes; check, preview; no traceback reaches a user."""

from __future__ import annotations

import subprocess
import sys

import pytest

from daemon import config as config_mod
from daemon.cli import main
from tests import canary
from tests.conftest import ROOT, make_practice

BROKEN = """
[practice]
name = "Riverside"
therapist = "Ana Ruiz"
therapist_email = "ana@riverside.example"
timezone = "Mars/Olympus_Mons"
colour = "blue"

[[calendars]]
name = "main"
kind = "ics"
source = "practice.ics"
poll_every = "2 fortnights"

[clients]
directory = "missing.csv"

[cadence]
steps = [{ channel = "email", after = "soon", template = "email_followup" }]

[channels.email]
backend = "carrier-pigeon"
from = "ana@riverside.example"
"""


def test_every_config_problem_is_reported_at_once(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text(BROKEN)
    assert main(["--config", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for expected in ("Mars/Olympus_Mons", "colour", "unknown key", "2 fortnights", "soon",
                     "'carrier-pigeon' is not one of outbox, smtp, sendgrid", "[channels.email] backend"):
        assert expected in err, expected
    assert f"{path}:6:" in err          # the line of the bad time zone
    steps_line = 1 + BROKEN.splitlines().index('steps = [{ channel = "email", after = "soon", template = "email_followup" }]')
    assert f"{path}:{steps_line}: [cadence.steps#1] after" in err


def test_missing_files_are_named(tmp_path, capsys):
    p = make_practice(tmp_path / "p")
    (p.root / "clients.csv").unlink()
    (p.root / "practice.ics").unlink()
    assert p.cli("check") == 2
    err = capsys.readouterr().err
    assert "clients.csv" in err and "practice.ics" in err


def test_toml_syntax_error_names_file_and_line(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text("[practice\nname = 1\n")
    assert main(["--config", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "line 1" in err and "Traceback" not in err


def test_missing_config_file(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.toml"), "once"]) == 2
    assert "not found" in capsys.readouterr().err


def test_bad_now_is_a_usage_error(practice, capsys):
    assert practice.cli("once", "--now", "next tuesday") == 2
    assert practice.cli("once", "--now", "2026-11-03T10:00:00") == 2
    assert "offset" in capsys.readouterr().err


def test_valid_config_prints_a_summary(practice, capsys):
    assert practice.cli("check") == 0
    out = capsys.readouterr().out
    assert "calendars: main (ics)" in out and "6 in the directory" in out and "phone after 1 business day" in out


def test_example_config_runs_as_is(capsys):
    cfg = config_mod.load(ROOT / "config.example.toml")
    assert cfg.calendars[0].kind == "ics" and cfg.email.backend == "outbox"
    assert main(["--config", str(ROOT / "config.example.toml"), "check"]) == 0


def test_example_config_documents_every_key():
    """config.example.toml and the schema stay in step: every schema key appears in it."""
    from daemon.config.fields import fields_doc

    text = (ROOT / "config.example.toml").read_text()
    for cls in (config_mod.Practice, config_mod.Store, config_mod.CalendarCommon, config_mod.Clients,
                config_mod.Detection, config_mod.CadenceCommon, config_mod.StepSpec, config_mod.EmailCommon,
                config_mod.PhoneCommon, config_mod.Digest,
                config_mod.Retention, config_mod.Templates, config_mod.Safety, config_mod.TherapistCommon):
        for key, doc, _ in fields_doc(cls):
            assert f"{key} =" in text, f"{cls.__name__}.{key} missing from config.example.toml"
            assert doc, f"{cls.__name__}.{key} has no doc"


def test_template_with_unknown_variable_fails_check_with_file_and_line(practice, capsys):
    folder = practice.root / "templates"
    folder.mkdir()
    (folder / "email_followup.txt").write_text("Subject: Hello\n\nHi {{ client_first_name }},\n{{ diagnosis }}\n")
    assert practice.cli("check") == 2
    err = capsys.readouterr().err
    assert "email_followup.txt:4" in err and "diagnosis" in err


@pytest.mark.shows_client_data
def test_preview_prints_exactly_what_would_be_sent(practice, capsys):
    assert practice.cli("preview", "email_followup", "--client", "Jane Doe") == 0
    out = capsys.readouterr().out
    assert out.startswith("Subject: Checking in from Riverside Counselling")
    assert "Hi Jane," in out and "--- HTML ---" in out
    for clinical in ("therapy", "diagnos", "session type"):
        assert clinical not in out.lower()


def test_no_traceback_without_debug_even_on_a_runtime_error(tmp_path):
    p = make_practice(tmp_path / "p", store='url = "postgresql://nobody@127.0.0.1:1/none"')
    run = subprocess.run([sys.executable, "-m", "daemon.cli", "--config", str(p.config), "once"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and "--debug" in run.stderr
    canary.assert_no_client_data(run.stdout + run.stderr, "welcomeback once")
