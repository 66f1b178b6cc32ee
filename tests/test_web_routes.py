"""The console's routes with the Flask test client over a real practice store: signed out,
signed in, a wrong CSRF token and another session's token; headers, cookies, rate limit,
idle timeout, the access log; and the actions reaching the same store as the CLI."""

from __future__ import annotations

import logging
import re
import stat
from datetime import timedelta

import pytest

from daemon.web.security import check_password, password_path, set_password
from tests.conftest import make_practice
from tests.web_support import PASSWORD, console, make_uncertain, state_folder

pytestmark = pytest.mark.shows_client_data   # pages show client names to the therapist (logs still checked)

GET_PAGES = ["/", "/followups", "/followups?state=planned", "/attention", "/templates",
             "/templates/phone_call", "/clients", "/clients?q=jane", "/client/0", "/calendars", "/patterns", "/patterns?month=2026-10", "/patterns/chart.svg"]


@pytest.fixture
def site(tmp_path):
    practice = make_practice(tmp_path / "p")
    app, engine, clock = console(practice)
    yield practice, app, engine, clock
    engine.close()


def login_token(client):
    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def sign_in(app):
    client = app.test_client()
    resp = client.post("/login", data={"password": PASSWORD, "csrf": login_token(client)})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/")
    page = client.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    return client, token


def test_healthz_answers_without_sign_in_and_without_client_data(site):
    _, app, _, _ = site
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"ok": True}
    assert "Jane" not in resp.get_data(as_text=True)


@pytest.mark.parametrize("path", GET_PAGES + ["/nowhere"])
def test_every_page_redirects_to_login_when_signed_out(site, path):
    _, app, _, _ = site
    resp = app.test_client().get(path)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")


@pytest.mark.parametrize("path", ["/sequence/x/call", "/step/x/resolve", "/client/0/optout",
                                  "/templates/phone_call", "/templates/phone_call/preview", "/logout"])
