"""The whole engine with ``[channels.phone] backend = "caldav"`` against a real Radicale on loopback:
the call task lands in the therapist's calendar, what they do there stops (or does not stop) the
follow-up, and faults make the step wait (a crash mid-hand-off included: no second object)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest

from connectors.channels.caldav_task import task_uid
from tests.conftest import ROOT, Practice, local, make_practice
from tests.fakes.radicale_server import RadicaleServer
from tests.stories import jane_no_show
from tests.test_caldav_call_task import _todo_calendar_auth, closed_port, edit, objects, set_prop

PASSWORD = "s3cret"
CALL_DUE = local(2026, 11, 4, 10, 5)        # the phone step of Tuesday's no-show
EMAIL_DUE = local(2026, 11, 10, 10, 5)


@pytest.fixture
def dav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RadicaleServer]:
    monkeypatch.setenv("WELCOMEBACK_CALDAV_PASSWORD", PASSWORD)
    with RadicaleServer(tmp_path / "dav", users={"ana": PASSWORD}) as server:
        yield server


def caldav_practice(root: Path, url: str, item: str = "event") -> Practice:
    p = make_practice(root)
    use_url(p, url, item)
    return p


def use_url(p: Practice, url: str, item: str = "event") -> None:
    text = p.config.read_text().split("[channels.phone]")[0]
    p.config.write_text(text + f'[channels.phone]\nbackend = "caldav"\nurl = "{url}"\nusername = "ana"\n'
                               f'item = "{item}"\ntimeout = 5\n')


def calendar_for(dav: RadicaleServer, item: str) -> str:
    return dav.make_calendar("ana", "follow-ups") if item == "event" else _todo_calendar_auth(dav)


def steps(p: Practice, capsys: Any) -> list[tuple[str, str, str | None]]:
    return [(s["channel"], s["state"], s["reason"]) for s in p.status(capsys)]


@pytest.mark.parametrize("item", ["event", "todo"])
def test_call_task_in_calendar_then_reached_there_stops_the_email(dav: RadicaleServer, tmp_path: Path,
                                                                  capsys: Any, item: str) -> None:
    cal = calendar_for(dav, item)
    p = caldav_practice(tmp_path / "p", cal, item)
    assert p.cli("check") == 0
    jane_no_show(p)
    p.once(CALL_DUE)
    assert steps(p, capsys) == [("phone", "sent", None), ("email", "planned", None)]
    ((_, task),) = objects(dav, cal).items()
    assert "tel:+15550100201" in str(task["DESCRIPTION"]) and "ATTENDEE" not in task
    assert p.mails() == []                                   # the call task went to the calendar only
    step = p.status(capsys)[0]["id"]
    if item == "event":
        edit(dav, cal, step, lambda c: set_prop(c, "summary", str(c["SUMMARY"]) + " - reached"))
    else:
        edit(dav, cal, step, lambda c: (set_prop(c, "status", "COMPLETED"), set_prop(c, "percent-complete", 100)))
    p.once(local(2026, 11, 5, 9))
    assert steps(p, capsys) == [("phone", "sent", None), ("email", "skipped", "reached")]
    p.once(EMAIL_DUE)
    assert p.mails() == []


@pytest.mark.parametrize("item", ["event", "todo"])
def test_deleted_task_dismisses_moved_task_changes_nothing(dav: RadicaleServer, tmp_path: Path,
                                                           capsys: Any, item: str) -> None:
    cal = calendar_for(dav, item)
    p = caldav_practice(tmp_path / "p", cal, item)
    jane_no_show(p)
    p.once(CALL_DUE)
    step = p.status(capsys)[0]["id"]
    field = "dtstart" if item == "event" else "due"
    edit(dav, cal, step, lambda c: set_prop(c, field, c.decoded(field) + timedelta(days=2)))
    p.once(local(2026, 11, 5, 9))
    assert steps(p, capsys) == [("phone", "sent", None), ("email", "planned", None)]
    dav.delete(cal, task_uid(step))
    p.once(local(2026, 11, 6, 9))
    assert steps(p, capsys) == [("phone", "sent", None), ("email", "skipped", "dismissed")]
    p.once(EMAIL_DUE)
    assert p.mails() == []


def test_moved_task_still_gets_the_email_a_week_later(dav: RadicaleServer, tmp_path: Path, capsys: Any) -> None:
    cal = calendar_for(dav, "event")
    p = caldav_practice(tmp_path / "p", cal)
    jane_no_show(p)
    p.once(CALL_DUE)
    step = p.status(capsys)[0]["id"]
    edit(dav, cal, step, lambda c: (set_prop(c, "dtstart", c.decoded("dtstart") + timedelta(days=1)),
                                    set_prop(c, "dtend", c.decoded("dtend") + timedelta(days=1))))
    p.once(EMAIL_DUE)
    assert steps(p, capsys) == [("phone", "sent", None), ("email", "sent", None)]
    assert len(p.mails_to("jane.doe@example.com")) == 1
    assert len(objects(dav, cal)) == 1


def test_server_down_the_step_waits_then_goes(dav: RadicaleServer, tmp_path: Path, capsys: Any) -> None:
    cal = calendar_for(dav, "event")
    p = caldav_practice(tmp_path / "p", f"http://127.0.0.1:{closed_port()}/ana/follow-ups/")
    jane_no_show(p)
    p.once(CALL_DUE)
    assert steps(p, capsys) == [("phone", "planned", None), ("email", "planned", None)]
    use_url(p, cal)
    p.once(CALL_DUE + timedelta(hours=1))
    assert steps(p, capsys)[0][:2] == ("phone", "sent")
    assert len(objects(dav, cal)) == 1


@pytest.mark.shows_client_data
def test_wrong_password_pauses_and_names_the_secret(dav: RadicaleServer, tmp_path: Path, capsys: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cal = calendar_for(dav, "event")
    p = caldav_practice(tmp_path / "p", cal)
    jane_no_show(p)
    monkeypatch.setenv("WELCOMEBACK_CALDAV_PASSWORD", "wrong")
    p.once(CALL_DUE)
    assert steps(p, capsys)[0][:2] == ("phone", "planned")
    capsys.readouterr()
    p.cli("status", "--now", CALL_DUE.isoformat())
    out = capsys.readouterr().out
    assert "paused" in out and "caldav_password" in out and "401" in out
    monkeypatch.setenv("WELCOMEBACK_CALDAV_PASSWORD", PASSWORD)
    p.once(CALL_DUE + timedelta(hours=1))
    assert steps(p, capsys)[0][:2] == ("phone", "sent")


@pytest.mark.shows_client_data
def test_unreadable_calendar_holds_the_email_until_it_can_be_read(dav: RadicaleServer, tmp_path: Path,
                                                                  capsys: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The therapist may have marked the call done: while the calendar cannot be read (a wrong
    password here) the email waits, and the refusal is reported naming the secret."""
    cal = calendar_for(dav, "event")
    p = caldav_practice(tmp_path / "p", cal)
    jane_no_show(p)
    p.once(CALL_DUE)
    step = p.status(capsys)[0]["id"]
    edit(dav, cal, step, lambda c: set_prop(c, "summary", "done"))
    monkeypatch.setenv("WELCOMEBACK_CALDAV_PASSWORD", "wrong")
    p.once(EMAIL_DUE)
    assert steps(p, capsys) == [("phone", "sent", None), ("email", "planned", None)]
    assert p.mails() == []
    capsys.readouterr()
    p.cli("status", "--now", EMAIL_DUE.isoformat())
    out = capsys.readouterr().out
    assert "paused" in out and "caldav_password" in out
    monkeypatch.setenv("WELCOMEBACK_CALDAV_PASSWORD", PASSWORD)
    p.once(EMAIL_DUE + timedelta(hours=1))
    assert steps(p, capsys) == [("phone", "sent", None), ("email", "skipped", "reached")]
    assert p.mails() == []


