"""Rule 1: a rejected directory row still protects the person it names; never contact on a guess."""

from __future__ import annotations

import pytest

from tests.conftest import CLIENTS
from tests.stories_rules import (
    JANE,
    OMAR,
    THERAPIST,
    add_calendar,
    attention,
    call_tasks,
    directory,
    journal,
    local,
    on,
    put,
    session,
    team,
    weekly,
)

VALID = CLIENTS.split("\n", 1)[1]          # the fixture's rows without the header


def test_an_odd_do_not_contact_spelling_protects_the_attendee(practice, capsys):
    """Omar's row says do_not_contact 'maybe': his invitation address is not 'an unknown attendee'."""
    directory(practice, VALID.replace("omar.h@example.org,+1 555 010 0202,email,false",
                                      "omar.h@example.org,+1 555 010 0202,email,maybe"))
    intake = session("o1", 12, 15, "Session", attendees=[(OMAR, "Omar Haddad", "ACCEPTED")])
    practice.calendar([team(), intake])
    practice.once(local(2026, 11, 2, 8))
    intake.attendees = [(OMAR, "Omar Haddad", "DECLINED")]
    practice.calendar([team(), intake])
    for day in (4, 13, 19, 20):
        practice.once(local(2026, 11, day, 15, 30))
    assert journal(practice, capsys) == []
    assert practice.mails() == []
    needs = attention(practice, capsys)
    assert "clients.csv:3" in needs and "do_not_contact 'maybe'" in needs


def test_a_bad_phone_in_a_row_protects_its_alias_in_a_weekly_series(practice, capsys):
    """Jane's number cannot be read; her weekly session titled with her alias is reported, not followed up."""
    directory(practice, VALID.replace("+1 555 010 0201,phone", "+1 555 01,phone"))
    series = weekly("janie-weekly", 6, 10, "Janie", rule="FREQ=WEEKLY;BYDAY=TU")
    practice.calendar([team(), series])
    practice.once(local(2026, 11, 2, 8))
    practice.calendar([team(), series, on(series, 3, summary="Janie no-show")])
    for day in (3, 4, 10, 11):
        practice.once(local(2026, 11, day, 11))
    assert journal(practice, capsys) == []
    assert practice.mails() == []
    assert "clients.csv:2" in attention(practice, capsys)


@pytest.mark.shows_client_data  # the status table / check output is for the therapist
def test_a_rejected_row_on_a_second_calendar_blocks_only_its_person(practice, capsys):
    """Omar's row names an unknown channel; his session on the group calendar, invited at another
    address, is held back while Jane's no-show on the main calendar is followed up as usual."""
    directory(practice, VALID.replace("omar.h@example.org,+1 555 010 0202,email",
                                      "omar.h@example.org,+1 555 010 0202,pigeon"))
    add_calendar(practice, "group")
    omar = session("g1", 12, 17, "Omar Haddad", attendees=[("omar.personal@example.net", "O. H.", "ACCEPTED")])
    jane = session("j1", 3, 10, "Jane Doe")
    put(practice, "group", [omar])
    practice.calendar([team(), jane])
    practice.once(local(2026, 11, 2, 8))
    omar.status = "CANCELLED"
    put(practice, "group", [omar])
    jane.summary = "Jane Doe no-show"
    practice.calendar([team(), jane])
    for day in (3, 4, 10, 13, 19):
        practice.once(local(2026, 11, day, 16))
    assert {row[0] for row in journal(practice, capsys)} == {"Jane Doe"}
    assert practice.mails_to("omar.personal@example.net") == [] and practice.mails_to(OMAR) == []
    assert len(call_tasks(practice)) == 1 and len(practice.mails_to(JANE)) == 1
    needs = attention(practice, capsys)
    assert "group" in needs and "clients.csv:3" in needs and "pigeon" in needs


def test_a_rejected_row_that_names_a_clients_phone_protects_that_client(practice, capsys):
    directory(practice, VALID + "M. Stone,,,+1 555 010 0206,fax,false\n")
    mia = session("m1", 3, 14, "Mia Stone")
    practice.calendar([team(), mia])
    practice.once(local(2026, 11, 2, 8))
    mia.categories = "no-show"
    practice.calendar([team(), mia])
    for day in (3, 4, 10):
        practice.once(local(2026, 11, day, 15))
    assert journal(practice, capsys) == []
    assert practice.mails() == []
    assert "clients.csv:8" in attention(practice, capsys)


