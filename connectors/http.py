"""All outgoing HTTP of the calendar sources goes through here: timeouts,
bounded retries for safe reads only, and URLs with secrets masked in messages."""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit, urlunsplit


log = logging.getLogger(__name__)
USER_AGENT = "welcomeback/0.1 (+calendar follow-up service)"
RETRY_STATUS = {429, 500, 502, 503, 504}


def redact_url(url: str) -> str:
    """Mask credentials and secret-looking path parts (Google's private-<key>)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    path = re.sub(r"private-[0-9a-f]+", "private-…", parts.path)
    path = re.sub(r"/[A-Za-z0-9_\-]{24,}", "/…", path)
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]


def get(url: str, *, headers: dict[str, str] | None = None, timeout: float = 30.0,
        attempts: int = 3, sleep: Callable[[float], None] = time.sleep,
        auth: tuple[str, str] | None = None) -> Response:
    """GET with a timeout; retries connection errors, 429 and 5xx a bounded number of times.

    Raises requests.RequestException when every attempt failed at the transport level.
    """
    import requests           # here, not at the top: most commands never fetch

    merged = {"User-Agent": USER_AGENT, **(headers or {})}
    last_exc: Exception | None = None
    for attempt in range(attempts):
        try:
            r = requests.get(url, headers=merged, timeout=timeout, auth=auth, allow_redirects=True)
        except requests.RequestException as exc:
            last_exc = exc
            log.debug("GET %s failed (attempt %d): %s", redact_url(url), attempt + 1, type(exc).__name__)
        else:
            if r.status_code not in RETRY_STATUS or attempt == attempts - 1:
                return Response(r.status_code, r.content, {k.lower(): v for k, v in r.headers.items()})
            log.debug("GET %s answered %d (attempt %d)", redact_url(url), r.status_code, attempt + 1)
        if attempt < attempts - 1:
            sleep(min(8.0, 0.5 * 2 ** attempt) * (0.5 + random.random() / 2))
    assert last_exc is not None
    raise last_exc
