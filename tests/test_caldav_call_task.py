"""CaldavCallTask against a real Radicale on loopback, for both item kinds: the object written,
idempotent creates, read-back (reached, completed, deleted, moved), faults, and the request count."""

from __future__ import annotations

import io
import json
import socket
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import icalendar
import pytest
import requests

from connectors.channels.base import ChannelContext, Message
from connectors.channels.caldav_task import STATE_FILE, CaldavCallTask, CaldavTaskOptions, task_uid
from daemon.clock import FixedClock
from daemon.errors import ChannelError, SecretMissing
from tests.conftest import NY, local
from tests.fakes.radicale_server import RadicaleServer

NOW = local(2026, 3, 2, 8)
DUE = local(2026, 3, 3, 10)
ITEMS = ["event", "todo"]


@pytest.fixture
def dav(tmp_path: Path) -> Iterator[RadicaleServer]:
    with RadicaleServer(tmp_path / "dav") as server:
        yield server


def make_channel(url: str, tmp: Path, *, item: str = "event", username: str = "",
                 secrets: dict[str, str] | None = None, timeout: float = 5.0, **opts: Any) -> CaldavCallTask:
    def secret(name: str) -> str:
        if secrets and name in secrets:
            return secrets[name]
        raise SecretMissing(name, ["test"])

    ctx = ChannelContext(base_dir=tmp, state_dir=tmp / "state", timezone=NY, clock=FixedClock(NOW),
                         secret=secret, practice_name="Riverside", therapist_name="Ana Ruiz",
                         therapist_email="ana@riverside.example")
    return CaldavCallTask(CaldavTaskOptions(url=url, item=item, username=username, timeout=timeout, **opts), ctx)


def message(step: str = "step-1", seq: str = "seq-1", subject: str = "Call Jane D.") -> Message:
    return Message(step_id=step, sequence_id=seq, audience="therapist", to_address="ana@riverside.example",
                   to_name="Ana Ruiz", subject=subject, text="Client: Jane Doe\n\nHi Jane, checking in.",
                   due_at=DUE, meta={"phone": "+1 555 010 0201"})


def objects(dav: RadicaleServer, collection: str) -> dict[str, icalendar.Component]:
    """href name → the VEVENT/VTODO stored in the collection (read with plain HTTP)."""
    resp = requests.request("PROPFIND", collection, headers={"Depth": "1"}, auth=dav.auth, timeout=5)
    names = [h.split("/")[-1] for h in
             __import__("re").findall(r"<(?:\w+:)?href>([^<]+\.ics)</(?:\w+:)?href>", resp.text)]
    out = {}
    for name in names:
        body = requests.get(collection + name, auth=dav.auth, timeout=5).text
        (comp,) = [c for c in icalendar.Calendar.from_ical(body).walk() if c.name in ("VEVENT", "VTODO")]
        out[name] = comp
    return out


def edit(dav: RadicaleServer, collection: str, step: str, change: Any) -> None:
    """The therapist edits the task in their calendar app: GET, change, PUT back."""
    url = collection + task_uid(step) + ".ics"
    cal = icalendar.Calendar.from_ical(requests.get(url, auth=dav.auth, timeout=5).text)
    (comp,) = [c for c in cal.walk() if c.name in ("VEVENT", "VTODO")]
    change(comp)
    resp = requests.put(url, data=cal.to_ical(), auth=dav.auth, timeout=5,
                        headers={"Content-Type": "text/calendar; charset=utf-8"})
    assert resp.status_code in (201, 204), resp.status_code


def set_prop(comp: Any, name: str, value: Any) -> None:
    comp.pop(name, None)
    comp.add(name, value)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("item", ITEMS)
