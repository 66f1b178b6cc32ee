"""``welcomeback run``: READY/WATCHDOG/STATUS over a real notify socket, reload, stop, lock.

Everything runs on a small practice written to tmp_path (an ICS file, a CSV
directory, SQLite, an outbox folder), against the real engine and APScheduler.
The engine's clock is fixed (``T0``); what cannot be, the scheduler's timers,
the notify loop's tick and signals to a real process, runs on real time, and
those tests carry ``@pytest.mark.real_timers``.  Waiting is only ever for a
datagram, a thread or a process, each with a timeout.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon import config as config_module
from daemon.clock import AcceleratedClock, FixedClock
from daemon.errors import ConfigError, InstanceLocked
from daemon.service.run import Service, run_service
from tests import canary

ROOT = Path(__file__).resolve().parent.parent
TICK = 0.05
T0 = datetime(2026, 11, 2, 13, 0, tzinfo=timezone.utc)      # the engine's "now" in every in-process test
Fields = dict[str, str]


# -- a practice on disk --------------------------------------------------------------
def _ics(now: datetime) -> str:
    start = (now + timedelta(days=3)).replace(hour=15, minute=0, second=0, microsecond=0)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    return "\r\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//welcomeback tests//EN",
        "BEGIN:VEVENT", "UID:weekly-1@test", f"DTSTAMP:{stamp}",
        f"DTSTART:{start.strftime('%Y%m%dT%H%M%SZ')}",
        f"DTEND:{(start + timedelta(minutes=50)).strftime('%Y%m%dT%H%M%SZ')}",
        "RRULE:FREQ=WEEKLY;COUNT=6", "SUMMARY:Session", "ATTENDEE;CN=Client One:mailto:c1@example.org",
        "END:VEVENT", "END:VCALENDAR", ""])


CONFIG = """\
[practice]
name = "Test Practice"
therapist = "Ana Test"
therapist_email = "ana@practice.example"
timezone = "America/New_York"

[store]
path = "state.db"

[[calendars]]
name = "main"
kind = "ics"
source = "practice.ics"
poll_every = "{poll_every}"

[clients]
directory = "clients.csv"

[digest]
at = "07:30"

[channels.email]
backend = "outbox"
outbox = "outbox"
from = "ana@practice.example"

[channels.phone]
backend = "therapist-email"
"""


def write_practice(folder: Path, poll_every: str = "2 minutes") -> Path:
    """A runnable practice in ``folder``; returns the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "practice.ics").write_text(_ics(T0), encoding="utf-8")
    (folder / "clients.csv").write_text(
        "name,aliases,email,phone,preferred_channel,do_not_contact\n"
        "Client One,,c1@example.org,+12025550101,,\n", encoding="utf-8")
    path = folder / "config.toml"
    path.write_text(CONFIG.format(poll_every=poll_every), encoding="utf-8")
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_practice(tmp_path / "practice")


# -- the notify socket -----------------------------------------------------------------
class Notifications:
    """The receiving end of $NOTIFY_SOCKET: a reader thread queues every datagram, parsed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.seen: list[Fields] = []  # consumed by wait_for, in order
        self._queue: queue.Queue[Fields] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536).decode()
            except OSError:  # closed
                return
            if not data:
                return
            self._queue.put(dict(line.split("=", 1) for line in data.splitlines() if "=" in line))

    def wait_for(self, match: Callable[[Fields], bool], timeout: float = 20.0) -> Fields:
        """The next datagram that ``match``es; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                fields = self._queue.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(fields)
            if match(fields):
                return fields
        raise AssertionError(f"no matching notification within {timeout}s; saw {self.seen[-20:]}")

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._reader.join(5)


