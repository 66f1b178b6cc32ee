"""One contract every calendar source must pass (STYLE habit 11), run against each backend.

``ics`` is a file the test rewrites, ``google`` the loopback Calendar v3 fake,
``caldav`` a real Radicale on loopback.  Each backend sits behind an adapter
with the same verbs; every case drives the real engine through
``welcomeback once --now`` and reads ``status --json``.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import pytest
import requests

from daemon.cli import main
from tests import canary
from tests.conftest import CLIENTS, NY, local
from tests.fakes.google_calendar import FakeGoogleCalendar, instance_id, when
from tests.fakes.radicale_server import RadicaleServer
from tests.ics import Ev, calendar, write

BERLIN = ZoneInfo("Europe/Berlin")
JANE, OMAR = "jane.doe@example.com", "omar.h@example.org"
T0 = local(2026, 11, 2, 8)                 # the first poll: the baseline
CONFIG = """
[practice]
name = "Riverside Counselling"
therapist = "Ana Ruiz"
therapist_email = "ana@riverside.example"
timezone = "America/New_York"
working_hours = "Mon-Fri 09:00-17:00"
[store]
path = "state.db"
[[calendars]]
name = "main"
{calendar}
[clients]
directory = "clients.csv"
[channels.email]
backend = "outbox"
outbox = "outbox"
from = "ana@riverside.example"
[channels.phone]
backend = "therapist-email"
"""


def _tzid(start: datetime) -> str:
    return getattr(start.tzinfo, "key", "America/New_York")


class IcalAdapter:
    """Keeps each event as VEVENTs (master + overrides); ``flush`` publishes what changed."""

    def __init__(self) -> None:
        self.events: dict[str, list[Ev]] = {}
        self.changed: set[str] = set()

    def _set(self, uid: str, evs: list[Ev] | None) -> None:
        if evs is None:
            self.events.pop(uid, None)
        else:
            self.events[uid] = evs
        self.changed.add(uid)
        self.flush()

    def flush(self) -> None:
        raise NotImplementedError

    def add_session(self, uid: str, start: datetime, end: datetime, title: str,
                    attendees: tuple[str, ...] = ()) -> None:
        self._set(uid, [Ev(uid, start, end, title, tzid=_tzid(start),
                           attendees=[(a, a.split("@")[0], "ACCEPTED") for a in attendees])])

    def add_weekly(self, uid: str, first_start: datetime, title: str) -> None:
        self._set(uid, [Ev(uid, first_start, first_start + timedelta(minutes=50), title,
                           rrule="FREQ=WEEKLY", tzid=_tzid(first_start))])

    def _override(self, uid: str, original: datetime, **changes: Any) -> None:
        master = self.events[uid][0]
        start = changes.pop("start", original)
        ev = Ev(uid, start, start + timedelta(minutes=50), master.summary, recurrence_id=original,
                tzid=master.tzid, **changes)
        self._set(uid, self.events[uid] + [ev])

    def cancel_instance(self, uid: str, original_start: datetime) -> None:
        self._override(uid, original_start, status="CANCELLED")

    def move_instance(self, uid: str, original_start: datetime, new_start: datetime) -> None:
        self._override(uid, original_start, start=new_start)

    def cancel_session(self, uid: str) -> None:
        for ev in self.events[uid]:
            ev.status = "CANCELLED"
        self._set(uid, self.events[uid])

    def delete_event(self, uid: str) -> None:
        self._set(uid, None)

    def add_all_day(self, uid: str, day: date, title: str) -> None:
        start = datetime(day.year, day.month, day.day)
        self._set(uid, [Ev(uid, start, start + timedelta(days=1), title, all_day=True)])

    def rename(self, uid: str, title: str) -> None:
        for ev in self.events[uid]:
            ev.summary = title
        self._set(uid, self.events[uid])

    def decline(self, uid: str, email: str) -> None:
        for ev in self.events[uid]:
            ev.attendees = [(a, n, "DECLINED" if a == email else p) for a, n, p in ev.attendees]
        self._set(uid, self.events[uid])

    def damage_start(self, uid: str) -> tuple[bytes, bytes]:
        """The event's DTSTART line and an unreadable replacement for it."""
        ev = self.events[uid][0]
        line = f"DTSTART;TZID={ev.tzid}:{ev.start:%Y%m%dT%H%M%S}"
        return line.encode(), b"DTSTART;VALUE=DATE:2026-13-45"