def test_create_writes_one_private_task_due_in_the_practice_zone(dav: RadicaleServer, tmp_path: Path,
                                                                 item: str) -> None:
    cal = dav.make_calendar("ana", "follow-ups") if item == "event" else _todo_calendar(dav)
    receipt = make_channel(cal, tmp_path, item=item).send(message())
    assert receipt.provider_id == task_uid("step-1")
    (put,) = [r for r in dav.requests if r[0] == "PUT"]
    assert put[2] == 201 and put[1].endswith(task_uid("step-1") + ".ics")
    ((name, comp),) = objects(dav, cal).items()
    assert comp.name == ("VEVENT" if item == "event" else "VTODO")
    assert str(comp["UID"]) == task_uid("step-1") and str(comp["SUMMARY"]) == "Call Jane D."
    assert "Hi Jane" in str(comp["DESCRIPTION"]) and "tel:+15550100201" in str(comp["DESCRIPTION"])
    assert str(comp["URL"]) == "tel:+15550100201"
    assert "ATTENDEE" not in comp and "ORGANIZER" not in comp and not comp.walk("VALARM")
    when = comp.decoded("DTSTART" if item == "event" else "DUE")
    assert when == DUE and str(getattr(when.tzinfo, "key", "")) == "America/New_York"
    if item == "event":
        assert comp.decoded("DTEND") - when == timedelta(minutes=30)
    else:
        assert "DTSTART" not in comp and str(comp["STATUS"]) == "NEEDS-ACTION"
    assert str(comp["X-WELCOMEBACK-STEP"]) == "step-1"
    state = (tmp_path / "state" / STATE_FILE).read_text()
    assert "Jane" not in state and "5550100201" not in state and "Call" not in state


def _todo_calendar(dav: RadicaleServer) -> str:
    """A tasks list (VTODO only), as Nextcloud Tasks makes it."""
    url = f"{dav.url}/ana/tasks/"
    requests.request("MKCOL", f"{dav.url}/ana/", timeout=5)
    body = ('<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            '<D:set><D:prop><C:supported-calendar-component-set><C:comp name="VTODO"/>'
            '</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>')
    assert requests.request("MKCALENDAR", url, data=body, timeout=5).status_code == 201
    return url


@pytest.mark.parametrize("item", ITEMS)
def test_parent_collection_gets_a_follow_ups_calendar_made_once(dav: RadicaleServer, tmp_path: Path,
                                                                item: str) -> None:
    home = f"{dav.url}/ana/"
    assert requests.request("MKCOL", home, timeout=5).status_code == 201
    channel = make_channel(home, tmp_path, item=item)
    channel.send(message("step-1"))
    channel.send(message("step-2"))
    made = [r for r in dav.requests if r[0] == "MKCALENDAR"]
    assert len(made) == 1 and made[0][2] == 201
    child = dav.url + made[0][1]
    assert child.endswith("/ana/welcomeback-follow-ups/" if item == "event" else "/ana/welcomeback-follow-up-tasks/")
    assert len(objects(dav, child)) == 2
    # Another process without the state file finds the calendar rather than making a second.
    make_channel(home, tmp_path / "other", item=item).send(message("step-3"))
    assert len([r for r in dav.requests if r[0] == "MKCALENDAR"]) == 1 and len(objects(dav, child)) == 3


@pytest.mark.parametrize("item", ITEMS)
def test_crash_between_put_and_record_writes_no_second_object(dav: RadicaleServer, tmp_path: Path,
                                                              item: str) -> None:
    cal = dav.make_calendar("ana", "follow-ups") if item == "event" else _todo_calendar(dav)
    make_channel(cal, tmp_path, item=item).send(message())          # the PUT landed; then the crash
    again = make_channel(cal, tmp_path / "restarted", item=item).send(message())
    assert again.provider_id == task_uid("step-1") and "already" in again.detail
    puts = [r for r in dav.requests if r[0] == "PUT"]
    assert [p[2] for p in puts] == [201, 412]
    assert len(objects(dav, cal)) == 1


@pytest.mark.parametrize("item", ITEMS)
def test_lost_answer_after_put_is_retried_and_then_found(dav: RadicaleServer, tmp_path: Path, item: str) -> None:
    """The PUT is stored, but its answer never comes back in time: retry, not a second object."""
    cal = dav.make_calendar("ana", "follow-ups") if item == "event" else _todo_calendar(dav)
    channel = make_channel(cal, tmp_path, item=item, timeout=0.5)
    channel.send(message("step-0"))                      # the collection is known; only the PUT is slow
    release = threading.Event()
    dav.after = lambda method, path, status: release.wait(3) if method == "PUT" else None
    with pytest.raises(ChannelError) as err:
        channel.send(message())
    assert err.value.outcome == "retry" and "finds the task" in err.value.reason
    release.set()
    dav.after = None
    assert "already" in channel.send(message()).detail
    assert len(objects(dav, cal)) == 2


