"""Classifying inbound mail (connectors.inbox.parse) on real MIME bytes, and the [inbox] keys."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from connectors.inbox.parse import parse
from tests.conftest import make_practice

OURS = "<wb-s1-1-0123456789@riverside.example>"


def _mail(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    return msg


def test_exim_bounce_with_x_failed_recipients() -> None:
    msg = _mail(From="Mail Delivery System <Mailer-Daemon@mx.example.org>", To="ana@riverside.example",
                Subject="Mail delivery failed: returning message to sender",
                X_Failed_Recipients="omar.h@example.org", Auto_Submitted="auto-replied")
    msg.set_content("This message was created automatically by mail delivery software.\n\n"
                    "  omar.h@example.org\n    host mx.example.org: 550 5.1.1 mailbox unavailable\n\n"
                    "------ This is a copy of the message, including all the headers. ------\n"
                    f"Message-ID: {OURS}\nSubject: Checking in\n")
    item = parse(msg.as_bytes())
    assert item.kind == "bounce" and item.failed == ("omar.h@example.org",)
    assert OURS.lower() in item.refs and item.reason.startswith("5.1.1")
    assert "omar" not in item.reason


def test_gmail_style_failure_notice_without_a_report() -> None:
    msg = _mail(From="Mail Delivery Subsystem <mailer-daemon@googlemail.com>", To="ana@riverside.example",
                Subject="Delivery Status Notification (Failure)")
    msg.set_content("Address not found\n\nYour message wasn't delivered to rosa.lind@example.net because "
                    "the address couldn't be found.\n\nThe response was: 550 5.1.1 The email account does not exist.\n")
    item = parse(msg.as_bytes())
    assert item.kind == "bounce" and item.reason.startswith("5.1.1")


def test_a_dsn_that_reports_a_delay_is_not_a_bounce() -> None:
    raw = ("From: MAILER-DAEMON@mx.riverside.example\r\nTo: ana@riverside.example\r\n"
           "Subject: Delayed Mail (still being retried)\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
           "--b\r\nContent-Type: text/plain\r\n\r\nStill trying.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
           "Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; jane.doe@example.com\r\nAction: delayed\r\n"
           "Status: 4.4.1\r\n\r\n--b--\r\n").encode()
    assert parse(raw).kind != "bounce"


@pytest.mark.parametrize("headers,kind", [
    ({"Auto_Submitted": "auto-replied", "Subject": "Re: hi"}, "auto_reply"),
    ({"Auto_Submitted": "no", "Subject": "Re: hi"}, "reply"),
    ({"X_Autoreply": "yes", "Subject": "Re: hi"}, "auto_reply"),
    ({"Precedence": "bulk", "Subject": "Newsletter"}, "auto_reply"),
    ({"Precedence": "auto_reply", "Subject": "Re: hi"}, "auto_reply"),
    ({"Subject": "Abwesenheitsnotiz: Re: hi"}, "auto_reply"),
    ({"Subject": "Out of office"}, "auto_reply"),
    ({"Subject": "Re: hi"}, "reply"),
])
def test_auto_replies(headers: dict[str, str], kind: str) -> None:
    msg = _mail(From="jane.doe@example.com", To="ana@riverside.example", **headers)
    msg.set_content("text")
    assert parse(msg.as_bytes()).kind == kind


def test_tokens_and_references() -> None:
    msg = _mail(From='"Doe, Jane" <Jane.Doe@Example.com>', To="Ana <ana+wb-0123456789@riverside.example>",
                Subject="Fwd: hi", References=f"<a@x> {OURS}", In_Reply_To=OURS)
    msg.set_content("text")
    item = parse(msg.as_bytes())
    assert item.sender == "jane.doe@example.com" and item.tokens == ("0123456789",)
    assert item.refs == ("<wb-s1-1-0123456789@riverside.example>", "<a@x>") and item.forwarded


def test_garbage_never_raises() -> None:
    assert parse(b"\x00\xff not a mail\r\n\r\n").kind == "reply"


INBOX = '\n[inbox]\nhost = "{host}"\nusername = "ana@riverside.example"\nsecurity = "{security}"\nport = 143\n'


def test_security_none_only_for_loopback(tmp_path, capsys) -> None:
    p = make_practice(tmp_path / "p", extra=INBOX.format(host="imap.riverside.example", security="none"))
    assert p.cli("check") == 2
    err = capsys.readouterr().err
    assert "[inbox] security" in err and "loopback" in err
    p = make_practice(tmp_path / "q", extra=INBOX.format(host="127.0.0.1", security="none"))
    assert p.cli("check") == 2                     # only the missing secret now
    err = capsys.readouterr().err
    assert "imap_password" in err and "[inbox] security" not in err


def test_unknown_inbox_key(tmp_path, capsys) -> None:
    p = make_practice(tmp_path / "p", extra=INBOX.format(host="127.0.0.1", security="tls") + 'pasword = "x"\n')
    assert p.cli("check") == 2
    assert "[inbox] pasword" in capsys.readouterr().err
