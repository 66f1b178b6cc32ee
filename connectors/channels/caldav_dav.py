"""The few WebDAV/CalDAV requests the CalDAV call task makes, over plain ``requests``.

PROPFIND (is this URL a calendar?), MKCALENDAR, a conditional PUT, the RFC 6578
sync-collection REPORT with an ETag-listing fallback, and calendar-multiget.
Every answer is reduced to hrefs, ETags and statuses; server text never reaches
a message or a log (it may echo client data back).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import unquote, urljoin, urlsplit
from xml.sax.saxutils import escape

import requests

from connectors.http import USER_AGENT, redact_url

log = logging.getLogger(__name__)
DAV, CAL = "DAV:", "urn:ietf:params:xml:ns:caldav"
XML = {"Content-Type": "application/xml; charset=utf-8"}
MAX_PAGES = 20          # a truncated sync (507) is asked again from its token, this many times at most

PROPFIND = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:" '
            b'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:resourcetype/>'
            b'<C:supported-calendar-component-set/></D:prop></D:propfind>')
ETAGS = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:">'
         b'<D:prop><D:getetag/></D:prop></D:propfind>')
MKCALENDAR = ('<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" '
              'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><D:displayname>{name}'
              '</D:displayname><C:supported-calendar-component-set><C:comp name="{comp}"/>'
              '</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>')
SYNC = ('<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:">'
        '<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>'
        '<D:prop><D:getetag/></D:prop></D:sync-collection>')
MULTIGET = ('<?xml version="1.0" encoding="utf-8"?><C:calendar-multiget xmlns:D="DAV:" '
            'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/>'
            '</D:prop>{hrefs}</C:calendar-multiget>')


class DavFailure(Exception):
    """A request that did not get the answer asked for.

    ``kind``: ``down`` (no connection: nothing reached the server), ``lost`` (the
    request went out, the answer did not come back), ``auth`` (401), ``forbidden``,
    ``not_found``, ``conflict`` (409), ``precondition`` (412), ``rate`` (429/503),
    ``server`` (other 5xx), ``refused`` (other 4xx), ``redirect`` (3xx: not followed, a
    password is not sent on to another place), ``bad`` (an answer that is no multistatus).  ``reason`` names the status and the kind, never server text.
    """

    def __init__(self, kind: str, reason: str, *, status: int | None = None,
                 retry_after: float | None = None, body: bytes = b"") -> None:
        self.kind, self.reason, self.status, self.retry_after = kind, reason, status, retry_after
        self.body = body      # for precondition names only; never shown
        super().__init__(reason)


@dataclass
class Entry:
    """One ``DAV:response``: its href (a path), status, ETag, and what else was asked for."""

    href: str
    status: int
    etag: str = ""
    types: set[str] = field(default_factory=set)
    components: set[str] | None = None
    data: bytes | None = None


def path_of(href: str, base: str = "") -> str:
    """The unescaped path of an href (absolute or relative to ``base``)."""
    return unquote(urlsplit(urljoin(base, href)).path)


class DavClient:
    """A ``requests`` session with basic (or, when asked for, digest) auth and one timeout."""

    def __init__(self, *, username: str, password: str | None, verify: bool | str, timeout: float) -> None:
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.verify = verify
        self.username, self.password, self.timeout = username, password, timeout
        if username:
            self.session.auth = (username, password or "")

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, url: str, *, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> requests.Response:
        """One request; 2xx/207 returned, everything else raised as DavFailure."""
        resp = self._send(method, url, body, headers)
        if resp.status_code == 401 and self._digest_wanted(resp):
            resp = self._send(method, url, body, headers)
        if resp.status_code < 300:
            return resp
        raise _failure(method, resp)

    def _send(self, method: str, url: str, body: bytes | None, headers: dict[str, str] | None) -> requests.Response:
        try:
            return self.session.request(method, url, data=body, headers=headers, timeout=self.timeout,
                                        allow_redirects=False)
        except (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError) as exc:
            raise DavFailure("down", f"cannot connect ({type(exc).__name__})") from None
        except requests.exceptions.ConnectionError as exc:
            if _never_connected(exc):
                raise DavFailure("down", f"cannot connect ({type(exc).__name__})") from None
            raise DavFailure("lost", f"the connection broke after {method} was sent "
                                     f"({type(exc).__name__})") from None
        except requests.exceptions.Timeout as exc:
            raise DavFailure("lost", f"no answer to {method} in {self.timeout:g}s ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise DavFailure("down", f"request failed ({type(exc).__name__})") from None

    def _digest_wanted(self, resp: requests.Response) -> bool:
        """Switch to digest auth once, when the server offers only that."""
        offered = resp.headers.get("WWW-Authenticate", "").lower()
        if not self.username or "digest" not in offered or "basic" in offered:
            return False
        if isinstance(self.session.auth, requests.auth.HTTPDigestAuth):
            return False
        self.session.auth = requests.auth.HTTPDigestAuth(self.username, self.password or "")
        return True

    # -- the requests themselves --------------------------------------------------------
    def describe(self, url: str) -> Entry | None:
        """PROPFIND Depth 0: what ``url`` is (resource types, components), None when absent."""
        try:
            resp = self.request("PROPFIND", url, body=PROPFIND, headers={**XML, "Depth": "0"})
        except DavFailure as exc:
            if exc.kind == "not_found":
                return None
            raise
        entries = multistatus(resp.content, url)
        mine = [e for e in entries if e.href.rstrip("/") == path_of(url).rstrip("/")] or entries
        if not mine:
            raise DavFailure("bad", "PROPFIND answered without a response for the URL")
        return mine[0]

    def make_calendar(self, url: str, name: str, component: str) -> None:
        body = MKCALENDAR.format(name=escape(name), comp=component).encode()
        self.request("MKCALENDAR", url, body=body, headers=XML)

    def put_new(self, url: str, ics: bytes) -> str:
        """PUT with ``If-None-Match: *`` (create only); returns the ETag when the server gives one."""
        resp = self.request("PUT", url, body=ics, headers={"Content-Type": "text/calendar; charset=utf-8",
                                                          "If-None-Match": "*"})
        return resp.headers.get("ETag", "")

    def sync(self, url: str, token: str) -> tuple[list[Entry], str]:
        """sync-collection since ``token`` ("" = everything): (changed or gone members, new token)."""
        changes: list[Entry] = []
        for _ in range(MAX_PAGES):
            resp = self.request("REPORT", url, body=SYNC.format(token=escape(token)).encode(),
                                headers={**XML, "Depth": "0"})
            root = _parse(resp.content)
            token = (root.findtext(f"{{{DAV}}}sync-token") or "").strip()
            entries = _entries(root, url)
            collection = path_of(url).rstrip("/")
            truncated = any(e.status == 507 for e in entries if e.href.rstrip("/") == collection)
            changes += [e for e in entries if e.href.rstrip("/") != collection and not e.href.endswith("/")]
            if not truncated:
                return changes, token
        raise DavFailure("bad", "the server kept truncating the list of changes")

    def etags(self, url: str) -> list[Entry]:
        """PROPFIND Depth 1: every member with its ETag (for servers without sync-collection)."""
        resp = self.request("PROPFIND", url, body=ETAGS, headers={**XML, "Depth": "1"})
        return [e for e in multistatus(resp.content, url) if not e.href.endswith("/")]

    def multiget(self, url: str, hrefs: list[str]) -> list[Entry]:
        body = MULTIGET.format(hrefs="".join(f"<D:href>{escape(h)}</D:href>" for h in hrefs)).encode()
        resp = self.request("REPORT", url, body=body, headers={**XML, "Depth": "1"})
        return multistatus(resp.content, url)


def _never_connected(exc: Exception) -> bool:
    """Connection refused, name not resolved: the request never left (urllib3's NewConnectionError)."""
    from urllib3.exceptions import NewConnectionError

    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError) or isinstance(exc.args[0] if exc.args else None,
                                                                 NewConnectionError)


