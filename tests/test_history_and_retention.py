"""The contact log for clinical records, retention, and opt-out from the CLI."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.conftest import local
from tests.ics import Ev
from tests.stories import jane_no_show, team


def _no_show_story(practice):
    jane_no_show(practice)
    practice.once(local(2026, 11, 4, 10, 5))
    practice.once(local(2026, 11, 10, 10, 5))


@pytest.mark.shows_client_data
def test_history_lists_each_missed_session_and_attempt(practice, capsys):
    _no_show_story(practice)
    capsys.readouterr()
    assert practice.cli("history", "Jane Doe", "--format", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["event"] for r in rows] == ["detected", "sent", "sent", "invitation_given"]
    assert {r["trigger"] for r in rows} == {"no_show"}
    assert rows[0]["session_start"] == "2026-11-03T10:00:00-05:00"
    assert "phone" in rows[1]["detail"] and "email" in rows[2]["detail"]
    assert practice.cli("history", "Jane Doe", "--format", "csv") == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(table) == 4 and table[0]["client"] == "Jane Doe"
    assert practice.cli("history", "Jane Doe") == 0
    assert "no_show" in capsys.readouterr().out


@pytest.mark.shows_client_data  # prints whom it matched, the contact log or the status table
def test_optout_stops_and_never_starts_again(practice, capsys):
    session = Ev("s1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Jane Doe")
    later = Ev("s2", local(2026, 11, 24, 10), local(2026, 11, 24, 10, 50), "Jane Doe")
    practice.calendar([team(), session, later])
    practice.once(local(2026, 11, 2, 8))
    session.summary = "Jane Doe no-show"
    practice.calendar([team(), session, later])
    practice.once(local(2026, 11, 3, 11))
    assert practice.cli("optout", "Janie") == 0               # an alias works
    later.summary = "Jane Doe DNA"
    practice.calendar([team(), session, later])
    for day in (4, 10, 25, 26, 30):
        practice.once(local(2026, 11, day, 12))
    assert practice.mails() == []
    assert {s["reason"] for s in practice.status(capsys)} == {"opted_out"}


@pytest.mark.shows_client_data
def test_unknown_client_is_a_clear_error(practice, capsys):
    assert practice.cli("reached", "Nobody Here") == 2
    assert "Nobody Here" in capsys.readouterr().err
    assert practice.cli("reached", "Chris Park") == 2
    assert "fits 2 clients" in capsys.readouterr().err


def test_retention_purges_closed_follow_ups(practice, capsys):
    cfg = practice.config.read_text() + '\n[retention]\npurge_after = "6 months"\n'
    practice.config.write_text(cfg)
    _no_show_story(practice)
    assert len(practice.status(capsys)) == 2
    practice.calendar([team()])
    practice.once(local(2027, 4, 1, 12))
    assert len(practice.status(capsys)) == 2                  # closed 2026-11-10: not yet 6 months
    practice.once(local(2027, 6, 1, 12))
    assert practice.status(capsys) == []
