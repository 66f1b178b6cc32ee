"""Hearing back by email: a real Dovecot on loopback (tests/fakes/dovecot.py), messages
APPENDed as real MIME, the product reading it read-only through imapclient.

Jane misses her session on Tuesday 3 Nov; the cadence here is two emails (4 Nov, 10 Nov), so a
reply can refer to the first one's Message-ID or Reply-To and must stop the second.
"""

from __future__ import annotations

import email
import re
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from daemon.store.tables import audit, undeliverable
from tests.conftest import Practice, local, make_practice, postgres_available, store_rows
from tests.fakes import dovecot
from tests.stories import jane_no_show

pytestmark = pytest.mark.skipif(not Path(dovecot.DOVECOT).exists(), reason="dovecot-imapd is not installed")

CADENCE = """
[cadence]
steps = [
  {{ channel = "email", after = "1 business day", template = "email_followup" }},
  {{ channel = "email", after = "7 days", template = "email_followup" }},
]

[inbox]
host = "127.0.0.1"
port = {port}
security = "{security}"
username = "ana@riverside.example"
folder = "{folder}"
plus_address = true
{ca}
"""
JANE = "jane.doe@example.com"
ALIAS = "jd.home@example.net"


@pytest.fixture(scope="module")
def imap() -> Iterator[dovecot.Dovecot]:
    server = dovecot.start()
    try:
        yield server
    finally:
        dovecot.stop(server)


