"""Three `welcomeback run` replicas on the real PostgreSQL, SIGKILLed and restarted at random on
an accelerated clock (`run --now … --speed 60`, one wall second a virtual minute), and one
replica whose database goes away for a while.

500 follow-ups fall due across 50 calendars; the emails go to a real aiosmtpd on loopback,
which records every Message-ID.  At the end: no Message-ID twice, every step ended (sent,
skipped, failed or uncertain — never lost as `planned` or `sending`), each calendar polled about
once per interval (a dead replica's calendars wait until its leases lapse), leases recovered.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa

from daemon.store.tables import calendars, leases, steps, ts
from tests import canary
from tests.conftest import PG_BASE, Practice, local, make_practice, postgres_available
from tests.fakes.smtp import serve, use_smtp
from tests.fakes.tcp_proxy import TcpProxy
from tests.ics import Ev, write
from tests.stories import team

pytestmark = [pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not reachable on 127.0.0.1:5432"),
              pytest.mark.real_timers]

SPEED = 60.0
CALENDARS, PER_CALENDAR = 50, 10
INTERVAL = timedelta(minutes=10)
V0 = local(2026, 11, 4, 9, 30)                     # the virtual start: every email is due by 09:40
ONE_EMAIL = """
[cadence]
steps = [{ channel = "email", after = "1 business day", template = "email_followup" }]
max_messages_per_hour = 1000
"""


class Recorder:
    """Every Message-ID the SMTP server accepted, in order."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        mid = message_from_bytes(envelope.original_content or envelope.content)["Message-ID"]
        with self.lock:
            self.ids.append(mid)
        return "250 OK"


def _welcomeback() -> list[str]:
    script = Path(sys.executable).with_name("welcomeback")
    return [str(script)] if script.exists() else [sys.executable, "-m", "daemon.cli"]


def _practice(root: Path, store_url: str, port: int, calendars_n: int = CALENDARS,
              per: int = PER_CALENDAR) -> Practice:
    """``calendars_n`` calendars of ``per`` clients each, every client a no-show on Tuesday."""
    extra = ONE_EMAIL + "".join(
        f'\n[[calendars]]\nname = "room{c:02d}"\nkind = "ics"\nsource = "room{c:02d}.ics"\npoll_every = "10 minutes"\n'
        for c in range(calendars_n))
    p = make_practice(root, store=f'url = "{store_url}"', extra=extra)
    use_smtp(p, port)
    people = [f"Client{i:03d} Test" for i in range(calendars_n * per)]
    (p.root / "clients.csv").write_text("name,aliases,email,phone,preferred_channel,do_not_contact\n" + "".join(
        f"{n},,c{i}@example.com,,email,false\n" for i, n in enumerate(people)))
    sessions = {c: [Ev(f"r{c}s{j}", local(2026, 11, 3, 8) + timedelta(minutes=10 * j),
                       local(2026, 11, 3, 8, 8) + timedelta(minutes=10 * j), people[c * per + j])
                    for j in range(per)] for c in range(calendars_n)}
    for c, evs in sessions.items():
        write(p.root / f"room{c:02d}.ics", [team(), *evs])
    assert p.once(local(2026, 11, 2, 8)) == 0
    for c, evs in sessions.items():
        for e in evs:
            e.summary += " no-show"
        write(p.root / f"room{c:02d}.ics", [team(), *evs])
    assert p.once(local(2026, 11, 3, 20)) == 0
    return p


class Timeline:
    """One virtual timeline for every replica, whenever it (re)starts: --now follows the wall."""

    def __init__(self) -> None:
        self.wall0 = time.monotonic()

    def now(self) -> datetime:
        return V0 + timedelta(seconds=(time.monotonic() - self.wall0) * SPEED)