class IcsAdapter(IcalAdapter):
    kind = "ics"

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.path = root / "practice.ics"
        self.flush()

    def table(self) -> str:
        return 'kind = "ics"\nsource = "practice.ics"'

    def flush(self) -> None:
        write(self.path, [ev for evs in self.events.values() for ev in evs])

    def corrupt(self, uid: str) -> None:
        old, new = self.damage_start(uid)
        data = self.path.read_bytes()
        assert data.count(old) == 1, f"{old!r} is not in the calendar file"      # the edit must take
        self.path.write_bytes(data.replace(old, new))


class CaldavAdapter(IcalAdapter):
    """One object per UID in a Radicale calendar; PUT on change, DELETE when gone."""

    kind = "caldav"

    def __init__(self, dav: RadicaleServer) -> None:
        super().__init__()
        self.dav = dav
        self.url = dav.make_calendar("ana", "practice")

    def table(self) -> str:
        return f'kind = "caldav"\nsource = "{self.url}"\ntimeout = "5s"'

    def flush(self) -> None:
        for uid in sorted(self.changed):
            if uid in self.events:
                self.dav.put(self.url, uid, calendar(self.events[uid]))
            else:
                self.dav.delete(self.url, uid)
        self.changed.clear()

    def corrupt(self, uid: str) -> None:
        """The server hands the object out damaged (Radicale itself would refuse it on PUT)."""
        old, new = self.damage_start(uid)
        href = f"{self.url}{uid}.ics"
        assert old in requests.get(href, auth=self.dav.auth, timeout=10).content
        self.dav.rewrites.append((old, new))
        served = requests.get(href, auth=self.dav.auth, timeout=10).content
        assert new in served and old not in served                               # the edit took