def test_every_form_redirects_to_login_when_signed_out(site, path):
    _, app, _, _ = site
    resp = app.test_client().post(path, data={"csrf": "x"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")


def test_login_page_has_a_password_field(site):
    _, app, _, _ = site
    page = app.test_client().get("/login").get_data(as_text=True)
    assert 'name="password"' in page and 'type="password"' in page and "<label" in page


@pytest.mark.parametrize("path", GET_PAGES)
def test_every_page_renders_signed_in_with_strict_headers(site, path):
    _, app, _, _ = site
    client, _ = sign_in(app)
    resp = client.get(path)
    assert resp.status_code == 200, path
    h = resp.headers
    assert "default-src 'none'" in h["Content-Security-Policy"]
    assert "unsafe-inline" not in h["Content-Security-Policy"] or path.startswith("/patterns/chart.svg")
    assert h["X-Frame-Options"] == "DENY" and h["Referrer-Policy"] == "no-referrer"
    assert h["Cache-Control"] == "no-store"
    page = resp.get_data(as_text=True)
    if path.endswith(".svg"):
        assert page.startswith("<") and "<svg" in page
        return
    assert "<script>" not in page and "style=" not in page and "<style" not in page   # CSP: no inline code


def test_session_cookie_flags(site):
    _, app, _, _ = site
    client = app.test_client()
    resp = client.post("/login", data={"password": PASSWORD, "csrf": login_token(client)})
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie


def test_session_cookie_is_secure_behind_tls(tmp_path):
    practice = make_practice(tmp_path / "p")
    app, engine, _ = console(practice, secure_cookie=True)
    try:
        client = app.test_client()
        page = client.get("/login", base_url="https://localhost").get_data(as_text=True)
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        resp = client.post("/login", data={"password": PASSWORD, "csrf": token}, base_url="https://localhost")
        assert "Secure" in resp.headers["Set-Cookie"]
    finally:
        engine.close()


def test_wrong_password_then_rate_limited(site):
    _, app, _, _ = site
    client = app.test_client()
    token = login_token(client)
    assert client.post("/login", data={"password": PASSWORD, "csrf": "forged"}).status_code == 400
    for _ in range(5):
        assert client.post("/login", data={"password": "wrong", "csrf": token}).status_code == 401
    assert client.post("/login", data={"password": PASSWORD, "csrf": token}).status_code == 429   # even the right one
    assert client.get("/").status_code == 302


def test_password_is_stored_only_as_an_argon2_hash_0600(site):
    practice, _, _, _ = site
    path = set_password(state_folder(practice), PASSWORD)   # the product's (the console fixture's is quicker)
    assert path == password_path(state_folder(practice))
    text = path.read_text()
    assert text.startswith("$argon2") and PASSWORD not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert check_password(state_folder(practice), PASSWORD) and not check_password(state_folder(practice), "x")


def test_idle_timeout_signs_out(tmp_path):
    practice = make_practice(tmp_path / "p")
    app, engine, clock = console(practice, idle_timeout=timedelta(minutes=30))
    try:
        client, _ = sign_in(app)
        clock.advance(timedelta(minutes=29))
        assert client.get("/").status_code == 200        # use keeps it alive
        clock.advance(timedelta(minutes=29))
        assert client.get("/").status_code == 200
        clock.advance(timedelta(minutes=31))
        assert client.get("/").status_code == 302
    finally:
        engine.close()


def test_sign_out_ends_the_session(site):
    _, app, _, _ = site
    client, token = sign_in(app)
    assert client.post("/logout", data={"csrf": token}).status_code == 302
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("path,data", [
    ("/sequence/{seq}/call", {"outcome": "reached"}),
    ("/client/0/optout", {}),
    ("/step/{step}/resolve", {"action": "sent"}),
    ("/templates/phone_call", {"text": "Call {{ client_name }}", "do": "save"}),
    ("/bursts/confirm", {}),
    ("/logout", {}),
])
def test_wrong_or_another_sessions_csrf_token_is_refused(site, capsys, path, data):
    practice, app, engine, _ = site
    step = make_uncertain(engine)
    seq = practice.status(capsys)[0]["sequence"]
    path = path.format(seq=seq, step=step)
    mine, _ = sign_in(app)
    _, theirs = sign_in(app)
    before = practice.status(capsys)
    for token in ("", "wrong", theirs):
        assert mine.post(path, data={**data, "csrf": token}).status_code == 400
    assert practice.status(capsys) == before
    assert mine.get("/").status_code == 200          # still signed in: the refused logout did nothing


def test_reached_stops_the_follow_up_as_the_cli_does(site, capsys):
    practice, app, _, _ = site
    client, token = sign_in(app)
    page = client.get("/").get_data(as_text=True)
    assert "Jane Doe" in page and '<a href="tel:+15550100201">(555) 010-0201</a>' in page   # read as spoken
    assert "<summary>Call script</summary>" in page     # the phone_call template, rendered for Jane
    seq = practice.status(capsys)[0]["sequence"]
    resp = client.post(f"/sequence/{seq}/call", data={"csrf": token, "outcome": "reached"}, follow_redirects=True)
    assert "Marked reached; 2 planned step(s) stopped." in resp.get_data(as_text=True)
    assert {(s["state"], s["reason"]) for s in practice.status(capsys)} == {("skipped", "reached")}
    log_page = client.get("/client/0").get_data(as_text=True)
    assert "reached" in log_page and "by the therapist in the console" in log_page


def test_no_answer_keeps_the_follow_up_and_leaves_today(site, capsys):
    practice, app, _, _ = site
    client, token = sign_in(app)
    seq = practice.status(capsys)[0]["sequence"]
    client.post(f"/sequence/{seq}/call", data={"csrf": token, "outcome": "no_answer"})
    assert "No calls to make right now." in client.get("/").get_data(as_text=True)
    assert [s["state"] for s in practice.status(capsys)] == ["planned", "planned"]
    assert "call no answer" in client.get("/client/0").get_data(as_text=True)


def test_dismiss_skips_the_call_step(site, capsys):
    practice, app, _, _ = site
    client, token = sign_in(app)
    seq = practice.status(capsys)[0]["sequence"]
    client.post(f"/sequence/{seq}/call", data={"csrf": token, "outcome": "dismiss"})
    assert [(s["state"], s["reason"]) for s in practice.status(capsys)] == [("skipped", "dismissed"),
                                                                           ("planned", None)]


def test_resolve_an_uncertain_step(site, capsys):
    practice, app, engine, _ = site
    step = make_uncertain(engine)
    client, token = sign_in(app)
    assert "Mark sent" in client.get("/attention").get_data(as_text=True)
    resp = client.post(f"/step/{step}/resolve", data={"csrf": token, "action": "sent"}, follow_redirects=True)
    assert f"Step {step}: sent." in resp.get_data(as_text=True)
    assert [s["state"] for s in practice.status(capsys) if s["id"] == step] == ["sent"]
    assert client.post(f"/step/{step}/resolve", data={"csrf": token, "action": "sent"}).status_code == 400
    assert client.post(f"/step/{step}/resolve", data={"csrf": token, "action": "bogus"}).status_code == 400


def test_optout_and_optin_from_the_client_page(site, capsys):
    practice, app, _, _ = site
    client, token = sign_in(app)
    client.post("/client/0/optout", data={"csrf": token})
    assert {s["reason"] for s in practice.status(capsys)} == {"opted_out"}
    client.post("/client/0/optin", data={"csrf": token})
    assert {s["state"] for s in practice.status(capsys)} == {"planned"}
    assert client.get("/client/99").status_code == 404


def test_client_search_by_name_alias_email(site):
    _, app, _, _ = site
    client, _ = sign_in(app)
    assert "Jane Doe" in client.get("/clients?q=janie").get_data(as_text=True)
    page = client.get("/clients?q=omar").get_data(as_text=True)
    assert "Omar Haddad" in page and "Jane Doe" not in page


def test_template_error_is_shown_beside_its_line_and_not_saved(site):
    practice, app, _, _ = site
    client, token = sign_in(app)
    resp = client.post("/templates/email_followup",
                       data={"csrf": token, "do": "save", "text": "Subject: Hello\n\nHi {{ client_first_name }\n"})
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert 'class="problem"' in page and "Line 3" in page
    assert not (practice.root / "templates" / "email_followup.txt").exists() or \
        "{{ client_first_name }\n" not in (practice.root / "templates" / "email_followup.txt").read_text()


def test_template_needs_a_subject_for_email_and_unknown_variables_are_refused(site):
    _, app, _, _ = site
    client, token = sign_in(app)
    page = client.post("/templates/email_followup", data={"csrf": token, "do": "check",
                                                         "text": "Hello {{ client_first_name }}"}).get_data(as_text=True)
    assert "Subject" in page
    page = client.post("/templates/email_followup", data={"csrf": token, "do": "check",
                                                         "text": "Subject: x\n\n{{ secret_thing }}"}).get_data(as_text=True)
    assert 'class="problem"' in page


def test_template_save_preview_and_revert(site):
    practice, app, _, _ = site
    client, token = sign_in(app)
    text = "Subject: Checking in\n\nDear {{ client_first_name }}, we are here when you are ready.\n"
    resp = client.post("/templates/email_followup", data={"csrf": token, "do": "save", "text": text})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Saved." in page and "Dear Sam, we are here" in page
    path = practice.root / "templates" / "email_followup.txt"
    assert path.read_text() == text
    preview = client.post("/templates/email_followup/preview", data={"csrf": token, "text": "Subject: a\n\nHi {{ client_first_name }}"})
    assert preview.get_json() == {"problems": [], "warnings": [], "subject": "a", "body": "Hi Sam", "length": 6}
    client.post("/templates/email_followup", data={"csrf": token, "do": "revert"})
    assert path.read_text() != text
    assert client.get("/templates/nope").status_code == 404


def test_access_log_has_paths_and_ids_never_names_or_queries(site, caplog):
    _, app, _, _ = site
    client, _ = sign_in(app)
    with caplog.at_level(logging.INFO, logger="daemon.web.access"):
        client.get("/clients?q=Jane%20Doe")
        client.get("/client/0")
    lines = [r.getMessage() for r in caplog.records if r.name == "daemon.web.access"]
    assert "GET /clients 200" in lines and "GET /client/0 200" in lines
    assert not any("q=" in line or "Jane" in line for line in lines)


def test_patterns_show_the_month_report(site):
    _, app, _, _ = site
    client, _ = sign_in(app)
    page = client.get("/patterns?month=2026-11").get_data(as_text=True)
    assert "Patterns, 2026-11" in page and "Jane Doe" in page and 'alt="Chart:' in page
    assert client.get("/patterns?month=soon").status_code == 400


def test_a_held_burst_is_confirmed_for_one_and_dismissed_for_the_rest(tmp_path, capsys):
    from tests.conftest import local
    from tests.ics import Ev
    from tests.stories import team

    practice = make_practice(tmp_path / "p")
    sessions = [Ev(f"b{i}", local(2026, 11, 10, 10 + i), local(2026, 11, 10, 10 + i, 50), who)
                for i, who in enumerate(["Jane Doe", "Omar Haddad", "Mia Stone"])]
    practice.calendar([team(), *sessions])
    practice.once(local(2026, 11, 5, 9))
    for s in sessions:
        s.status = "CANCELLED"
    practice.calendar([team(), *sessions])
    practice.once(local(2026, 11, 6, 9))
    assert {r["reason"] for r in practice.status(capsys) if r["step"] == 1} == {"burst"}
    app, engine, _ = console(practice, local(2026, 11, 6, 10), story=False)
    try:
        client, token = sign_in(app)
        page = client.get("/attention").get_data(as_text=True)
        assert "Several cancellations at once" in page and "I cancelled these" in page and "Mia Stone" in page
        omar = re.search(r'name="client" value="([^"]+)"><button type="submit">Confirm</button>', page.split("Omar Haddad", 1)[1]).group(1)
        resp = client.post("/bursts/confirm", data={"csrf": token, "client": omar}, follow_redirects=True)
        assert "Confirmed: 1 follow-up(s) go ahead." in resp.get_data(as_text=True)
        resp = client.post("/bursts/dismiss", data={"csrf": token}, follow_redirects=True)
        assert "2 follow-up(s) closed" in resp.get_data(as_text=True)
        steps = practice.status(capsys)
        assert {(r["state"], r["reason"]) for r in steps if r["client"] != "Omar Haddad"} == {("skipped", "therapist_cancelled")}
        assert {r["state"] for r in steps if r["client"] == "Omar Haddad"} == {"planned"}
    finally:
        engine.close()