@pytest.fixture
def notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Notifications]:
    listener = Notifications(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.setenv("WELCOMEBACK_NO_KEYRING", "1")
    yield listener
    listener.close()


def ready(f: Fields) -> bool:
    return f.get("READY") == "1"


class Running:
    """A Service looping in a thread, stopped and joined at the end."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.stop = threading.Event()
        self.result: list[int | BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result.append(self.service.run(self.stop))
        except BaseException as exc:  # handed to the test thread
            self.result.append(exc)

    def finish(self, timeout: float = 10.0) -> int | BaseException:
        self.stop.set()
        self.thread.join(timeout)
        if self.thread.is_alive():
            faulthandler.dump_traceback(sys.stderr)
        assert not self.thread.is_alive(), "service did not stop in time"
        return self.result[0]


@pytest.fixture
def running(config_path: Path, notes: Notifications) -> Iterator[Running]:
    run = Running(Service(config_path, clock=FixedClock(T0), tick=TICK))
    run.thread.start()
    yield run
    if run.thread.is_alive():
        run.finish()


# -- READY, WATCHDOG, STATUS, STOPPING ------------------------------------------------
@pytest.mark.real_timers
def test_ready_then_watchdog_with_status_then_stopping(running: Running,
                                                       notes: Notifications) -> None:
    first = notes.wait_for(ready)
    assert "calendar" in first["STATUS"]
    ping = notes.wait_for(lambda f: f.get("WATCHDOG") == "1")
    assert "1 calendar" in ping["STATUS"] and "due" in ping["STATUS"]
    assert not any("WATCHDOG" in f for f in notes.seen[:notes.seen.index(first)])
    assert running.finish() == 0
    notes.wait_for(lambda f: f.get("STOPPING") == "1", timeout=5)
    assert running.service.engine is None and running.service.scheduler is None


@pytest.mark.real_timers
def test_run_service_returns_0_when_stopped(config_path: Path, notes: Notifications) -> None:
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(
        run_service(config_path, stop_event=stop, tick=TICK)), daemon=True)
    thread.start()
    notes.wait_for(ready)
    stop.set()
    thread.join(10)
    assert result == [0]


@pytest.mark.real_timers
def test_jobs_are_in_memory_timers_only(config_path: Path, notes: Notifications) -> None:
    service = Service(config_path, clock=FixedClock(T0), tick=TICK)
    service.start()
    try:
        assert service.scheduler is not None
        jobs = {job.id: job for job in service.scheduler.get_jobs()}
        assert {"poll:main", "dispatch"} <= set(jobs)
        assert str(jobs["digest"].trigger) == "cron[hour='7', minute='30']"      # [digest] at = "07:30"
        assert str(jobs["digest"].trigger.timezone) == "America/New_York"
        for job in jobs.values():
            assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, None)
        assert jobs["poll:main"].trigger.interval == timedelta(minutes=2)
        assert jobs["dispatch"].trigger.interval == timedelta(seconds=60)
        assert list(service.scheduler._jobstores) == ["default"]
        assert type(service.scheduler._jobstores["default"]).__name__ == "MemoryJobStore"
    finally:
        service.stop()


@pytest.mark.real_timers
def test_a_disabled_digest_has_no_job(config_path: Path, notes: Notifications) -> None:
    text = config_path.read_text(encoding="utf-8")
    assert '[digest]\nat = "07:30"\n' in text
    config_path.write_text(text.replace('[digest]\nat = "07:30"\n', '[digest]\nenabled = false\n'),
                           encoding="utf-8")
    service = Service(config_path, clock=FixedClock(T0), tick=TICK)
    service.start()
    try:
        assert service.scheduler is not None
        assert sorted(job.id for job in service.scheduler.get_jobs()) == ["dispatch", "poll:main"]
    finally:
        service.stop()


# -- reload ----------------------------------------------------------------------------
@pytest.mark.real_timers
def test_reload_with_broken_config_keeps_the_running_one(config_path: Path,
                                                          notes: Notifications,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    service = Service(config_path, clock=FixedClock(T0), tick=TICK)
    service.start()
    try:
        engine, scheduler = service.engine, service.scheduler
        good = config_path.read_text(encoding="utf-8")
        config_path.write_text(good.replace('kind = "ics"', 'kind = "carrier-pigeon"'),
                               encoding="utf-8")
        with caplog.at_level(logging.ERROR, logger="daemon.service.run"):
            assert service.reload() is False
        assert service.engine is engine and service.scheduler is scheduler
        assert scheduler is not None and scheduler.running
        assert "carrier-pigeon" in caplog.text and "reload rejected" in caplog.text
        notes.wait_for(lambda f: f.get("RELOADING") == "1" and "MONOTONIC_USEC" in f)
        notes.wait_for(lambda f: ready(f) and "reload rejected" in f["STATUS"])
        assert service.heartbeat() is True
    finally:
        service.stop()


@pytest.mark.real_timers
def test_reload_with_good_config_rebuilds_engine_and_jobs(config_path: Path,
                                                           notes: Notifications) -> None:
    service = Service(config_path, clock=FixedClock(T0), tick=TICK)
    service.start()
    try:
        engine = service.engine
        text = config_path.read_text(encoding="utf-8")
        config_path.write_text(text.replace('poll_every = "2 minutes"', 'poll_every = "5 minutes"'),
                               encoding="utf-8")
        assert service.reload() is True
        assert service.engine is not engine
        assert service.scheduler is not None
        assert service.scheduler.get_job("poll:main").trigger.interval == timedelta(minutes=5)
        assert service.heartbeat() is True
    finally:
        service.stop()


@pytest.mark.real_timers
def test_reload_whose_engine_cannot_start_is_rejected(config_path: Path, notes: Notifications,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A config that parses but names a missing client directory: the old one runs on."""
    service = Service(config_path, clock=FixedClock(T0), tick=TICK)
    service.start()
    try:
        text = config_path.read_text(encoding="utf-8")
        config_path.write_text(text.replace("clients.csv", "missing.csv"), encoding="utf-8")
        engine = service.engine
        with caplog.at_level(logging.ERROR, logger="daemon.service.run"):
            assert service.reload() is False
        assert service.engine is engine
        assert "missing.csv" in caplog.text
        assert service.config is not None and service.config.clients.directory == "clients.csv"
        assert service.heartbeat() is True
    finally:
        service.stop()


@pytest.mark.real_timers
def test_sighup_path_through_the_loop(running: Running, notes: Notifications,
                                      config_path: Path) -> None:
    notes.wait_for(ready)
    engine = running.service.engine
    config_path.write_text("[practice]\nname = 3\n", encoding="utf-8")
    running.service.request_reload()
    notes.wait_for(lambda f: f.get("RELOADING") == "1")
    notes.wait_for(lambda f: ready(f) and "reload rejected" in f["STATUS"])
    notes.wait_for(lambda f: f.get("WATCHDOG") == "1")
    assert running.service.engine is engine
    assert running.finish() == 0


# -- health and failures -----------------------------------------------------------------
@pytest.mark.real_timers
def test_stuck_job_withholds_the_watchdog(config_path: Path, notes: Notifications) -> None:
    service = Service(config_path, clock=FixedClock(T0), tick=TICK, stuck_after=0.0)
    service.start()
    release, started = threading.Event(), threading.Event()

    def blocking() -> None:
        started.set()
        release.wait(10)
    try:
        assert service.scheduler is not None
        service.scheduler.add_job(service._job, args=(blocking,), id="blocker")
        assert started.wait(10)
        assert service.heartbeat() is False
        notes.wait_for(lambda f: f.get("STATUS", "").startswith("unhealthy: a job"))
        assert not any("WATCHDOG" in f for f in notes.seen)
    finally:
        release.set()
        service.stop()


def test_a_failing_job_logs_no_exception_text(config_path: Path, notes: Notifications,
                                              caplog: pytest.LogCaptureFixture) -> None:
    service = Service(config_path, clock=FixedClock(T0), tick=TICK, debug=True)

    def leaky() -> None:
        raise ValueError("CANARY-Client-Name c1@example.org")
    with caplog.at_level(logging.DEBUG, logger="daemon.service.run"):
        service._job(leaky)
    assert "ValueError" in caplog.text and "leaky" in caplog.text
    assert "CANARY" not in caplog.text and "c1@example.org" not in caplog.text


def test_bad_config_at_start_raises_config_error(tmp_path: Path, notes: Notifications) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[practice]\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        run_service(path, stop_event=threading.Event(), tick=TICK)
    notes.wait_for(lambda f: f.get("STATUS") == "failed: ConfigError", timeout=5)
    assert not any(ready(f) for f in notes.seen)


# -- one instance per store -------------------------------------------------------------
def test_second_engine_on_the_same_store_is_refused(config_path: Path) -> None:
    from daemon.engine.cycle import Engine

    config = config_module.load(config_path)
    first = Engine(config, clock=FixedClock(T0))
    try:
        with pytest.raises(InstanceLocked):
            Engine(config_module.load(config_path), clock=FixedClock(T0))
    finally:
        first.close()
    Engine(config, clock=FixedClock(T0)).close()  # released on close


@pytest.mark.real_timers
def test_second_service_on_the_same_store_is_refused(running: Running, notes: Notifications,
                                                     config_path: Path) -> None:
    notes.wait_for(ready)
    with pytest.raises(InstanceLocked):
        run_service(config_path, stop_event=threading.Event(), tick=TICK)
    assert running.service.heartbeat() is True


# -- the real process ------------------------------------------------------------------
def _welcomeback() -> list[str]:
    script = Path(sys.executable).with_name("welcomeback")
    return [str(script)] if script.exists() else [sys.executable, "-m", "daemon.cli"]


def _start(config_path: Path, notes: Notifications) -> subprocess.Popen[bytes]:
    env = dict(os.environ, NOTIFY_SOCKET=str(notes.path), WELCOMEBACK_NO_KEYRING="1")
    env.pop("WATCHDOG_USEC", None)
    return subprocess.Popen([*_welcomeback(), "--config", str(config_path), "run"], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.real_timers
def test_real_process_ready_then_sigterm_exits_0(config_path: Path, notes: Notifications) -> None:
    proc = _start(config_path, notes)
    try:
        notes.wait_for(ready, timeout=20)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err.decode()
        canary.assert_no_client_data((out + err).decode(), "welcomeback run")
        notes.wait_for(lambda f: f.get("STOPPING") == "1", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.real_timers
def test_real_process_sighup_with_broken_config_keeps_running(config_path: Path,
                                                              notes: Notifications) -> None:
    proc = _start(config_path, notes)
    try:
        notes.wait_for(ready, timeout=20)
        config_path.write_text("not = [valid toml", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        notes.wait_for(lambda f: f.get("RELOADING") == "1", timeout=10)
        notes.wait_for(lambda f: ready(f) and "reload rejected" in f["STATUS"], timeout=10)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err.decode()
        canary.assert_no_client_data((out + err).decode(), "welcomeback run")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.real_timers
def test_real_process_second_instance_exits_2(running: Running, notes: Notifications,
                                              config_path: Path) -> None:
    notes.wait_for(ready)
    env = dict(os.environ, WELCOMEBACK_NO_KEYRING="1")
    env.pop("NOTIFY_SOCKET", None)
    done = subprocess.run([*_welcomeback(), "--config", str(config_path), "run"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "another welcomeback process" in done.stderr
    canary.assert_no_client_data(done.stdout + done.stderr, "welcomeback run")


# -- the accelerated clock (run --now ISO --speed N) --------------------------------------
def test_accelerated_clock_starts_at_its_instant_and_runs_n_times_faster() -> None:
    clock = AcceleratedClock(T0, 3600.0)
    first = clock.now()
    assert T0 <= first < T0 + timedelta(minutes=10)
    wall = time.monotonic()
    while time.monotonic() - wall < 0.02:     # a bounded busy wait on the real monotonic clock
        pass
    assert clock.now() - first >= timedelta(seconds=0.02 * 3600)
    with pytest.raises(ValueError):
        AcceleratedClock(T0, 0)


@pytest.mark.real_timers
def test_with_speed_every_interval_is_that_many_times_shorter(config_path: Path,
                                                                notes: Notifications) -> None:
    service = Service(config_path, clock=AcceleratedClock(T0, 60.0), tick=TICK)
    service.start()
    try:
        assert service.scheduler is not None
        jobs = {job.id: job for job in service.scheduler.get_jobs()}
        assert jobs["poll:main"].trigger.interval == timedelta(seconds=2)       # 2 min of virtual time
        assert jobs["dispatch"].trigger.interval == timedelta(seconds=1)
        assert jobs["digest"].trigger.interval == timedelta(minutes=24)         # a virtual day
    finally:
        service.stop()


def test_run_speed_without_now_is_refused(config_path: Path) -> None:
    done = subprocess.run([*_welcomeback(), "--config", str(config_path), "run",
                           "--speed", "60"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert "--speed needs --now" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.real_timers
def test_real_process_on_an_accelerated_clock_lives_through_virtual_hours(
        config_path: Path, notes: Notifications) -> None:
    import sqlite3

    env = dict(os.environ, NOTIFY_SOCKET=str(notes.path), WELCOMEBACK_NO_KEYRING="1")
    env.pop("WATCHDOG_USEC", None)
    proc = subprocess.Popen([*_welcomeback(), "--config", str(config_path), "run",
                             "--now", T0.isoformat(), "--speed", "3600"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        notes.wait_for(ready, timeout=20)
        deadline, last = time.monotonic() + 20, ""
        while time.monotonic() < deadline and last < "2026-11-02T14:00":   # an hour of virtual time
            with sqlite3.connect(config_path.parent / "state.db") as db:
                row = db.execute("SELECT last_poll_at FROM calendars WHERE name = 'main'").fetchone()
            last = row[0] if row and row[0] else ""
            time.sleep(0.1)
        assert last >= "2026-11-02T14:00", last            # polls ran on the virtual clock
        assert last < "2026-11-04", last                    # ... which started at --now
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err.decode()
        canary.assert_no_client_data((out + err).decode(), "welcomeback run --speed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
