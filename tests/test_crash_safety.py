"""A process killed (SIGKILL) in the middle of dispatch, 50 times in a row: 0 duplicates and
0 lost steps, counted at a real SMTP server by Message-ID.

The kill is driven by a hook the test controls, not a race: the loopback SMTP fake holds
the Nth message after its DATA and before the reply (tests/fakes/smtp.py ``PauseAt``),
the test checks in the store that the process is mid-dispatch (that step claimed, not
recorded, others still planned), then SIGKILLs it.  Only such kills count, and at least
``MIN_MID_DISPATCH`` of the ``KILLS`` must be.  Afterwards every step the server holds
exactly once; the ones in flight at a kill are ``uncertain`` (never resent), all others ``sent``.
"""

from __future__ import annotations

import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from email import message_from_bytes
from pathlib import Path

import pytest

from tests import canary
from tests.conftest import ROOT, local, make_practice
from tests.fakes.smtp import PAUSE_AT, PAUSE_SIGNAL, PauseAt, serve, use_smtp
from tests.ics import Ev

KILLS, MIN_MID_DISPATCH = 50, 40
HELD = [random.Random(1234).randint(1, 3) for _ in range(KILLS)]   # which message of each run is held
N_CLIENTS = sum(HELD) + 8              # every run is killed with steps still planned; the last run sends 8
DUE = local(2026, 11, 4, 10)           # the call tasks (step 1) of Tuesday's no-shows are due


class Recorder:
    """Records each message's step (from its Message-ID), then lets the pause hook hold it."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.pause = PauseAt()
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        message_id = message_from_bytes(envelope.original_content or envelope.content)["Message-ID"]
        step = re.fullmatch(r"<wb-(.+)-[0-9a-f]{10}@riverside\.example>", message_id)
        assert step, message_id
        with self.lock:
            self.steps.append(step.group(1))
        await self.pause.after_data()     # delivered as far as the server is concerned
        return "250 OK"


@pytest.fixture
def smtp_server():
    recorder = Recorder()
    with serve(recorder) as port:
        yield port, recorder
        recorder.pause.release()


def _practice(tmp_path: Path, port: int):
    p = make_practice(tmp_path / "p")
    use_smtp(p, port)
    rows = ["name,aliases,email,phone,preferred_channel,do_not_contact"]
    rows += [f"Client{i} Test,,client{i}@example.com,+1 555 010 {1000 + i},,false" for i in range(N_CLIENTS)]
    (p.root / "clients.csv").write_text("\n".join(rows) + "\n")
    return p


def _events(marked: bool) -> list[Ev]:
    return [Ev(f"c{i}", local(2026, 11, 3, 9), local(2026, 11, 3, 9, 50),
               f"Client{i} Test" + (" no-show" if marked else "")) for i in range(N_CLIENTS)]


def _once(p, stderr: int = subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(p.config), "once",
                             "--now", DUE.isoformat()], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)


def _first_steps(db: Path) -> dict[str, str]:
    """step id -> state of every call task (step 1), read from the store while a run is held."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return dict(conn.execute("SELECT id, state FROM steps WHERE n = 1").fetchall())


def _wait_until_held(recorder: Recorder, proc: subprocess.Popen) -> bool:
    """True once the server holds the chosen message; False if the run ended first (bounded: 30 s)."""
    for _ in range(600):
        if recorder.pause.held.wait(0.05):
            return True
        if proc.poll() is not None:
            return False
    raise AssertionError("the run neither reached the held message nor ended within 30 s")


def _kill_mid_dispatch(p, recorder: Recorder, run: int, tmp_path: Path, monkeypatch) -> set[str]:
    """One run, SIGKILLed while the server holds its message; the steps in flight then
    (empty if the kill did not land mid-dispatch)."""
    signal_file = tmp_path / f"held-{run}"
    monkeypatch.setenv(PAUSE_AT, str(recorder.pause.received + HELD[run]))
    monkeypatch.setenv(PAUSE_SIGNAL, str(signal_file))
    proc = _once(p)
    held = _wait_until_held(recorder, proc)
    alive = proc.poll() is None
    states = _first_steps(p.root / "state.db")
    proc.kill()                                   # SIGKILL
    assert proc.wait(timeout=10) in (-signal.SIGKILL, 0, 1)
    recorder.pause.release()
    in_flight = {step for step, state in states.items() if state == "sending"}
    if not (held and alive and proc.returncode == -signal.SIGKILL and "planned" in states.values()):
        return set()
    assert signal_file.exists()                    # the hook signalled through the environment too
    assert in_flight == {recorder.steps[-1]}, (in_flight, recorder.steps[-1])   # the held one, only
    return in_flight


def test_sigkill_during_dispatch_never_duplicates_or_loses(tmp_path, smtp_server, capsys, monkeypatch):
    port, recorder = smtp_server
    p = _practice(tmp_path, port)
    p.calendar(_events(False))
    assert p.once(local(2026, 11, 2, 8)) == 0
    p.calendar(_events(True))
    assert p.once(local(2026, 11, 3, 11)) == 0          # detect: one sequence per client, nothing due yet
    in_flight: set[str] = set()
    landed = 0
    for run in range(KILLS):
        killed = _kill_mid_dispatch(p, recorder, run, tmp_path, monkeypatch)
        landed += bool(killed)
        in_flight |= killed
    assert landed >= MIN_MID_DISPATCH, f"only {landed} of {KILLS} kills landed mid-dispatch"
    monkeypatch.delenv(PAUSE_AT)
    final = _once(p, stderr=subprocess.PIPE)
    _, err = final.communicate(timeout=60)
    assert final.returncode == 0, err.decode()
    canary.assert_no_client_data(err.decode(), "welcomeback once")
    steps = {s["id"]: s["state"] for s in p.status(capsys) if s["step"] == 1}
    assert len(steps) == N_CLIENTS
    assert {k for k, v in steps.items() if v == "uncertain"} == in_flight      # never resent
    assert {k for k, v in steps.items() if v != "uncertain"} == set(steps) - in_flight
    assert all(v == "sent" for k, v in steps.items() if k not in in_flight), Counter(steps.values())
    assert Counter(recorder.steps) == Counter(set(steps))                     # each exactly once
