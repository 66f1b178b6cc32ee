"""A process killed (SIGKILL) in the middle of dispatch, 50 times in a row:
0 duplicates and 0 lost steps, counted at a real SMTP server by Message-ID."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from email import message_from_bytes

import pytest

from tests.conftest import ROOT, local, make_practice
from tests.fakes.smtp import serve, use_smtp
from tests.ics import Ev

N_CLIENTS = 24


class Recorder:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        msg = message_from_bytes(envelope.original_content or envelope.content)
        with self.lock:
            self.ids.append(msg["Message-ID"])
        return "250 OK"


@pytest.fixture
def smtp_server():
    recorder = Recorder()
    with serve(recorder) as port:
        yield port, recorder


def _practice(tmp_path, port):
    p = make_practice(tmp_path / "p")
    use_smtp(p, port)
    rows = ["name,aliases,email,phone,preferred_channel,do_not_contact"]
    rows += [f"Client{i} Test,,client{i}@example.com,+1 555 010 {1000 + i},,false" for i in range(N_CLIENTS)]
    (p.root / "clients.csv").write_text("\n".join(rows) + "\n")
    return p


def _events(marked: bool) -> list[Ev]:
    return [Ev(f"c{i}", local(2026, 11, 3, 9), local(2026, 11, 3, 9, 50),
               f"Client{i} Test" + (" no-show" if marked else "")) for i in range(N_CLIENTS)]


def _once(p, now, **kw):
    return subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(p.config), "once",
                             "--now", now.isoformat()], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, **kw)


def test_sigkill_during_dispatch_never_duplicates_or_loses(tmp_path, smtp_server, capsys):
    port, recorder = smtp_server
    p = _practice(tmp_path, port)
    p.calendar(_events(False))
    assert p.once(local(2026, 11, 2, 8)) == 0
    p.calendar(_events(True))
    assert p.once(local(2026, 11, 3, 11)) == 0          # detect: 24 sequences, nothing due yet
    rng = random.Random(1234)
    due = local(2026, 11, 4, 10)
    for _ in range(50):
        before = len(recorder.ids)
        proc = _once(p, due)
        target = before + rng.randint(0, 2)
        deadline = time.monotonic() + 30
        while proc.poll() is None and len(recorder.ids) <= target and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    final = _once(p, due)
    assert final.wait(timeout=60) == 0, final.stderr.read()
    steps = [s for s in p.status(capsys) if s["step"] == 1]
    assert len(steps) == N_CLIENTS
    states = Counter(s["state"] for s in steps)
    assert set(states) <= {"sent", "uncertain"}, states            # 0 lost
    counts = Counter(recorder.ids)
    assert all(c == 1 for c in counts.values()), counts             # 0 duplicates
    assert states["sent"] <= len(counts) <= states["sent"] + states["uncertain"]
