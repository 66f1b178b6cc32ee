"""``welcomeback templates list|edit`` through the real CLI, with a scripted editor.

The editor is a small Python script written into the test folder: on its N-th
run it writes the N-th prepared text into the file it was given (and the
N-th HTML text into the second file, if any).  No interactive editor runs.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from daemon import config as config_mod
from daemon.cli.templates import edit_template, list_templates
from tests.conftest import Practice, make_practice

EDITOR = """\
import pathlib, sys
here = pathlib.Path(__file__).parent
count = here / "runs"
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
for i, target in enumerate(sys.argv[1:]):
    prepared = here / f"{n}.{i}"
    if prepared.exists():
        pathlib.Path(target).write_text(prepared.read_text())
sys.exit(int((here / "status").read_text()) if (here / "status").exists() else 0)
"""
GOOD_EMAIL = ("Subject: Hello from {{ practice }}\n\nHi {{ client_first_name }},\n"
              "the kettle is on whenever you want to come back.\n\n{{ therapist }}\n")
TWILIO = ('backend = "twilio-sms"\naccount_sid = "AC' + "0" * 32 + '"\nfrom_number = "+14155552671"\n')


def editor(tmp_path: Path, *texts: str | tuple[str, str], status: int = 0) -> str:
    """A command that writes ``texts[n-1]`` on its n-th run; a tuple is (txt, html)."""
    folder = tmp_path / "editor"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ed.py").write_text(EDITOR)
    for n, text in enumerate(texts, 1):
        for i, part in enumerate(text if isinstance(text, tuple) else (text,)):
            (folder / f"{n}.{i}").write_text(part)
    if status:
        (folder / "status").write_text(str(status))
    return f"{sys.executable} {folder / 'ed.py'}"


@pytest.fixture
def office(tmp_path: Path) -> Practice:
    return make_practice(tmp_path / "practice")


def sms_office(tmp_path: Path) -> Practice:
    p = make_practice(tmp_path / "sms")
    p.config.write_text(p.config.read_text().replace('backend = "therapist-email"\n', TWILIO))
    return p


def test_list_names_each_template_where_it_lives_and_its_steps(office: Practice, capsys) -> None:
    assert office.cli("templates", "list") == 0
    out = capsys.readouterr().out
    phone = next(line for line in out.splitlines() if line.strip().startswith("phone_call"))
    email = next(line for line in out.splitlines() if line.strip().startswith("email_followup"))
    assert "default" in phone and "step 1 (phone via therapist-email)" in phone
    assert "default" in email and "email_followup.html" in email and "step 2 (email via outbox)" in email
    assert str(office.root / "templates") in out


def test_valid_edit_is_installed_and_preview_shows_it(office: Practice, tmp_path: Path, capsys,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    html = "<p>Hi {{ client_first_name }}, the kettle is on.</p>\n"
    monkeypatch.setenv("VISUAL", editor(tmp_path, (GOOD_EMAIL, html)))
    assert office.cli("templates", "edit", "email_followup") == 0
    target = office.root / "templates" / "email_followup.txt"
    assert target.read_text() == GOOD_EMAIL
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert (office.root / "templates" / "email_followup.html").read_text() == html
    assert not list((office.root / "templates").glob(".*.tmp"))
    capsys.readouterr()
    assert office.cli("preview", "email_followup") == 0
    out = capsys.readouterr().out
    assert out.startswith("Subject: Hello from Riverside Counselling")
    assert "the kettle is on whenever you want to come back" in out and "Hi Sam, the kettle is on." in out
    assert office.cli("templates", "list") == 0
    listed = capsys.readouterr().out
    assert "yours" in next(line for line in listed.splitlines() if line.strip().startswith("email_followup"))


def test_invalid_edit_is_refused_and_the_old_file_untouched(office: Practice, tmp_path: Path, capsys,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    folder = office.root / "templates"
    folder.mkdir()
    original = "Subject: Hi\n\nHello {{ client_first_name }}.\n"
    (folder / "email_followup.txt").write_text(original)
    before = os.stat(folder / "email_followup.txt").st_mtime_ns
    monkeypatch.setenv("EDITOR", editor(tmp_path, "Subject: Hi\n\nHello\n{{ diagnosis }}\n"))
    monkeypatch.delenv("VISUAL", raising=False)
    assert office.cli("templates", "edit", "email_followup") == 1   # stdin is not a terminal: quit
    err = capsys.readouterr().err
    assert f"{folder / 'email_followup.txt'}:4: unknown variable 'diagnosis'" in err
    assert "NOT installed" in err
    assert (folder / "email_followup.txt").read_text() == original
    assert os.stat(folder / "email_followup.txt").st_mtime_ns == before


def test_edit_again_after_a_refusal_then_install(office: Practice, tmp_path: Path, capsys) -> None:
    cfg = config_mod.load(office.config)
    command = editor(tmp_path, "Subject: x\n\n{{ ''.__class__ }}\n", GOOD_EMAIL)
    prompts: list[str] = []
    answer = lambda prompt: prompts.append(prompt) or "e"  # noqa: E731
    assert edit_template(cfg, "email_followup", editor=command, ask=answer) == 0
    assert prompts == ["(e)dit again / (q)uit without saving? "]
    assert "attribute access not allowed" in capsys.readouterr().err
    assert (office.root / "templates" / "email_followup.txt").read_text() == GOOD_EMAIL


def test_email_without_subject_and_editor_failure_install_nothing(office: Practice, tmp_path: Path,
                                                                  capsys) -> None:
    cfg = config_mod.load(office.config)
    assert edit_template(cfg, "email_followup", editor=editor(tmp_path, "Hi {{ client_first_name }}\n"),
                         ask=lambda _: "q") == 1
    assert "needs a first line 'Subject: ...'" in capsys.readouterr().err
    failing = editor(tmp_path / "other", GOOD_EMAIL, status=3)
    assert edit_template(cfg, "email_followup", editor=failing) == 1
    assert "exited with status 3" in capsys.readouterr().err
    assert "kettle" not in (office.root / "templates" / "email_followup.txt").read_text()


def test_sms_too_long_is_refused(tmp_path: Path, capsys) -> None:
    office = sms_office(tmp_path)
    cfg = config_mod.load(office.config)
    long_text = "Hi {{ client_first_name }}, " + "we would love to hear from you again. " * 6 + "\n"
    assert edit_template(cfg, "phone_call", editor=editor(tmp_path, long_text), ask=lambda _: "q") == 1
    err = capsys.readouterr().err
    assert "as an SMS" in err and "at most 160" in err
    assert "we would love" not in (office.root / "templates" / "phone_call.txt").read_text()


def test_clinical_words_in_an_sms_or_a_subject_warn_but_install(tmp_path: Path, capsys) -> None:
    office = sms_office(tmp_path)
    cfg = config_mod.load(office.config)
    sms = "Hi {{ client_first_name }}, {{ therapist_first_name }} here. Missed our session? Call me.\n"
    assert edit_template(cfg, "phone_call", editor=editor(tmp_path, sms)) == 0
    err = capsys.readouterr().err
    assert "phone_call.txt:1: 'session' in an SMS" in err
    assert "therapist_first_name" not in err          # variable names are not the therapist's words
    email = "Subject: Your therapy appointment\n\nHi {{ client_first_name }}, the session is on us.\n"
    assert edit_template(cfg, "email_followup", editor=editor(tmp_path / "e2", email)) == 0
    err = capsys.readouterr().err
    assert "email_followup.txt:1: 'therapy' in a subject line" in err
    assert "appointment'" in err and "'session'" not in err   # the body of an email is not an SMS
    assert (office.root / "templates" / "phone_call.txt").read_text() == sms


def test_defaults_are_copied_once_and_never_overwritten(office: Practice, tmp_path: Path, capsys) -> None:
    cfg = config_mod.load(office.config)
    folder = office.root / "templates"
    assert edit_template(cfg, "phone_call", editor=editor(tmp_path, "Call {{ client_name }}\n")) == 0
    out = capsys.readouterr().out
    for name in ("phone_call.txt", "email_followup.txt", "email_followup.html"):
        assert f"copied the default {name}" in out                       # first use: all defaults
    mine = "Subject: Mine\n\nMy own words, {{ client_first_name }}.\n"
    (folder / "email_followup.txt").write_text(mine)
    (folder / "email_followup.html").unlink()                             # the therapist drops HTML
    assert edit_template(cfg, "phone_call", editor=editor(tmp_path / "again", "Call {{ client_phone }}\n")) == 0
    assert "copied the default" not in capsys.readouterr().out
    assert (folder / "email_followup.txt").read_text() == mine           # never overwritten
    assert not (folder / "email_followup.html").exists()                 # and it stays dropped
    assert (folder / "phone_call.txt").read_text() == "Call {{ client_phone }}\n"


def test_a_folder_with_some_files_gets_only_the_missing_template(office: Practice, tmp_path: Path,
                                                                 capsys) -> None:
    cfg = config_mod.load(office.config)
    folder = office.root / "templates"
    folder.mkdir()
    mine = "Subject: Mine\n\nMy own words, {{ client_first_name }}.\n"
    (folder / "email_followup.txt").write_text(mine)
    assert edit_template(cfg, "phone_call", editor=editor(tmp_path, "Call {{ client_name }}\n")) == 0
    assert "copied the default phone_call.txt" in capsys.readouterr().out
    assert (folder / "email_followup.txt").read_text() == mine
    assert sorted(p.name for p in folder.iterdir()) == ["email_followup.txt", "phone_call.txt"]


def test_unknown_template_is_a_usage_error(office: Practice, capsys) -> None:
    assert office.cli("templates", "edit", "nope") == 2
    assert "no template named 'nope'" in capsys.readouterr().err
    assert "phone_call" in list_templates(config_mod.load(office.config))
