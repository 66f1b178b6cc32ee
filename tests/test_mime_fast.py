"""The direct MIME writer (``mime.direct_bytes``) against the email package's path.

A recipient parses both with the standard parser: the same headers in the same order with the
same decoded values, the same structure, content types, charsets, transfer encodings and
decoded bodies; every line ends with the requested line separator and fits 998 octets.  The
boundary is the only thing allowed to differ (the email package's is random).
"""

from __future__ import annotations

import email.parser
import email.policy
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from connectors.channels import mime
from connectors.channels.base import ChannelContext, Message
from daemon.clock import FixedClock
from daemon.templating.templates import Templates, sample_context

PARSER = email.parser.BytesParser(policy=email.policy.default)
T0 = datetime(2026, 3, 4, 9, 30, tzinfo=timezone.utc)
ZONES = [timezone.utc, ZoneInfo("Europe/Berlin"), ZoneInfo("America/St_Johns"), ZoneInfo("Asia/Kathmandu")]

# Pieces that stress the header writer: specials, quoting, encoded-word look-alikes, accents,
# CJK, emoji (astral), non-ASCII spaces and format characters, double spaces; control
# characters now and then.
PIECES = (list("abcXYZ019 '!#$%&*+-/=?^_`{|}~") + list('"\\,.;:<>@()[]') +
          ["é", "ü", "ß", "Å", "ø", "ñ", "ł", "日本", "中文", "한국어", "😀", "👍🏽",
           "\u00a0", "\u3000", "\u200b", "\u00ad", "\u200d", "=?", "?=", "=?utf-8?q?x?=", "From ", "  "])
CONTROL = ["\t", "\n", "\r", "\x7f", "\x00", "\udce9"]   # (and a lone surrogate: not text at all)
WORD = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)
WORDS = st.lists(st.sampled_from(["Termin", "Grüße", "Praxis", "wir", "vermissen", "Sie", "日本語", "—",
                                  "(Praxis)", "Dr.", "x" * 70, "é" * 40]), max_size=30).map(" ".join)
NAMES = st.sampled_from(["", "Anna Beispiel", "Dr. Anna Beispiel", "José Müller", "Müller, Hans",
                         'Anna "Nan" Beispiel', "O'Brien (Praxis)", "佐藤 花子", "Ελένη", "a\\b",
                         " Anna", "Anna ", "Anna  Beispiel", "Ana María de la Cruz Fernández-Villaverde",
                         "Zoë 😀", "Praxis am Markt – Dr. Weiß", "x" * 80])
TEXT = st.one_of(NAMES, st.lists(WORD, max_size=6).map(" ".join), WORDS)
BROKEN_TEXT = st.builds(lambda a, c, b: a + c + b, WORD, st.sampled_from(CONTROL), WORD)
LOCAL = st.one_of(st.sampled_from(["anna", "anna.beispiel", "a+wb-0123456789", "o'brien", "x_y"]),
                  st.from_regex(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\.[a-z0-9-]{1,10}){0,2}", fullmatch=True))
DOMAIN = st.sampled_from(["example.org", "mail.example", "müller.example", "例え.jp", "bücher.de",
                          "xn--mller-kva.example", "a-b.c-d.example", "sub." + "d" * 50 + ".example"])
ADDRESS = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN)
BROKEN_ADDRESS = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", LOCAL,
              st.sampled_from(["bad..example", "under_score.example", "x" * 64 + ".example",
                               "ü" * 70 + ".example", ""])),
    st.builds(lambda local, domain: f"{local}@{domain}",
              st.sampled_from(["a..b", ".a", "a b", '"quoted"', "jösé", "a@b", "", "a\n"]), DOMAIN))
LINE = st.one_of(
    st.lists(st.sampled_from(PIECES + ["Hallo", "Grüße", "\t", "\x0c", "\x85", "\u2028", "\udce9"]),
             max_size=12).map("".join),
    st.sampled_from(["From here on", ".", "..", "trailing space ", "tab\t", "x" * 999, "é" * 500,
                     "a" * 997 + "é", "=3D=", "-- ", "--===============0000000000000000000=="]),
)
BODY = st.builds(lambda lines, seps: "".join(l + s for l, s in zip(lines, seps)),
                 st.lists(LINE, max_size=8), st.lists(st.sampled_from(["\n", "\r\n", "\r", "\n\n", ""]),
                                                      min_size=8, max_size=8))
