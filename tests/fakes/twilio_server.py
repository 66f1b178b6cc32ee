"""A loopback Twilio REST API (``POST /2010-04-01/Accounts/{sid}/Messages.json``)
that the real ``twilio`` client talks to.

Each request takes the next scripted ``Reply`` (then the default: 201 with a
new ``SM…`` SID).  Error bodies use Twilio's legacy shape
``{"code", "message", "more_info", "status"}``.
"""

from __future__ import annotations

import itertools
import re

from tests.fakes.sendgrid_server import LoopbackServer, Recorded, Reply

_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Messages\.json$")
_sids = itertools.count(1)


def created(sid: str | None = None) -> Reply:
    """201: the body the real API answers with (the fields the client reads)."""
    return Reply(201, {"sid": sid or f"SM{next(_sids):032x}", "status": "queued"})


def error(status: int, code: int, message: str, **headers: str) -> Reply:
    body = {"code": code, "message": message, "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}
    return Reply(status, body, {k.replace("_", "-"): v for k, v in headers.items()})


def invalid_number(number: str) -> Reply:
    return error(400, 21211, f"The 'To' number {number} is not a valid phone number.")


def opted_out(number: str) -> Reply:
    return error(400, 21610, f"Attempt to send to unsubscribed recipient {number}")


def too_many_requests(retry_after: float | None = None) -> Reply:
    headers = {} if retry_after is None else {"Retry_After": str(int(retry_after))}
    return error(429, 20429, "Too Many Requests", **headers)


def server_error() -> Reply:
    return error(500, 20500, "An internal server error has occurred")


def hang() -> Reply:
    """Read the request, then never answer (the client times out after sending)."""
    return Reply(0, hang=True)


class FakeTwilio(LoopbackServer):
    """Serves the Messages endpoint of one account; anything else is a 404."""

    def __init__(self, account_sid: str) -> None:
        super().__init__()
        self.account_sid = account_sid

    def route(self, request: Recorded) -> Reply | None:
        match = _PATH.match(request.path)
        if not match or match.group(1) != self.account_sid:
            return error(404, 20404, "The requested resource was not found")
        return None

    def default_reply(self, request: Recorded) -> Reply:
        return created()

    def __enter__(self) -> "FakeTwilio":
        super().__enter__()
        return self