class GoogleAdapter:
    """Events and expanded instances in the Calendar v3 fake (as ``singleEvents`` shows them)."""

    kind = "google"

    def __init__(self, fake: FakeGoogleCalendar) -> None:
        self.fake = fake
        self.series: dict[str, list[str]] = {}

    def table(self) -> str:
        return f'kind = "google"\nsource = "primary"\napi_endpoint = "{self.fake.api_endpoint}"\ntimeout = "5s"'

    def _ids(self, uid: str) -> list[str]:
        return self.series.get(uid, [uid])

    def add_session(self, uid: str, start: datetime, end: datetime, title: str,
                    attendees: tuple[str, ...] = ()) -> None:
        people = [{"email": a, "responseStatus": "accepted"} for a in attendees]
        self.fake.add_event(uid, start=start, minutes=int((end - start).total_seconds() // 60), summary=title,
                            **({"attendees": people} if people else {}))
        self.fake.update(uid, start={**when(start), "timeZone": _tzid(start)},
                         end={**when(end), "timeZone": _tzid(start)})

    def add_weekly(self, uid: str, first_start: datetime, title: str) -> None:
        self.series[uid] = self.fake.add_series(uid, first=first_start, count=12, summary=title)

    def cancel_instance(self, uid: str, original_start: datetime) -> None:
        self.fake.cancel(instance_id(uid, original_start))

    def move_instance(self, uid: str, original_start: datetime, new_start: datetime) -> None:
        self.fake.move(instance_id(uid, original_start), new_start)

    def cancel_session(self, uid: str) -> None:
        self.fake.cancel(uid)

    def delete_event(self, uid: str) -> None:
        for event_id in self._ids(uid):
            self.fake.delete(event_id)

    def add_all_day(self, uid: str, day: date, title: str) -> None:
        self.fake.add_event(uid, start=datetime(day.year, day.month, day.day, tzinfo=NY), all_day=True,
                            summary=title)

    def rename(self, uid: str, title: str) -> None:
        for event_id in self._ids(uid):
            self.fake.update(event_id, summary=title)

    def decline(self, uid: str, email: str) -> None:
        self.fake.respond(uid, email, "declined")

    def corrupt(self, uid: str) -> None:
        pytest.skip("Calendar v3 sends structured times; an unreadable start cannot be expressed")


class Practice:
    """A practice folder whose one calendar is ``cal``; runs the real CLI."""

    def __init__(self, root: Path, cal: Any, capsys: Any) -> None:
        self.root, self.cal, self.capsys = root, cal, capsys
        (root / "clients.csv").write_text(CLIENTS)
        (root / "config.toml").write_text(CONFIG.format(calendar=cal.table()))
        cal.add_weekly("team", local(2026, 10, 2, 12), "Team meeting")   # never an empty calendar

    def once(self, now: datetime) -> None:
        assert main(["--config", str(self.root / "config.toml"), "once", "--now", now.isoformat()]) == 0

    def status(self) -> list[dict[str, Any]]:
        self.capsys.readouterr()
        assert main(["--config", str(self.root / "config.toml"), "status", "--json"]) == 0
        return json.loads(canary.read_client_data(self.capsys).out)


@pytest.fixture(params=["ics", "google", "caldav"])
def practice(request: pytest.FixtureRequest, tmp_path: Path, capsys: Any,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Practice]:
    root = tmp_path / "practice"
    root.mkdir()
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    if request.param == "ics":
        yield Practice(root, IcsAdapter(root), capsys)
    elif request.param == "google":
        with FakeGoogleCalendar() as fake:
            monkeypatch.setenv("WELCOMEBACK_GOOGLE_TOKEN", fake.authorized_user_json())
            yield Practice(root, GoogleAdapter(fake), capsys)
            assert fake.violations == []
    else:
        with RadicaleServer(tmp_path / "dav") as dav:
            yield Practice(root, CaldavAdapter(dav), capsys)


def follow_ups(steps: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(trigger, session start in UTC, number of steps) per follow-up sequence."""
    seqs: dict[str, list[dict[str, Any]]] = {}
    for s in steps:
        seqs.setdefault(s["sequence"], []).append(s)
    return sorted((v[0]["trigger"], datetime.fromisoformat(v[0]["session_start"]).astimezone(timezone.utc)
                   .strftime("%Y-%m-%dT%H:%MZ"), len(v)) for v in seqs.values())


def test_cancelled_instance_with_next_one_booked_is_a_reschedule(practice: Practice) -> None:
    practice.cal.add_weekly("jane", local(2026, 11, 3, 10), "Jane Doe")
    practice.once(T0)
    practice.cal.cancel_instance("jane", local(2026, 11, 10, 10))
    practice.once(local(2026, 11, 2, 9))                   # same day: an incremental read where supported
    assert practice.status() == []


def test_cancelled_single_session_nothing_else_booked(practice: Practice) -> None:
    practice.cal.add_session("omar", local(2026, 11, 12, 15), local(2026, 11, 12, 15, 50), "Omar Haddad")
    practice.once(T0)
    practice.cal.cancel_session("omar")
    practice.once(local(2026, 11, 5, 9))
    assert follow_ups(practice.status()) == [("cancelled", "2026-11-12T20:00Z", 2)]


def test_moved_instance_is_no_follow_up(practice: Practice) -> None:
    practice.cal.add_weekly("jane", local(2026, 11, 3, 10), "Jane Doe")
    practice.once(T0)
    practice.cal.move_instance("jane", local(2026, 11, 10, 10), local(2026, 11, 11, 15))
    practice.once(local(2026, 11, 5, 9))
    practice.once(local(2026, 11, 12, 9))
    assert practice.status() == []


def test_deleted_single_event_is_one_cancellation(practice: Practice) -> None:
    practice.cal.add_session("omar", local(2026, 11, 12, 15), local(2026, 11, 12, 15, 50), "Omar Haddad")
    practice.once(T0)
    practice.cal.delete_event("omar")
    practice.once(local(2026, 11, 2, 9))
    practice.once(local(2026, 11, 6, 9))
    assert follow_ups(practice.status()) == [("cancelled", "2026-11-12T20:00Z", 2)]


def test_all_day_event_with_a_clients_name_is_never_a_session(practice: Practice) -> None:
    practice.cal.add_all_day("away", date(2026, 11, 10), "Jane Doe")
    practice.once(T0)
    practice.cal.rename("away", "Jane Doe no-show")
    practice.once(local(2026, 11, 11, 9))
    practice.cal.delete_event("away")
    practice.once(local(2026, 11, 12, 9))
    assert practice.status() == []


def test_session_in_another_time_zone_keeps_its_instant(practice: Practice) -> None:
    start = datetime(2026, 11, 10, 18, tzinfo=BERLIN)          # 17:00 UTC, 12:00 in New York
    practice.cal.add_session("berlin", start, start + timedelta(minutes=50), "Jane Doe")
    practice.once(T0)
    practice.cal.rename("berlin", "Jane Doe no-show")
    practice.once(local(2026, 11, 10, 13))
    steps = practice.status()
    assert follow_ups(steps) == [("no_show", "2026-11-10T17:00Z", 2)]
    assert steps[0]["session_start"] == "2026-11-10T12:00:00-05:00"


def test_no_show_marker_is_one_no_show_follow_up(practice: Practice) -> None:
    practice.cal.add_session("jane1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Jane Doe")
    practice.once(T0)
    practice.cal.rename("jane1", "Jane Doe - no-show")
    practice.once(local(2026, 11, 3, 11))
    practice.once(local(2026, 11, 3, 12))
    steps = practice.status()
    assert follow_ups(steps) == [("no_show", "2026-11-03T15:00Z", 2)]
    assert [(s["step"], s["channel"]) for s in steps] == [(1, "phone"), (2, "email")]


def test_declined_attendee_is_one_cancellation(practice: Practice) -> None:
    practice.cal.add_session("omar", local(2026, 11, 12, 15), local(2026, 11, 12, 15, 50), "Session",
                             attendees=(OMAR,))
    practice.once(T0)
    practice.cal.decline("omar", OMAR)
    practice.once(local(2026, 11, 2, 9))
    practice.once(local(2026, 11, 6, 9))
    assert follow_ups(practice.status()) == [("cancelled", "2026-11-12T20:00Z", 2)]


def test_event_with_an_unreadable_start_is_not_a_cancellation(practice: Practice) -> None:
    practice.cal.add_session("u7", local(2026, 11, 12, 15), local(2026, 11, 12, 15, 50), "Omar Haddad")
    practice.once(T0)
    practice.cal.corrupt("u7")                             # asserts the damage is really served
    practice.once(local(2026, 11, 3, 9))                   # a new day: every backend reads everything
    assert practice.status() == []


def test_the_same_event_deleted_instead_is_a_cancellation(practice: Practice) -> None:
    """The positive twin of the unreadable start: same event, same polls, the event really gone."""
    practice.cal.add_session("u7", local(2026, 11, 12, 15), local(2026, 11, 12, 15, 50), "Omar Haddad")
    practice.once(T0)
    practice.cal.delete_event("u7")
    practice.once(local(2026, 11, 3, 9))
    assert follow_ups(practice.status()) == [("cancelled", "2026-11-12T20:00Z", 2)]