MESSAGE_ID = st.sampled_from(["<wb-s0123456789ab-0123456789@example.org>", "",
                              "<wb-" + "s" * 80 + "@example.org>", "<a b@example.org>", "plain"])


@st.composite
def cases(draw: st.DrawFn) -> tuple[Message, ChannelContext, bool, str]:
    """A message and context; about a third have one field broken (a control character, an
    address the email package refuses), which must fail the same way on both paths."""
    broken = draw(st.sampled_from(["", "", "", "practice_name", "sender_name", "to_name", "subject",
                                   "sender", "to_address", "reply_to"][:draw(st.sampled_from([3, 10]))]))

    def text(field: str) -> str:
        return draw(BROKEN_TEXT if field == broken else TEXT)

    def address(field: str) -> str:
        return draw(BROKEN_ADDRESS if field == broken else ADDRESS)

    context = ChannelContext(base_dir=Path("."), state_dir=Path("."), timezone=draw(st.sampled_from(ZONES)),
                             clock=FixedClock(draw(st.datetimes(min_value=datetime(2000, 1, 1),
                                                                max_value=datetime(2060, 1, 1),
                                                                timezones=st.just(timezone.utc)))),
                             secret=lambda key: "", practice_name=text("practice_name"), therapist_name="Ana Ruiz",
                             therapist_email="ana@example.org", sender=address("sender"),
                             sender_name=text("sender_name") if broken == "sender_name" or draw(st.booleans())
                             else "")
    message = Message(step_id="s0123456789ab", sequence_id="q1", audience="client",
                      to_address=address("to_address"), to_name=text("to_name"), subject=text("subject"),
                      text=draw(BODY),
                      html=draw(st.one_of(st.none(), st.just(""), BODY.map(lambda b: f"<p>{b}</p>"))),
                      message_id=draw(MESSAGE_ID),
                      reply_to=address("reply_to") if broken == "reply_to" or draw(st.booleans()) else None)
    return message, context, draw(st.booleans()), draw(st.sampled_from(["\n", "\r\n"]))


def reference(message: Message, context: ChannelContext, eight_bit: bool, linesep: str) -> bytes:
    """What ``email_bytes`` wrote before the direct writer: the email package's bytes."""
    mail = mime.build_email(message, context, eight_bit=eight_bit)
    try:
        return mail.as_bytes(policy=mail.policy.clone(linesep=linesep))
    except (ValueError, TypeError) as exc:
        raise mime.Unencodable(f"the message cannot be encoded as email ({type(exc).__name__})") from None


