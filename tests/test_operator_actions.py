"""The operator settles what needs attention: exact client matching, reached/optout/optin and
their undo, resolve --sent/--retry/--dismiss; each written to the contact log with who and when."""

from __future__ import annotations

import getpass
import json

import pytest
import sqlalchemy as sa

from tests.conftest import Practice, local, make_practice
from tests.fakes.sendgrid_server import FakeSendGrid, error
from tests.stories import jane_no_show

USER = getpass.getuser()


def history(practice: Practice, capsys: pytest.CaptureFixture[str], client: str) -> list[dict]:
    capsys.readouterr()
    assert practice.cli("history", client, "--format", "json") == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.shows_client_data  # prints whom it matched, the contact log or the status table
def test_a_client_is_matched_only_exactly_and_the_match_is_printed(tmp_path, capsys):
    p = make_practice(tmp_path / "p")
    for text in ("jane doe", "JANE.DOE@example.com", "janie", "  Jane   Doe "):
        assert p.cli("reached", text) == 0, text
        assert "matched: Jane Doe <jane.doe@example.com>" in capsys.readouterr().out
    assert p.cli("optout", "Jan") == 2                      # partial: refused, the candidate named
    err = capsys.readouterr().err
    assert "no client is named exactly 'Jan'" in err and "Jane Doe <jane.doe@example.com>" in err
    assert p.cli("optout", "Park") == 2
    assert p.cli("optout", "Chris Park") == 2               # two clients of that name
    err = capsys.readouterr().err
    assert "chris.park@example.com" in err and "c.park@example.org" in err
    assert p.cli("optout", "c.park@example.org") == 0       # the email tells them apart
    assert "matched: Chris Park <c.park@example.org>" in capsys.readouterr().out


@pytest.mark.shows_client_data  # prints whom it matched, the contact log or the status table
def test_an_optout_without_a_follow_up_is_in_the_contact_log_with_who(tmp_path, capsys):
    p = make_practice(tmp_path / "p")
    assert p.cli("optout", "Omar Haddad") == 0
    rows = history(p, capsys, "Omar Haddad")
    assert [r["event"] for r in rows] == ["opted_out"]
    assert USER in rows[0]["detail"] and rows[0]["time"]
    assert p.cli("optin", "omar.h@example.org") == 0
    rows = history(p, capsys, "Omar Haddad")
    assert [r["event"] for r in rows] == ["opted_out", "opted_in"] and USER in rows[1]["detail"]


@pytest.mark.shows_client_data  # prints whom it matched, the contact log or the status table
def test_reached_undo_plans_the_stopped_steps_again(practice, capsys):
    jane_no_show(practice)
    assert practice.cli("reached", "Jane Doe") == 0
    assert "2 planned step(s) stopped" in capsys.readouterr().out
    assert {s["reason"] for s in practice.status(capsys)} == {"reached"}
    assert practice.cli("reached", "Jane Doe", "--undo") == 0
    assert "2 step(s) planned again" in capsys.readouterr().out
    assert [s["state"] for s in practice.status(capsys)] == ["planned", "planned"]
    practice.once(local(2026, 11, 4, 10, 5))
    assert [s["state"] for s in practice.status(capsys)] == ["sent", "planned"]
    events = [(r["event"], USER in r["detail"]) for r in history(practice, capsys, "Jane Doe")]
    assert ("reached", True) in events and ("reached_undone", True) in events


@pytest.mark.shows_client_data  # prints whom it matched, the contact log or the status table
def test_optout_undo_and_optin_restore_and_the_directory_wins(practice, capsys):
    jane_no_show(practice)
    assert practice.cli("optout", "Janie") == 0
    assert {s["reason"] for s in practice.status(capsys)} == {"opted_out"}
    assert practice.cli("optout", "Janie", "--undo") == 0
    assert [s["state"] for s in practice.status(capsys)] == ["planned", "planned"]
    assert practice.cli("optin", "Janie") == 2             # nothing to undo any more
    assert "not marked opted out" in capsys.readouterr().err
    assert practice.cli("optin", "Rosa Lind") == 2         # do_not_contact in the directory
    assert "do_not_contact" in capsys.readouterr().err
    assert practice.cli("reached", "Omar Haddad", "--undo") == 2
    assert "not marked reached" in capsys.readouterr().err


