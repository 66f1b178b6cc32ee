"""Stopping the service while a message is being handed off, 50 times in a row:
every step ends `sent` (the in-flight hand-off finishes) or stays `planned`;
none is left half-written (`sending`), none is sent twice."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import timedelta
from email import message_from_bytes

import pytest

from daemon.clock import FixedClock
from daemon.service import jobs as service_jobs
from daemon.service.run import Service
from tests.conftest import local, make_practice
from tests.fakes.smtp import serve, use_smtp
from tests.ics import Ev

N = 50


class Gate:
    """An SMTP server that holds each DATA until the test lets it through."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.ids: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.arrived.set()
        while not self.release.is_set():
            await asyncio.sleep(0.005)
        self.ids.append(message_from_bytes(envelope.original_content or envelope.content)["Message-ID"])
        return "250 OK"


@pytest.fixture
def gate():
    handler = Gate()
    with serve(handler) as port:
        yield port, handler
        handler.release.set()


@pytest.mark.real_timers
def test_stop_during_send_leaves_no_half_written_step(tmp_path, gate, monkeypatch, capsys):
    port, handler = gate
    monkeypatch.setattr(service_jobs, "FIRST_DISPATCH_DELAY", timedelta(0))
    p = make_practice(tmp_path / "p")
    use_smtp(p, port, timeout=20)
    rows = ["name,aliases,email,phone,preferred_channel,do_not_contact"]
    rows += [f"Person{i} Test,,p{i}@example.com,+1 555 010 {2000 + i},,false" for i in range(N)]
    (p.root / "clients.csv").write_text("\n".join(rows) + "\n")
    events = [Ev(f"e{i}", local(2026, 11, 3, 9), local(2026, 11, 3, 9, 50), f"Person{i} Test") for i in range(N)]
    p.calendar(events)
    assert p.once(local(2026, 11, 2, 8)) == 0
    for e in events:
        e.summary += " no-show"
    p.calendar(events)
    assert p.once(local(2026, 11, 3, 11)) == 0
    for run in range(N):
        handler.arrived.clear()
        handler.release.clear()
        service = Service(p.config, clock=FixedClock(local(2026, 11, 4, 10)), tick=0.02)
        stop = threading.Event()
        thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
        thread.start()
        assert handler.arrived.wait(20), f"run {run}: no hand-off started"
        engine = service.engine
        stop.set()                                  # what SIGTERM does
        started = time.monotonic()
        assert engine.stopping.wait(10)             # the service is shutting down mid-send...
        handler.release.set()                       # ...and only now does the server answer
        thread.join(20)
        assert not thread.is_alive() and time.monotonic() - started < 10
        states = Counter(s["state"] for s in p.status(capsys) if s["step"] == 1)
        assert "sending" not in states and "uncertain" not in states, states
        assert states["sent"] == len(handler.ids) == run + 1, (run, states)
    assert len(handler.ids) == len(set(handler.ids))
