"""aiosmtpd on loopback for tests."""

from __future__ import annotations

from aiosmtpd.controller import Controller


class LoopbackController(Controller):
    """aiosmtpd's Controller on an ephemeral port (port 0)."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()