def outcome(fn, *args, **kwargs) -> bytes | str:  # type: ignore[no-untyped-def]
    """The bytes, or the exception raised (some malformed addresses escape as the email
    package's HeaderParseError today; the direct path must not change that either)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def assert_lines(data: bytes, linesep: str) -> None:
    sep = linesep.encode()
    assert data.endswith(sep)
    lines = data[:-len(sep)].split(sep)
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert max(len(line) for line in lines) <= 998


def assert_folded(data: bytes, linesep: str) -> None:
    """Header lines fit 78 characters (a Message-ID cannot be folded: it is kept whole)."""
    head = data.split((linesep * 2).encode(), 1)[0].split(linesep.encode())
    assert all(len(line) <= 78 for line in head if not line.startswith(b"Message-ID:"))


def assert_same_headers(direct: EmailMessage, expected: EmailMessage, clean: bool) -> None:
    assert direct.keys() == expected.keys()
    for (name, value), (_, want) in zip(direct.items(), expected.items()):
        assert not (clean and value.defects), (name, value.defects)
        if name.lower() == "content-type":
            assert value.content_type == want.content_type
            assert {k: v for k, v in value.params.items() if k != "boundary"} == \
                   {k: v for k, v in want.params.items() if k != "boundary"}
            assert ("boundary" in value.params) == ("boundary" in want.params)
            continue
        assert str(value) == str(want), name
        if hasattr(want, "addresses"):
            assert [(a.display_name, a.addr_spec) for a in value.addresses] == \
                   [(a.display_name, a.addr_spec) for a in want.addresses]


def assert_same_message(direct: bytes, expected: bytes, clean: bool = True) -> None:
    """Read alike; ``clean``: and ``direct`` without defects."""
    got, want = PARSER.parsebytes(direct), PARSER.parsebytes(expected)
    assert not (clean and got.defects)
    got_parts, want_parts = list(got.walk()), list(want.walk())
    assert len(got_parts) == len(want_parts)
    for part, want_part in zip(got_parts, want_parts):
        assert_same_headers(part, want_part, clean)
        assert part.get_content_type() == want_part.get_content_type()
        assert part.get_content_charset() == want_part.get_content_charset()
        assert part.get("Content-Transfer-Encoding") == want_part.get("Content-Transfer-Encoding")
        if not part.is_multipart():
            assert part.get_content() == want_part.get_content()
            assert part.get_payload(decode=True) == want_part.get_payload(decode=True)
    boundary = got.get_boundary()
    if boundary is not None:
        assert all(boundary not in str(p.get_payload()) for p in got_parts[1:])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_direct_bytes_read_like_the_email_package(case: tuple[Message, ChannelContext, bool, str]) -> None:
    message, context, eight_bit, linesep = case
    expected = outcome(reference, message, context, eight_bit, linesep)
    direct = mime.direct_bytes(message, context, eight_bit=eight_bit, linesep=linesep)
    event("cannot be encoded" if isinstance(expected, str) else "fallback" if direct is None else
          f"direct, {'non-ASCII' if not (message.to_name + context.practice_name).isascii() else 'ASCII'} "
          f"names, {'multipart' if message.html else 'one part'}")
    if isinstance(expected, str):     # a message that cannot be encoded goes the email package's way
        assert direct is None
        assert outcome(mime.email_bytes, message, context, eight_bit=eight_bit, linesep=linesep) == expected
        return
    assert_lines(expected, linesep)
    if direct is None:                # the email package's way, as before
        assert_same_message(mime.email_bytes(message, context, eight_bit=eight_bit, linesep=linesep), expected,
                            clean=False)
        return
    assert_lines(direct, linesep)
    assert_folded(direct, linesep)
    assert_same_message(direct, expected)
    assert mime.email_bytes(message, context, eight_bit=eight_bit, linesep=linesep) == direct


COMMON_NAME = st.one_of(st.from_regex(r"[A-Z][a-z]{1,12}( [A-Z][a-z]{1,14}){0,2}", fullmatch=True),
                        st.sampled_from(["José Müller", "Zoë Brontë", "Ana María Pérez", "Søren Kierkegaard",
                                         "François Dupré-Lefèvre", "Łukasz Żółkiewski", "佐藤 花子",
                                         "Ελένη Παπαδοπούλου", "Dr. Jörg Weiß", "Müller, Hans"]))
COMMON_SUBJECT = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9,.!?'()-]{0,15}( [A-Za-z0-9,.!?'()-]{1,15}){0,8}",
                               fullmatch=True)
COMMON_BODY = BODY.map(lambda body: body.replace("\udce9", "é"))      # text, not a lone surrogate
COMMON_ADDRESS = st.from_regex(r"[a-z]{1,12}(\.[a-z]{1,12})?@[a-z]{2,12}\.(org|com|de|example)", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(name=COMMON_NAME, sender=st.one_of(st.just(""), COMMON_NAME), subject=COMMON_SUBJECT, to=COMMON_ADDRESS,
       text=COMMON_BODY, eight_bit=st.booleans(), linesep=st.sampled_from(["\n", "\r\n"]), html=st.booleans())
def test_the_common_message_takes_the_direct_path(name: str, sender: str, subject: str, to: str, text: str,
                                                  eight_bit: bool, linesep: str, html: bool) -> None:
    """Everyday names (accents too), subjects and addresses, any body: never the fallback."""
    context = ChannelContext(base_dir=Path("."), state_dir=Path("."), timezone=ZoneInfo("Europe/Berlin"),
                             clock=FixedClock(T0), secret=lambda key: "", practice_name="Riverside Counselling",
                             therapist_name="Ana Ruiz", therapist_email="ana@example.org",
                             sender="hello@riverside.example", sender_name=sender)
    message = Message(step_id="s0123456789ab", sequence_id="q1", audience="client", to_address=to,
                      to_name=name, subject=subject, text=text, html=f"<p>{text}</p>" if html else None,
                      message_id="<wb-s0123456789ab-0123456789@riverside.example>",
                      reply_to="ana+wb-0123456789@riverside.example")
    direct = mime.direct_bytes(message, context, eight_bit=eight_bit, linesep=linesep)
    if "--===============" in text:
        return                        # could meet the boundary: the fallback is allowed
    assert direct is not None
    assert_lines(direct, linesep)
    assert_folded(direct, linesep)
    assert_same_message(direct, reference(message, context, eight_bit, linesep))


def default_messages(tmp: Path) -> list[Message]:
    templates = Templates(tmp)
    out = []
    for name in ("email_followup", "phone_call"):
        for language in ["", *templates.languages(name)]:
            rendered = templates.render(name, sample_context(), audience="client", language=language)
            out.append(Message(step_id="s0123456789ab", sequence_id="q1", audience="client",
                               to_address="sam.example@example.invalid", to_name="Sam Example",
                               subject=rendered.subject, text=rendered.text, html=rendered.html,
                               message_id="<wb-s0123456789ab-0123456789@riverside.example>",
                               reply_to="ana@riverside.example"))
    return out


@pytest.mark.parametrize("eight_bit,linesep", [(True, "\n"), (False, "\r\n")])   # outbox, SMTP
def test_default_templates_take_the_direct_path(tmp_path: Path, eight_bit: bool, linesep: str) -> None:
    context = ChannelContext(base_dir=tmp_path, state_dir=tmp_path, timezone=ZoneInfo("Europe/Berlin"),
                             clock=FixedClock(T0), secret=lambda key: "", practice_name="Riverside Counselling",
                             therapist_name="Ana Ruiz", therapist_email="ana@riverside.example",
                             sender="hello@riverside.example", sender_name="Ana Ruiz (Riverside)")
    messages = default_messages(tmp_path)
    assert len(messages) >= 4 and any(m.html for m in messages) and any(not m.text.isascii() for m in messages)
    for message in messages:
        direct = mime.direct_bytes(message, context, eight_bit=eight_bit, linesep=linesep)
        assert direct is not None, message.subject
        assert mime.email_bytes(message, context, eight_bit=eight_bit, linesep=linesep) == direct
        assert_lines(direct, linesep)
        assert_folded(direct, linesep)
        assert_same_message(direct, reference(message, context, eight_bit, linesep))


def test_the_boundary_never_occurs_in_a_body() -> None:
    context = ChannelContext(base_dir=Path("."), state_dir=Path("."), timezone=timezone.utc,
                             clock=FixedClock(T0), secret=lambda key: "", practice_name="P",
                             therapist_name="T", therapist_email="t@example.org", sender="p@example.org")
    plain = Message(step_id="s1", sequence_id="q", audience="client", to_address="a@example.org",
                    to_name="A", subject="S", text="hi\n", html="<p>hi</p>", message_id="<m@example.org>")
    data = mime.direct_bytes(plain, context)
    assert data is not None
    boundary = PARSER.parsebytes(data).get_boundary()
    assert boundary and boundary.encode() in data
    clash = Message(**{**plain.__dict__, "text": f"look: {boundary}\n"})
    assert mime.direct_bytes(clash, context) is None
    assert_same_message(mime.email_bytes(clash, context), reference(clash, context, False, "\n"))
