"""CalendarCallTask against the loopback Calendar v3 fake, driven by the real client library."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import pytest

from connectors.channels.base import ChannelContext, Message
from connectors.channels.calendar_task import (
    CalendarCallTask,
    CalendarTaskOptions,
    has_word,
    task_event_id,
)
from daemon.clock import FixedClock
from daemon.errors import ChannelError, SecretMissing
from tests.fakes.google_calendar import FakeGoogleCalendar

TZ = ZoneInfo("America/New_York")
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=TZ)
DUE = datetime(2026, 3, 3, 10, 0, tzinfo=TZ)


@pytest.fixture
def fake() -> Iterator[FakeGoogleCalendar]:
    with FakeGoogleCalendar() as server:
        yield server
        assert server.violations == []


def make_channel(fake: FakeGoogleCalendar, tmp: Path, **opts: Any) -> CalendarCallTask:
    def secret(name: str) -> str:
        if name == "google_token":
            return fake.authorized_user_json()
        raise SecretMissing(name, [])

    ctx = ChannelContext(base_dir=tmp, state_dir=tmp / "state", timezone=TZ, clock=FixedClock(NOW),
                         secret=secret, practice_name="Riverside", therapist_name="Ana Ruiz",
                         therapist_email="ana@riverside.example")
    channel = CalendarCallTask(CalendarTaskOptions(api_endpoint=fake.api_endpoint, timeout=2.0, **opts), ctx)
    channel.sleep = lambda s: None  # type: ignore[method-assign]
    return channel


def message(step: str = "step-1", seq: str = "seq-1") -> Message:
    return Message(step_id=step, sequence_id=seq, audience="therapist", to_address="ana@riverside.example",
                   to_name="Ana Ruiz", subject="Call Jane D.", text="Hi Jane, checking in.", due_at=DUE,
                   meta={"phone": "+1 555 010 0199"})


def task_writes(fake: FakeGoogleCalendar) -> list[Any]:
    return [r for r in fake.writes() if r.path.endswith("/events")]


def test_call_task_created_in_new_calendar(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    session = fake.add_event("sess1", start=NOW - timedelta(hours=1),
                             attendees=[{"email": "jane@example.org", "responseStatus": "accepted"}])
    before = fake.get(session)
    receipt = make_channel(fake, tmp_path).send(message())
    assert receipt.provider_id == task_event_id("step-1")
    (new_cal,) = [r for r in fake.writes() if r.path == "/calendar/v3/calendars"]
    assert new_cal.body["summary"] == "welcomeback follow-ups"
    (insert,) = task_writes(fake)
    assert insert.param("sendUpdates") == "none" and insert.status == 200
    body = insert.body
    assert "attendees" not in body and body["summary"] == "Call Jane D."
    assert "Hi Jane" in body["description"] and "tel:+15550100199" in body["description"]
    assert datetime.fromisoformat(body["start"]["dateTime"]) == DUE
    assert datetime.fromisoformat(body["end"]["dateTime"]) - DUE == timedelta(minutes=30)
    assert body["extendedProperties"]["private"] == {"welcomeback_step": "step-1",
                                                     "welcomeback_sequence": "seq-1"}
    assert fake.get(session) == before              # the client's session is untouched


def test_existing_calendar_is_reused_and_resend_is_idempotent(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    fake.calendars["fu@group"] = {"id": "fu@group", "summary": "welcomeback follow-ups"}
    channel = make_channel(fake, tmp_path)
    channel.send(message())
    assert not [r for r in fake.writes() if r.path == "/calendar/v3/calendars"]
    assert task_writes(fake)[0].path == "/calendar/v3/calendars/fu@group/events"
    # Another process (no state) hands off the same step again: no second task.
    again = make_channel(fake, tmp_path / "other").send(message())
    assert again.provider_id == task_event_id("step-1")
    assert len([k for k in fake.events if k[0] == "fu@group"]) == 1


def test_feedback_reached_and_dismissed(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    channel = make_channel(fake, tmp_path)
    for n in (1, 2, 3, 4):
        channel.send(message(f"step-{n}", f"seq-{n}"))
    cal = next(c for c in fake.calendars if c != "primary")
    assert channel.feedback() == {}
    fake.update(task_event_id("step-1"), cal, summary="✓ Call Jane D.")
    fake.update(task_event_id("step-2"), cal, summary="Call Jane D. - REACHED")
    fake.update(task_event_id("step-3"), cal, summary="Call Jane D. (unreached)")
    fake.delete(task_event_id("step-4"), cal)
    fake.add_event("mine", start=DUE, cal=cal, summary="done: my own note")
    assert channel.feedback() == {"step-1": "reached", "step-2": "reached", "step-4": "dismissed"}
    (listing,) = [r for r in fake.api_requests()[-1:]]
    assert listing.param("showDeleted") == "true"


def test_feedback_without_calendar_is_empty(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    assert make_channel(fake, tmp_path).feedback() == {}
    assert fake.writes() == []


@pytest.mark.parametrize("status,outcome", [(500, "uncertain"), (429, "retry"), (400, "failed")])
def test_insert_failures(fake: FakeGoogleCalendar, tmp_path: Path, status: int, outcome: str) -> None:
    channel = make_channel(fake, tmp_path)
    fake.fail(status, method="POST", times=10)
    with pytest.raises(ChannelError) as err:
        channel.send(message())
    assert err.value.outcome == outcome


def test_timeout_after_sending_is_uncertain(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    channel = make_channel(fake, tmp_path)
    channel.opts.timeout = 0.3
    fake.calendars["fu@group"] = {"id": "fu@group", "summary": "welcomeback follow-ups"}
    fake.timeout(method="POST")
    with pytest.raises(ChannelError) as err:
        channel.send(message())
    assert err.value.outcome == "uncertain"


def test_revoked_sign_in_pauses(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    fake.revoke()
    with pytest.raises(ChannelError) as err:
        make_channel(fake, tmp_path).send(message())
    assert err.value.outcome == "paused" and "auth google" in err.value.reason


def test_reached_words_are_whole_words() -> None:
    words = ("reached", "done", "✓")
    assert has_word("Call Jane D. ✓", words) and has_word("DONE call Jane", words)
    assert not has_word("Call Jane D. (unreached)", words) and not has_word("Call Donegal", words)


def test_fake_refuses_unsafe_writes(tmp_path: Path) -> None:
    """The server-side guard the other tests rely on really refuses (and records) bad writes."""
    from connectors.calendars.google_api import GoogleFailure

    with FakeGoogleCalendar() as fake:
        fake.add_event("sess1", start=DUE, attendees=[{"email": "jane@example.org"}])
        client = make_channel(fake, tmp_path)._client()
        with pytest.raises(GoogleFailure):
            client.call(lambda svc: svc.events().patch(calendarId="primary", eventId="sess1",
                                                       body={"summary": "x"}, sendUpdates="none"))
        with pytest.raises(GoogleFailure):
            client.call(lambda svc: svc.events().insert(calendarId="primary", body={"summary": "x"}))
        assert len(fake.violations) == 2 and fake.get("sess1")["summary"] == "Session"


def test_a_call_task_is_marked_when_the_client_answered(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    session = fake.add_event("sess1", start=NOW - timedelta(hours=1))
    before = fake.get(session)
    channel = make_channel(fake, tmp_path)
    channel.send(message())
    cal = next(c for c in fake.calendars if c != "primary")
    assert channel.note_answered("step-1", "by email") is True
    assert fake.get(task_event_id("step-1"), cal)["summary"] == "Answered by email: Call Jane D."
    assert channel.note_answered("step-1", "by email") is True          # once only
    assert fake.get(task_event_id("step-1"), cal)["summary"] == "Answered by email: Call Jane D."
    assert channel.feedback() == {}                                     # not taken for "reached"
    assert channel.note_answered("step-unknown", "by email") is False
    assert fake.get(session) == before