@pytest.mark.parametrize("item", ITEMS)
def test_read_back_reached_completed_deleted_moved(dav: RadicaleServer, tmp_path: Path, item: str) -> None:
    cal = dav.make_calendar("ana", "follow-ups") if item == "event" else _todo_calendar(dav)
    channel = make_channel(cal, tmp_path, item=item)
    for n in range(1, 6):
        channel.send(message(f"step-{n}", f"seq-{n}"))
    assert channel.feedback() == {}
    edit(dav, cal, "step-1", lambda c: set_prop(c, "summary", "Call Jane D. ✓"))
    edit(dav, cal, "step-2", lambda c: set_prop(c, "summary", "Call Jane D. (unreached)"))
    dav.delete(cal, task_uid("step-3"))
    field = "dtstart" if item == "event" else "due"
    edit(dav, cal, "step-4", lambda c: (set_prop(c, field, DUE + timedelta(days=1)),
                                        c.pop("DTEND", None), c.add("dtend", DUE + timedelta(days=1, hours=1))
                                        if item == "event" else None))
    if item == "todo":
        edit(dav, cal, "step-5", lambda c: (set_prop(c, "status", "COMPLETED"), set_prop(c, "percent-complete", 100)))
    dav.put(cal, "mine", "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTODO\r\nUID:mine\r\n"
                         "DTSTAMP:20260301T000000Z\r\nSUMMARY:done: my own note\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
            if item == "todo" else "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:mine\r\n"
                                   "DTSTAMP:20260301T000000Z\r\nDTSTART:20260303T150000Z\r\n"
                                   "SUMMARY:done: my own note\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    expected = {"step-1": "reached", "step-3": "dismissed", **({"step-5": "reached"} if item == "todo" else {})}
    assert channel.feedback() == expected
    # The moved task is still an open call; nothing was written back to the calendar.
    assert len([r for r in dav.requests if r[0] == "PUT" and task_uid("step-4") in r[1]]) == 2
    # What was read stays known (a crash before the engine recorded it loses nothing) ...
    assert make_channel(cal, tmp_path, item=item).feedback() == expected
    # ... and a title that had a reached word from the start is not "reached" by itself.
    channel.send(message("step-9", "seq-9", subject="Call Jane D. when done with intake"))
    edit(dav, cal, "step-9", lambda c: set_prop(c, "description", "edited"))
    assert "step-9" not in channel.feedback()


@pytest.mark.parametrize("item", ITEMS)
def test_unchanged_calendar_costs_one_request(dav: RadicaleServer, tmp_path: Path, item: str) -> None:
    cal = dav.make_calendar("ana", "follow-ups") if item == "event" else _todo_calendar(dav)
    channel = make_channel(cal, tmp_path, item=item)
    assert channel.feedback() == {} and dav.requests[-1][0] != "REPORT"   # nothing delivered: no request
    for n in range(1, 4):
        channel.send(message(f"step-{n}"))
    channel.feedback()                                    # first read: a full listing
    for _ in range(3):
        before = len(dav.requests)
        assert channel.feedback() == {}
        assert [r[0] for r in dav.requests[before:]] == ["REPORT"]
    # One change: the sync REPORT plus one multiget of just that object.
    edit(dav, cal, "step-2", lambda c: set_prop(c, "summary", "done"))
    before = len(dav.requests)
    assert channel.feedback() == {"step-2": "reached"}
    assert [r[0] for r in dav.requests[before:]] == ["REPORT", "REPORT"]
    # Our own new task is known by its ETag: not fetched again.
    channel.send(message("step-4"))
    before = len(dav.requests)
    channel.feedback()
    assert [r[0] for r in dav.requests[before:]] == ["REPORT"]


def test_expired_sync_token_starts_over(dav: RadicaleServer, tmp_path: Path) -> None:
    cal = dav.make_calendar("ana", "follow-ups")
    channel = make_channel(cal, tmp_path)
    channel.send(message("step-1"))
    channel.send(message("step-2"))
    channel.feedback()
    state_file = tmp_path / "state" / STATE_FILE
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "sync_token": "http://radicale.org/ns/sync/bogus"}))
    dav.delete(cal, task_uid("step-2"))
    assert channel.feedback() == {"step-2": "dismissed"}


