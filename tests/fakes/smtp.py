"""aiosmtpd on loopback for tests, pointing a practice at it, and a pause hook for crash tests.

The pause hook (``PauseAt``) is driven by two environment variables, read by the
server at every message so a test can move it between runs:

``WB_TEST_SMTP_PAUSE_AT``      pause on the Nth message this server receives (1-based);
``WB_TEST_SMTP_PAUSE_SIGNAL``  a file the server creates once it holds that message.

It pauses *after the whole message (DATA) has arrived and before the reply*:
the sender has committed its claim (``sending``) and handed the message over,
but cannot know the outcome and has not recorded one.  That is the one window
in which a crash leaves a step claimed-but-not-recorded with the message
possibly delivered, so counting the held message as delivered makes any
resend after the crash show up as a duplicate Message-ID.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

PAUSE_AT = "WB_TEST_SMTP_PAUSE_AT"
PAUSE_SIGNAL = "WB_TEST_SMTP_PAUSE_SIGNAL"


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


class PauseAt:
    """Counts messages; on the one ``$WB_TEST_SMTP_PAUSE_AT`` names, signals and holds its reply.

    ``held`` is set (and the signal file created) while that message waits;
    ``release()`` lets it through.  A handler calls ``await pause.after_data()``
    once it has the message and before it answers.
    """

    def __init__(self, limit: float = 30.0) -> None:
        self.received = 0
        self.limit = limit
        self.held = threading.Event()
        self._release = threading.Event()

    async def after_data(self) -> None:
        self.received += 1
        at = os.environ.get(PAUSE_AT)
        if not at or self.received != int(at):
            return
        self._release.clear()
        signal_file = os.environ.get(PAUSE_SIGNAL)
        if signal_file:
            Path(signal_file).touch()
        self.held.set()
        await asyncio.get_running_loop().run_in_executor(None, self._release.wait, self.limit)

    def release(self) -> None:
        self.held.clear()
        self._release.set()


def use_smtp(practice: Any, port: int, timeout: int = 5) -> None:
    """Switch a test practice's email backend from the outbox to that server."""
    outbox = 'backend = "outbox"\noutbox = "outbox"'
    text = practice.config.read_text()
    assert outbox in text, "use_smtp: the practice config has no outbox email backend to replace"
    practice.config.write_text(text.replace(
        outbox, f'backend = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\ntimeout = {timeout}'))
