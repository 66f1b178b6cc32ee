"""A group practice: two therapists, three calendars, one client seen by both.

Ana Ruiz has the calendars ``main`` and ``groups``, Ben Marsh the calendar ``ben`` (his own
working hours, signature and a templates folder with his own call script).  Jane Doe sees
both.  Driven through the real CLI and engine on SQLite and PostgreSQL (the ``practice``
fixture); the outbox holds what was sent.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from daemon import config as config_mod
from daemon.clock import FixedClock
from daemon.engine.cycle import Engine
from daemon.engine.digest import build_digest
from daemon.store import digests as claims
from tests.conftest import Practice, local
from tests.ics import Ev, write
from tests.stories import team
from tests.test_therapist_config import GROUP

ANA, BEN, JANE, OMAR = "ana@riverside.example", "ben@riverside.example", "jane.doe@example.com", "omar.h@example.org"
BEN_SCRIPT = "Hello {{ client_first_name }}, Ben here from {{ practice }}; call me on {{ practice_phone }}."


def group(practice: Practice) -> Practice:
    practice.config.write_text(practice.config.read_text() + GROUP)
    (practice.root / "ben-templates").mkdir()
    (practice.root / "ben-templates" / "phone_call.txt").write_text(f"Subject: Call {{{{ client_first_name }}}}\n\n"
                                                                    f"{BEN_SCRIPT}\n")
    for name in ("groups", "ben"):
        write(practice.root / f"{name}.ics", [])
    return practice


def calendars(practice: Practice, **events: list[Ev]) -> None:
    for name, evs in events.items():
        write(practice.root / ("practice.ics" if name == "main" else f"{name}.ics"), [team(), *evs])


def session(uid: str, day: int, hour: int, who: str) -> Ev:
    return Ev(uid, local(2026, 11, day, hour), local(2026, 11, day, hour, 50), who)


def story(practice: Practice) -> dict[str, Ev]:
    """Mon Nov 2 first read; Tue Nov 3 Jane misses Ben's 10:00 and Omar misses Ana's group at 15:00;
    Thu Nov 5 Jane misses Ana's 10:00 too, while Ben's follow-up is open."""
    evs = {"jb": session("jb", 3, 10, "Jane Doe"), "om": session("om", 3, 15, "Omar Haddad"),
           "ja": session("ja", 5, 10, "Jane Doe")}
    calendars(practice, main=[evs["ja"]], groups=[evs["om"]], ben=[evs["jb"]])
    practice.once(local(2026, 11, 2, 8))
    evs["jb"].summary += " no-show"
    evs["om"].summary += " no-show"
    calendars(practice, main=[evs["ja"]], groups=[evs["om"]], ben=[evs["jb"]])
    practice.once(local(2026, 11, 3, 16))
    return evs


@pytest.fixture
def clinic(practice: Practice) -> Practice:
    return group(practice)


def header(mail: str, name: str) -> str:
    return next((line.split(":", 1)[1].strip() for line in mail.splitlines() if line.startswith(f"{name}:")), "")


def test_a_miss_is_routed_to_the_therapist_of_its_calendar(clinic, capsys):
    evs = story(clinic)
    steps = clinic.status(capsys)
    assert {(s["client"], s["calendar"], s["therapist"]) for s in steps} == {
        ("Jane Doe", "ben", "Ben Marsh"), ("Omar Haddad", "groups", "Ana Ruiz")}
    jane = [s for s in steps if s["client"] == "Jane Doe"]
    assert jane[0]["due_at"] == "2026-11-04T12:00:00-05:00"          # Ben's working hours, not the practice's
    assert [s["due_at"] for s in steps if s["client"] == "Omar Haddad"][0] == "2026-11-04T15:00:00-05:00"

    clinic.once(local(2026, 11, 4, 10, 5))
    assert clinic.mails() == []                                      # Ben's call waits for his hours
    clinic.once(local(2026, 11, 4, 12, 5))
    [jane_task] = clinic.mails_to(BEN)
    assert "Client: Jane Doe" in jane_task and "For: Ben Marsh" in jane_task
    assert "Hello Jane, Ben here from Riverside Counselling; call me on (555) 010-0400." in jane_task
    assert clinic.mails_to(ANA) == []
    clinic.once(local(2026, 11, 4, 15, 5))
    [omar_task] = clinic.mails_to(ANA)
    assert "Client: Omar Haddad" in omar_task and "For: Ana Ruiz" in omar_task and "Ben here" not in omar_task
    assert len(clinic.mails_to(BEN)) == 1

    evs["ja"].summary += " no-show"                                  # Jane misses Ana's session too
    calendars(clinic, main=[evs["ja"]], groups=[evs["om"]], ben=[evs["jb"]])
    clinic.once(local(2026, 11, 5, 11))
    assert len([s for s in clinic.status(capsys) if s["client"] == "Jane Doe"]) == 2   # still one follow-up

    clinic.once(local(2026, 11, 10, 12, 5))
    [email] = clinic.mails_to(JANE)
    assert header(email, "Reply-To") == BEN
    assert "Warm regards,\nBen Marsh\nRiverside Counselling\n\n-- \nBen Marsh, LCSW\nRiverside Counselling, room 4" \
        in email.replace("\r\n", "\n")
    assert "<p>Ben Marsh, LCSW<br>Riverside Counselling, room 4</p>" in email
    assert "Ana" not in email.split("\n\n", 1)[1]


def test_each_therapist_gets_their_own_digest_once_a_day(clinic, capsys):
    story(clinic)
    now = local(2026, 11, 4, 7, 30)
    engine = Engine(config_mod.load(clinic.config), FixedClock(now))
    try:
        cfg = engine.config
        ana, ben = cfg.therapist_of("main"), cfg.therapist_of("ben")
        ana_digest = build_digest(engine.context, now, ana)
        ben_digest = build_digest(engine.context, now, ben)
        assert ana_digest is not None and ben_digest is not None
        assert "Omar Haddad" in ana_digest.text and "Jane Doe" not in ana_digest.text
        assert "Jane Doe" in ben_digest.text and "Omar Haddad" not in ben_digest.text
        assert (ana_digest.to_address, ben_digest.to_address) == (ANA, BEN)
        assert ana_digest.message_id != ben_digest.message_id
        assert engine.send_digest() is True
        assert engine.send_digest() is False                         # the same day: never twice
    finally:
        engine.close()
    other = Engine(config_mod.load(clinic.config), FixedClock(now + timedelta(hours=3)), acquire_lock=False)
    try:
        assert other.send_digest() is False                          # another replica, the same day
    finally:
        other.close()
    digests = [m for m in clinic.mails() if "welcomeback: your day" in m]
    assert sorted(header(m, "To").split("<")[-1].rstrip(">") for m in digests) == [ANA, BEN]


def test_an_interrupted_digest_is_sent_again_once_never_lost(clinic, capsys):
    story(clinic)
    now = local(2026, 11, 4, 7, 30)
    engine = Engine(config_mod.load(clinic.config), FixedClock(now))
    try:   # a replica that died after claiming Ben's day, before the hand-off was recorded
        ben = engine.config.therapist_of("ben")
        assert claims.claim(engine.store, ben.key, "2026-11-04", "dead:1:x", now, legacy=False) == "new"
        assert engine.send_digest() is True                          # Ana's goes; Ben's is claimed
    finally:
        engine.close()
    assert [header(m, "To") for m in clinic.mails() if "your day" in m] == [f"Ana Ruiz <{ANA}>"]
    clinic.once(now + timedelta(minutes=5))                          # too soon to take the claim over
    assert len([m for m in clinic.mails() if "your day" in m]) == 1
    clinic.once(now + timedelta(minutes=15))                         # the dispatch loop takes it over
    again = [m for m in clinic.mails() if "your day" in m and BEN in header(m, "To")]
    assert len(again) == 1 and "This digest may reach you twice" in again[0] and "Jane Doe" in again[0]
    clinic.once(now + timedelta(hours=2))
    assert len([m for m in clinic.mails() if "your day" in m]) == 2


def test_an_out_of_office_block_counts_only_for_its_therapist(clinic, capsys):
    away = Ev("away", local(2026, 11, 3, 9), local(2026, 11, 3, 17), "Out of office")
    jb, om = session("jb", 3, 10, "Jane Doe"), session("om", 3, 15, "Omar Haddad")
    calendars(clinic, main=[away], groups=[om], ben=[jb])
    clinic.once(local(2026, 10, 30, 8))
    jb.status = om.status = "CANCELLED"
    calendars(clinic, main=[away], groups=[om], ben=[jb])
    clinic.once(local(2026, 11, 2, 20))
    steps = clinic.status(capsys)
    assert {s["client"] for s in steps} == {"Jane Doe"}              # Omar's was Ana's own cancellation
    clinic.once(local(2026, 11, 2, 20, 5))
    [task] = [m for m in clinic.mails_to(ANA) if "Reschedule" in m]
    assert "Omar Haddad" in task and "Jane Doe" not in task


def test_records_of_one_therapist_are_theirs_only(clinic, capsys):
    """What the console's Today per therapist filters with (daemon.engine.records.of_therapist)."""
    from daemon.engine.records import of_therapist, step_records

    story(clinic)
    engine = Engine(config_mod.load(clinic.config), FixedClock(local(2026, 11, 4, 8)))
    try:
        records = step_records(engine)
        assert {r["client"] for r in of_therapist(engine.config, records, "BEN@riverside.example")} == {"Jane Doe"}
        assert {r["client"] for r in of_therapist(engine.config, records, ANA)} == {"Omar Haddad"}
        assert of_therapist(engine.config, records, None) == records
        assert [t.name for t in engine.config.all_therapists()] == ["Ana Ruiz", "Ben Marsh"]
    finally:
        engine.close()