def without_sync_collection(dav: RadicaleServer) -> None:
    """Radicale as a server without RFC 6578 would answer: sync-collection refused."""
    real = dav.app

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "REPORT":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            if b"sync-collection" in body:
                start_response("403 Forbidden", [("Content-Type", "text/plain"), ("Content-Length", "0")])
                return [b""]
            environ["wsgi.input"] = io.BytesIO(body)
        return real(environ, start_response)

    dav.app = app


def test_server_without_sync_tokens_costs_one_etag_listing(dav: RadicaleServer, tmp_path: Path) -> None:
    cal = dav.make_calendar("ana", "follow-ups")
    without_sync_collection(dav)
    channel = make_channel(cal, tmp_path)
    for n in (1, 2, 3):
        channel.send(message(f"step-{n}"))
    assert channel.feedback() == {}
    for _ in range(2):
        before = len(dav.requests)
        assert channel.feedback() == {}
        assert [r[0] for r in dav.requests[before:]] == ["PROPFIND"]
    edit(dav, cal, "step-1", lambda c: set_prop(c, "summary", "Call Jane D. done"))
    dav.delete(cal, task_uid("step-2"))
    before = len(dav.requests)
    assert channel.feedback() == {"step-1": "reached", "step-2": "dismissed"}
    assert [r[0] for r in dav.requests[before:]] == ["PROPFIND", "REPORT"]      # the listing, one multiget


def test_a_redirected_url_pauses_and_says_where(dav: RadicaleServer, tmp_path: Path) -> None:
    cal = dav.make_calendar("ana", "follow-ups")
    real = dav.app

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/old/":
            start_response("301 Moved Permanently", [("Location", "/ana/follow-ups/"), ("Content-Length", "0")])
            return [b""]
        return real(environ, start_response)

    dav.app = app
    with pytest.raises(ChannelError) as err:
        make_channel(f"{dav.url}/old/", tmp_path).send(message())
    assert err.value.outcome == "paused" and "/ana/follow-ups/" in err.value.reason
    assert not [r for r in dav.requests if r[0] == "PUT"]
    assert make_channel(cal, tmp_path).send(message()).provider_id == task_uid("step-1")


@pytest.mark.parametrize("status,outcome,wait", [("500 Internal Server Error", "retry", None),
                                                ("503 Service Unavailable", "retry", 120.0),
                                                ("415 Unsupported Media Type", "failed", None)])
def test_put_answers(dav: RadicaleServer, tmp_path: Path, status: str, outcome: str, wait: float | None) -> None:
    cal = dav.make_calendar("ana", "follow-ups")
    real = dav.app

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "PUT":
            start_response(status, [("Retry-After", "120"), ("Content-Length", "0")])
            return [b""]
        return real(environ, start_response)

    dav.app = app
    with pytest.raises(ChannelError) as err:
        make_channel(cal, tmp_path).send(message())
    assert (err.value.outcome, err.value.retry_after) == (outcome, wait)


@pytest.mark.parametrize("item", ITEMS)
def test_server_down_waits(tmp_path: Path, item: str) -> None:
    channel = make_channel(f"http://127.0.0.1:{closed_port()}/ana/follow-ups/", tmp_path, item=item)
    with pytest.raises(ChannelError) as err:
        channel.send(message())
    assert err.value.outcome == "retry" and "connect" in err.value.reason


@pytest.mark.parametrize("item", ITEMS)
def test_server_down_after_first_task_waits_and_read_back_fails_softly(tmp_path: Path, item: str) -> None:
    with RadicaleServer(tmp_path / "dav") as dav:
        cal = dav.make_calendar("ana", "follow-ups") if item == "event" else _todo_calendar(dav)
        channel = make_channel(cal, tmp_path, item=item)
        channel.send(message("step-1"))
    with pytest.raises(ChannelError) as err:
        channel.send(message("step-2"))
    assert err.value.outcome == "retry"
    with pytest.raises(ChannelError) as read:
        channel.feedback()
    assert read.value.outcome == "retry"


