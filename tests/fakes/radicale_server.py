"""A real Radicale CalDAV server on 127.0.0.1 (ephemeral port), for the caldav source's tests.

Radicale's WSGI application runs in a threaded ``wsgiref`` server, so the OS
picks the port and there is nothing to race for.  ``auth.type = none`` unless
``users`` are given (then an htpasswd file with plain passwords).  Test set-up
helpers speak plain HTTP (MKCOL, MKCALENDAR, PUT, DELETE) with ``requests``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests

MKCALENDAR = """<?xml version="1.0" encoding="utf-8"?>
<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:set><D:prop><D:displayname>{name}</D:displayname>
  <C:supported-calendar-component-set><C:comp name="VEVENT"/></C:supported-calendar-component-set>
  </D:prop></D:set>
</C:mkcalendar>"""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass


class RadicaleServer:
    """``with RadicaleServer(tmp_path) as dav:`` then ``dav.make_calendar("ana", "practice")``."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        import radicale
        import radicale.config

        self.users = users or {}
        self.auth: tuple[str, str] | None = next(iter(self.users.items()), None)
        config = radicale.config.load()
        settings: dict[str, dict[str, Any]] = {
            "storage": {"filesystem_folder": str(folder / "collections")},
            "auth": {"type": "none"},
            "logging": {"level": "warning", "mask_passwords": "true"},
        }
        if self.users:
            folder.mkdir(parents=True, exist_ok=True)
            htpasswd = folder / "htpasswd"
            htpasswd.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            settings["auth"] = {"type": "htpasswd", "htpasswd_filename": str(htpasswd),
                                "htpasswd_encryption": "plain",
                                "delay": "0"}   # no brute-force pause after a wrong password in tests
        config.update(settings, "welcomeback tests")
        self.app = radicale.Application(config)
        self.rewrites: list[tuple[bytes, bytes]] = []   # (old, new) applied to every response body
        self.requests: list[tuple[str, str, int]] = []   # (method, path, status) of every answered request
        self.after: Any = None       # called with (method, path, status) once Radicale answered, before the reply
        self.server = make_server("127.0.0.1", 0, self._serve, server_class=_Server, handler_class=_Quiet)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> "RadicaleServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _serve(self, environ: dict[str, Any], start_response: Any) -> Any:
        """Radicale, with the test's ``rewrites`` applied to what it answers (a fault at the wire),
        every request counted in ``requests`` and the test's ``after`` hook run before the reply."""
        if not self.rewrites and self.after is None:
            def counted(status: str, headers: Any, *exc: Any) -> Any:
                self._count(environ, status)
                return start_response(status, headers, *exc)

            return self.app(environ, counted)
        environ = {k: v for k, v in environ.items() if k != "HTTP_ACCEPT_ENCODING"}   # plain bytes
        captured: list[Any] = []
        body = b"".join(self.app(environ, lambda status, headers, *exc: captured.append((status, headers))))
        for old, new in self.rewrites:
            body = body.replace(old, new)
        status, headers = captured[0]
        self._count(environ, status)
        if self.after is not None:
            self.after(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), int(status.split()[0]))
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, headers + [("Content-Length", str(len(body)))])
        return [body]

    def _count(self, environ: dict[str, Any], status: str) -> None:
        self.requests.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), int(status.split()[0])))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, url, auth=self.auth, timeout=10, **kwargs)

    def make_calendar(self, user: str, name: str) -> str:
        """MKCOL the user collection (Radicale needs it first), then MKCALENDAR; returns the URL."""
        home = f"{self.url}/{user}/"
        resp = self._request("MKCOL", home)
        assert resp.status_code in (201, 405), resp.status_code
        cal = f"{home}{name}/"
        resp = self._request("MKCALENDAR", cal, data=MKCALENDAR.format(name=name).encode(),
                             headers={"Content-Type": "application/xml; charset=utf-8"})
        assert resp.status_code == 201, resp.status_code
        return cal

    def put(self, calendar_url: str, uid: str, ics: str) -> None:
        """Create or replace the object ``<uid>.ics`` (one VCALENDAR, one UID)."""
        resp = self._request("PUT", calendar_url + quote(uid, safe="") + ".ics", data=ics.encode(),
                             headers={"Content-Type": "text/calendar; charset=utf-8"})
        assert resp.status_code in (201, 204), resp.status_code

    def delete(self, calendar_url: str, uid: str) -> None:
        resp = self._request("DELETE", calendar_url + quote(uid, safe="") + ".ics")
        assert resp.status_code in (200, 204), resp.status_code