# -- resolve ----------------------------------------------------------------------------------
@pytest.fixture
def sendgrid_practice(tmp_path, monkeypatch):
    monkeypatch.setenv("WELCOMEBACK_SENDGRID_API_KEY", "SG.test")
    with FakeSendGrid() as sendgrid:
        p = make_practice(tmp_path / "p", extra='\n[cadence]\nsteps = [{ channel = "email", after = '
                          '"1 business day", template = "email_followup" }]\n')
        text = p.config.read_text().replace('backend = "outbox"\noutbox = "outbox"',
                                            f'backend = "sendgrid"\napi_base = "{sendgrid.url}"\ntimeout = 5')
        p.config.write_text(text)
        yield p, sendgrid


def _settle(p: Practice, capsys, step_id: str, how: str, now=None) -> tuple[int, str]:
    capsys.readouterr()
    extra = ["--now", now.isoformat()] if now else []
    code = p.cli("resolve", step_id, how, *extra)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _attention(p: Practice, capsys) -> int:
    return _status(p, capsys)[0]


def _status(p: Practice, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = p.cli("status")
    return code, capsys.readouterr().out


@pytest.mark.shows_client_data  # prints whom it matched, the contact log or the status table
def test_resolve_sent_settles_an_uncertain_step(sendgrid_practice, capsys):
    p, sendgrid = sendgrid_practice
    sendgrid.script(error(500, "internal error"))
    jane_no_show(p)
    p.once(local(2026, 11, 4, 10, 5))
    (step,) = p.status(capsys)
    code, table = _status(p, capsys)
    assert step["state"] == "uncertain" and code == 1
    assert f"[id {step['id']}]" in table and "welcomeback resolve ID" in table
    code, out = _settle(p, capsys, step["id"], "--sent")
    assert code == 0 and "sent" in out
    assert p.status(capsys)[0]["state"] == "sent"
    assert _attention(p, capsys) == 0                        # the report is settled too
    resolved = [r for r in history(p, capsys, "Jane Doe") if r["event"] == "resolved"]
    assert len(resolved) == 1 and "was uncertain" in resolved[0]["detail"] and USER in resolved[0]["detail"]
    code, out = _settle(p, capsys, step["id"], "--retry")   # a sent step is not resolvable
    assert code == 2 and "is sent" in out
    assert len(sendgrid.requests) == 1


@pytest.mark.shows_client_data  # prints whom it matched, the contact log or the status table
def test_resolve_retry_sends_a_failed_step_again(sendgrid_practice, capsys):
    p, sendgrid = sendgrid_practice
    sendgrid.script(error(400, "rejected for now"))
    jane_no_show(p)
    p.once(local(2026, 11, 4, 10, 5))
    (step,) = p.status(capsys)
    assert step["state"] == "failed"
    code, out = _settle(p, capsys, step["id"], "--retry", local(2026, 11, 5, 9))
    assert code == 0 and "planned again" in out
    assert p.status(capsys)[0]["state"] == "planned"
    p.once(local(2026, 11, 5, 9, 1))
    assert p.status(capsys)[0]["state"] == "sent" and len(sendgrid.requests) == 2
    assert _attention(p, capsys) == 0


@pytest.mark.shows_client_data  # prints whom it matched, the contact log or the status table
def test_resolve_dismiss_leaves_a_failed_step(sendgrid_practice, capsys):
    p, sendgrid = sendgrid_practice
    sendgrid.script(error(400, "rejected"))
    jane_no_show(p)
    p.once(local(2026, 11, 4, 10, 5))
    (step,) = p.status(capsys)
    code, _ = _settle(p, capsys, step["id"], "--dismiss")
    assert code == 0
    assert [(s["state"], s["reason"]) for s in p.status(capsys)] == [("skipped", "dismissed")]
    p.once(local(2026, 11, 5, 10))
    assert len(sendgrid.requests) == 1 and _attention(p, capsys) == 0
    code, out = _settle(p, capsys, "no-such-step", "--sent")
    assert code == 2 and "status --json" in out


def test_resolve_needs_exactly_one_way(tmp_path, capsys):
    p = make_practice(tmp_path / "p")
    assert p.cli("resolve", "x") == 2
    assert p.cli("resolve", "x", "--sent", "--dismiss") == 2


@pytest.mark.shows_client_data  # prints whom it matched, the contact log or the status table
def test_a_store_from_before_the_contact_log_knew_clients_is_upgraded(tmp_path, capsys):
    """Schema 2 had no audit.client_id: the upgrade adds it and client-level entries work."""
    p = make_practice(tmp_path / "p")
    assert p.cli("status") == 1          # creates the store
    engine = sa.create_engine(f"sqlite:///{p.root / 'state.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE audit DROP COLUMN client_id")
        conn.exec_driver_sql("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    engine.dispose()
    assert p.cli("optout", "Mia Stone") == 0
    assert [r["event"] for r in history(p, capsys, "Mia Stone")] == ["opted_out"]
