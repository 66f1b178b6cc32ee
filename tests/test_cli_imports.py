"""The CLI imports only what a command needs: `status` and `check` read the store and the
files, never a feed, so the iCal parser and the HTTP client stay unloaded (issue 11, item 4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_practice

PROBE = """
import sys
from daemon.cli import main
code = main(["--config", sys.argv[1], sys.argv[2]])
heavy = sorted(m for m in ("icalendar", "recurring_ical_events", "requests", "caldav", "googleapiclient",
                           "flask", "twilio", "sendgrid") if m in sys.modules)
print("LOADED:" + ",".join(heavy))
"""


@pytest.mark.parametrize("command", ["status", "check"])
def test_status_and_check_load_no_parser_and_no_http_client(tmp_path: Path, command: str) -> None:
    p = make_practice(tmp_path / "p")
    done = subprocess.run([sys.executable, "-c", PROBE, str(p.config), command], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    loaded = [line for line in done.stdout.splitlines() if line.startswith("LOADED:")]
    assert loaded == ["LOADED:"], done.stdout + done.stderr


def test_once_still_loads_the_parser_it_needs(tmp_path: Path) -> None:
    p = make_practice(tmp_path / "p")
    probe = PROBE.replace('main(["--config", sys.argv[1], sys.argv[2]])',
                          'main(["--config", sys.argv[1], sys.argv[2], "--now", "2026-11-02T08:00:00-05:00"])')
    done = subprocess.run([sys.executable, "-c", probe, str(p.config), "once"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert "LOADED:icalendar,recurring_ical_events" in done.stdout, done.stdout + done.stderr
