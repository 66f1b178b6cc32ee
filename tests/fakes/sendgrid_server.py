"""A loopback SendGrid v3 ``mail/send`` that the real ``sendgrid`` client talks to.

Each request takes the next scripted ``Reply`` (then the default: 202 with an
``X-Message-Id``).  A ``hang`` reply reads the whole request body and then
never answers, so the client's read timeout fires after the request was sent.
``LoopbackServer`` is shared with the Twilio fake.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw)

    def form(self) -> dict[str, str]:
        """An ``application/x-www-form-urlencoded`` body, one value per key."""
        return {k: v[-1] for k, v in parse_qs(self.raw.decode(), keep_blank_values=True).items()}


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1:0 with scripted replies and a request log."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []      # what was sent (POST)
        self.reads: list[Recorded] = []         # what was only read (GET)
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order."""
        with self._lock:
            self._script.extend(replies)

    def default_reply(self, request: Recorded) -> Reply:
        raise NotImplementedError

    def route(self, request: Recorded) -> Reply | None:
        """A reply for requests this fake does not serve (None: serve it)."""
        return None

    def __enter__(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next(self, request: Recorded) -> Reply:
        with self._lock:
            (self.reads if request.method == "GET" else self.requests).append(request)
            routed = self.route(request)
            if routed is not None:
                return routed
            if self._script:
                return self._script.pop(0)
        return self.default_reply(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                request = Recorded("POST", self.path, dict(self.headers.items()), raw)
                reply = server._next(request)
                if reply.hang:
                    server._release.wait(timeout=10)
                    self.close_connection = True
                    return
                self._answer(reply)

            def do_GET(self) -> None:
                reply = server._next(Recorded("GET", self.path, dict(self.headers.items()), b""))
                self._answer(reply)

            def _answer(self, reply: Reply) -> None:
                body = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if body:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


# -- SendGrid -----------------------------------------------------------------

_ids = itertools.count(1)


def accepted(message_id: str | None = None) -> Reply:
    return Reply(202, headers={"X-Message-Id": message_id or f"sg-{next(_ids):06d}"})


def error(status: int, message: str, field_name: str | None = None, **headers: str) -> Reply:
    """SendGrid's error shape: ``{"errors": [{"message", "field", "help"}]}``."""
    body = {"errors": [{"message": message, "field": field_name, "help": None}]}
    return Reply(status, body, {k.replace("_", "-"): v for k, v in headers.items()})


def rate_limited(reset_epoch: float) -> Reply:
    return error(429, "too many requests", X_RateLimit_Limit="600",
                 X_RateLimit_Remaining="0", X_RateLimit_Reset=str(int(reset_epoch)))


def hang() -> Reply:
    """Read the request, then never answer (the client times out after sending)."""
    return Reply(0, hang=True)


class FakeSendGrid(LoopbackServer):
    """``POST /v3/mail/send``; ``GET /v3/messages`` (Email Activity) when ``activity`` is set
    (else 403, as for an account without the add-on); anything else is a 404."""

    activity: list[dict[str, Any]] | None = None    # messages the Email Activity API knows

    def route(self, request: Recorded) -> Reply | None:
        if request.method == "GET" and request.path.startswith("/v3/messages"):
            if self.activity is None:
                return error(403, "access forbidden")
            from urllib.parse import parse_qs, urlsplit

            query = parse_qs(urlsplit(request.path).query).get("query", [""])[0]
            found = [m for m in self.activity if f"=\"{m['step']}\"" in query]
            return Reply(200, {"messages": [{k: v for k, v in m.items() if k != "step"} for m in found]})
        if request.path != "/v3/mail/send":
            return error(404, "not found")
        return None

    def default_reply(self, request: Recorded) -> Reply:
        return accepted()

    def __enter__(self) -> "FakeSendGrid":
        super().__enter__()
        return self
