"""The sd_notify protocol against a real AF_UNIX datagram socket."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.service import sdnotify


def _receive(sock: socket.socket) -> dict[str, str]:
    """One datagram, parsed into its KEY=value fields."""
    sock.settimeout(5)
    data = sock.recv(4096).decode()
    assert data.endswith("\n")
    return dict(line.split("=", 1) for line in data.splitlines())


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket bound in tmp_path and announced as $NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_ready_arrives(listener: socket.socket) -> None:
    assert sdnotify.notify(ready=True, status="3 calendars") is True
    assert _receive(listener) == {"READY": "1", "STATUS": "3 calendars"}


def test_watchdog_and_status_in_one_datagram(listener: socket.socket) -> None:
    assert sdnotify.notify(watchdog=True, status="2 steps due\nsecond line")
    fields = _receive(listener)
    assert fields == {"WATCHDOG": "1", "STATUS": "2 steps due second line"}


def test_reloading_carries_monotonic_usec(listener: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.notify(reloading=True)
    fields = _receive(listener)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_stopping_and_false_flags_dropped(listener: socket.socket) -> None:
    assert sdnotify.notify(stopping=True, ready=False, status=None)
    assert _receive(listener) == {"STOPPING": "1"}


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"welcomeback-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify(watchdog=True)
        assert _receive(sock) == {"WATCHDOG": "1"}


def test_unset_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify(ready=True) is False


def test_unreachable_socket_returns_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert sdnotify.notify(ready=True) is False


def test_unsupported_address_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.notify(ready=True) is False


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert sdnotify.watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", "junk")
    assert sdnotify.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "", "sixty"):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert sdnotify.watchdog_interval() is None


def test_full_receive_queue_does_not_block(listener: socket.socket,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody reads the socket: notify gives up after its timeout instead of hanging."""
    monkeypatch.setattr(sdnotify, "SEND_TIMEOUT", 0.01)
    assert sdnotify.notify(status="first") is True
    sent = 0
    while sdnotify.notify(status="x" * 1000):  # fills the receive queue, then gives up
        sent += 1
        assert sent < 100_000, "the queue never filled"
    assert _receive(listener) == {"STATUS": "first"}
