"""Which Python libraries each configured backend needs, and the exact command that installs them.

``pip install welcomeback`` brings everything for ICS feeds, Google Calendar, the outbox,
SMTP and SendGrid.  Twilio, CalDAV and PostgreSQL are extras.  A backend whose library is
missing is refused before anything starts (``check``, ``once``, ``run``: exit 2 naming the
backend and ``pip install 'welcomeback[EXTRA]'``), never a bare ``ModuleNotFoundError``;
a library that is there but cannot be imported at send time holds the step instead
(``connectors.channels.base``).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from daemon.errors import UserError


@dataclass(frozen=True)
class Need:
    """Modules a backend imports, the distribution that provides them, and its extra."""

    modules: tuple[str, ...]
    package: str
    extra: str

    @property
    def command(self) -> str:
        return f"pip install 'welcomeback[{self.extra}]'"


GOOGLE = Need(("googleapiclient.discovery", "google.oauth2.credentials", "google_auth_httplib2",
               "httplib2"), "google-api-python-client", "google")
CALENDARS = {"google": GOOGLE, "caldav": Need(("caldav",), "caldav", "caldav")}
CHANNELS = {"sendgrid": Need(("sendgrid", "sendgrid.helpers.mail", "python_http_client.exceptions"),
                             "sendgrid", "sendgrid"),
            "twilio-sms": Need(("twilio.rest", "twilio.base.exceptions", "twilio.http.http_client"),
                               "twilio", "twilio"),
            "calendar": GOOGLE}
POSTGRES = Need(("psycopg",), "psycopg", "postgres")
GOOGLE_SIGN_IN = Need(("google_auth_oauthlib",), "google-auth-oauthlib", "google")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):   # a parent package is missing or broken
        return False


def missing(need: Need) -> str | None:
    """The first top-level package of ``need`` that is not installed, or None.  Only top-level
    names are looked up: that runs no code, so a package that is there but broken is found
    at import time instead (and holds the step rather than stopping the service)."""
    tops = dict.fromkeys(m.split(".")[0] for m in need.modules)
    return next((m for m in tops if not _installed(m)), None)


def explain(what: str, need: Need, module: str) -> str:
    return (f"{what} needs the Python package '{need.package}' (module '{module}' is not "
            f"installed); install it into welcomeback's environment: {need.command}")


def cannot_import(what: str, need: Need) -> str | None:
    """Import every module of ``need`` now; a short reason when one fails, else None."""
    for module in need.modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            detail = (str(exc).splitlines() or [""])[0][:160]
            return (f"{what}: the library '{need.package}' cannot be imported ({type(exc).__name__}: "
                    f"{detail}); reinstall it: {need.command}")
    return None


def problems(config: Any, *, store_only: bool = False) -> list[str]:
    """Every configured backend whose library is not installed, each with its install command."""
    wanted: list[tuple[str, Need]] = []
    if config.store.url.startswith("postgresql"):
        wanted.append(("[store] url (PostgreSQL)", POSTGRES))
    if not store_only:
        wanted += [(f"calendar '{c.name}' (kind '{c.kind}')", CALENDARS[c.kind])
                   for c in config.calendars if c.kind in CALENDARS]
        wanted += [(f"[channels.{table}] backend '{ch.backend}'", CHANNELS[ch.backend])
                   for table, ch in (("email", config.email), ("phone", config.phone))
                   if ch.backend in CHANNELS]
    out = []
    for what, need in wanted:
        module = missing(need)
        if module:
            out.append(explain(what, need, module))
    return out


def require(config: Any, *, store_only: bool = False) -> None:
    """Raises UserError (exit 2) listing each configured backend whose library is missing."""
    found = problems(config, store_only=store_only)
    if found:
        raise UserError(f"{config.path}: {len(found)} backend(s) cannot work: a library is missing", found)
