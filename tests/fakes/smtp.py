"""aiosmtpd on loopback for tests, and pointing a practice at it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiosmtpd.controller import Controller


class LoopbackController(Controller):
    """aiosmtpd's Controller on an ephemeral port (port 0)."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@contextmanager
def serve(handler: Any) -> Iterator[int]:
    """Run ``handler`` as an SMTP server on 127.0.0.1; yields its port."""
    controller = LoopbackController(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


def use_smtp(practice: Any, port: int, timeout: int = 5) -> None:
    """Switch a test practice's email backend from the outbox to that server."""
    text = practice.config.read_text().replace(
        'backend = "outbox"\noutbox = "outbox"',
        f'backend = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\ntimeout = {timeout}')
    practice.config.write_text(text)
