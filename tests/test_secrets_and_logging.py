"""Secrets from systemd credentials, the environment, or a clear error; journald-aware logs;
status as a monitoring check."""

from __future__ import annotations

import logging

import pytest

from daemon import secrets
from daemon.errors import SecretMissing
from daemon.service import logsetup
from tests.conftest import local
from tests.ics import Ev
from tests.stories import team


def test_credentials_directory_wins(tmp_path, monkeypatch):
    (tmp_path / "sendgrid_api_key").write_text("SG.from-credentials\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("WELCOMEBACK_SENDGRID_API_KEY", "SG.from-env")
    assert secrets.lookup("sendgrid_api_key") == "SG.from-credentials"


def test_environment_is_the_last_place(monkeypatch, tmp_path):
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))      # present but without the file
    monkeypatch.setenv("WELCOMEBACK_SMTP_PASSWORD", "from-env")
    assert secrets.lookup("smtp_password") == "from-env"


def test_absent_secret_names_itself_and_the_three_places(monkeypatch):
    monkeypatch.delenv("WELCOMEBACK_TWILIO_AUTH_TOKEN", raising=False)
    with pytest.raises(SecretMissing) as err:
        secrets.lookup("twilio_auth_token")
    text = str(err.value)
    assert "twilio_auth_token" in text and "$CREDENTIALS_DIRECTORY/twilio_auth_token" in text
    assert "keyring" in text and "WELCOMEBACK_TWILIO_AUTH_TOKEN" in text


def test_check_names_a_missing_secret(practice, capsys, monkeypatch):
    monkeypatch.delenv("WELCOMEBACK_SENDGRID_API_KEY", raising=False)
    cfg = practice.config.read_text().replace('backend = "outbox"\noutbox = "outbox"', 'backend = "sendgrid"')
    practice.config.write_text(cfg)
    assert practice.cli("check") == 2
    err = capsys.readouterr().err
    assert "sendgrid_api_key" in err and "WELCOMEBACK_SENDGRID_API_KEY" in err
    monkeypatch.setenv("WELCOMEBACK_SENDGRID_API_KEY", "SG.test")
    assert practice.cli("check") == 0
    assert "SG.test" not in capsys.readouterr().out


def test_secret_list_never_prints_values(practice, capsys, monkeypatch):
    monkeypatch.setenv("WELCOMEBACK_SMTP_PASSWORD", "hunter2-secret")
    assert practice.cli("secret", "list") == 0
    out = capsys.readouterr().out
    assert "smtp_password: set" in out and "hunter2" not in out


def test_journald_format_has_priorities_and_no_timestamps(monkeypatch, capsys):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    logsetup.configure(debug=False)
    logging.getLogger("daemon.test").warning("calendar %s degraded", "main")
    err = capsys.readouterr().err
    assert err.startswith("<4>daemon.test: calendar main degraded")
    monkeypatch.delenv("JOURNAL_STREAM")
    logsetup.configure(debug=False)


def test_status_exits_nonzero_when_attention_is_needed(practice, capsys):
    events = [Ev(f"e{i}", local(2026, 11, 10 + i, 10), local(2026, 11, 10 + i, 10, 50), "Jane Doe")
              for i in range(6)]
    practice.calendar([team(), *events])
    assert practice.once(local(2026, 11, 2, 8)) == 0
    assert practice.cli("status") == 0
    (practice.root / "practice.ics").write_text("<html>gone</html>")
    assert practice.once(local(2026, 11, 3, 8)) == 1
    capsys.readouterr()
    assert practice.cli("status") == 1
    assert "DEGRADED" in capsys.readouterr().out
    assert practice.cli("status", "--json") == 0


def test_check_warns_about_files_others_can_read(tmp_path, capsys):
    from tests.conftest import make_practice

    practice = make_practice(tmp_path / "p")
    cfg = practice.config.read_text().replace('path = "state.db"', 'path = "state/state.db"')
    practice.config.write_text(cfg)
    practice.config.chmod(0o644)
    practice.once(local(2026, 11, 2, 8))
    (practice.root / "state").chmod(0o755)
    capsys.readouterr()
    assert practice.cli("check") == 0
    err = capsys.readouterr().err
    assert "config.toml is readable by every user" in err and "state is readable by every user" in err
    practice.config.chmod(0o600)
    (practice.root / "state").chmod(0o700)
    assert practice.cli("check") == 0
    assert "readable by every user" not in capsys.readouterr().err
