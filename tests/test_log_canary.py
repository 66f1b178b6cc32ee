"""The privacy canary itself (tests/canary.py, wired in tests/conftest.py) can fail.

The matcher: names in any case, aliases, emails in any case, phone numbers in
national formats; the wiring: a throw-away pytest run of generated tests proves
that the autouse fixture fails a test that leaks through any logger, an ``extra=``
field, exception text, a thread or what it prints, and lets clean tests pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import canary
from tests.conftest import ROOT

FOUND = ["Jane Doe", "JANE DOE", "jane\tdoe", "Doe, Jane", "janie", "Zephy", "Quillfeather's notes",
         "OMAR.H@EXAMPLE.ORG", "someone.else@Example.Net", "+1 555 010 0201", "+15550100201",
         "(555) 010-0201", "555-010-0201", "1-555-010-0201", "555.010.0201", "5550100201",
         "+1 (555) 010-4477", "tel:+1-555-010-0205", "priya", "Sam Okafor", "LEE FOX"]
CLEAN = ["step s1-2 sent via phone", "sequence 7f3a9c: stopped (reached)", "ana@riverside.example",
         "+1 555 010 0100", "Chris Parker", "Janet Parks", "id 15550100201999", "Samuel Leeds",
         "calendar main: 3 occurrence(s)", "Riverside Counselling", "Ana Ruiz"]


@pytest.mark.parametrize("text", FOUND)
def test_the_matcher_finds_client_data_in_any_form(text: str) -> None:
    assert canary.find(f"log line: {text}."), text


@pytest.mark.parametrize("text", CLEAN)
def test_the_matcher_leaves_ids_and_the_practice_alone(text: str) -> None:
    assert canary.find(text) == []


WIRING = '''
import logging
import threading

import pytest

from tests.canary import read_client_data


def test_clean(capsys):
    logging.getLogger("daemon.engine.dispatch").info("step %s sent via %s", "s1-1", "phone")
    logging.getLogger("sqlalchemy.engine").debug("row %s", "Jane Doe")   # below WARNING: --debug hides it too
    print("1 calendar(s) polled")
    assert "polled" in capsys.readouterr().out


def test_ours_leak():
    logging.getLogger("daemon.engine.cycle").debug("sending to %s", "jane doe")

def test_sqlalchemy_leak():
    logging.getLogger("sqlalchemy.engine").warning("row %s", "OMAR HADDAD")

def test_urllib3_leak():
    logging.getLogger("urllib3.connectionpool").warning("GET /?to=%s", "+1 (555) 010-0203")

def test_googleapiclient_leak():
    logging.getLogger("googleapiclient.discovery").warning("attendee ROSA.LIND@EXAMPLE.NET")

def test_twilio_leak():
    logging.getLogger("twilio.http_client").warning("To=555-010-0201")

def test_caldav_leak():
    logging.getLogger("caldav").debug("SUMMARY:Zephyrine no-show")

def test_root_leak():
    logging.getLogger().info("janie called back")

def test_extra_leak():
    logging.getLogger("daemon.engine.dispatch").info("step s1-1 sent", extra={"recipient": "Chris.Park@example.com"})

def test_exception_leak():
    try:
        raise ValueError("Mia Stone has no phone")
    except ValueError:
        logging.getLogger("connectors.channels.smtp").exception("send failed")

def test_thread_leak():
    worker = threading.Thread(target=lambda: logging.getLogger("daemon.service.run").error("job for Jordan"))
    worker.start()
    worker.join()

def test_printed_leak():
    print("reminder for Omar Haddad")

def test_printed_and_read_leak(capsys):
    print("to jane.doe@example.com")
    assert "jane" in capsys.readouterr().out


@pytest.mark.shows_client_data
def test_shown_to_the_therapist(capsys):
    print("Jane Doe   2026-11-03 10:00 no_show   step 1 phone")
    assert "Jane" in capsys.readouterr().out


@pytest.mark.shows_client_data
def test_shown_but_also_logged_leak():
    print("Jane Doe")
    logging.getLogger("daemon.cli.status").info("listed %s", "Jane Doe")


def test_status_json_read_as_client_data(capsys):
    print('[{"client": "Jane Doe"}]')
    assert "Jane" in read_client_data(capsys).out
'''
CONFTEST = "from tests.conftest import _no_client_data_in_logs_or_output, _no_keyring, capsys  # noqa: F401\n"
INI = """[pytest]
addopts = --strict-markers
markers =
    shows_client_data: shows client data to the therapist
"""


def test_the_autouse_wiring_fails_a_test_that_leaks(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "pytest.ini").write_text(INI)
    (tmp_path / "test_wiring.py").write_text(textwrap.dedent(WIRING))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "test_wiring.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    outcomes = {name: outcome for outcome, name in re.findall(r"^(PASSED|ERROR|FAILED) test_wiring\.py::(\w+)",
                                                             run.stdout, re.M)}
    tests = re.findall(r"^def (test_\w+)", WIRING, re.M)
    assert sorted(outcomes) == sorted(tests), run.stdout[-3000:]
    assert {n: o for n, o in outcomes.items() if o != "PASSED"} == {
        n: "ERROR" for n in tests if n.endswith("_leak")}, run.stdout[-3000:]
    assert run.stdout.count("client data in logs or output") >= len([n for n in tests if n.endswith("_leak")])