@pytest.mark.shows_client_data  # the status table / check output is for the therapist
def test_a_row_that_becomes_unreadable_holds_the_next_step_until_fixed(practice, capsys):
    jane = session("j1", 3, 10, "Jane Doe")
    practice.calendar([team(), jane])
    practice.once(local(2026, 11, 2, 8))
    jane.summary = "Jane Doe no-show"
    practice.calendar([team(), jane])
    practice.once(local(2026, 11, 3, 11))
    directory(practice, VALID.replace("+1 555 010 0201,phone,false", "+1 555 010 0201,phone,ask first"))
    practice.once(local(2026, 11, 4, 10, 5))
    assert [row[5] for row in journal(practice, capsys)] == ["planned", "planned"]
    assert practice.mails() == []
    assert "clients.csv:2" in attention(practice, capsys)
    directory(practice, VALID)
    practice.once(local(2026, 11, 4, 11))
    assert [row[5] for row in journal(practice, capsys)] == ["sent", "planned"]
    assert len(call_tasks(practice)) == 1


def test_do_not_contact_accepts_the_spellings_people_write(practice, capsys):
    directory(practice, VALID.replace("+1 555 010 0201,phone,false", "+1 555 010 0201,phone,Yes - asked in March")
              .replace("omar.h@example.org,+1 555 010 0202,email,false", "omar.h@example.org,+1 555 010 0202,email,✓"))
    jane, omar = session("j1", 3, 10, "Jane Doe"), session("o1", 3, 12, "Omar Haddad")
    practice.calendar([team(), jane, omar])
    practice.once(local(2026, 11, 2, 8))
    jane.summary, omar.summary = "Jane Doe DNA", "Omar Haddad DNA"
    practice.calendar([team(), jane, omar])
    for day in (3, 4, 10):
        practice.once(local(2026, 11, day, 13))
    steps = journal(practice, capsys)
    assert len(steps) == 4 and {(row[5], row[6]) for row in steps} == {("skipped", "opted_out")}
    assert practice.mails() == []
    capsys.readouterr()
    assert practice.cli("check") == 0


VCARDS = """BEGIN:VCARD
VERSION:3.0
FN:Jane Doe
EMAIL:jane.doe@example.com
TEL;TYPE=CELL:+1 555 010 0201
END:VCARD
BEGIN:VCARD
VERSION:3.0
FN:Omar Haddad
EMAIL:omar.h@example.org
TEL;TYPE=CELL:+1 555 0
END:VCARD
BEGIN:VCARD
VERSION:3.0
FN:Rosa Lind
EMAIL:rosa.lind@example.net
"""


def test_unreadable_vcard_entries_protect_the_people_they_name(practice, capsys):
    """Omar's card has a broken number, Rosa's card is cut off: neither invitation is followed up."""
    directory(practice, VCARDS, name="clients.vcf")
    omar = session("o1", 12, 15, "Session", attendees=[(OMAR, "Omar Haddad", "ACCEPTED")])
    rosa = session("r1", 13, 15, "Session", attendees=[("rosa.lind@example.net", "Rosa Lind", "ACCEPTED")])
    jane = session("j1", 16, 15, "Jane Doe")
    practice.calendar([team(), omar, rosa, jane])
    practice.once(local(2026, 11, 2, 8))
    practice.calendar([team(), jane])
    for day in (5, 13, 16, 20):
        practice.once(local(2026, 11, day, 16))
    assert journal(practice, capsys) == []
    assert practice.mails() == []
    needs = attention(practice, capsys)
    assert "clients.vcf:7" in needs and "clients.vcf:13" in needs and "END:VCARD" in needs


@pytest.mark.shows_client_data  # the status table / check output is for the therapist
def test_check_names_values_no_channel_can_carry(practice, capsys):
    directory(practice, 'Jane Doe,,jane.doe.ü@example.com,+1 555 010 0201,,false\n'
                        '"Omar\nHaddad",,omar.h@example.org,,,false\n'
                        'Lind, Rosa,rosa.lind@example.net,,,,true\n'
                        'Mia Stone,,,+1 555 010 0206,,false\n')
    capsys.readouterr()
    assert practice.cli("check") == 2
    err = capsys.readouterr().err
    assert "clients.csv:2:" in err and "SMTPUTF8" in err
    assert "clients.csv:3:" in err and "line break" in err
    assert "clients.csv:5:" in err and "7 fields" in err
    assert "clients.csv:6" not in err
    assert THERAPIST not in err