def test_a_digest_interrupted_twice_is_named_in_the_next_days(clinic, capsys):
    story(clinic)
    day = local(2026, 11, 4, 7, 30)
    engine = Engine(config_mod.load(clinic.config), FixedClock(day))
    try:
        ben = engine.config.therapist_of("ben")
        assert claims.claim(engine.store, ben.key, "2026-11-04", "dead:1:x", day, legacy=False) == "new"
        later = day + timedelta(minutes=20)
        assert claims.claim(engine.store, ben.key, "2026-11-04", "dead:2:y", later, legacy=False) == "again"
        assert claims.claim(engine.store, ben.key, "2026-11-04", "dead:3:z", later + timedelta(hours=1),
                            legacy=False) is None                    # taken over once only
        message = build_digest(engine.context, local(2026, 11, 5, 7, 30), ben)
        assert message is not None
        assert "DIGEST: your digest of 2026-11-04 may not have reached you" in message.text
        ana = build_digest(engine.context, local(2026, 11, 5, 7, 30))
        assert ana is not None and "Omar Haddad" in ana.text and "DIGEST:" not in ana.text
    finally:
        engine.close()


def test_a_plus_address_reply_to_is_the_therapists_and_still_matches(clinic, capsys):
    """With [inbox] plus_address, Ben's client email replies to ben+wb-TOKEN@…, and the inbox's
    token matching finds the step from it."""
    from connectors.inbox.parse import parse
    from daemon.engine.messages import build_for, step_token
    from daemon.store.tables import ts
    from daemon.templating.templates import Templates

    clinic.config.write_text(clinic.config.read_text() + '\n[inbox]\nhost = "127.0.0.1"\nsecurity = "none"\n'
                             'username = "ana@riverside.example"\nplus_address = true\n')
    cfg = config_mod.load(clinic.config)
    step = {"id": "s1-2", "sequence_id": "s1", "session_start": ts(local(2026, 11, 3, 10)), "trigger": "no_show",
            "due_at": ts(local(2026, 11, 10, 12)), "template": "email_followup", "calendar": "ben"}
    from daemon.model import Client

    jane = Client(id="jane", name="Jane Doe", email=JANE)
    message = build_for(step, jane, "email", cfg, Templates(cfg.resolve(cfg.templates.folder)))
    assert message.reply_to == f"ben+wb-{step_token('s1-2')}@riverside.example"
    answer = parse(f"From: {JANE}\r\nTo: {message.reply_to}\r\nSubject: Re: hi\r\n\r\nThanks\r\n".encode())
    assert answer.tokens == (step_token("s1-2"),)
    ana = build_for({**step, "calendar": "main"}, jane, "email", cfg, Templates(cfg.resolve(cfg.templates.folder)))
    assert ana.reply_to == f"ana+wb-{step_token('s1-2')}@riverside.example" and "Ben" not in ana.text


