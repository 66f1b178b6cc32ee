"""GoogleSource against the loopback Calendar v3 fake, driven by the real google-api-python-client."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import pytest

from connectors.calendars.base import SourceContext, Window
from connectors.calendars.google import GoogleSource, GoogleSourceOptions
from daemon.clock import FixedClock
from daemon.errors import SecretMissing, SourceError
from tests.fakes.google_calendar import FakeGoogleCalendar, when

TZ = ZoneInfo("America/New_York")
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=TZ)
WINDOW = Window(NOW - timedelta(days=30), NOW + timedelta(days=120))
JANE = {"email": "jane@example.org", "displayName": "Jane Doe", "responseStatus": "accepted"}


@pytest.fixture
def fake() -> Iterator[FakeGoogleCalendar]:
    with FakeGoogleCalendar() as server:
        yield server
        assert server.violations == []


def secrets_for(fake: FakeGoogleCalendar) -> Any:
    def secret(name: str) -> str:
        if name == "google_token":
            return fake.authorized_user_json()
        raise SecretMissing(name, [])
    return secret


def make_source(fake: FakeGoogleCalendar, tmp: Path, *, timeout: float = 5.0,
                sleeps: list[float] | None = None, secret: Any = None) -> GoogleSource:
    ctx = SourceContext(base_dir=tmp, timezone=TZ, clock=FixedClock(NOW),
                        secret=secret or secrets_for(fake), state_dir=tmp / "state")
    src = GoogleSource("main", "primary", GoogleSourceOptions(api_endpoint=fake.api_endpoint), ctx,
                       timeout=timeout)
    if sleeps is not None:
        src.sleep = sleeps.append  # type: ignore[method-assign]
    return src


def by_key(result: Any) -> dict[str, Any]:
    return {o.key: o for o in result.occurrences}


def lists(fake: FakeGoogleCalendar) -> list[Any]:
    return [r for r in fake.api_requests() if r.method == "GET" and r.path.endswith("/events")]


def test_full_sync_short_and_empty_pages(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    fake.page_sizes = [2, 0, 1, 0, 0, 3]
    ids = fake.add_series("wk", first=NOW + timedelta(hours=2), count=6, attendees=[JANE], colorId="11")
    fake.add_event("old1", start=NOW - timedelta(days=60))          # before timeMin
    fake.add_event("allday", start=NOW + timedelta(days=1), all_day=True)
    result = make_source(fake, tmp_path).fetch(WINDOW, {})
    assert result.complete and result.state["sync_token"]
    got = by_key(result)
    assert set(got) == set(ids) | {"allday"}
    first = got[ids[0]]
    assert first.uid == "wk" and first.start == NOW + timedelta(hours=2) and first.start.tzinfo
    assert first.attendees[0].partstat == "ACCEPTED" and first.attendees[0].name == "Jane Doe"
    assert first.color == "11" and first.status == "confirmed" and first.last_modified
    assert got["allday"].all_day and got["allday"].start == datetime(2026, 3, 3, tzinfo=TZ)
    requests = lists(fake)
    assert len(requests) > 4 and all(r.param("singleEvents") == "true" and r.param("showDeleted") == "true"
                                     for r in requests)
    assert requests[0].param("timeMin") and requests[0].param("timeMax") is None


def test_unchanged_poll_costs_one_request(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    fake.add_event("e1", start=NOW + timedelta(days=1), attendees=[JANE])
    src = make_source(fake, tmp_path)
    state = src.fetch(WINDOW, {}).state
    fake.clear_log()
    result = src.fetch(WINDOW, state)
    assert result.occurrences is None and result.state["sync_token"]
    assert len(fake.requests) == 1 and fake.requests[0].param("syncToken") == state["sync_token"]
    assert fake.requests[0].param("timeMin") is None
    # A fresh source (as after a restart) reuses the cached access token: still one request.
    fake.clear_log()
    assert make_source(fake, tmp_path).fetch(WINDOW, result.state).occurrences is None
    assert len(fake.requests) == 1
    cache = tmp_path / "state" / "google-access-token.json"
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600


def test_cancelled_instance_is_a_tombstone(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    ids = fake.add_series("wk", first=NOW + timedelta(days=1), count=3, attendees=[JANE])
    src = make_source(fake, tmp_path)
    state = src.fetch(WINDOW, {}).state
    fake.cancel(ids[1])
    result = src.fetch(WINDOW, state)
    assert not result.complete
    (occ,) = result.occurrences
    assert (occ.key, occ.uid, occ.status, occ.tombstone, occ.deleted) == (ids[1], "wk", "cancelled", True, False)
    assert occ.start is None
    # Repeated tombstones on a later sync are harmless: the same value again.
    again = src.fetch(WINDOW, {}).occurrences
    assert [o for o in again if o.key == ids[1]] == [occ]


def test_deleted_single_event(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    fake.add_event("single1", start=NOW + timedelta(days=2), attendees=[JANE])
    src = make_source(fake, tmp_path)
    state = src.fetch(WINDOW, {}).state
    fake.delete("single1")
    (occ,) = src.fetch(WINDOW, state).occurrences
    assert (occ.key, occ.uid, occ.tombstone, occ.deleted, occ.status) == ("single1", "single1", True, True, "cancelled")


def test_declined_attendee(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    fake.add_event("e1", start=NOW + timedelta(days=2), attendees=[JANE, {"email": "room@r.example",
                                                                          "resource": True}])
    src = make_source(fake, tmp_path)
    state = src.fetch(WINDOW, {}).state
    fake.respond("e1", "jane@example.org", "declined")
    (occ,) = src.fetch(WINDOW, state).occurrences
    assert [(a.email, a.partstat) for a in occ.attendees] == [("jane@example.org", "DECLINED")]
    assert occ.status == "confirmed" and not occ.tombstone


def test_moved_instance_keeps_id_and_status(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    ids = fake.add_series("wk", first=NOW + timedelta(days=1), count=3, attendees=[JANE])
    src = make_source(fake, tmp_path)
    state = src.fetch(WINDOW, {}).state
    new_start = NOW + timedelta(days=9, hours=3)
    fake.move(ids[1], new_start)
    (occ,) = src.fetch(WINDOW, state).occurrences
    assert occ.key == ids[1] and occ.status == "confirmed" and occ.start == new_start
    assert occ.extra["original_start"] == when(NOW + timedelta(days=8))["dateTime"]


def test_410_mid_stream_falls_back_to_full_sync(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    fake.page_sizes = [1]
    ids = fake.add_series("wk", first=NOW + timedelta(days=1), count=3, attendees=[JANE])
    src = make_source(fake, tmp_path)
    state = src.fetch(WINDOW, {}).state
    fake.update(ids[0], summary="Session (room 2)")
    fake.update(ids[2], summary="Session (room 3)")
    fake.fail(410, "fullSyncRequired", skip=1)     # the second page of the delta
    fake.clear_log()
    result = src.fetch(WINDOW, state)
    assert result.complete and set(by_key(result)) == set(ids)
    assert result.state["sync_token"] != state["sync_token"]
    calls = lists(fake)
    assert calls[0].param("syncToken") and calls[1].param("pageToken") and calls[1].status == 410
    assert calls[2].param("syncToken") is None and calls[2].param("timeMin")


def test_expired_token_full_sync(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    fake.add_event("e1", start=NOW + timedelta(days=1))
    src = make_source(fake, tmp_path)
    state = src.fetch(WINDOW, {}).state
    fake.expire_sync_tokens()
    result = src.fetch(WINDOW, state)
    assert result.complete and list(by_key(result)) == ["e1"]


@pytest.mark.parametrize("status", [403, 429])
def test_rate_limit_backoff_is_bounded(fake: FakeGoogleCalendar, tmp_path: Path, status: int) -> None:
    fake.add_event("e1", start=NOW + timedelta(days=1))
    sleeps: list[float] = []
    src = make_source(fake, tmp_path, sleeps=sleeps)
    fake.rate_limit(times=2, status=status)
    assert list(by_key(src.fetch(WINDOW, {}))) == ["e1"]
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0
    fake.rate_limit(times=100, status=status)
    sleeps.clear()
    with pytest.raises(SourceError, match="rate limit"):
        src.fetch(WINDOW, {})
    assert len(sleeps) == 4 and all(s <= 32 for s in sleeps)
    fake.faults.clear()


def test_server_error_keeps_old_token_usable(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    ids = fake.add_series("wk", first=NOW + timedelta(days=1), count=2, attendees=[JANE])
    src = make_source(fake, tmp_path)
    state = src.fetch(WINDOW, {}).state
    fake.cancel(ids[0])
    fake.fail(500)
    with pytest.raises(SourceError, match="HTTP 500") as err:
        src.fetch(WINDOW, state)
    assert err.value.calendar == "main" and "Session" not in str(err.value)
    (occ,) = src.fetch(WINDOW, state).occurrences
    assert occ.key == ids[0] and occ.tombstone


def test_timeout_is_a_source_error(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    fake.add_event("e1", start=NOW + timedelta(days=1))
    src = make_source(fake, tmp_path, timeout=0.3)
    state = src.fetch(WINDOW, {}).state
    fake.update("e1", summary="x")
    fake.timeout()
    with pytest.raises(SourceError, match="in time"):
        src.fetch(WINDOW, state)
    assert [o.key for o in src.fetch(WINDOW, state).occurrences] == ["e1"]


def test_revoked_token_says_auth_google(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    fake.add_event("e1", start=NOW + timedelta(days=1))
    src = make_source(fake, tmp_path)
    state = src.fetch(WINDOW, {}).state
    fake.revoke()
    with pytest.raises(SourceError, match="auth google") as err:
        src.fetch(WINDOW, state)
    assert err.value.reason.startswith("Google sign-in expired or was revoked")
    with pytest.raises(SourceError, match="auth google"):
        make_source(fake, tmp_path / "fresh").fetch(WINDOW, {})


def test_missing_sign_in(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    def nothing(name: str) -> str:
        raise SecretMissing(name, [])
    src = make_source(fake, tmp_path, secret=nothing)
    assert "auth google" in src.check()[0]
    with pytest.raises(SourceError, match="auth google"):
        src.fetch(WINDOW, {})
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "google_token").write_text(fake.authorized_user_json())
    assert src.check() == []


def test_service_account_with_delegation(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "client_email": "wb@proj.iam.gserviceaccount.com",
            "private_key": pem, "private_key_id": "k1", "token_uri": fake.url + "/token"}
    fake.add_event("e1", start=NOW + timedelta(days=1))
    ctx = SourceContext(base_dir=tmp_path, timezone=TZ, clock=FixedClock(NOW),
                        secret=lambda name: json.dumps(info), state_dir=tmp_path / "state")
    opts = GoogleSourceOptions(api_endpoint=fake.api_endpoint, auth="service_account",
                               subject="ana@riverside.example")
    result = GoogleSource("main", "primary", opts, ctx).fetch(WINDOW, {})
    assert [o.key for o in result.occurrences] == ["e1"]
    (grant,) = [r for r in fake.requests if r.path == "/token"]
    assert grant.body["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    import base64
    payload = grant.body["assertion"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sub"] == "ana@riverside.example" and "calendar.events.readonly" in claims["scope"]
    # The wrong kind of secret for the configured auth is a clear SourceError.
    wrong = GoogleSource("main", "primary", GoogleSourceOptions(api_endpoint=fake.api_endpoint), ctx)
    with pytest.raises(SourceError, match="auth = 'oauth'"):
        wrong.fetch(WINDOW, {})
