"""``welcomeback auth google`` against the loopback fake's /token, with the real google-auth-oauthlib."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import keyring
import keyring.backend
import pytest
from keyring.backends.fail import Keyring as FailKeyring

from daemon import config as config_mod
from daemon.cli.google_auth import authorize
from daemon.errors import UserError
from tests.fakes.google_calendar import FakeGoogleCalendar

CONFIG = """
[practice]
name = "Riverside"
therapist = "Ana Ruiz"
therapist_email = "ana@riverside.example"
timezone = "America/New_York"
[store]
path = "state/state.db"
[[calendars]]
name = "main"
kind = "google"
source = "primary"
api_endpoint = "{endpoint}"
client_secrets = "client.json"
[channels.email]
from = "ana@riverside.example"
[channels.phone]
backend = "calendar"
api_endpoint = "{endpoint}"
"""


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.data.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.data[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.data.pop((service, username), None)


@pytest.fixture
def fake() -> Iterator[FakeGoogleCalendar]:
    with FakeGoogleCalendar() as server:
        yield server


@pytest.fixture
def setup(fake: FakeGoogleCalendar, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")   # the fake's token endpoint is plain http
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    (tmp_path / "client.json").write_text(json.dumps({"installed": {
        "client_id": "fake-client.apps.example", "client_secret": "fake-secret",
        "auth_uri": fake.url + "/auth", "token_uri": fake.url + "/token",
        "redirect_uris": ["http://localhost"]}}))
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(endpoint=fake.api_endpoint))
    previous = keyring.get_keyring()
    yield config_mod.load(path)
    keyring.set_keyring(previous)


def browser(printed: list[str], **extra: str) -> Any:
    """Plays the therapist: reads the printed consent URL and pastes back the redirect."""
    def answer(prompt: str) -> str:
        url = next(word for line in printed for word in line.split() if "/auth?" in word)
        query = parse_qs(urlsplit(url).query)
        assert set(query["scope"][0].split()) == {
            "https://www.googleapis.com/auth/calendar.events.readonly",
            "https://www.googleapis.com/auth/calendar.app.created",
            "https://www.googleapis.com/auth/calendar.calendarlist.readonly"}
        assert query["access_type"] == ["offline"] and "code_challenge" in query
        state = extra.get("state", query["state"][0])
        return f"http://localhost/?state={state}&code=4/fake-code&scope=x"
    return answer


def test_sign_in_without_keyring_writes_0600_file(setup: Any, fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    keyring.set_keyring(FailKeyring())
    printed: list[str] = []
    authorize(setup, input_fn=browser(printed), print_fn=printed.append)
    (token_req,) = [r for r in fake.requests if r.path == "/token"]
    assert token_req.body["grant_type"] == "authorization_code" and token_req.body["code"] == "4/fake-code"
    assert token_req.body["code_verifier"]
    path = tmp_path / "state" / "google_token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["refresh_token"] == fake.refresh_token and "token" not in stored
    assert str(path) in printed[-1]


def test_sign_in_stores_in_keyring(setup: Any, fake: FakeGoogleCalendar, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon import secrets

    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    monkeypatch.delenv("WELCOMEBACK_NO_KEYRING", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    printed: list[str] = []
    authorize(setup, input_fn=browser(printed), print_fn=printed.append)
    assert json.loads(secrets.lookup("google_token"))["refresh_token"] == fake.refresh_token
    assert not (tmp_path / "state" / "google_token").exists()


def test_wrong_state_is_refused(setup: Any, fake: FakeGoogleCalendar) -> None:
    keyring.set_keyring(FailKeyring())
    printed: list[str] = []
    with pytest.raises(UserError, match="another sign-in"):
        authorize(setup, input_fn=browser(printed, state="forged"), print_fn=printed.append)
    assert not [r for r in fake.requests if r.path == "/token"]


def test_refused_code_is_a_user_error(setup: Any, fake: FakeGoogleCalendar) -> None:
    keyring.set_keyring(FailKeyring())
    fake.revoke()
    printed: list[str] = []
    with pytest.raises(UserError, match="auth google"):
        authorize(setup, input_fn=browser(printed), print_fn=printed.append)


def test_events_scope_not_granted(setup: Any, fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    keyring.set_keyring(FailKeyring())
    fake.granted = "https://www.googleapis.com/auth/calendar.app.created"
    printed: list[str] = []
    with pytest.raises(UserError, match="calendar events"):
        authorize(setup, input_fn=browser(printed), print_fn=printed.append)
    assert not (tmp_path / "state" / "google_token").exists()