_folders = iter(range(1, 10_000))


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> str:
    """The store's config line: the inbox bookkeeping runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return 'path = "state.db"'
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    return f'url = "{request.getfixturevalue("pg_schema")}"'


def practice_with_inbox(tmp_path: Path, imap: dovecot.Dovecot, monkeypatch: pytest.MonkeyPatch, *,
                        security: str = "none", two_emails: bool = True,
                        store: str = 'path = "state.db"') -> tuple[Practice, str]:
    folder = f"t{next(_folders)}"
    port = imap.tls_port if security == "tls" else imap.port
    ca = f'ca_file = "{imap.ca_file}"' if security != "none" else ""
    extra = CADENCE.format(port=port, security=security, folder=folder, ca=ca)
    if not two_emails:
        extra = extra[extra.index("[inbox]"):]
    p = make_practice(tmp_path / "practice", extra=extra, store=store)
    (p.root / "clients.csv").write_text((p.root / "clients.csv").read_text().replace(
        "Jane Doe,Janie,", f"Jane Doe,Janie;{ALIAS},"))
    monkeypatch.setenv("WELCOMEBACK_IMAP_PASSWORD", dovecot.PASSWORD)
    imap.append(folder, _plain("ana@riverside.example", "ana@riverside.example", "Note to self", "hello"))
    return p, folder


def first_email(p: Practice) -> tuple[str, str]:
    """(Message-ID, Reply-To) of the first email to Jane."""
    (mail,) = p.mails_to(JANE)
    msg = email.message_from_string(mail)
    return msg["Message-ID"], msg["Reply-To"]


def _plain(sender: str, to: str, subject: str, text: str, *, charset: str = "utf-8", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = format_datetime(local(2026, 11, 10, 9, 55))
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text, charset=charset, cte="quoted-printable" if charset != "utf-8" else None)
    return msg.as_bytes()


def _html_only(sender: str, to: str, subject: str, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = format_datetime(local(2026, 11, 10, 9, 55))
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("<p>Thank you, I'll book again next week.</p>", subtype="html")
    return msg.as_bytes()


def _dsn(message_id: str, failed: str) -> bytes:
    """An RFC 3464 delivery status notification, as Postfix writes one."""
    boundary = "dsn-boundary-1"
    return (
        "From: MAILER-DAEMON@mx.riverside.example (Mail Delivery System)\r\n"
        "To: ana@riverside.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {format_datetime(local(2026, 11, 4, 11, 5))}\r\nAuto-Submitted: auto-replied\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nThis is the mail system. Your message could not be delivered.\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.riverside.example\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\nOriginal-Recipient: rfc822;{failed}\r\nAction: failed\r\n"
        f"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <{failed}>: Recipient address rejected: User unknown\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Riverside Counselling <ana@riverside.example>\r\nTo: {failed}\r\nMessage-ID: {message_id}\r\n"
        "Subject: Checking in\r\n\r\n"
        f"--{boundary}--\r\n").encode()


def _steps(p: Practice, capsys: pytest.CaptureFixture[str]) -> list[tuple[str, str | None]]:
    return [(s["state"], s["reason"]) for s in p.status(capsys)]


def _audit(p: Practice) -> list[str]:
    return [r.event for r in store_rows(p, sa.select(audit.c.event).order_by(audit.c.id))]


def _first_step_sent(p: Practice) -> tuple[str, str]:
    jane_no_show(p)
    p.once(local(2026, 11, 4, 11))
    return first_email(p)


REPLIES = {
    "plain reply": lambda mid, rt: _plain(JANE, rt, "Re: Checking in", "Thanks, I'm fine.",
                                          In_Reply_To=mid, References=mid),
    # Gmail sent our message and gave it its own Message-ID: the reply names that one, but goes
    # to the plus-addressed Reply-To
    "gmail-rewritten Message-ID": lambda mid, rt: _plain(
        JANE, rt, "Re: Checking in", "ok", In_Reply_To="<CAF=abc123XYZ@mail.gmail.com>",
        References="<CAF=abc123XYZ@mail.gmail.com>"),
    "reply from an alias": lambda mid, rt: _plain(ALIAS, "ana@riverside.example", "hello again", "It's me."),
    "html-only reply": lambda mid, rt: _html_only(JANE, "ana@riverside.example", "Re: Checking in", In_Reply_To=mid),
    "iso-8859-1 quoted-printable": lambda mid, rt: _plain(
        JANE, "ana@riverside.example", "Re: Merci, très gentil", "Très bien, à bientôt. Ça va.", charset="iso-8859-1"),
}


@pytest.mark.parametrize("kind", list(REPLIES))
def test_a_reply_minutes_before_the_next_email_stops_it(tmp_path: Path, imap: dovecot.Dovecot, kind: str, store: str,
                                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p, folder = practice_with_inbox(tmp_path, imap, monkeypatch, store=store)
    mid, reply_to = _first_step_sent(p)
    assert re.fullmatch(r"ana\+wb-[0-9a-f]{10}@riverside\.example", reply_to)
    imap.append(folder, REPLIES[kind](mid, reply_to))        # 09:55; the second email is due 10:00
    assert p.once(local(2026, 11, 10, 10, 1)) == 0
    assert p.mails_to(JANE) and len(p.mails_to(JANE)) == 1, "the second email went out"
    assert _steps(p, capsys) == [("sent", None), ("skipped", "replied")]
    assert "replied" in _audit(p)
    assert all(b"\\Seen" not in f for f in imap.flags(folder)), "the inbox was only examined"


NOT_ANSWERS = {
    "forwarded by someone else": lambda mid: _plain("lee.fox@example.com", "ana@riverside.example",
                                                    "Fwd: Checking in", "FYI, see below", References=mid),
    "out of office": lambda mid: _plain(JANE, "ana@riverside.example", "Out of Office: Checking in",
                                        "I am away until Monday.", In_Reply_To=mid, Auto_Submitted="auto-replied"),
    "vacation without headers": lambda mid: _plain(JANE, "ana@riverside.example", "Automatic reply: Checking in",
                                                   "Away.", In_Reply_To=mid),
}


@pytest.mark.parametrize("kind", list(NOT_ANSWERS))
def test_what_is_not_an_answer_does_not_stop(tmp_path: Path, imap: dovecot.Dovecot, kind: str,
                                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p, folder = practice_with_inbox(tmp_path, imap, monkeypatch)
    mid, _ = _first_step_sent(p)
    imap.append(folder, NOT_ANSWERS[kind](mid))
    assert p.once(local(2026, 11, 10, 10, 1)) == 0
    assert len(p.mails_to(JANE)) == 2
    assert _steps(p, capsys) == [("sent", None), ("sent", None)]
    events = _audit(p)
    assert "replied" not in events
    assert ("auto_reply" in events) == (kind != "forwarded by someone else")


def _first_email_bounced(tmp_path: Path, imap: dovecot.Dovecot, monkeypatch: pytest.MonkeyPatch,
                         read_at: datetime, store: str = 'path = "state.db"') -> Practice:
    """Jane's first email is sent, a DSN bounce for it arrives, and a cycle at ``read_at`` reads it."""
    p, folder = practice_with_inbox(tmp_path, imap, monkeypatch, store=store)
    mid, _ = _first_step_sent(p)
    imap.append(folder, _dsn(mid, JANE))
    assert p.once(read_at) == 0
    return p