def _failure(method: str, resp: requests.Response) -> DavFailure:
    status = resp.status_code
    kind = {401: "auth", 403: "forbidden", 404: "not_found", 410: "not_found", 409: "conflict",
            412: "precondition", 429: "rate", 503: "rate"}.get(status)
    if kind is None:
        kind = "server" if status >= 500 else "refused"
    if 300 <= status < 400:
        where = redact_url(urljoin(resp.url or "", resp.headers.get("Location", "")))
        return DavFailure("redirect", f"HTTP {status} to {method}: the server sends it to {where}; "
                                      "set [channels.phone] url to that", status=status)
    retry_after = None
    if kind == "rate":
        try:
            retry_after = min(3600.0, max(1.0, float(resp.headers.get("Retry-After", "60"))))
        except ValueError:
            retry_after = 60.0
    log.debug("%s %s answered %d", method, redact_url(resp.url or ""), status)
    return DavFailure(kind, f"HTTP {status} to {method}", status=status, retry_after=retry_after,
                      body=resp.content[:4096])


def _parse(body: bytes) -> ET.Element:
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        raise DavFailure("bad", "the server's answer is not WebDAV XML") from None


def multistatus(body: bytes, base: str) -> list[Entry]:
    return _entries(_parse(body), base)


def _entries(root: ET.Element, base: str) -> list[Entry]:
    if root.tag != f"{{{DAV}}}multistatus":
        raise DavFailure("bad", "the server's answer is not a multistatus")
    out = []
    for resp in root.findall(f"{{{DAV}}}response"):
        href = resp.findtext(f"{{{DAV}}}href")
        if not href:
            continue
        entry = Entry(path_of(href.strip(), base), _status(resp.findtext(f"{{{DAV}}}status")) or 200)
        for propstat in resp.findall(f"{{{DAV}}}propstat"):
            if _status(propstat.findtext(f"{{{DAV}}}status")) != 200:
                continue
            _props(entry, propstat.find(f"{{{DAV}}}prop"))
        out.append(entry)
    return out


def _props(entry: Entry, prop: ET.Element | None) -> None:
    if prop is None:
        return
    entry.etag = (prop.findtext(f"{{{DAV}}}getetag") or entry.etag).strip()
    types = prop.find(f"{{{DAV}}}resourcetype")
    if types is not None:
        entry.types = {t.tag.rsplit("}", 1)[-1] for t in types}
    comps = prop.find(f"{{{CAL}}}supported-calendar-component-set")
    if comps is not None:
        entry.components = {str(c.get("name", "")).upper() for c in comps}
    data = prop.findtext(f"{{{CAL}}}calendar-data")
    if data:
        entry.data = data.encode("utf-8")


def _status(line: str | None) -> int | None:
    """``HTTP/1.1 404 Not Found`` → 404."""
    parts = (line or "").split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
