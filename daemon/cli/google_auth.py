"""``welcomeback auth google``: the installed-app OAuth sign-in, usable on a headless server.

It prints Google's consent URL; the therapist opens it in any browser, agrees,
and pastes back the address the browser was sent to (the page itself will not
load: nothing listens there) or just its ``code``.  The result, an
authorized-user JSON holding the refresh token, is stored as the secret
``google_token``: in the keyring, or where no keyring works, as a 0600 file
``google_token`` in the state folder (which the Google connectors also read).

Scopes, least privilege: ``calendar.events.readonly`` (read sessions),
``calendar.app.created`` (create the follow-ups calendar and write only on
calendars this app created) and ``calendar.calendarlist.readonly`` (find that
calendar again by name; ids and names only, no events).

The OAuth client (a "Desktop app" client from the Google Cloud console) is read
from the JSON file named by ``client_secrets`` in the google ``[[calendars]]``
table (or ``[channels.phone]`` with ``backend = "calendar"``), relative to the
config file; when that key is empty, from the secret ``google_client`` holding
the same JSON.  A Workspace service account needs no sign-in: its key JSON is
stored with ``welcomeback secret set google_token``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from daemon.errors import SecretMissing, UserError


def _options(config: Any) -> Any:
    """The Google options of the first google calendar, else of the calendar phone backend."""
    for cal in config.calendars:
        if cal.kind == "google":
            return cal.options
    if config.phone.backend == "calendar":
        return config.phone.options
    raise UserError("nothing uses Google: add a [[calendars]] table with kind = \"google\" "
                    "or set [channels.phone] backend = \"calendar\"")


def _client_config(config: Any, opts: Any) -> dict[str, Any]:
    """The OAuth client JSON (``installed`` or ``web``).  Raises UserError."""
    from daemon import secrets

    if opts.client_secrets:
        path = config.resolve(opts.client_secrets)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"client_secrets: cannot read {path}: {exc.strerror}") from None
    else:
        try:
            text = secrets.lookup("google_client")
        except SecretMissing as exc:
            raise UserError(f"{exc}\nDownload a 'Desktop app' OAuth client JSON from the Google "
                            "Cloud console and set client_secrets = \"PATH\" in the google "
                            "[[calendars]] table, or store it: welcomeback secret set google_client") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise UserError("the OAuth client is not JSON; expected the file the Google Cloud console "
                        "downloads (client_secret_….json)") from None
    if not isinstance(data, dict) or not ({"installed", "web"} & set(data)):
        raise UserError("the OAuth client JSON has no 'installed' section; create a 'Desktop app' client")
    return data


def authorize(config: Any, *, input_fn: Callable[[str], str] = input,
              print_fn: Callable[[str], None] = print, state_dir: Path | None = None) -> None:
    """Run the sign-in and store ``google_token``.  Raises UserError on any failure."""
    from connectors.calendars.google_api import SCOPES

    opts = _options(config)
    if opts.auth == "service_account":
        raise UserError("auth = \"service_account\" needs no sign-in: store the service-account key "
                        "JSON with `welcomeback secret set google_token` (domain-wide delegation "
                        "for the scopes " + ", ".join(SCOPES) + ")")
    client = _client_config(config, opts)
    from google_auth_oauthlib.flow import Flow

    section = client.get("installed") or client.get("web") or {}
    redirect = (section.get("redirect_uris") or ["http://localhost"])[0]
    flow = Flow.from_client_config(client, scopes=list(SCOPES), redirect_uri=redirect)
    url, state = flow.authorization_url(access_type="offline", prompt="consent")
    print_fn("Open this address in a browser (on any computer), sign in and allow access:\n\n"
             f"  {url}\n\nThe browser then tries to open {redirect}… and shows an error page. "
             "Copy that whole address from the address bar and paste it here.")
    code = _code_from(input_fn("Address or code: "), state)
    _fetch(flow, code)
    _check_granted(flow.oauth2session.token.get("scope"), SCOPES, print_fn)
    creds = flow.credentials
    if not creds.refresh_token:
        raise UserError("Google returned no refresh token; remove welcomeback's access at "
                        "https://myaccount.google.com/permissions and sign in again")
    _store(creds.to_json(strip=["token", "expiry"]), state_dir or _state_dir(config), print_fn)


def _fetch(flow: Any, code: str) -> None:
    """Exchange the code; a narrower grant (unticked boxes) is checked afterwards, not an error here."""
    relax = os.environ.get("OAUTHLIB_RELAX_TOKEN_SCOPE")
    os.environ["OAUTHLIB_RELAX_TOKEN_SCOPE"] = "1"
    try:
        flow.fetch_token(code=code, timeout=30)
    except Exception as exc:  # oauthlib and requests raise many kinds
        raise UserError(f"Google did not accept the sign-in ({type(exc).__name__}); run "
                        "`welcomeback auth google` again and paste the newest address") from None
    finally:
        if relax is None:
            os.environ.pop("OAUTHLIB_RELAX_TOKEN_SCOPE", None)
        else:
            os.environ["OAUTHLIB_RELAX_TOKEN_SCOPE"] = relax


def _check_granted(granted: Any, wanted: tuple[str, ...], print_fn: Callable[[str], None]) -> None:
    """Reading events is required; without the others only the call tasks cannot work."""
    if not granted:
        return
    have = set(granted.split() if isinstance(granted, str) else granted)
    if wanted[0] not in have:
        raise UserError("Google did not grant access to calendar events; sign in again and tick "
                        "\"View events on all your calendars\"")
    if not set(wanted[1:]) <= have:
        print_fn("Note: without the follow-ups calendar permissions, call tasks in the calendar "
                 "(backend = \"calendar\") will not work.")


def _code_from(answer: str, state: str) -> str:
    """The authorization code from a pasted redirect address or a bare code.  Raises UserError."""
    answer = answer.strip()
    if not answer:
        raise UserError("nothing pasted; run `welcomeback auth google` again")
    if "://" not in answer and "code=" not in answer:
        return answer
    query = parse_qs(urlsplit(answer).query or answer.split("?", 1)[-1])
    if "error" in query:
        raise UserError(f"Google reported: {query['error'][0]} (access was not granted)")
    if query.get("state", [state])[0] != state:
        raise UserError("that address belongs to another sign-in attempt; paste the newest one")
    if not query.get("code"):
        raise UserError("no code in the pasted address; copy the whole address from the browser")
    return query["code"][0]


def _state_dir(config: Any) -> Path:
    from daemon.engine.places import state_dir

    return state_dir(config)


def _store(text: str, state_dir: Path, print_fn: Callable[[str], None]) -> None:
    """Keyring first; else a 0600 file in the state folder."""
    from connectors.calendars.google_api import TOKEN_FILE, write_private
    from daemon.secrets import set_secret

    try:
        set_secret("google_token", text)
        print_fn("Signed in. The Google token is stored in the keyring (service 'welcomeback').")
        return
    except UserError:
        path = state_dir / TOKEN_FILE
        write_private(path, text)
        print_fn(f"Signed in. No keyring is usable here, so the Google token is stored in {path} "
                 "(readable only by this user).")
    if os.environ.get("WELCOMEBACK_GOOGLE_TOKEN") or os.environ.get("CREDENTIALS_DIRECTORY"):
        print_fn("Note: $WELCOMEBACK_GOOGLE_TOKEN or systemd credentials take precedence; "
                 "update or remove them so the new sign-in is used.")
