"""New mail heard as it arrives: IMAP IDLE against a real Dovecot on loopback.

The watcher only asks for a read; the inbox job does the reading, so these tests check that
the ask comes when a message lands (and not before), that a server without IDLE leaves the
interval to do the work, and that a real ``welcomeback run`` whose inbox interval is an hour
stops Jane's next email within seconds of her reply.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from connectors.inbox.idle import IdleWatcher
from connectors.inbox.imap import ImapInbox, ImapSettings
from tests import canary
from tests.conftest import local
from tests.fakes import dovecot
from tests.test_inbox import JANE, REPLIES, _first_step_sent, _plain, _steps, imap, practice_with_inbox  # noqa: F401 (imap: the fixture)

pytestmark = [pytest.mark.skipif(not Path(dovecot.DOVECOT).exists(), reason="dovecot-imapd is not installed"),
              pytest.mark.real_timers]

NO_IDLE = "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE LITERAL+\n"


def _inbox(server: dovecot.Dovecot, folder: str) -> ImapInbox:
    settings = ImapSettings("127.0.0.1", server.port, security="none", username=dovecot.USER, folder=folder,
                            timeout=10)
    return ImapInbox(settings, lambda _name: dovecot.PASSWORD)


def _note(folder: str) -> bytes:
    return _plain("ana@riverside.example", "ana@riverside.example", f"note {folder}", "hello")


def test_new_mail_asks_for_a_read_and_nothing_else_does(imap: dovecot.Dovecot) -> None:
    imap.append("idle1", _note("idle1"))                  # already there: no ask for it
    asked = threading.Event()
    count: list[int] = []
    watcher = IdleWatcher(_inbox(imap, "idle1"), lambda: (count.append(1), asked.set()), check=0.2)
    watcher.start()
    try:
        assert watcher.idling.wait(10), "IDLE did not start"
        assert not asked.wait(1.0), "asked for a read with nothing new"
        imap.append("idle1", _note("idle1"))
        assert asked.wait(10), "new mail was not announced"
        assert watcher.offered is True
    finally:
        started = time.monotonic()
        watcher.stop()
        assert time.monotonic() - started < 5, "stopping waited for the IDLE to end by itself"
    assert len(count) == 1


def test_idle_is_renewed_and_still_hears(imap: dovecot.Dovecot) -> None:
    asked = threading.Event()
    watcher = IdleWatcher(_inbox(imap, "idle2"), asked.set, renew=0.25, check=0.05)
    imap.append("idle2", _note("idle2"))
    watcher.start()
    try:
        assert watcher.idling.wait(10)
        time.sleep(0.8)                                    # several IDLE/DONE rounds on one connection
        imap.append("idle2", _note("idle2"))
        assert asked.wait(10)
    finally:
        watcher.stop()


def test_a_lost_server_is_retried_and_a_server_without_idle_is_left_to_the_interval(
        imap: dovecot.Dovecot, caplog: pytest.LogCaptureFixture) -> None:
    plain = dovecot.start(NO_IDLE)
    try:
        watcher = IdleWatcher(_inbox(plain, "INBOX"), lambda: None)
        watcher.start()
        deadline = time.monotonic() + 10
        while watcher.offered is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watcher.offered is False
        assert watcher._thread is not None
        watcher._thread.join(5)
        assert not watcher._thread.is_alive(), "a watcher without IDLE should end"
        watcher.stop()
    finally:
        dovecot.stop(plain)
    gone = IdleWatcher(_inbox(imap, "idle3"), lambda: None, pauses=(0.2,))
    gone.inbox = ImapInbox(ImapSettings("127.0.0.1", dovecot.free_port(), security="none",
                                        username=dovecot.USER, timeout=2), lambda _n: dovecot.PASSWORD)
    gone.start()
    deadline = time.monotonic() + 10                       # a few refused connections, retried
    while caplog.text.count("waiting for new mail failed (inbox 127.0.0.1") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone._thread is not None and gone._thread.is_alive()
    gone.stop()
    assert caplog.text.count("waiting for new mail failed (inbox 127.0.0.1") >= 3


def _welcomeback() -> list[str]:
    script = Path(sys.executable).with_name("welcomeback")
    return [str(script)] if script.exists() else [sys.executable, "-m", "daemon.cli"]


def test_a_running_service_hears_a_reply_at_once(tmp_path: Path, imap: dovecot.Dovecot,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The inbox interval is an hour; the reply at 09:58 still stops the 10:00 email."""
    p, folder = practice_with_inbox(tmp_path, imap, monkeypatch)
    config = p.config.read_text().replace("plus_address = true", 'plus_address = true\npoll_every = "1 hour"')
    p.config.write_text(config)
    mid, reply_to = _first_step_sent(p)
    env = dict(os.environ, WELCOMEBACK_NO_KEYRING="1", WELCOMEBACK_IMAP_PASSWORD=dovecot.PASSWORD)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    proc = subprocess.Popen([*_welcomeback(), "--config", str(p.config), "run",
                             "--now", local(2026, 11, 10, 9, 58).isoformat()], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(
        line.decode(errors="replace") for line in iter(proc.stderr.readline, b"")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("waiting for new mail" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.05)
        assert any("waiting for new mail" in line for line in lines), "".join(lines)
        time.sleep(0.5)                                    # the first read at start-up is over
        imap.append(folder, REPLIES["plain reply"](mid, reply_to))
        deadline = time.monotonic() + 20
        states: list[tuple[str, str | None]] = []
        while time.monotonic() < deadline:
            states = _steps(p, capsys)
            if states[-1] == ("skipped", "replied"):
                break
            time.sleep(0.2)
        assert states == [("sent", None), ("skipped", "replied")]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        assert proc.returncode == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
    assert len(p.mails_to(JANE)) == 1
    canary.assert_no_client_data("".join(lines), "welcomeback run with IDLE")