def test_two_replicas_claiming_the_same_day_at_once_get_one_claim(clinic):
    """Real concurrent claims on the shared store (SQLite and PostgreSQL): exactly one wins."""
    import threading

    from daemon.engine.places import store_url
    from daemon.store.db import Store

    url = store_url(config_mod.load(clinic.config))
    stores = [Store(url) for _ in range(4)]
    barrier, won = threading.Barrier(len(stores)), []

    def replica(n: int) -> None:
        barrier.wait()
        won.append(claims.claim(stores[n], BEN, "2026-11-04", f"replica-{n}", local(2026, 11, 4, 7, 30),
                                legacy=False))

    threads = [threading.Thread(target=replica, args=(n,)) for n in range(len(stores))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        for s in stores:
            s.close()
    assert sorted(won, key=str) == [None, None, None, "new"]


def test_a_day_recorded_by_an_older_version_is_not_sent_again(practice, capsys):
    """Without [[therapists]]: a store whose digest day is still in meta digest_last (before the
    digests table) does not get that day's digest twice."""
    import json as json_mod

    from daemon.store.tables import meta
    from tests.stories import jane_no_show

    jane_no_show(practice)
    engine = Engine(config_mod.load(practice.config), FixedClock(local(2026, 11, 4, 7, 30)))
    try:
        with engine.store.transaction() as conn:
            conn.execute(meta.insert().values(key=claims.LEGACY_KEY, value=json_mod.dumps(
                {"day": "2026-11-04", "at": "2026-11-04T12:30:00.000000Z", "state": "sent"})))
        assert engine.send_digest() is False
    finally:
        engine.close()
    nxt = Engine(config_mod.load(practice.config), FixedClock(local(2026, 11, 5, 7, 30)))
    try:
        assert nxt.send_digest() is True
    finally:
        nxt.close()
    assert len([m for m in practice.mails() if "welcomeback: your day" in m]) == 1


def test_a_safety_no_show_alerts_the_sessions_therapist_at_the_end_of_their_day(clinic, capsys):
    (clinic.root / "clients.csv").write_text(
        "name,aliases,email,phone,preferred_channel,do_not_contact,safety_concern,emergency_contact\n"
        "Jane Doe,,jane.doe@example.com,+1 555 010 0201,phone,false,yes,Dana Whitlock (sister) +1 555 010 0299\n")
    jb = session("jb", 6, 14, "Jane Doe")                           # a Friday, on Ben's calendar
    calendars(clinic, main=[], groups=[], ben=[jb])
    clinic.once(local(2026, 11, 5, 9))
    jb.summary += " no-show"
    calendars(clinic, main=[], groups=[], ben=[jb])
    clinic.once(local(2026, 11, 6, 15, 10))
    [urgent] = clinic.mails_to(BEN)
    assert "Subject: URGENT: call Jane now" in urgent and "Dana Whitlock" in urgent
    clinic.once(local(2026, 11, 6, 17, 5))                           # the practice's day ended, Ben's did not
    assert len(clinic.mails_to(BEN)) == 1
    clinic.once(local(2026, 11, 6, 18, 1))
    assert len([m for m in clinic.mails_to(BEN) if "Second alert" in m]) == 1
    assert clinic.mails_to(ANA) == []


def test_another_therapist_invited_to_a_session_is_never_taken_for_the_client(clinic, capsys):
    """Ben co-leads Ana's group: his address among the attendees is staff, not a second client."""
    om = session("om", 3, 15, "Group")
    om.attendees = [(OMAR, "Omar Haddad", "ACCEPTED"), (BEN, "Ben Marsh", "ACCEPTED")]
    calendars(clinic, main=[], groups=[om], ben=[])
    clinic.once(local(2026, 11, 2, 8))
    om.summary += " no-show"
    calendars(clinic, main=[], groups=[om], ben=[])
    clinic.once(local(2026, 11, 3, 16))
    steps = clinic.status(capsys)
    assert {(s["client"], s["therapist"]) for s in steps} == {("Omar Haddad", "Ana Ruiz")}


@pytest.mark.shows_client_data       # the console shows the therapist their clients
def test_the_consoles_today_is_per_therapist(clinic, capsys):
    from tests.test_web_routes import sign_in
    from tests.web_support import console

    story(clinic)
    app, engine, _clock = console(clinic, local(2026, 11, 4, 16), story=False)
    try:
        client, _token = sign_in(app)
        everyone = client.get("/").get_data(as_text=True)
        assert "Jane Doe" in everyone and "Omar Haddad" in everyone
        assert "For Ben Marsh" in everyone and "For Ana Ruiz" in everyone
        assert '<label for="therapist">Therapist</label>' in everyone
        names = [t.name for t in engine.config.all_therapists()]
        ben = client.get(f"/?therapist={names.index('Ben Marsh')}").get_data(as_text=True)
        assert "Today: Ben Marsh" in ben and "Jane Doe" in ben and "Omar Haddad" not in ben
        ana = client.get(f"/?therapist={names.index('Ana Ruiz')}").get_data(as_text=True)
        assert "Omar Haddad" in ana and "Jane Doe" not in ana
        assert "Jane Doe" in client.get("/?therapist=99").get_data(as_text=True)   # unknown: everyone
    finally:
        engine.close()
