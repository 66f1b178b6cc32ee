"""Shared Google Calendar plumbing for the ``google`` source and the ``calendar`` call task.

Credentials from the secret ``google_token`` (an authorized-user JSON or a
service-account key), one Calendar v3 service built with static discovery and
an optional ``api_endpoint``, and ``GoogleClient.call``: one request with a
timeout and bounded, jittered backoff for Google's rate-limit answers only.
Every failure becomes a ``GoogleFailure`` with a kind and a reason free of
event text.  The Google SDKs are imported inside functions so that config
validation never needs them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from daemon.config.fields import option
from daemon.errors import SecretMissing

log = logging.getLogger(__name__)

# Read events everywhere; write only on calendars this app created; list calendars
# (ids and names, no events) to find the follow-ups calendar again.
SCOPES = (
    "https://www.googleapis.com/auth/calendar.events.readonly",
    "https://www.googleapis.com/auth/calendar.app.created",
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
)
SECRET = "google_token"
TOKEN_FILE = "google_token"                 # fallback for the secret, in the state folder
CACHE_FILE = "google-access-token.json"     # refreshed access tokens, in the state folder
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
REAUTH = "Google sign-in expired or was revoked; run `welcomeback auth google` again"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _endpoint(value: Any) -> str:
    """``""`` (Google's own) or a URL ending in ``/``; plain http only on loopback."""
    if not isinstance(value, str):
        raise ValueError("expected a URL like 'https://proxy.example/calendar/v3/'")
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{value}' is not an http(s) URL like 'https://proxy.example/calendar/v3/'")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise ValueError(f"'{value}': plain http is allowed only on 127.0.0.1/localhost; use https")
    return value if value.endswith("/") else value + "/"


@dataclass
class GoogleOptions:
    """Keys shared by ``kind = "google"`` calendars and the ``calendar`` phone backend."""

    api_endpoint: str = option("", parse=_endpoint,
                               doc="Calendar v3 base URL for a proxy or test server, including "
                                   "the path (…/calendar/v3/); empty means Google's.")
    auth: str = option("oauth", choices=("oauth", "service_account"),
                       doc="oauth: the therapist's sign-in (welcomeback auth google); "
                           "service_account: a Workspace service-account key in google_token.")
    subject: str = option("", doc="service_account only: the user to act as "
                                  "(domain-wide delegation), e.g. ana@riverside.example.")
    client_secrets: str = option("", doc="OAuth client JSON for `welcomeback auth google` (path, "
                                         "relative to this file); empty: the secret google_client.")


class GoogleFailure(Exception):
    """A classified Google failure.

    ``kind``: auth, config, rate, quota, gone, not_found, conflict, server, timeout, client.
    ``reason`` is safe to show and log (codes and reasons only, never event text).
    """

    def __init__(self, kind: str, reason: str, status: int | None = None) -> None:
        self.kind = kind
        self.reason = reason
        self.status = status
        super().__init__(f"{kind}: {reason}")


def read_token(secret: Callable[[str], str], state_dir: Path) -> str:
    """The ``google_token`` secret, else the 0600 file in the state folder.  Raises GoogleFailure."""
    try:
        return secret(SECRET)
    except SecretMissing:
        pass
    path = state_dir / TOKEN_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise GoogleFailure("config", "no Google sign-in found; run `welcomeback auth google`") from None
    except OSError as exc:
        raise GoogleFailure("config", f"cannot read {path}: {exc.strerror}") from None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically as a 0600 file (its folder 0700 when created)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _token_uri(info: dict[str, Any], api_endpoint: str) -> str | None:
    """Honour a loopback ``token_uri`` only together with a loopback endpoint (test servers)."""
    uri = info.get("token_uri")
    host = urlsplit(api_endpoint).hostname if api_endpoint else None
    if uri and host in LOOPBACK and urlsplit(uri).hostname in LOOPBACK:
        return str(uri)
    return None


def make_credentials(text: str, opts: GoogleOptions, scopes: tuple[str, ...] = SCOPES) -> Any:
    """google-auth credentials from the secret's JSON.  Raises GoogleFailure."""
    try:
        info = json.loads(text)
    except ValueError:
        raise GoogleFailure("config", "the secret google_token is not JSON; "
                                      "run `welcomeback auth google` again") from None
    if not isinstance(info, dict):
        raise GoogleFailure("config", "the secret google_token is not a JSON object")
    is_sa = info.get("type") == "service_account"
    if is_sa != (opts.auth == "service_account"):
        want = "a service-account key" if opts.auth == "service_account" else "an OAuth sign-in"
        raise GoogleFailure("config", f"auth = '{opts.auth}' but google_token is not {want}")
    try:
        if is_sa:
            from google.oauth2 import service_account

            return service_account.Credentials.from_service_account_info(
                info, scopes=list(scopes), subject=opts.subject or None)
        from google.oauth2.credentials import Credentials

        uri = _token_uri(info, opts.api_endpoint) or "https://oauth2.googleapis.com/token"
        return Credentials(None, refresh_token=info["refresh_token"], token_uri=uri,
                           client_id=info["client_id"], client_secret=info["client_secret"],
                           scopes=list(info.get("scopes") or scopes))
    except (KeyError, ValueError):
        raise GoogleFailure("config", "google_token lacks required fields; "
                                      "run `welcomeback auth google` again") from None


def _reason_of(exc: Any) -> str:
    try:
        data = json.loads(exc.content.decode("utf-8"))
        return str(data["error"]["errors"][0]["reason"])
    except Exception:  # any odd error body: no reason
        return ""


def classify(exc: BaseException) -> GoogleFailure:
    """Turn any exception from a Google call into a GoogleFailure."""
    from google.auth import exceptions as auth_exc
    from googleapiclient.errors import HttpError

    if isinstance(exc, GoogleFailure):
        return exc
    if isinstance(exc, HttpError):
        return _classify_http(exc.resp.status, _reason_of(exc))
    if isinstance(exc, auth_exc.RefreshError):
        if getattr(exc, "retryable", False):
            return GoogleFailure("server", "Google's sign-in service is unavailable; will retry")
        return GoogleFailure("auth", REAUTH)
    if isinstance(exc, TimeoutError):
        return GoogleFailure("timeout", "no answer from Google in time; will retry")
    if isinstance(exc, auth_exc.TransportError) and isinstance(exc.__cause__, TimeoutError):
        return GoogleFailure("timeout", "no answer from Google's sign-in service in time; will retry")
    if isinstance(exc, (OSError, auth_exc.TransportError)) or type(exc).__module__ == "httplib2":
        return GoogleFailure("server", f"cannot reach Google ({type(exc).__name__}); will retry")
    return GoogleFailure("client", f"unexpected answer from Google ({type(exc).__name__})")


def _classify_http(status: int, reason: str) -> GoogleFailure:
    tag = f"HTTP {status}" + (f" {reason}" if reason else "")
    if status == 429 or (status == 403 and reason in RATE_REASONS):
        return GoogleFailure("rate", f"Google rate limit ({tag}); will retry", status)
    if status == 403 and reason == "quotaExceeded":
        return GoogleFailure("quota", f"Google Calendar usage limits exceeded ({tag}); "
                                      "this can last a while", status)
    if status == 401:
        return GoogleFailure("auth", REAUTH, status)
    if status == 410:
        return GoogleFailure("gone", f"{tag}: a full sync is required", status)
    if status == 404:
        return GoogleFailure("not_found", f"{tag}: calendar or event not found, or not shared "
                                          "with this account", status)
    if status == 409:
        return GoogleFailure("conflict", f"{tag}: already exists", status)
    if status >= 500:
        return GoogleFailure("server", f"Google answered {tag}; will retry", status)
    if status == 403:
        return GoogleFailure("client", f"{tag}: access denied; check sharing and the granted "
                                       "scopes (`welcomeback auth google`)", status)
    return GoogleFailure("client", f"Google refused the request ({tag})", status)


def backoff_delays(attempts: int, base: float = 1.0, cap: float = 32.0,
                   rand: Callable[[], float] = random.random) -> list[float]:
    """Truncated exponential backoff with full jitter: ``attempts - 1`` waits."""
    return [min(cap, base * 2 ** i) * (0.5 + rand() / 2) for i in range(attempts - 1)]


class GoogleClient:
    """One authorised Calendar v3 service; access tokens persist in the state folder."""

    def __init__(self, opts: GoogleOptions, *, secret: Callable[[str], str], state_dir: Path,
                 timeout: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 attempts: int = 5, scopes: tuple[str, ...] = SCOPES) -> None:
        self.opts = opts
        self.secret = secret
        self.state_dir = state_dir
        self.timeout = timeout
        self.sleep = sleep
        self.attempts = attempts
        self.scopes = scopes
        self._service: Any = None
        self._creds: Any = None
        self._saved_token: str | None = None

    def service(self) -> Any:
        """Build the service once.  Raises GoogleFailure."""
        if self._service is None:
            self._creds = make_credentials(read_token(self.secret, self.state_dir), self.opts, self.scopes)
            self._load_cached_token()
            try:
                import google_auth_httplib2
                import httplib2
                from googleapiclient.discovery import build
            except ImportError:
                raise GoogleFailure("config", "the Google libraries are missing; install "
                                              "welcomeback[google]") from None
            http = google_auth_httplib2.AuthorizedHttp(self._creds, http=httplib2.Http(timeout=self.timeout))
            options = {"api_endpoint": self.opts.api_endpoint} if self.opts.api_endpoint else None
            self._service = build("calendar", "v3", http=http, static_discovery=True,
                                  cache_discovery=False, client_options=options)
        return self._service

    def call(self, make_request: Callable[[Any], Any]) -> dict[str, Any]:
        """Execute ``make_request(service)``; backs off on rate limits.  Raises GoogleFailure."""
        service = self.service()
        delays = backoff_delays(self.attempts)
        for attempt in range(self.attempts):
            try:
                result = make_request(service).execute(num_retries=0)
            except Exception as exc:  # classified below; nothing escapes unclassified
                failure = classify(exc)
                if failure.kind != "rate" or attempt == len(delays):
                    raise failure from None
                log.info("Google rate limit; waiting %.1fs (attempt %d)", delays[attempt], attempt + 1)
                self.sleep(delays[attempt])
            else:
                self._save_token()
                return result if isinstance(result, dict) else {}
        raise AssertionError("unreachable")

    # -- access-token cache --------------------------------------------------------
    def _fingerprint(self) -> str:
        c = self._creds
        ident = getattr(c, "refresh_token", None) or getattr(c, "service_account_email", "")
        ident = f"{ident}|{getattr(c, '_subject', '')}|{self.opts.api_endpoint}"
        return hashlib.sha256(ident.encode()).hexdigest()[:24]

    def _load_cached_token(self) -> None:
        from datetime import datetime

        try:
            data = json.loads((self.state_dir / CACHE_FILE).read_text(encoding="utf-8"))
            entry = data[self._fingerprint()]
            self._creds.token = entry["token"]
            self._creds.expiry = datetime.fromisoformat(entry["expiry"])
            self._saved_token = entry["token"]
        except (OSError, ValueError, KeyError, TypeError):
            return

    def _save_token(self) -> None:
        creds = self._creds
        if not creds.token or creds.token == self._saved_token or creds.expiry is None:
            return
        path = self.state_dir / CACHE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            data = {}
        data[self._fingerprint()] = {"token": creds.token, "expiry": creds.expiry.isoformat()}
        try:
            write_private(path, json.dumps(data))
            self._saved_token = creds.token
        except OSError as exc:
            log.warning("cannot keep the Google access token in %s: %s", path.parent, exc.strerror)
