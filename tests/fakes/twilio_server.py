"""A loopback Twilio REST API (``POST /2010-04-01/Accounts/{sid}/Messages.json``, and a
Messaging Service's numbers, ``GET /v1/Services/{sid}/PhoneNumbers``) that the real
``twilio`` client talks to.

Each request takes the next scripted ``Reply`` (then the default: 201 with a
new ``SM…`` SID).  Error bodies use Twilio's legacy shape
``{"code", "message", "more_info", "status"}``.
"""

from __future__ import annotations

import itertools
import re
from datetime import date, datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.sendgrid_server import LoopbackServer, Recorded, Reply

_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Messages\.json$")
_SERVICE_NUMBERS = re.compile(r"^/v1/Services/(MG[0-9a-fA-F]{32})/PhoneNumbers$")   # messaging.twilio.com
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


def message(sender: str, to: str, body: str, at: datetime, *, direction: str = "inbound",
            status: str = "received", sid: str | None = None) -> dict[str, Any]:
    """One Message resource as the Messages list returns it."""
    return {"sid": sid or f"SM{next(_sids):032x}", "from": sender, "to": to, "body": body,
            "direction": direction, "status": status, "date_sent": format_datetime(at.astimezone(timezone.utc), usegmt=True),
            "error_code": 30003 if status == "undelivered" else None, "num_segments": "1"}


class FakeTwilio(LoopbackServer):
    """Serves the Messages endpoint of one account (POST creates, GET lists ``messages`` with
    Twilio's To/From/DateSent filters); anything else is a 404."""

    def __init__(self, account_sid: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.messages: list[dict[str, Any]] = []     # what the GET list serves
        self.services: dict[str, list[str]] = {}     # Messaging Service SID -> its numbers

    def route(self, request: Recorded) -> Reply | None:
        parts = urlsplit(request.path)
        service = _SERVICE_NUMBERS.match(parts.path)
        if service and request.method == "GET" and service.group(1) in self.services:
            numbers = [{"sid": f"PN{i:032x}", "phone_number": n, "service_sid": service.group(1),
                        "account_sid": self.account_sid} for i, n in enumerate(self.services[service.group(1)])]
            return Reply(200, {"phone_numbers": numbers, "meta": {
                "key": "phone_numbers", "page": 0, "page_size": 100, "next_page_url": None,
                "previous_page_url": None, "url": parts.path, "first_page_url": parts.path}})
        match = _PATH.match(parts.path)
        if not match or match.group(1) != self.account_sid:
            return error(404, 20404, "The requested resource was not found")
        if request.method == "GET":
            return Reply(200, self._page(parse_qs(parts.query), parts.path))
        return None

    def _page(self, query: dict[str, list[str]], path: str) -> dict[str, Any]:
        def keep(m: dict[str, Any]) -> bool:
            sent = parsedate_to_datetime(m["date_sent"])
            after, before = query.get("DateSent>"), query.get("DateSent<")
            return (("To" not in query or m["to"] == query["To"][0])
                    and ("From" not in query or m["from"] == query["From"][0])
                    and (not after or sent.date() >= date.fromisoformat(after[0][:10]))
                    and (not before or sent.date() <= date.fromisoformat(before[0][:10])))
        found = [m for m in self.messages if keep(m)]
        return {"messages": found, "next_page_uri": None, "page": 0, "page_size": 50,
                "uri": path, "first_page_uri": path, "previous_page_uri": None, "start": 0, "end": len(found)}

    def default_reply(self, request: Recorded) -> Reply:
        return created()

    def __enter__(self) -> "FakeTwilio":
        super().__enter__()
        return self