def test_a_bounce_fails_the_step_and_no_more_email_goes_there(tmp_path: Path, imap: dovecot.Dovecot, store: str,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    p = _first_email_bounced(tmp_path, imap, monkeypatch, local(2026, 11, 10, 10, 1), store)
    assert len(p.mails_to(JANE)) == 1
    (first, second) = _steps(p, capsys)
    assert first[0] == "failed" and "5.1.1" in (first[1] or "") and "check the client's email address" in first[1]
    assert second == ("skipped", "no_contact_details")
    assert JANE not in (first[1] or "")
    assert [r.address for r in store_rows(p, sa.select(undeliverable))] == [JANE]


@pytest.mark.shows_client_data   # `deliverable` prints whom it matched, on the therapist's terminal
def test_deliverable_lets_email_go_to_a_fixed_address_again(tmp_path: Path, imap: dovecot.Dovecot,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    p = _first_email_bounced(tmp_path, imap, monkeypatch, local(2026, 11, 5, 10))
    failed, later = p.status(capsys)
    assert (failed["state"], later["state"]) == ("failed", "planned")
    assert p.cli("deliverable", "Omar Haddad") == 2            # nothing of his bounced
    assert "nothing to clear" in capsys.readouterr().err
    assert p.cli("deliverable", "janie") == 0
    out = capsys.readouterr().out
    assert "matched: Jane Doe" in out and "1 cleared" in out
    assert "address_deliverable" in _audit(p)
    assert p.cli("deliverable", "Jane Doe") == 2               # already cleared
    capsys.readouterr()
    assert p.cli("resolve", failed["id"], "--retry", "--now", local(2026, 11, 5, 11).isoformat()) == 0
    capsys.readouterr()
    assert p.once(local(2026, 11, 5, 11, 1)) == 0
    retried, later = p.status(capsys)                        # the retried step went out
    assert (retried["state"], retried["sent_at"]) == ("sent", local(2026, 11, 5, 11, 1).isoformat())
    assert p.once(local(2026, 11, 10, 10, 1)) == 0
    assert len(p.mails_to(JANE)) == 2                        # and the later one too (the outbox
    assert [s["state"] for s in p.status(capsys)] == ["sent", "sent"]   # keeps one file per step)


def test_a_bounced_call_task_to_the_therapist_marks_no_client(tmp_path: Path, imap: dovecot.Dovecot,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    p, folder = practice_with_inbox(tmp_path, imap, monkeypatch, two_emails=False)
    jane_no_show(p)
    p.once(local(2026, 11, 4, 11))
    (task,) = p.mails_to("ana@riverside.example")
    imap.append(folder, _dsn(email.message_from_string(task)["Message-ID"], "ana@riverside.example"))
    assert p.once(local(2026, 11, 10, 10, 1)) == 0
    assert [s for s, _ in _steps(p, capsys)] == ["sent", "sent"]
    assert len(p.mails_to(JANE)) == 1


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_with_a_self_signed_ca(tmp_path: Path, imap: dovecot.Dovecot, security: str,
                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p, folder = practice_with_inbox(tmp_path, imap, monkeypatch, security=security)
    mid, rt = _first_step_sent(p)
    imap.append(folder, REPLIES["plain reply"](mid, rt))
    assert p.once(local(2026, 11, 10, 10, 1)) == 0
    assert _steps(p, capsys) == [("sent", None), ("skipped", "replied")]


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the product may swallow it)."""


def test_a_restart_mid_read_loses_and_repeats_nothing(tmp_path: Path, imap: dovecot.Dovecot, store: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from daemon.clock import FixedClock
    from daemon.config import load
    from daemon.engine.cycle import Engine

    p, folder = practice_with_inbox(tmp_path, imap, monkeypatch, store=store)
    mid, rt = _first_step_sent(p)
    imap.append(folder, NOT_ANSWERS["out of office"](mid))
    imap.append(folder, REPLIES["plain reply"](mid, rt))
    imap.append(folder, NOT_ANSWERS["vacation without headers"](mid))
    engine = Engine(load(p.config), FixedClock(local(2026, 11, 5, 9)))
    try:
        assert engine.inbox is not None
        engine.inbox.read(None)            # fetched, then the process died before recording anything
        advances = []

        def die_on_second_advance(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
            if "inbox_folders" in statement and statement.lstrip().upper().startswith(("UPDATE", "INSERT")):
                advances.append(statement)
                if len(advances) == 2:      # the out-of-office went through, then the reply
                    raise Crash()

        sa.event.listen(engine.store.engine, "before_cursor_execute", die_on_second_advance)
        with pytest.raises(Crash):
            engine.hear()
        sa.event.remove(engine.store.engine, "before_cursor_execute", die_on_second_advance)
        assert _audit(p).count("auto_reply") == 1 and "replied" not in _audit(p)
        assert engine.hear() == {"replied": 1, "auto_reply": 1}    # the rest, once
        assert engine.hear() == {}                                  # nothing again
    finally:
        engine.close()
    events = _audit(p)
    assert events.count("replied") == 1 and events.count("auto_reply") == 2
    assert _steps(p, capsys) == [("sent", None), ("skipped", "replied")]


def test_unmatched_mail_and_a_new_uidvalidity(tmp_path: Path, imap: dovecot.Dovecot, store: str,
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p, folder = practice_with_inbox(tmp_path, imap, monkeypatch, store=store)
    mid, rt = _first_step_sent(p)
    imap.append(folder, _plain("lee.fox@example.com", "ana@riverside.example", "Question", "Do you have time?"))
    assert p.once(local(2026, 11, 9, 10)) == 0
    imap.recreate(folder)                                  # the server renumbered the folder
    imap.append(folder, REPLIES["plain reply"](mid, rt))
    assert p.once(local(2026, 11, 10, 10, 1)) == 0
    assert _steps(p, capsys) == [("sent", None), ("skipped", "replied")]
    assert len(p.mails_to(JANE)) == 1
