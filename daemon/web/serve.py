"""Where the console listens, and the refusal of a non-loopback address without TLS or a proxy.

The console is served by cheroot (pure Python, threaded; the server CherryPy ships): plain HTTP
on loopback or behind ``[web] trusted_proxy``, HTTPS with ``[web] tls_cert`` and ``tls_key``
through its builtin ``ssl`` adapter (TLS 1.2 or newer)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.config import libraries
from daemon.errors import UserError
from daemon.hosts import is_loopback

log = logging.getLogger(__name__)


WEB = libraries.Need(("flask", "cheroot", "argon2"), "flask", "web")


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
                      secure_cookie=bool(web.trusted_proxy or (web.tls_cert and web.tls_key)))


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
    if bool(web.tls_cert) != bool(web.tls_key):
        have, lacks = ("tls_cert", "tls_key") if web.tls_cert else ("tls_key", "tls_cert")
        raise UserError(f"[web] {have} is set but [web] {lacks} is not; HTTPS needs both")
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


def tls_context(web: Any, base_dir: Any) -> Any:
    """The server's SSLContext from ``[web] tls_cert`` and ``tls_key`` (paths relative to the
    config file); exit 2 naming the key whose file cannot be used."""
    import ssl

    cert, key = _path(web.tls_cert, base_dir), _path(web.tls_key, base_dir)
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if not path.is_file():
            raise UserError(f"[web] {name} = '{path}': no such file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise UserError(f"[web] tls_cert = '{cert}' / tls_key = '{key}': not a certificate and its private "
                        f"key in PEM form ({exc.reason or exc})") from None
    except OSError as exc:
        raise UserError(f"[web] tls_cert / tls_key: cannot read '{exc.filename or cert}': {exc.strerror}") from None
    return context


def _path(value: str, base_dir: Any) -> Path:
    return Path(base_dir or ".") / Path(value).expanduser()


class _FromProxy:
    """HTTPS as the trusted proxy reports it (``X-Forwarded-Proto``), from that address only."""

    def __init__(self, app: Any, proxy: str) -> None:
        self.app, self.proxy = app, proxy

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
        if proto in ("http", "https") and self.proxy in ("*", environ.get("REMOTE_ADDR")):
            environ["wsgi.url_scheme"] = proto
        return self.app(environ, start_response)


class Server:
    """The console on a cheroot server in a thread (``run``) or in the foreground (``web``)."""

    def __init__(self, app: Any, listen: Listen, web: Any, base_dir: Any) -> None:
        from cheroot import wsgi

        check_exposure(listen, web)
        context = tls_context(web, base_dir) if web.tls_cert and web.tls_key else None
        if web.trusted_proxy:
            app = _FromProxy(app, web.trusted_proxy)
        self.server = wsgi.Server((listen.host, listen.port), app, numthreads=4, server_name="welcomeback",
                                  shutdown_timeout=2)
        self.server.version = "welcomeback"
        if context is not None:
            from cheroot.ssl.builtin import BuiltinSSLAdapter

            adapter = BuiltinSSLAdapter(str(_path(web.tls_cert, base_dir)), str(_path(web.tls_key, base_dir)))
            adapter.context = context          # the same files, checked above, TLS 1.2 or newer
            self.server.ssl_adapter = adapter
        self.tls = context is not None
        try:
            self.server.prepare()
        except OSError as exc:
            raise UserError(f"[web] listen = '{listen.host}:{listen.port}': cannot listen there "
                            f"({exc.strerror or exc})") from None
        self.port = int(self.server.bind_addr[1])
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        log.info("console listening on port %d%s", self.port, " (HTTPS)" if self.tls else "")
        try:
            self.server.serve()
        except OSError:   # closed by stop()
            pass

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="welcomeback-web", daemon=True)
        self._thread.start()

    def running(self) -> bool:
        """Whether the server thread is still serving (it ends when the socket fails)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self.server.stop()
        if self._thread:
            self._thread.join(timeout=5)
