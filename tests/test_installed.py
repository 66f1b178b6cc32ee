"""What users install: the wheel in a fresh virtualenv (core dependencies only), run from
another folder, from a zip, and without the extras a backend needs."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.installed import (
    ROOT,
    clean_env,
    sample_practice,
    welcomeback,
    wheel,
    wheel_venv,
)

pytestmark = pytest.mark.installed

RUNTIME_SUFFIXES = (".py", ".txt", ".html", ".css", ".js")


def _tracked(*folders: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", *folders], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line.endswith(RUNTIME_SUFFIXES)]


def test_the_wheel_holds_every_file_read_at_run_time() -> None:
    names = set(zipfile.ZipFile(wheel()).namelist())
    expected = set(_tracked("daemon", "connectors"))
    expected |= {"welcomeback_templates/" + Path(p).name for p in _tracked("templates")}
    assert expected, "git ls-files found nothing"
    assert sorted(expected - names) == []
    assert {"welcomeback_templates/email_followup.html", "welcomeback_templates/phone_call.txt"} <= names
    assert {"daemon/web/templates/today.html", "daemon/web/static/console.css",
            "daemon/web/static/preview.js"} <= names      # the console's pages and assets


def test_web_without_the_extra_exits_2_naming_it(tmp_path: Path) -> None:
    config = sample_practice(tmp_path / "practice")
    for command in (["web"], ["web", "set-password"]):
        result = welcomeback(wheel_venv(), "--config", str(config), *command, cwd=config.parent)
        assert result.returncode == 2, result.stderr
        assert "pip install 'welcomeback[web]'" in result.stderr and "Traceback" not in result.stderr


def test_installed_copy_works_from_another_folder(tmp_path: Path) -> None:
    venv = wheel_venv()
    config = sample_practice(tmp_path / "practice")
    cwd = config.parent
    check = welcomeback(venv, "--config", str(config), "check", cwd=cwd)
    assert check.returncode == 0, check.stderr
    assert "OK" in check.stdout
    for template in ("phone_call", "email_followup", "sms_checkin"):
        shown = welcomeback(venv, "--config", str(config), "preview", template, cwd=cwd)
        assert shown.returncode == 0, shown.stderr
        assert "Sam" in shown.stdout and "sample values" in shown.stderr
    html = welcomeback(venv, "--config", str(config), "preview", "email_followup", cwd=cwd)
    assert "--- HTML ---" in html.stdout     # the .html part ships too
    once = welcomeback(venv, "--config", str(config), "once", "--now", "2030-03-05T10:30:00-05:00",
                       "--dry-run", cwd=cwd)
    assert once.returncode == 0, once.stderr
    listed = welcomeback(venv, "--config", str(config), "templates", "list", cwd=cwd)
    assert listed.returncode == 0 and "phone_call" in listed.stdout and "default" in listed.stdout


def test_installed_templates_edit_copies_the_packaged_defaults(tmp_path: Path) -> None:
    venv = wheel_venv()
    config = sample_practice(tmp_path / "practice")
    env = clean_env(VISUAL="sed -i 's/Take care/Take good care/'")
    edit = welcomeback(venv, "--config", str(config), "templates", "edit", "phone_call", cwd=config.parent, env=env)
    assert edit.returncode == 0, edit.stderr
    mine = config.parent / "my-templates"
    assert (mine / "email_followup.html").is_file() and "Take good care" in (mine / "phone_call.txt").read_text()


def test_installed_demo_leaves_real_messages(tmp_path: Path) -> None:
    run = welcomeback(wheel_venv(), "demo", "--outbox", str(tmp_path / "out"), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    mails = sorted((tmp_path / "out").glob("*.eml"))
    assert len(mails) == 3
    assert all("Subject: " in m.read_text() for m in mails)


def test_the_package_works_from_a_zip(tmp_path: Path) -> None:
    """The wheel itself on sys.path (a zip): templates are read through importlib.resources."""
    config = sample_practice(tmp_path / "practice")
    env = clean_env(PYTHONPATH=str(wheel()))
    python = str(wheel_venv() / "bin" / "python")
    where = subprocess.run([python, "-c", "import daemon, welcomeback_templates as t; "
                            "print(daemon.__file__); print(t.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.count(".whl") == 2, where.stdout
    shown = subprocess.run([python, "-m", "daemon.cli", "--config", str(config), "preview", "email_followup"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "Checking in from Riverside Counselling" in shown.stdout and "--- HTML ---" in shown.stdout
    demo = subprocess.run([python, "-m", "daemon.cli", "demo", "--outbox", str(tmp_path / "out")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert len(list((tmp_path / "out").glob("*.eml"))) == 3


# -- a backend whose library is not installed -----------------------------------------------
TWILIO = """
[channels.phone]
backend = "twilio-sms"
account_sid = "AC0123456789abcdef0123456789abcdef"
from_number = "+12025550123"
"""
CALDAV = """
[[calendars]]
name = "shared"
kind = "caldav"
source = "http://127.0.0.1:9/cal/"
"""
BACKENDS = {
    "twilio": (lambda text: re.sub(r'\[channels\.phone\]\nbackend = "therapist-email".*', TWILIO.strip(), text),
               "[channels.phone] backend 'twilio-sms'", "twilio"),
    "caldav": (lambda text: text.replace("[clients]", CALDAV.strip() + "\n\n[clients]", 1),
               "calendar 'shared' (kind 'caldav')", "caldav"),
    "postgres": (lambda text: text.replace('path = "state.db"', 'url = "postgresql://welcomeback@127.0.0.1:5432/test"', 1),
                 "[store] url (PostgreSQL)", "postgres"),
}


def _config_for(tmp_path: Path, backend: str) -> Path:
    config = sample_practice(tmp_path / backend)
    edit = BACKENDS[backend][0]
    changed = edit(config.read_text())
    assert changed != config.read_text(), f"the {backend} edit did not apply"
    config.write_text(changed)
    return config


def _names_backend_and_command(text: str, backend: str) -> None:
    _, what, extra = BACKENDS[backend]
    assert what in text, text
    assert f"pip install 'welcomeback[{extra}]'" in text, text
    assert "Traceback" not in text and "ModuleNotFoundError" not in text


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_missing_library_stops_check_and_once_with_exit_2(tmp_path: Path, backend: str) -> None:
    venv = wheel_venv()
    config = _config_for(tmp_path, backend)
    for command in (["check"], ["once"], ["once", "--now", "2030-03-05T10:30:00-05:00"]):
        result = welcomeback(venv, "--config", str(config), *command, cwd=config.parent)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        _names_backend_and_command(result.stderr, backend)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_missing_library_stops_run_before_ready(tmp_path: Path, backend: str) -> None:
    config = _config_for(tmp_path, backend)
    notify = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(0.2)
        env = clean_env(NOTIFY_SOCKET=str(notify))
        result = welcomeback(wheel_venv(), "--config", str(config), "run", cwd=config.parent, env=env, timeout=120)
        messages = []
        try:
            while True:
                messages.append(sock.recv(4096).decode())
        except (socket.timeout, BlockingIOError):
            pass
    assert result.returncode == 2, result.stderr
    _names_backend_and_command(result.stderr, backend)
    assert not any("READY=1" in m for m in messages), messages


def test_the_checkout_suite_runs_without_the_wheel_on_sys_path() -> None:
    """Guard for the tests above: the installed copy is the wheel's, not this checkout."""
    venv = wheel_venv()
    found = subprocess.run([str(venv / "bin" / "python"), "-c", "import daemon; print(daemon.__file__)"],
                           cwd="/", env=clean_env(), capture_output=True, text=True, check=True)
    assert not found.stdout.startswith(str(ROOT)), found.stdout
    assert os.path.realpath(sys.prefix) != os.path.realpath(venv)