@pytest.mark.parametrize("item", ITEMS)
def test_wrong_password_pauses_naming_the_secret(tmp_path: Path, item: str) -> None:
    with RadicaleServer(tmp_path / "dav", users={"ana": "s3cret"}) as dav:
        cal = dav.make_calendar("ana", "follow-ups") if item == "event" else _todo_calendar_auth(dav)
        wrong = make_channel(cal, tmp_path, item=item, username="ana", secrets={"caldav_password": "nope"})
        with pytest.raises(ChannelError) as err:
            wrong.send(message())
        assert err.value.outcome == "paused" and "401" in err.value.reason
        assert "caldav_password" in err.value.reason
        with pytest.raises(ChannelError) as missing:
            make_channel(cal, tmp_path, item=item, username="ana").send(message())
        assert missing.value.outcome == "held" and "caldav_password" in missing.value.reason
        good = make_channel(cal, tmp_path / "good", item=item, username="ana", secrets={"caldav_password": "s3cret"})
        good.send(message())
        bad_read = make_channel(cal, tmp_path / "good", item=item, username="ana",
                                secrets={"caldav_password": "nope"})
        with pytest.raises(ChannelError) as read:
            bad_read.feedback()
        assert read.value.outcome == "paused" and "caldav_password" in read.value.reason


def _todo_calendar_auth(dav: RadicaleServer) -> str:
    url = f"{dav.url}/ana/tasks/"
    requests.request("MKCOL", f"{dav.url}/ana/", auth=dav.auth, timeout=5)
    body = ('<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            '<D:set><D:prop><C:supported-calendar-component-set><C:comp name="VTODO"/>'
            '</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>')
    assert requests.request("MKCALENDAR", url, data=body, auth=dav.auth, timeout=5).status_code == 201
    return url


def test_a_calendar_that_refuses_the_item_kind_pauses(dav: RadicaleServer, tmp_path: Path) -> None:
    events_only = dav.make_calendar("ana", "follow-ups")
    with pytest.raises(ChannelError) as err:
        make_channel(events_only, tmp_path, item="todo").send(message())
    assert err.value.outcome == "paused" and 'item = "event"' in err.value.reason
    assert not [r for r in dav.requests if r[0] == "PUT"]


def test_missing_url_is_paused_not_lost(dav: RadicaleServer, tmp_path: Path) -> None:
    with pytest.raises(ChannelError) as err:
        make_channel(f"{dav.url}/nobody/nothing/", tmp_path).send(message())
    assert err.value.outcome == "paused" and "not found" in err.value.reason


def test_options_refuse_a_url_that_is_not_http() -> None:
    with pytest.raises(ValueError, match="url"):
        CaldavTaskOptions(url="dav.example.org/calendars/ana")
    assert CaldavTaskOptions(url="https://dav.example.org/c").url == "https://dav.example.org/c/"


def test_check_needs_https_for_a_password_and_the_secret(tmp_path: Path) -> None:
    remote = make_channel("http://dav.example.org/cal/", tmp_path, username="ana")
    problems = remote.check()
    assert any("https" in p for p in problems) and any("caldav_password" in p for p in problems)
    assert make_channel("http://127.0.0.1:1/cal/", tmp_path, username="ana",
                        secrets={"caldav_password": "x"}).check() == []
    assert "ca_file" in " ".join(make_channel("https://dav.example.org/cal/", tmp_path, ca_file="no.pem").check())


def test_due_time_is_kept_across_daylight_saving(dav: RadicaleServer, tmp_path: Path) -> None:
    cal = dav.make_calendar("ana", "follow-ups")
    summer = datetime(2026, 3, 9, 10, tzinfo=NY)         # the Monday after the switch to EDT
    make_channel(cal, tmp_path).send(Message(**{**message().__dict__, "due_at": summer}))
    (comp,) = objects(dav, cal).values()
    assert comp.decoded("DTSTART").utcoffset() == timedelta(hours=-4) and comp.decoded("DTSTART") == summer