def test_calendar_down_at_email_time_the_email_waits_then_goes(dav: RadicaleServer, tmp_path: Path,
                                                                capsys: Any) -> None:
    cal = calendar_for(dav, "event")
    p = caldav_practice(tmp_path / "p", cal)
    jane_no_show(p)
    p.once(CALL_DUE)
    use_url(p, f"http://127.0.0.1:{closed_port()}/ana/follow-ups/")     # the server moved, or is down
    p.once(EMAIL_DUE)
    assert steps(p, capsys)[1][:2] == ("email", "planned") and p.mails() == []
    use_url(p, cal)
    p.once(EMAIL_DUE + timedelta(hours=1))
    assert steps(p, capsys)[1][:2] == ("email", "sent")
    assert len(p.mails_to("jane.doe@example.com")) == 1


def test_config_check_names_bad_caldav_keys(tmp_path: Path, capsys: Any) -> None:
    p = caldav_practice(tmp_path / "p", "https://dav.example.org/ana/follow-ups/", item="task")
    assert p.cli("check") == 2
    err = capsys.readouterr().err
    assert "[channels.phone] item" in err and "event" in err and "todo" in err
    p.config.write_text(p.config.read_text().replace('url = "https://dav.example.org/ana/follow-ups/"\n', "")
                        .replace('"task"', '"todo"'))
    assert p.cli("check") == 2
    err = capsys.readouterr().err
    assert "[channels.phone] url: missing" in err
    p.config.write_text(p.config.read_text().replace('backend = "caldav"', 'backend = "caldav"\nurl = "dav.example.org"'))
    assert p.cli("check") == 2
    assert "expected the http(s) URL" in capsys.readouterr().err


def test_crash_between_put_and_record_is_uncertain_and_the_retry_finds_the_task(
        dav: RadicaleServer, tmp_path: Path, capsys: Any) -> None:
    """SIGKILL while the PUT is stored and its answer is held: uncertain, and `resolve --retry`
    meets 412: one object in the calendar, the step sent."""
    cal = calendar_for(dav, "event")
    p = caldav_practice(tmp_path / "p", cal)
    jane_no_show(p)
    stored, release = threading.Event(), threading.Event()

    def hold_put(method: str, path: str, status: int) -> None:
        if method == "PUT":
            stored.set()
            release.wait(10)

    dav.after = hold_put
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(p.config), "once",
                             "--now", CALL_DUE.isoformat()], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert stored.wait(30), "the PUT never reached the server"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        release.set()
        dav.after = None
    assert len(objects(dav, cal)) == 1
    p.once(CALL_DUE + timedelta(minutes=5))
    (phone, email) = p.status(capsys)
    assert phone["state"] == "uncertain" and email["state"] == "planned"
    assert p.cli("resolve", phone["id"], "--retry", "--now", (CALL_DUE + timedelta(minutes=6)).isoformat()) == 0
    p.once(CALL_DUE + timedelta(minutes=10))
    assert p.status(capsys)[0]["state"] == "sent"
    assert len(objects(dav, cal)) == 1
    assert [r[2] for r in dav.requests if r[0] == "PUT" and r[1].endswith(".ics")][-2:] == [201, 412]
