"""The console's Templates page uses the very checks of `templates edit`
(daemon.templating.checks): the same problems, each shown beside its line with that line's
text; a template that fails is not saved; warnings do not stop a save; the preview renders for
a client chosen from the directory or for the fictional sample."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from daemon import config as config_mod
from daemon.cli.templates import check_edit as cli_check_edit
from tests.conftest import make_practice
from tests.test_web_routes import sign_in
from tests.web_support import console

pytestmark = pytest.mark.shows_client_data

BROKEN = "Subject: Hello\n\nHi {{ client_first_name }\n"


@pytest.fixture
def site(tmp_path):
    practice = make_practice(tmp_path / "p")
    app, engine, clock = console(practice)
    yield practice, app, engine
    engine.close()


@pytest.mark.parametrize("text", [BROKEN, "Hello {{ client_first_name }}", "Subject: x\n\n{{ secret_thing }}",
                                  "Subject: x\n\n{% for a in b %}{{ a }}{% endfor %}\n"])
def test_the_console_reports_what_templates_edit_reports(site, text):
    practice, app, engine = site
    client, token = sign_in(app)
    cfg = config_mod.load(practice.config)
    cli, _ = cli_check_edit(cfg, "email_followup", {Path("email_followup.txt"): text})
    assert cli
    shown = client.post("/templates/email_followup/preview", data={"csrf": token, "text": text}).get_json()
    expected = [re.sub(r"^email_followup\.txt:(\d+:)?\s*", "", p) for p in cli]
    assert [p["text"] for p in shown["problems"]] == expected
    lines = [int(m.group(1)) if (m := re.match(r"^email_followup\.txt:(\d+):", p)) else None for p in cli]
    assert [p["line"] for p in shown["problems"]] == lines


def test_a_problem_is_shown_beside_the_text_of_its_line_and_nothing_is_saved(site):
    practice, app, _ = site
    client, token = sign_in(app)
    path = practice.root / "templates" / "email_followup.txt"
    before = path.read_text() if path.exists() else None
    resp = client.post("/templates/email_followup", data={"csrf": token, "do": "save", "text": BROKEN})
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    problem = re.search(r'<p class="problem">(.*?)</p>', page, re.S).group(1)
    assert problem.startswith("Line 3: ") and '<code class="line">Hi {{ client_first_name }</code>' in problem
    assert 'aria-invalid="true"' in page and "Saved." not in page
    assert (path.read_text() if path.exists() else None) == before


def test_a_clinical_word_in_the_subject_is_a_warning_beside_line_1_and_the_save_goes_ahead(site):
    practice, app, _ = site
    client, token = sign_in(app)
    text = "Subject: Your therapy session\n\nHello {{ client_first_name }}.\n"
    resp = client.post("/templates/email_followup", data={"csrf": token, "do": "save", "text": text})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Saved." in page
    warning = html.unescape(re.search(r'<p class="warning">(.*?)</p>', page, re.S).group(1))
    assert warning.startswith("Line 1: 'session' in a subject line") and "Your therapy session" in warning
    assert (practice.root / "templates" / "email_followup.txt").read_text() == text


def test_the_preview_renders_for_a_chosen_client_or_the_sample(site):
    _, app, engine = site
    client, token = sign_in(app)
    jane = engine.directory.clients[0]
    text = "Subject: Hello\n\nDear {{ client_first_name }}, about {{ session_weekday }}.\n"
    mine = client.post("/templates/email_followup/preview", data={"csrf": token, "text": text, "client": jane.id})
    assert mine.get_json()["body"] == "Dear Jane, about Tuesday."       # her last session: Tuesday's no-show
    sample = client.post("/templates/email_followup/preview", data={"csrf": token, "text": text, "client": ""})
    assert sample.get_json()["body"] == "Dear Sam, about Tuesday."
    page = client.get(f"/templates/email_followup?client={jane.id}").get_data(as_text=True)
    assert f'<option value="{jane.id}" selected>' in page and '<label for="client">Preview for</label>' in page
    assert client.post("/templates/email_followup/preview", data={"csrf": token, "text": text,
                                                                  "client": "nobody"}).status_code == 400


def test_sms_length_and_the_sms_rules_for_a_texted_template(tmp_path, monkeypatch):
    monkeypatch.setenv("WELCOMEBACK_TWILIO_AUTH_TOKEN", "test-token")
    practice = make_practice(tmp_path / "p")
    practice.config.write_text(practice.config.read_text().replace(
        'backend = "therapist-email"',
        'backend = "twilio-sms"\naccount_sid = "AC0123456789abcdef0123456789abcdef"\nfrom_number = "+15550100100"\n'
        'api_base = "http://127.0.0.1:9"\ntimeout = 5'))
    app, engine, _ = console(practice, story=False)
    try:
        assert engine.config.phone.backend == "twilio-sms"
        client, token = sign_in(app)
        long = "Hello {{ client_first_name }}, " + "a" * 200
        shown = client.post("/templates/phone_call/preview", data={"csrf": token, "text": long}).get_json()
        assert shown["length"] == len("Hello Sam, " + "a" * 200) and shown["body"].startswith("Hello Sam")
        assert any("GSM-7 characters" in p["text"] for p in shown["problems"])
        assert client.post("/templates/phone_call", data={"csrf": token, "do": "save", "text": long}).status_code == 422
        short = "Hi {{ client_first_name }}, this is Ana. Call when you like."
        shown = client.post("/templates/phone_call/preview", data={"csrf": token, "text": short}).get_json()
        assert shown["problems"] == [] and shown["length"] == len("Hi Sam, this is Ana. Call when you like.")
    finally:
        engine.close()
