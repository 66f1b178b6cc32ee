"""The engine over a Google calendar and Google call tasks, both on the loopback Calendar v3 fake."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import pytest

from daemon import config as config_mod
from daemon.cli.status import step_records
from daemon.clock import FixedClock
from daemon.engine.cycle import Engine
from tests.fakes.google_calendar import FakeGoogleCalendar, instance_id

NY = ZoneInfo("America/New_York")
JANE = {"email": "jane.doe@example.com", "displayName": "Jane Doe", "responseStatus": "accepted"}
FIRST = datetime(2026, 11, 3, 10, tzinfo=NY)
CONFIG = """
[practice]
name = "Riverside Counselling"
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
timeout = "5s"
[clients]
directory = "clients.csv"
[channels.email]
backend = "outbox"
outbox = "outbox"
from = "ana@riverside.example"
[channels.phone]
backend = "calendar"
api_endpoint = "{endpoint}"
"""
CLIENTS = "name,aliases,email,phone,preferred_channel,do_not_contact\n" \
          "Jane Doe,,jane.doe@example.com,+1 555 010 0201,phone,false\n"


@pytest.fixture
def fake() -> Iterator[FakeGoogleCalendar]:
    with FakeGoogleCalendar() as server:
        yield server
        assert server.violations == []


@pytest.fixture
def practice(fake: FakeGoogleCalendar, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("WELCOMEBACK_NO_KEYRING", "1")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("WELCOMEBACK_GOOGLE_TOKEN", fake.authorized_user_json())
    (tmp_path / "config.toml").write_text(CONFIG.format(endpoint=fake.api_endpoint))
    (tmp_path / "clients.csv").write_text(CLIENTS)
    clock = FixedClock(datetime(2026, 11, 2, 8, tzinfo=NY))
    engine = Engine(config_mod.load(tmp_path / "config.toml"), clock)
    engine.sources["main"].sleep = lambda s: None
    yield engine, clock
    engine.close()


def run_at(engine: Engine, clock: FixedClock, *when: int) -> Any:
    clock.set(datetime(*when, tzinfo=NY))
    return engine.run_once()


def series(fake: FakeGoogleCalendar) -> list[str]:
    """Jane every three weeks, so a lost session is not 'rebooked' by the next one."""
    return fake.add_series("jane", first=FIRST, count=4, every=timedelta(days=21),
                           summary="Jane Doe", attendees=[JANE])


def test_cancelled_instance_one_follow_up_reached_in_calendar(practice: Any, fake: FakeGoogleCalendar) -> None:
    engine, clock = practice
    ids = series(fake)
    run_at(engine, clock, 2026, 11, 2, 8)
    fake.cancel(ids[1])                                   # the 24 November session
    run_at(engine, clock, 2026, 11, 10, 9)
    steps = step_records(engine)
    assert [(s["step"], s["channel"], s["trigger"], s["state"]) for s in steps] == [
        (1, "phone", "cancelled", "planned"), (2, "email", "cancelled", "planned")]
    # A 410 and repeated tombstones on the full re-sync start nothing new.
    fake.expire_sync_tokens()
    run_at(engine, clock, 2026, 11, 11, 9)
    assert len(step_records(engine)) == 2
    run_at(engine, clock, 2026, 11, 25, 10, 5)            # the phone step: a call task
    assert step_records(engine)[0]["state"] == "sent"
    cal = next(c for c in fake.calendars if c != "primary")
    (task,) = [s.body for (c, _), s in fake.events.items() if c == cal]
    assert task["summary"].startswith("Call Jane") and "attendees" not in task
    assert "tel:+15550100201" in task["description"]
    assert task["extendedProperties"]["private"]["welcomeback_sequence"] == step_records(engine)[0]["sequence"]
    fake.update(task["id"], cal, summary=task["summary"] + " ✓")
    run_at(engine, clock, 2026, 11, 26, 9)
    email = step_records(engine)[1]
    assert (email["state"], email["reason"]) == ("skipped", "reached")


def test_moved_instance_is_no_follow_up(practice: Any, fake: FakeGoogleCalendar) -> None:
    engine, clock = practice
    ids = series(fake)
    run_at(engine, clock, 2026, 11, 2, 8)
    fake.move(ids[1], datetime(2026, 11, 25, 15, tzinfo=NY))
    run_at(engine, clock, 2026, 11, 10, 9)
    assert step_records(engine) == []


def test_revoked_token_infers_no_cancellations(practice: Any, fake: FakeGoogleCalendar) -> None:
    engine, clock = practice
    ids = series(fake)
    run_at(engine, clock, 2026, 11, 2, 8)
    fake.revoke()
    for n in range(1, 4):
        fake.cancel(ids[n])
    report = run_at(engine, clock, 2026, 11, 10, 9)
    (poll,) = report.polls
    assert not poll.ok and "auth google" in (poll.error or "")
    assert step_records(engine) == []
    assert instance_id("jane", FIRST) == ids[0]
