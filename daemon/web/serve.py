"""Where the console listens, and the refusal of a non-loopback address without TLS or a proxy."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from daemon.config import libraries
from daemon.errors import UserError
from daemon.hosts import is_loopback

log = logging.getLogger(__name__)


WEB = libraries.Need(("flask", "waitress", "argon2"), "flask", "web")


def require_web(command: str) -> None:
    """Exit 2 naming the extra when the console's libraries are not installed."""
    module = libraries.missing(WEB)
    if module:
        raise UserError(f"{command}: the console needs the Python package '{module}', which is not "
                        f"installed; install it with: {WEB.command}")


def build(engine: Any, web: Any) -> Any:
    """The console's WSGI app over ``engine`` (imports Flask: call require_web first)."""
    from datetime import timedelta

    from daemon.engine.places import state_dir
    from daemon.web.app import create_app

    return create_app(engine, state_dir(engine.config),
                      idle_timeout=timedelta(seconds=web.idle_timeout.seconds or 1800),
                      secure_cookie=bool(web.trusted_proxy))


@dataclass(frozen=True)
class Listen:
    host: str
    port: int


def parse_listen(text: str, where: str = "[web] listen") -> Listen:
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{where}: '{text}' is not HOST:PORT, e.g. 127.0.0.1:8765")
    return Listen(host, int(port))


def check_exposure(listen: Listen, web: Any) -> None:
    """Refuse (exit 2) a non-loopback address unless TLS or a trusted proxy is configured."""
    if is_loopback(listen.host):
        return
    if web.tls_cert and web.tls_key:
        return
    if web.trusted_proxy:
        return
    raise UserError(f"[web] listen = '{listen.host}:{listen.port}' is reachable from other machines; "
                    "the console shows client data, so it listens there only with TLS "
                    "([web] tls_cert and tls_key) or behind a proxy you name in [web] trusted_proxy. "
                    "Use 127.0.0.1 to keep it on this machine.")


class Server:
    """The console on a waitress server in a thread (``run``) or in the foreground (``web``)."""

    def __init__(self, app: Any, listen: Listen, web: Any, base_dir: Any) -> None:
        from waitress.server import create_server

        check_exposure(listen, web)
        kwargs: dict[str, Any] = {"host": listen.host, "port": listen.port, "threads": 4,
                                  "ident": "welcomeback", "expose_tracebacks": False}
        if web.trusted_proxy:
            kwargs.update(trusted_proxy=web.trusted_proxy, trusted_proxy_headers={"x-forwarded-proto"},
                          trusted_proxy_count=1)
        if web.tls_cert or web.tls_key:
            raise UserError("[web] tls_cert / tls_key: this build serves the console without TLS of its "
                            "own; terminate TLS in a proxy on this machine and name it in [web] trusted_proxy")
        self.server = create_server(app, **kwargs)
        self.port = self.server.socket.getsockname()[1]
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        log.info("console listening on port %d", self.port)
        try:
            self.server.run()
        except OSError:   # closed by stop()
            pass

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="welcomeback-web", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.close()
        if self._thread:
            self._thread.join(timeout=5)

