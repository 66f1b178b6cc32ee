"""The sd_notify protocol, without a dependency.

systemd hands a ``Type=notify`` service the address of a datagram socket in
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace).  The
service writes newline-separated ``KEY=value`` assignments to it: ``READY=1``
once started, ``WATCHDOG=1`` as a keep-alive, ``STATUS=...`` for ``systemctl
status``, ``RELOADING=1`` + ``MONOTONIC_USEC=...`` and ``STOPPING=1``.  Outside
systemd every call is a cheap no-op, so the service runs the same either way.
See sd_notify(3) and sd_watchdog_enabled(3).
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)

# Python keyword arguments → protocol keys (READY, WATCHDOG, ...).
_FLAGS = ("ready", "watchdog", "stopping", "reloading")
SEND_TIMEOUT = 2.0  # seconds


def _address(raw: str) -> str | bytes | None:
    """The socket address from ``$NOTIFY_SOCKET``; abstract names start with NUL."""
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    return None  # vsock and other forms are not supported here


def encode(**fields: object) -> str:
    """The datagram text for ``fields``, e.g. ``encode(ready=True, status="ok")``.

    Boolean flags become ``KEY=1`` (False drops them); other values become
    ``KEY=value`` with newlines flattened, since one field is one line.
    ``reloading=True`` adds the ``MONOTONIC_USEC`` systemd >= 253 requires.
    """
    lines: list[str] = []
    for name, value in fields.items():
        if value is None or value is False:
            continue
        key = name.upper()
        if name in _FLAGS or value is True:
            lines.append(f"{key}=1")
        else:
            lines.append(f"{key}=" + str(value).replace("\n", " "))
    if fields.get("reloading") and "monotonic_usec" not in fields:
        lines.append(f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
    return "\n".join(lines) + "\n"


def notify(**fields: object) -> bool:
    """Send ``fields`` as one datagram to ``$NOTIFY_SOCKET``.

    Returns True when the datagram was sent, False when no socket is set (not
    under systemd) or sending failed; it never raises, since a lost status
    message must not stop the service.
    """
    raw = os.environ.get("NOTIFY_SOCKET", "")
    address = _address(raw) if raw else None
    if address is None:
        return False
    payload = encode(**fields).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT)  # a full receive queue must not hang the main loop
            sock.sendto(payload, address)
        return True
    except OSError as exc:  # includes socket.timeout
        log.debug("sd_notify failed: %s", exc.strerror or type(exc).__name__)
        return False


def watchdog_interval() -> float | None:
    """The watchdog timeout in seconds if systemd expects pings from this process.

    Reads ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, which must be our pid when
    set).  Ping at half this interval or more often.  None when disabled.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None
