"""The practice around a missed session (issue 12), each rule as a story through ``once --now``:
patterns for the therapist only, a safety client's no-show, the therapist's own cancellations
(out-of-office blocks, markers), bursts confirmed and dismissed, a Spanish-speaking client."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from tests import canary
from tests.conftest import Practice, local, make_practice
from tests.ics import Ev

DIRECTORY = """name,aliases,email,phone,preferred_channel,do_not_contact,safety_concern,emergency_contact,language
Jane Doe,Janie,jane.doe@example.com,+1 555 010 0201,phone,false,yes,Dana Whitlock (sister) +1 555 010 0299,
Omar Haddad,,omar.h@example.org,+1 555 010 0202,email,false,,,
Jordan Avery,,jordan.avery@example.com,,,false,,,
Priya Natarajan,,priya.n@example.org,,,false,no,,
Lucía Fernández,Lucia,lucia.f@example.org,+1 555 010 0207,,false,,,es
Sam Okafor,Sammy,sam.okafor@example.net,,,false,,,
"""
EMERGENCY = ("Dana", "Whitlock", "555 010 0299", "(555) 010-0299", "+15550100299")


def _practice(tmp_path: Path, extra: str = "") -> Practice:
    p = make_practice(tmp_path / "practice", extra=extra)
    (p.root / "clients.csv").write_text(DIRECTORY)
    return p


def _body(raw: str) -> str:
    msg = message_from_bytes(raw.encode(), policy=policy.default)
    part = msg.get_body(("plain",))
    assert part is not None
    return f"Subject: {msg['Subject']}\n\n" + part.get_content()


def _to(p: Practice, address: str) -> list[str]:
    return [_body(m) for m in p.mails_to(address)]


def _team() -> Ev:
    return Ev("team", local(2026, 10, 30, 12), local(2026, 10, 30, 13), "Team meeting", rrule="FREQ=WEEKLY;BYDAY=FR")


def _session(uid: str, who: str, *when: int, **kw: object) -> Ev:
    start = local(*when)
    return Ev(uid, start, start + timedelta(minutes=50), who, **kw)  # type: ignore[arg-type]


def _seen_then_edited(p: Practice, session: Ev, seen: datetime, edited: datetime, **changes: str) -> None:
    """The session is on the calendar at ``seen``; the therapist then edits it (``changes``:
    its summary or status) and welcomeback polls again at ``edited``."""
    p.calendar([_team(), session])
    p.once(seen)
    for name, value in changes.items():
        setattr(session, name, value)
    p.calendar([_team(), session])
    p.once(edited)


# -- 1. patterns -----------------------------------------------------------------------------------
@pytest.mark.shows_client_data
def test_a_third_miss_in_90_days_is_a_pattern_for_the_therapist_only(tmp_path, capsys):
    p = _practice(tmp_path)
    misses = [_session(f"o{i}", "Omar Haddad", 2026, m, d, 10) for i, (m, d) in enumerate([(11, 3), (11, 17), (12, 1)])]
    p.calendar([_team(), *misses])
    p.once(local(2026, 11, 2, 8))
    for ev, (noticed, follow) in zip(misses, [((11, 3), (11, 4)), ((11, 17), (11, 18)), ((12, 1), (12, 2))]):
        ev.summary = "Omar Haddad no-show"
        p.calendar([_team(), *misses])
        p.once(local(2026, *noticed, 11))
        p.once(local(2026, *follow, 10, 30))       # the call task goes out
        p.once(local(2026, follow[0], follow[1] + 6, 11))   # the email step (sent or rebooked)
    steps = p.status(capsys)
    by_session = {(r["session_start"][:10], r["step"]): r["pattern"] for r in steps}
    assert by_session[("2026-11-03", 1)] is None and by_session[("2026-11-17", 1)] is None
    assert by_session[("2026-12-01", 1)] == 3 and by_session[("2026-12-01", 2)] == 3
    calls = [m for m in _to(p, "ana@riverside.example") if m.startswith("Subject: Call")]
    assert len(calls) == 3
    third = [c for c in calls if "Missed: Tuesday, December 1" in c]
    assert len(third) == 1
    assert "Note for you: 3rd missed session since 3 November — consider talking about it together" in third[0]
    assert sum("missed session since" in c for c in calls) == 1
    for mail in _to(p, "omar.h@example.org"):
        assert not re.search(r"pattern|missed session since|3rd|talking about it", mail, re.I)
    assert p.cli("digest", "--now", local(2026, 12, 2, 7, 30).isoformat()) == 0
    digest = [m for m in _to(p, "ana@riverside.example") if "your day" in m][-1]
    assert "Patterns worth talking about together" in digest
    assert "Omar Haddad: 3rd missed session since 3 November" in digest


# -- 2. safety -------------------------------------------------------------------------------------
@pytest.mark.shows_client_data
def test_a_safety_no_show_on_friday_afternoon_is_urgent_alerts_again_and_is_never_closed_silently(tmp_path, capsys):
    p = _practice(tmp_path)
    session = _session("j1", "Jane Doe", 2026, 11, 6, 14)       # a Friday
    _seen_then_edited(p, session, local(2026, 11, 5, 9), local(2026, 11, 6, 15, 10), summary="Jane Doe no-show")
    urgent = _to(p, "ana@riverside.example")
    assert len(urgent) == 1 and urgent[0].startswith("Subject: URGENT: call Jane now")
    assert "Dana Whitlock (sister) +1 555 010 0299" in urgent[0]
    assert "Follow your safety protocol" in urgent[0]
    steps = p.status(capsys)
    assert steps[0]["state"] == "sent" and steps[0]["due_at"].startswith("2026-11-06T15:10")
    p.once(local(2026, 11, 6, 16, 30))
    assert len(_to(p, "ana@riverside.example")) == 1            # the alert waits for the day's end
    p.once(local(2026, 11, 6, 17, 1))
    alerts = [m for m in _to(p, "ana@riverside.example") if "Second alert" in m]
    assert len(alerts) == 1 and "Dana Whitlock" in alerts[0] and "welcomeback reached" in alerts[0]
    p.once(local(2026, 11, 20, 10))                              # a week past max_lateness
    steps = p.status(capsys)
    assert steps[1]["state"] == "sent" and steps[1]["reason"] is None   # never skipped too_late
    client_mail = _to(p, "jane.doe@example.com")
    assert len(client_mail) == 1
    for piece in EMERGENCY + ("safety", "protocol", "URGENT"):
        assert piece.lower() not in client_mail[0].lower()
    capsys.readouterr()
    assert p.cli("status") == 1                                  # needs the therapist's outcome
    assert "Safety: no outcome recorded yet" in canary.read_client_data(capsys).out
    assert p.cli("reached", "Jane Doe") == 0
    capsys.readouterr()
    assert p.cli("status") == 0


def test_the_second_alert_is_not_sent_once_the_therapist_reached_the_client(tmp_path, capsys):
    p = _practice(tmp_path)
    session = _session("j1", "Jane Doe", 2026, 11, 6, 14)
    _seen_then_edited(p, session, local(2026, 11, 5, 9), local(2026, 11, 6, 15), summary="Jane Doe no-show")
    session.summary = "Jane Doe no-show reached"
    p.calendar([_team(), session])
    p.once(local(2026, 11, 6, 17, 30))
    assert not [m for m in _to(p, "ana@riverside.example") if "Second alert" in m]


def test_the_emergency_contact_is_only_a_call_task_variable(tmp_path, capsys):
    p = _practice(tmp_path)
    folder = p.root / "templates"
    folder.mkdir()
    (folder / "email_followup.txt").write_text("Subject: Hi\n\nHi {{ client_first_name }} {{ emergency_contact }}\n")
    assert p.cli("check") == 2
    assert "emergency_contact" in capsys.readouterr().err
    (folder / "email_followup.txt").unlink()
    assert p.cli("preview", "safety_call") == 0
    out = capsys.readouterr().out
    assert "Robin Example (partner)" in out                     # sample values without --client


# -- 3. the therapist's own cancellations --------------------------------------------------------
FIVE = ["Jane Doe", "Omar Haddad", "Jordan Avery", "Priya Natarajan", "Sam Okafor"]


def _weekly(who: str, day: int) -> Ev:
    start = local(2026, 11, 16 + day, 10 + day)                 # Mon 16 Nov + day, weekly
    return Ev(f"w{day}", start, start + timedelta(minutes=50), who, rrule="FREQ=WEEKLY;COUNT=6")


@pytest.mark.parametrize("block", ["all-day", "timed"])
@pytest.mark.shows_client_data
def test_a_vacation_week_is_one_reschedule_task_and_no_client_follow_up(practice, capsys, block):
    p = practice
    (p.root / "clients.csv").write_text(DIRECTORY)
    series = [_weekly(who, day) for day, who in enumerate(FIVE)]
    p.calendar([_team(), *series])
    p.once(local(2026, 11, 13, 9))
    vacation = Ev("vac", local(2026, 11, 23), local(2026, 11, 28), "Vacation", all_day=block == "all-day")
    for day, ev in enumerate(series):
        ev.exdates = [local(2026, 11, 23 + day, 10 + day)]
    p.calendar([_team(), vacation, *series])
    p.once(local(2026, 11, 16, 12))
    assert p.status(capsys) == []                                # no client follow-up at all
    mails = p.mails()
    assert len(mails) == 1
    task = _body(mails[0])
    assert task.startswith("Subject: Reschedule: 5 sessions you cancelled")
    for who in FIVE:
        assert who in task
    assert "Monday, November 23 at 10:00 AM" in task
    p.once(local(2026, 11, 24, 12))
    p.once(local(2026, 12, 3, 12))
    assert len(p.mails()) == 1                                   # nothing more, ever
    capsys.readouterr()
    assert p.cli("report", "--month", "2026-11", "--format", "json", "--now", local(2026, 11, 30).isoformat()) == 0
    report = json.loads(canary.read_client_data(capsys).out)
    assert report["totals"]["therapist_cancellations"] == 5
    assert report["totals"]["cancellations"] == report["totals"]["late_cancels"] == 0


def test_google_out_of_office_events_are_absences_not_sessions():
    from connectors.calendars.google import to_occurrence
    from daemon import config as config_mod
    from daemon.clients import Directory
    from daemon.engine import detect
    from daemon.model import Client, SessionRow
    from tests.conftest import NY

    item = {"id": "ooo1", "status": "confirmed", "eventType": "outOfOffice", "summary": "Away",
            "start": {"dateTime": "2026-11-23T00:00:00-05:00"}, "end": {"dateTime": "2026-11-28T00:00:00-05:00"}}
    occ = to_occurrence(item, NY)
    assert occ is not None and detect.is_out_of_office_event(occ)
    cfg = config_mod.load(make_practice(Path("/tmp") / "wb-ooo-unused").config)
    jane = Client(id="dir:jane", name="Jane Doe", email="jane.doe@example.com")
    start = local(2026, 11, 24, 10)
    prev = {"s1": SessionRow(calendar="main", key="s1", uid="s1", start=start, end=start + timedelta(minutes=50),
                             client_id=jane.id, client_name=jane.name, first_seen_at=local(2026, 11, 1))}
    from connectors.calendars.base import Window

    ctx = detect.Context(calendar="main", now=local(2026, 11, 16), window=Window(local(2026, 11, 1), local(2027, 1, 1)),
                         baseline=False, first_seen_at=local(2026, 11, 1), prev_poll_at=local(2026, 11, 15),
                         rules=cfg.detection, directory=Directory([jane]), therapist_email="ana@riverside.example")
    other = to_occurrence({"id": "x", "summary": "Team", "start": {"dateTime": "2026-11-20T12:00:00-05:00"},
                           "end": {"dateTime": "2026-11-20T13:00:00-05:00"}}, NY)
    out = detect.reconcile(prev, [occ, other], True, ctx)        # Jane's session vanished inside the block
    assert [t.by_therapist for t in out.triggers] == ["out_of_office"]
    assert [k for k, _, _ in out.absences] == ["ooo1"] and not out.rows


@pytest.mark.shows_client_data
def test_a_therapist_cancel_marker_is_recorded_and_never_followed_up(tmp_path, capsys):
    p = _practice(tmp_path)
    session = _session("o1", "Omar Haddad", 2026, 11, 10, 10)
    _seen_then_edited(p, session, local(2026, 11, 5, 9), local(2026, 11, 6, 9), summary="Omar Haddad - therapist cancelled")
    p.once(local(2026, 11, 12, 9))
    assert p.status(capsys) == []
    assert _to(p, "omar.h@example.org") == []
    tasks = _to(p, "ana@riverside.example")
    assert len(tasks) == 1 and tasks[0].startswith("Subject: Reschedule: 1 session you cancelled")
    capsys.readouterr()
    assert p.cli("history", "Omar Haddad") == 0
    assert "therapist_cancelled" in canary.read_client_data(capsys).out


# -- 4. bursts -----------------------------------------------------------------------------------
@pytest.mark.shows_client_data
def test_a_burst_is_held_then_confirmed_for_one_and_dismissed_for_the_rest(practice, capsys):
    p = practice
    (p.root / "clients.csv").write_text(DIRECTORY)
    sessions = [_session(f"b{i}", who, 2026, 11, 10, 10 + i) for i, who in enumerate(["Omar Haddad", "Jordan Avery",
                                                                                       "Priya Natarajan"])]
    p.calendar([_team(), *sessions])
    p.once(local(2026, 11, 5, 9))
    for s in sessions:
        s.status = "CANCELLED"
    p.calendar([_team(), *sessions])
    p.once(local(2026, 11, 6, 9))
    steps = p.status(capsys)
    firsts = [r for r in steps if r["step"] == 1]
    assert len(firsts) == 3 and {(r["state"], r["reason"]) for r in firsts} == {("held", "burst")}
    p.once(local(2026, 11, 12, 12))                               # well past the call tasks' due time
    assert p.mails() == []                                        # nothing sent while held
    capsys.readouterr()
    assert p.cli("status") == 1
    assert p.cli("digest", "--now", local(2026, 11, 12, 12, 5).isoformat()) == 0
    digest = _to(p, "ana@riverside.example")[-1]
    assert "BURST: 3 clients' cancellations" in digest and "welcomeback confirm --all" in digest
    assert p.cli("confirm", "Omar Haddad", "--now", local(2026, 11, 12, 13).isoformat()) == 0
    assert p.cli("dismiss", "--all", "--now", local(2026, 11, 12, 13).isoformat()) == 0
    p.once(local(2026, 11, 12, 13, 5))
    calls = [m for m in _to(p, "ana@riverside.example") if m.startswith("Subject: Call")]
    assert len(calls) == 1 and "Client: Omar Haddad" in calls[0]
    steps = p.status(capsys)
    others = [r for r in steps if r["client"] != "Omar Haddad"]
    assert others and {(r["state"], r["reason"]) for r in others} == {("skipped", "therapist_cancelled")}
    assert p.cli("confirm", "--all") == 2                         # nothing is held any more
    assert "no follow-up" in capsys.readouterr().err


def test_a_burst_needs_different_clients_and_the_window(tmp_path, capsys):
    p = _practice(tmp_path)
    a = _session("a", "Omar Haddad", 2026, 11, 10, 10)
    b = _session("b", "Jane Doe", 2026, 11, 10, 11)
    c = _session("c", "Lucía Fernández", 2026, 11, 10, 12)
    p.calendar([_team(), a, b, c])
    p.once(local(2026, 11, 5, 9))
    a.status = b.status = "CANCELLED"
    p.calendar([_team(), a, b, c])
    p.once(local(2026, 11, 5, 10))
    c.status = "CANCELLED"
    p.calendar([_team(), a, b, c])
    p.once(local(2026, 11, 5, 10, 45))                            # 45 minutes later: not one burst
    p.once(local(2026, 11, 11, 12, 30))
    assert len([m for m in _to(p, "ana@riverside.example") if "\nClient: " in m]) == 3


# -- 5. language -----------------------------------------------------------------------------------
@pytest.mark.shows_client_data
def test_a_spanish_speaking_client_gets_the_spanish_email_with_spanish_dates(tmp_path, capsys):
    p = _practice(tmp_path)
    session = _session("l1", "Lucía Fernández", 2026, 11, 3, 10)
    _seen_then_edited(p, session, local(2026, 11, 2, 8), local(2026, 11, 3, 11), summary="Lucía Fernández no-show")
    p.once(local(2026, 11, 4, 10, 30))
    p.once(local(2026, 11, 10, 10, 30))
    mails = _to(p, "lucia.f@example.org")
    assert len(mails) == 1
    assert mails[0].startswith("Subject: Un saludo desde Riverside Counselling")
    assert "Te eché de menos en nuestra cita del martes, 3 de noviembre a las 10:00" in mails[0]
    html = message_from_bytes(p.mails_to("lucia.f@example.org")[0].encode(), policy=policy.default).get_body(("html",))
    assert html is not None and "La puerta sigue abierta" in html.get_content()
    call = [m for m in _to(p, "ana@riverside.example") if "Llamar a" in m]
    assert call and "Hola, Lucía, soy Ana, de Riverside Counselling." in call[0]


def test_spanish_templates_are_as_careful_as_the_english_ones():
    from daemon.templating.templates import defaults_dir

    names = sorted(item.name for item in defaults_dir().iterdir() if ".es." in item.name)
    assert names == ["email_followup.es.html", "email_followup.es.txt", "phone_call.es.txt", "sms_checkin.es.txt"]
    for name in names:
        text = defaults_dir().joinpath(name).read_text().lower()
        for clinical in ("terapia", "diagnóstico", "tratamiento", "sesión de", "paciente"):
            assert clinical not in text, (name, clinical)
        assert "{{ client_first_name }}" in text.replace("client_first_name", "client_first_name")


# -- 6. never a termination --------------------------------------------------------------------------
def test_no_template_ever_discharges_or_terminates():
    from daemon.templating.templates import defaults_dir

    for item in defaults_dir().iterdir():
        if item.name.endswith((".txt", ".html")):
            text = item.read_text().lower()
            for word in ("discharge", "terminat", "close your file", "closing your file", "de alta", "cerrar tu"):
                assert word not in text, (item.name, word)


@pytest.mark.shows_client_data
def test_the_end_of_a_sequence_records_the_invitation_and_the_digest_suggests_documenting_it(tmp_path, capsys):
    p = _practice(tmp_path)
    session = _session("s1", "Sam Okafor", 2026, 11, 3, 10)
    _seen_then_edited(p, session, local(2026, 11, 2, 8), local(2026, 11, 3, 11), summary="Sam Okafor no-show")
    p.once(local(2026, 11, 4, 10, 30))
    p.once(local(2026, 11, 10, 10, 30))
    capsys.readouterr()
    assert p.cli("history", "Sam Okafor", "--format", "json") == 0
    events = [r["event"] for r in json.loads(canary.read_client_data(capsys).out)]
    assert events == ["detected", "skipped", "sent", "invitation_given"]   # no phone number: no call task
    assert p.cli("digest", "--now", local(2026, 11, 11, 7, 30).isoformat()) == 0
    digest = _to(p, "ana@riverside.example")[-1]
    assert "Invitations given" in digest
    assert "Sam Okafor: the invitation to return was given" in digest and "document it" in digest
    for mail in p.mails():
        assert "discharge" not in mail.lower() and "terminat" not in mail.lower()


# -- 7. the monthly report and its chart ------------------------------------------------------------
def _november(p: Practice) -> None:
    """A hand-counted November 2026 (see the expectation in the test)."""
    o = [_session("o0", "Omar Haddad", 2026, 10, 26, 10), _session("o1", "Omar Haddad", 2026, 11, 2, 10),
         _session("o2", "Omar Haddad", 2026, 11, 9, 10), _session("o3", "Omar Haddad", 2026, 11, 16, 10),
         _session("o4", "Omar Haddad", 2026, 11, 25, 10), _session("o5", "Omar Haddad", 2026, 11, 30, 15)]
    pr = [_session("p1", "Priya Natarajan", 2026, 11, 3, 11), _session("p2", "Priya Natarajan", 2026, 11, 17, 11)]
    j = [_session("j1", "Jordan Avery", 2026, 11, 4, 10)]
    changes = {
        (11, 4, 11): lambda: setattr(j[0], "summary", "Jordan Avery no-show"),
        (11, 9, 11): lambda: setattr(o[2], "summary", "Omar Haddad DNA"),
        (11, 12, 9): lambda: setattr(pr[1], "summary", "Priya Natarajan (therapist canceled)"),
        (11, 16, 8): lambda: setattr(o[3], "status", "CANCELLED"),         # two hours before: late
        (11, 18, 9): lambda: setattr(o[4], "status", "CANCELLED"),         # a week before: in good time
    }
    p.calendar([_team(), *o, *pr, *j])
    p.once(local(2026, 10, 30, 9))
    day = local(2026, 11, 2, 8)
    while day < local(2026, 11, 28):
        for hour in (8, 9, 10, 11, 12):
            key = (day.month, day.day, hour)
            if key in changes:
                changes[key]()
                p.calendar([_team(), *o, *pr, *j])
                p.once(day.replace(hour=hour))
        if day.weekday() < 5:
            p.once(day.replace(hour=16, minute=30))
        day += timedelta(days=1)


@pytest.mark.shows_client_data
def test_the_report_json_matches_a_hand_counted_month(tmp_path, capsys):
    p = _practice(tmp_path)
    _november(p)
    capsys.readouterr()
    assert p.cli("report", "--month", "2026-11", "--format", "json", "--now", local(2026, 11, 28, 12).isoformat()) == 0
    report = json.loads(canary.read_client_data(capsys).out)
    zero = {"booked": 0, "attended": 0, "no_shows": 0, "late_cancels": 0, "cancellations": 0,
            "therapist_cancellations": 0, "follow_ups": 0}
    assert report["month"] == "2026-11"
    rows = {r["client"]: r for r in report["clients"]}
    assert sorted(rows) == ["Jordan Avery", "Omar Haddad", "Priya Natarajan"]
    assert {k: rows["Omar Haddad"][k] for k in zero} == {**zero, "booked": 5, "attended": 1, "no_shows": 1,
                                                         "late_cancels": 1, "cancellations": 1, "follow_ups": 1}
    assert {k: rows["Priya Natarajan"][k] for k in zero} == {**zero, "booked": 2, "attended": 1,
                                                             "therapist_cancellations": 1}
    assert {k: rows["Jordan Avery"][k] for k in zero} == {**zero, "booked": 1, "no_shows": 1, "follow_ups": 1}
    assert rows["Omar Haddad"]["ended"] == {"invitation_given": 1}
    assert rows["Jordan Avery"]["ended"] == {"invitation_given": 1}
    assert report["totals"] == {"booked": 8, "attended": 2, "no_shows": 2, "late_cancels": 1, "cancellations": 1,
                                "therapist_cancellations": 1, "follow_ups": 2}
    assert p.cli("report", "--month", "2026-11", "--format", "csv", "--now", local(2026, 11, 28, 12).isoformat()) == 0
    lines = canary.read_client_data(capsys).out.splitlines()
    assert lines[0].startswith("month,client,booked,attended") and lines[-1].startswith("2026-11,TOTAL,8,2,2,1,1,1,2")


@pytest.mark.shows_client_data
def test_the_text_report_writes_a_chart_with_one_bar_per_month(tmp_path, capsys):
    import xml.etree.ElementTree as ET

    p = _practice(tmp_path)
    _november(p)
    capsys.readouterr()
    assert p.cli("report", "--month", "2026-11", "--now", local(2026, 11, 28, 12).isoformat()) == 0
    out = canary.read_client_data(capsys)
    assert "Sessions and follow-ups, 2026-11" in out.out and "Your own cancellations this month: 1" in out.out
    chart = p.root / "reports" / "misses-2026-11.svg"
    assert str(chart) in out.err
    root = ET.fromstring(chart.read_bytes())                     # well-formed SVG
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    bars = [e for e in root.iter("{http://www.w3.org/2000/svg}rect") if "rect" in (e.get("class") or "").split()]
    assert len(bars) == 12
    labels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "2025-12" in labels and "2026-11" in labels and "2025-11" not in labels
    heights = [float(b.get("height") or 0) for b in bars]
    assert heights[-1] > 0 and heights[:-2] == [0.0] * 10        # October: o0 attended; November: 4 misses
    assert p.cli("report", "--month", "2026-13") == 2
    assert "expected YYYY-MM" in capsys.readouterr().err


# -- 8. configuration and directory -----------------------------------------------------------------
def test_new_keys_are_validated_with_their_names(tmp_path, capsys):
    p = _practice(tmp_path, extra='''
[detection]
pattern = { misses = 0, within = "90 days" }
burst = { count = 3, within = "soon" }
out_of_office_words = "vacation"

[safety]
protocol = 3
''')
    assert p.cli("check") == 2
    err = capsys.readouterr().err
    assert "[detection.pattern]: misses: expected a whole number of at least 1, found 0" in err
    assert "[detection.burst] within: 'soon' is not a duration" in err
    assert "[detection] out_of_office_words: expected a list of words" in err
    assert "[safety] protocol: expected a string, found 3" in err


def test_directory_columns_in_csv_and_vcard(tmp_path):
    from daemon.client_files import load_directory
    from daemon.errors import UserError

    d = load_directory(_practice(tmp_path).root / "clients.csv")
    jane = d.find("Jane Doe")[0]
    assert jane.safety_concern and jane.emergency_contact == "Dana Whitlock (sister) +1 555 010 0299"
    assert d.find("Lucia")[0].language == "es" and not d.find("Priya Natarajan")[0].safety_concern
    bad = tmp_path / "bad.csv"
    bad.write_text("name,email,safety_concern,language\nOmar Haddad,omar.h@example.org,maybe,\n"
                   "Jane Doe,jane.doe@example.com,,klingon-xx\n")
    with pytest.raises(UserError) as exc:
        load_directory(bad)
    problems = "\n".join(exc.value.problems)
    assert "bad.csv:2: safety_concern 'maybe' is not yes or no" in problems
    assert "bad.csv:3: language 'klingon-xx' is not a language tag" in problems
    card = tmp_path / "clients.vcf"
    card.write_text("BEGIN:VCARD\nVERSION:4.0\nFN:Jane Doe\nEMAIL:jane.doe@example.com\nLANG:es-MX\n"
                    "X-WELCOMEBACK-SAFETY-CONCERN:yes\nX-WELCOMEBACK-EMERGENCY-CONTACT:Dana Whitlock\\, sister\n"
                    "END:VCARD\n")
    jane = load_directory(card).clients[0]
    assert (jane.language, jane.safety_concern, jane.emergency_contact) == ("es-MX", True, "Dana Whitlock, sister")


def test_spanish_dates_come_from_babel_and_fall_back_by_tag(tmp_path):
    from daemon.templating.templates import Templates, babel_locale, language_candidates, when
    from tests.conftest import NY

    assert language_candidates("es-MX") == ["es-MX", "es"] and babel_locale("es-MX", "en_US") == "es_MX"
    assert when(local(2026, 11, 3, 10), tz=NY, locale=babel_locale("es", "en_US")) == "martes, 3 de noviembre, a las 10:00"
    t = Templates(tmp_path / "none")
    assert t.locate("email_followup", "es-MX").text_path.name == "email_followup.es.txt"
    assert t.locate("email_followup", "de").text_path.name == "email_followup.txt"
    assert t.locate("safety_call", "es").text_path.name == "safety_call.txt"
    assert "email_followup.es" not in t.names() and "safety_call" in t.names()


@pytest.mark.parametrize("template, medium", [("email_followup", "email"), ("phone_call", "call-task"),
                                              ("sms_checkin", "sms")])
@pytest.mark.parametrize("trigger", ["cancelled", "late_cancel", "no_show"])
def test_spanish_wording_renders_for_every_trigger(tmp_path, template, medium, trigger):
    from connectors.channels.twilio_sms import sms_problems
    from daemon import config as config_mod
    from daemon.engine import messages
    from daemon.model import Client
    from daemon.store.tables import ts
    from daemon.templating.templates import Templates

    cfg = config_mod.load(_practice(tmp_path).config)
    lucia = Client(id="x", name="Lucía Fernández", email="lucia.f@example.org", phone="+15550100207", language="es")
    start = local(2026, 3, 2, 10)
    step = {"id": "s-1", "sequence_id": "s", "session_start": ts(start), "due_at": ts(start), "trigger": trigger,
            "template": template}
    message = messages.build_for(step, lucia, medium, cfg, Templates(tmp_path / "none"))
    text = message.text + (message.html or "")
    assert "{{" not in text and "{%" not in text and "  " not in message.text
    assert "Lucía" in text and "Ana" in text
    if template != "sms_checkin":
        assert "lunes, 2 de marzo a las 10:00" in message.text
    if trigger != "no_show":
        assert "eché de menos" not in text
    if template == "sms_checkin":                                # the template's words fit one GSM-7 text
        assert sms_problems(message.text.replace("Lucía", "Lucia")) == []


def test_the_safety_call_task_reads_as_a_call_task(tmp_path):
    from daemon import config as config_mod
    from daemon.engine import messages
    from daemon.model import Client
    from daemon.store.tables import ts
    from daemon.templating.templates import Templates

    cfg = config_mod.load(_practice(tmp_path).config)
    jane = Client(id="x", name="Jane Doe", phone="+15550100201", safety_concern=True,
                  emergency_contact="Dana Whitlock (sister) +1 555 010 0299")
    step = {"id": "s-1", "sequence_id": "s", "session_start": ts(local(2026, 3, 2, 10)),
            "due_at": ts(local(2026, 3, 2, 11)), "trigger": "no_show", "template": "safety_call"}
    message = messages.build_for(step, jane, "call-task", cfg, Templates(tmp_path / "none"))
    assert message.audience == "therapist" and message.to_address == "ana@riverside.example"
    assert message.subject == "URGENT: call Jane now"
    assert "Emergency contact: Dana Whitlock (sister) +1 555 010 0299" in message.text
    assert "Monday, March 2 at 10:00 AM" in message.text and "{{" not in message.text
    with pytest.raises(Exception, match="call tasks only"):
        messages.build_for(step, jane, "email", cfg, Templates(tmp_path / "none"))


def test_a_google_out_of_office_event_makes_the_cancellation_the_therapists(tmp_path, monkeypatch):
    from daemon import config as config_mod
    from daemon.cli.status import step_records
    from daemon.clock import FixedClock
    from daemon.engine.cycle import Engine
    from tests.fakes.google_calendar import FakeGoogleCalendar
    from tests.test_google_engine import CLIENTS, CONFIG, FIRST, JANE

    with FakeGoogleCalendar() as fake:
        monkeypatch.setenv("WELCOMEBACK_GOOGLE_TOKEN", fake.authorized_user_json())
        monkeypatch.delenv("STATE_DIRECTORY", raising=False)
        config = CONFIG.format(endpoint=fake.api_endpoint).split("[channels.phone]")[0]
        (tmp_path / "config.toml").write_text(config)
        (tmp_path / "clients.csv").write_text(CLIENTS)
        clock = FixedClock(local(2026, 11, 2, 8))
        engine = Engine(config_mod.load(tmp_path / "config.toml"), clock)
        engine.sources["main"].sleep = lambda s: None
        try:
            ids = fake.add_series("jane", first=FIRST, count=4, every=timedelta(days=21), summary="Jane Doe",
                                  attendees=[JANE])
            engine.run_once()
            fake.add_event("away", start=local(2026, 11, 23, 0), minutes=5 * 24 * 60, summary="Away",
                           eventType="outOfOffice")
            fake.cancel(ids[1])                                   # the 24 November session
            clock.set(local(2026, 11, 10, 9))
            engine.run_once()
            clock.set(local(2026, 11, 25, 10, 30))
            engine.run_once()
            assert step_records(engine) == []
        finally:
            engine.close()
        assert fake.violations == []
    mails = [_body(m.read_text()) for m in (tmp_path / "outbox").glob("*.eml")]
    assert len(mails) == 1 and mails[0].startswith("Subject: Reschedule: 1 session you cancelled")
    assert "Jane Doe" in mails[0] and "Tuesday, November 24" in mails[0]


def test_your_own_template_wins_over_a_packaged_translation(tmp_path):
    from daemon.templating.templates import Templates

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "sms_checkin.txt").write_text("Hi {{ client_first_name }}, thinking of you.\n")
    t = Templates(mine)
    assert t.locate("sms_checkin", "es").text_path == mine / "sms_checkin.txt"      # your words first
    (mine / "sms_checkin.es.txt").write_text("Hola, {{ client_first_name }}.\n")
    assert t.locate("sms_checkin", "es-MX").text_path == mine / "sms_checkin.es.txt"
    assert t.locate("email_followup", "es").origin == "default"


@pytest.mark.shows_client_data
def test_with_text_messages_the_urgent_call_task_comes_to_the_therapist_by_email(tmp_path, monkeypatch, capsys):
    from tests.fakes.twilio_server import FakeTwilio

    sid = "AC" + "0" * 32
    monkeypatch.setenv("WELCOMEBACK_TWILIO_AUTH_TOKEN", "test-token")
    with FakeTwilio(sid) as twilio:
        p = _practice(tmp_path)
        p.config.write_text(p.config.read_text().replace(
            'backend = "therapist-email"', f'backend = "twilio-sms"\naccount_sid = "{sid}"\n'
            f'from_number = "+15550109999"\napi_base = "{twilio.url}"\ntimeout = 5'))
        (p.root / "templates").mkdir()
        (p.root / "templates" / "phone_call.txt").write_text("Hi {{ client_first_name }}, thinking of you.\n")
        session = _session("j1", "Jane Doe", 2026, 11, 6, 14)
        _seen_then_edited(p, session, local(2026, 11, 5, 9), local(2026, 11, 6, 15), summary="Jane Doe no-show")
        urgent = _to(p, "ana@riverside.example")
        assert len(urgent) == 1 and urgent[0].startswith("Subject: URGENT: call Jane now")
        assert "Emergency contact: Dana Whitlock (sister) +1 555 010 0299" in urgent[0]
        assert twilio.requests == []                              # the text goes as planned, not now
        p.once(local(2026, 11, 9, 14, 30))
        assert len(twilio.requests) == 1
        body = twilio.requests[0].form()["Body"]
        assert "Jane" in body and not any(piece in body for piece in EMERGENCY)
        assert [m for m in _to(p, "ana@riverside.example") if "Second alert" in m]


@pytest.mark.shows_client_data
def test_an_out_of_office_block_added_after_the_cancellation_makes_it_the_therapists(tmp_path, capsys):
    p = _practice(tmp_path)
    session = _session("o1", "Omar Haddad", 2026, 11, 10, 10)
    _seen_then_edited(p, session, local(2026, 11, 5, 9), local(2026, 11, 5, 10), status="CANCELLED")
    assert {r["state"] for r in p.status(capsys)} == {"planned"}
    sick = Ev("sick", local(2026, 11, 10, 8), local(2026, 11, 10, 18), "Sick day")
    p.calendar([_team(), session, sick])
    p.once(local(2026, 11, 5, 11))
    assert {(r["state"], r["reason"]) for r in p.status(capsys)} == {("skipped", "therapist_cancelled")}
    p.once(local(2026, 11, 11, 12))
    assert _to(p, "omar.h@example.org") == []
    (task,) = _to(p, "ana@riverside.example")
    assert task.startswith("Subject: Reschedule: 1 session you cancelled") and "Omar Haddad" in task


@pytest.mark.shows_client_data
def test_a_client_who_is_sick_is_not_the_therapists_absence(tmp_path, capsys):
    p = _practice(tmp_path)
    session = _session("o1", "Omar Haddad", 2026, 11, 10, 10)
    p.calendar([_team(), session])
    p.once(local(2026, 11, 5, 9))
    session.summary, session.status = "Omar Haddad - sick", "CANCELLED"
    p.calendar([_team(), session])
    p.once(local(2026, 11, 5, 10))
    steps = p.status(capsys)
    assert [(r["trigger"], r["state"]) for r in steps] == [("cancelled", "planned"), ("cancelled", "planned")]
