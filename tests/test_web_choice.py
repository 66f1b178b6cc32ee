"""An appointment that fits two directory clients (two "Chris Park"): the Needs-attention page
offers both, the therapist's choice is remembered for the event, the follow-up starts for the
chosen client, and later polls through the CLI (`once --now`) keep it theirs, on SQLite and
PostgreSQL."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from daemon import config as config_mod
from daemon.store.db import Store
from daemon.engine.places import store_url
from daemon.store.tables import event_choices, sequences, sessions
from tests.conftest import local, make_practice
from tests.ics import Ev
from tests.stories import team
from tests.web_support import console
from tests.test_web_routes import sign_in

pytestmark = pytest.mark.shows_client_data

SECOND = "c.park@example.org"     # the second Chris Park of the test directory


def chris_no_show(practice) -> Ev:
    """Chris Park's Tuesday session, seen on Monday, marked a no-show on Tuesday: ambiguous."""
    session = Ev("chris-1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Chris Park")
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    session.summary = "Chris Park no-show"
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 3, 11))
    return session


def store_rows(practice, table, *where):
    cfg = config_mod.load(practice.config)
    store = Store(store_url(cfg))
    try:
        with store.transaction() as conn:
            return [dict(r) for r in conn.execute(sa.select(table).where(*where)).mappings().all()]
    finally:
        store.close()


def choose(practice, client_index_email: str, now=local(2026, 11, 3, 12)):
    """Sign in to the console, pick the candidate with that address, return the page after."""
    app, engine, _ = console(practice, now, story=False)
    try:
        client, token = sign_in(app)
        page = client.get("/attention").get_data(as_text=True)
        form = re.search(r'<form method="post" action="/attention/choose">(.*?)</form>', page, re.S).group(1)
        radios = re.findall(r'<input type="radio" name="client" value="([^"]+)" id="([^"]+)"', form)
        labels = dict(re.findall(r'<label for="([^"]+)">([^<]+)</label>', form))
        assert len(radios) == 2 and all("Chris Park" in labels[i] for _, i in radios)
        assert "main · Tue 03 Nov 2026, 10:00" in page and "the title matches several clients." in page   # local time
        chosen = next(v for v, i in radios if client_index_email in labels[i])
        hidden = dict(re.findall(r'<input type="hidden" name="(calendar|uid)" value="([^"]+)">', form))
        resp = client.post("/attention/choose", data={"csrf": token, "client": chosen, **hidden},
                           follow_redirects=True)
        return chosen, resp, client, token, hidden
    finally:
        engine.close()


def test_the_choice_is_offered_checked_and_remembered(tmp_path, capsys):
    practice = make_practice(tmp_path / "p")
    chris_no_show(practice)
    assert practice.status(capsys) == []                       # ambiguous: nobody contacted on a guess
    chosen, resp, client, token, hidden = choose(practice, SECOND)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Remembered: this appointment is with Chris Park; 1 follow-up(s) started." in page
    assert "Who is this appointment with?" not in page           # no longer waiting
    assert "Tue 03 Nov 2026, 10:00" not in client.get("/attention").get_data(as_text=True)
    assert store_rows(practice, event_choices) and store_rows(practice, event_choices)[0]["client_id"] == chosen
    assert {r["client_id"] for r in store_rows(practice, sequences)} == {chosen}
    assert [s["state"] for s in practice.status(capsys)] == ["planned", "planned"]


def test_a_choice_that_is_no_candidate_or_without_token_is_refused(tmp_path, capsys):
    practice = make_practice(tmp_path / "p")
    chris_no_show(practice)
    app, engine, _ = console(practice, local(2026, 11, 3, 12), story=False)
    try:
        client, token = sign_in(app)
        form = {"calendar": "main", "uid": "chris-1"}
        jane = engine.directory.clients[0].id
        assert client.post("/attention/choose", data={**form, "csrf": token, "client": jane}).status_code == 400
        assert client.post("/attention/choose", data={**form, "csrf": token}).status_code == 400
        assert client.post("/attention/choose", data={**form, "csrf": "x",
                                                      "client": engine.directory.clients[3].id}).status_code == 400
        assert client.post("/attention/choose", data={"calendar": "main", "uid": "nope", "csrf": token,
                                                      "client": engine.directory.clients[3].id}).status_code == 400
        assert store_rows(practice, event_choices) == [] and practice.status(capsys) == []
    finally:
        engine.close()


def test_after_the_choice_the_follow_up_is_the_chosen_clients_on_every_later_poll(practice, capsys):
    session = chris_no_show(practice)
    chosen, _, _, _, _ = choose(practice, SECOND)
    practice.once(local(2026, 11, 3, 13))                                  # the same feed again
    session.description = "rescheduling talk"                               # and a changed event
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 3, 14))
    rows = store_rows(practice, sessions, sessions.c.uid == "chris-1")
    assert [(r["client_id"], r["ambiguous"]) for r in rows] == [(chosen, "")]
    steps = practice.status(capsys)
    assert [s["state"] for s in steps] == ["planned", "planned"]
    email_due = next(s["due_at"] for s in steps if s["channel"] == "email")
    from datetime import datetime

    practice.once(datetime.fromisoformat(email_due))
    assert practice.mails_to(SECOND) and not practice.mails_to("chris.park@example.com")
    assert {r["client_id"] for r in store_rows(practice, sequences)} == {chosen}
    log = "\n".join(r["event"] for r in _history(practice, chosen))
    assert "client_chosen" in log


def _history(practice, client_id):
    from daemon.store.tables import audit

    return store_rows(practice, audit, audit.c.client_id == client_id)


def test_a_choice_holds_for_later_sessions_of_the_series(tmp_path, capsys):
    practice = make_practice(tmp_path / "p")
    series = Ev("chris-weekly", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Chris Park",
                rrule="FREQ=WEEKLY;BYDAY=TU")
    practice.calendar([team(), series])
    practice.once(local(2026, 11, 2, 8))
    chosen, resp, *_ = choose(practice, SECOND, local(2026, 11, 2, 9))
    assert "it is followed up like any other" in resp.get_data(as_text=True)   # nothing missed yet
    cancelled = Ev("chris-weekly", local(2026, 11, 10, 10), local(2026, 11, 10, 10, 50), "Chris Park",
                   status="CANCELLED", recurrence_id=local(2026, 11, 10, 10))
    practice.calendar([team(), series, cancelled])
    practice.once(local(2026, 11, 5, 9))
    # the client's next sessions stand: a rebooked cancellation, recorded as the chosen client's
    assert [(r["client_id"], r["closed_reason"]) for r in store_rows(practice, sequences)] == [(chosen, "rebooked")]
    rows = store_rows(practice, sessions, sessions.c.uid == "chris-weekly")
    assert len(rows) > 2 and {(r["client_id"], r["ambiguous"]) for r in rows} == {(chosen, "")}