class Replicas:
    def __init__(self, p: Practice, timeline: Timeline, logs: Path, env: dict[str, str]) -> None:
        self.p, self.timeline, self.logs, self.env = p, timeline, logs, env
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.started = 0
        self.files: list[Path] = []
        self.current: dict[int, Path] = {}      # each running replica's log

    def start(self, slot: int) -> None:
        self.started += 1
        log = self.logs / f"replica{slot}-{self.started}.log"
        self.files.append(log)
        self.current[slot] = log
        with open(log, "wb") as out:
            self.procs[slot] = subprocess.Popen(
                [*_welcomeback(), "--debug", "--config", str(self.p.config), "run",
                 "--now", self.timeline.now().isoformat(), "--speed", str(SPEED)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def kill(self, slot: int) -> None:
        proc = self.procs.pop(slot)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def wait_ready(self, timeout: float = 30) -> None:
        """Until every running replica has logged that it is ready (SIGTERM is handled then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all("service ready" in self.current[slot].read_text(errors="replace") for slot in self.procs):
                return
            time.sleep(0.1)
        raise AssertionError("a replica did not become ready")

    def stop_all(self) -> list[int]:
        self.wait_ready()
        codes = []
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                codes.append(proc.wait(30))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(-9)
        self.procs.clear()
        return codes

    def text(self) -> str:
        return "".join(f.read_text(errors="replace") for f in self.files)


def _engine(url: str) -> sa.engine.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def _states(db: sa.engine.Engine) -> Counter[str]:
    with db.connect() as conn:
        return Counter(r[0] for r in conn.execute(sa.select(steps.c.state)))


@pytest.fixture
def smtp() -> Iterator[tuple[int, Recorder]]:
    recorder = Recorder()
    with serve(recorder) as port:
        yield port, recorder


POLL_LINE = re.compile(r"^(\S+ \S+) DEBUG daemon\.engine\.cycle: calendar (room\d\d): .* in the window", re.M)


def test_three_replicas_killed_at_random_lose_and_duplicate_nothing(
        tmp_path: Path, pg_schema: str, smtp: tuple[int, Recorder]) -> None:
    port, recorder = smtp
    p = _practice(tmp_path / "p", pg_schema, port)
    db = _engine(pg_schema)
    assert _states(db) == {"planned": CALENDARS * PER_CALENDAR}
    env = dict(os.environ, WELCOMEBACK_NO_KEYRING="1")
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(name, None)
    timeline = Timeline()
    replicas = Replicas(p, timeline, tmp_path, env)
    rng = random.Random(20261203)
    kills = 0
    try:
        for slot in range(3):
            replicas.start(slot)
        chaos_until = time.monotonic() + 40                 # 40 virtual minutes of kills and restarts
        while time.monotonic() < chaos_until:
            time.sleep(rng.uniform(2.0, 5.0))
            slot = rng.choice(sorted(replicas.procs))
            replicas.kill(slot)
            kills += 1
            time.sleep(rng.uniform(0.2, 1.5))
            replicas.start(slot)
        # calm: the survivors finish, and a killed replica's hand-off turns uncertain once its
        # liveness lapses (20 virtual minutes)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            states = _states(db)
            if not states["planned"] and not states["sending"]:
                break
            time.sleep(0.5)
        virtual_end = timeline.now()
        codes = replicas.stop_all()
    finally:
        for proc in replicas.procs.values():
            proc.kill()
    states = _states(db)
    text = replicas.text()
    assert codes == [0, 0, 0], (codes, text[-1500:])
    assert kills >= 8
    # 0 lost: every step ended
    assert set(states) <= {"sent", "skipped", "failed", "uncertain"}, states
    assert sum(states.values()) == CALENDARS * PER_CALENDAR
    # 0 duplicates: no Message-ID twice, and every step recorded sent reached the server
    ids = Counter(recorder.ids)
    assert [m for m, n in ids.items() if n > 1] == []
    assert states["sent"] <= len(ids) <= states["sent"] + states["uncertain"]
    assert states["sent"] >= CALENDARS * PER_CALENDAR - kills      # only a hand-off cut by a kill is uncertain
    # each calendar once per interval within ±1: never three polls within one interval (the log's
    # wall times carry the noise of a loaded machine), never a gap longer than the lease (an
    # interval and a half) plus the liveness and one interval to notice they lapsed
    polls: dict[str, list[datetime]] = {}
    for stamp, name in POLL_LINE.findall(text):
        polls.setdefault(name, []).append(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f"))
    assert sorted(polls) == [f"room{c:02d}" for c in range(CALENDARS)]
    wall_interval = INTERVAL.total_seconds() / SPEED
    intervals = (virtual_end - V0) / INTERVAL
    for name, times in polls.items():
        times.sort()
        gaps = [(b - a).total_seconds() / wall_interval for a, b in zip(times, times[1:])]
        assert all(a + b > 1.0 for a, b in zip(gaps, gaps[1:])), (name, gaps)
        assert max(gaps) < 3.5, (name, gaps)
        assert intervals / 3 <= len(times) <= intervals + 2, (name, len(times), intervals)
    # leases recovered: the replicas stopped cleanly gave theirs back; what is left is a killed
    # replica's, lapsing by itself (and taken over, as the gaps above show)
    with db.connect() as conn:
        left = conn.execute(sa.select(leases.c.name, leases.c.expires_at)).all()
    lapse = ts(virtual_end + timedelta(minutes=16))
    assert all(row.expires_at <= lapse for row in left), left
    assert sum(row.name.startswith("replica:") for row in left) <= kills
    db.dispose()
    canary.assert_no_client_data(text, "three replicas under SIGKILL")


def test_a_replica_waits_out_a_database_outage_and_carries_on(
        tmp_path: Path, pg_schema: str, smtp: tuple[int, Recorder]) -> None:
    """The connection to PostgreSQL is cut (a restart, a network fault): the replica says so once,
    keeps its watchdog fed, and carries on polling and sending when the database is back."""
    from tests.test_service import Notifications

    port, recorder = smtp
    proxy = TcpProxy(5432)
    via_proxy = pg_schema.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert via_proxy != pg_schema and pg_schema.startswith(PG_BASE)
    p = _practice(tmp_path / "p", via_proxy, port, calendars_n=3, per=2)
    db = _engine(pg_schema)                                 # the test's own view, past the proxy
    notes = Notifications(tmp_path / "notify.sock")
    env = dict(os.environ, WELCOMEBACK_NO_KEYRING="1", NOTIFY_SOCKET=str(notes.path), WATCHDOG_USEC="2000000")
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([*_welcomeback(), "--config", str(p.config), "run",
                             "--now", local(2026, 11, 4, 8, 55).isoformat(), "--speed", str(SPEED)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        notes.wait_for(lambda f: f.get("READY") == "1", timeout=30)
        proxy.cut()
        notes.wait_for(lambda f: "the store does not answer" in f.get("STATUS", ""), timeout=20)
        notes.wait_for(lambda f: f.get("WATCHDOG") == "1", timeout=10)      # still fed while it waits
        time.sleep(3)                                                        # a few virtual minutes down
        assert proc.poll() is None
        proxy.restore()
        notes.wait_for(lambda f: f.get("WATCHDOG") == "1" and "does not answer" not in f.get("STATUS", ""),
                       timeout=30)
        before = _last_polls(db)
        deadline = time.monotonic() + 60                                     # polls and sends carry on
        while time.monotonic() < deadline and (_states(db)["planned"] or _last_polls(db) == before):
            time.sleep(0.5)
        assert _last_polls(db) != before
        assert set(_states(db)) == {"sent"}
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notes.close()
        proxy.close()
        db.dispose()
    text = out.decode(errors="replace")
    assert text.count("the store does not answer") == 1, text[-3000:]
    assert text.count("the store answers again") == 1, text[-3000:]
    assert "Traceback" not in text
    assert len(set(recorder.ids)) == len(recorder.ids) == 6
    canary.assert_no_client_data(text, "a replica through a database outage")


def _last_polls(db: sa.engine.Engine) -> dict[str, str]:
    with db.connect() as conn:
        return {r.name: r.last_poll_at for r in conn.execute(sa.select(calendars.c.name, calendars.c.last_poll_at))}
