"""The suite-wide privacy canary: the fictional people of the tests, and what finds them.

``PEOPLE`` is the one list of fictional clients the tests use: one line per person, the
full name first, then words that alone identify them (aliases, distinctive name parts),
their email addresses and phone numbers, in any order (an ``@`` makes an email, a leading
``+`` or digit a phone number).  Adding a person is a one-line change here.

``find`` matches names and words as whole words in any case, emails in any case (and any
address at example.com/.org/.net, the domains of every test client), and phone numbers in
international and national formats (``+1 555 010 0201``, ``(555) 010-0201``,
``555-010-0201``, ``1-555-010-0201``, ``5550100201``).

``LogWatch`` sees every log record the logging system creates while a test runs, from any
logger (ours, SQLAlchemy, urllib3, googleapiclient, twilio, caldav, the root logger ...),
at the levels ``welcomeback --debug`` runs them; ``CheckedCapture`` wraps ``capsys`` so
everything a test prints goes through the same matcher (tests/conftest.py wires both).
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

PEOPLE: list[tuple[str, ...]] = [
    ("Jane Doe", "Jane", "Doe", "Janie", "jane.doe@example.com", "+1 555 010 0201"),
    ("Omar Haddad", "Omar", "Haddad", "omar.h@example.org", "+1 555 010 0202"),
    ("Rosa Lind", "Rosa", "Lind", "rosa.lind@example.net", "+1 555 010 0203"),
    ("Chris Park", "chris.park@example.com", "c.park@example.org", "+1 555 010 0204", "+1 555 010 0205"),
    ("Mia Stone", "+1 555 010 0206"),
    ("Jordan Avery", "Jordan", "Avery", "jordan.avery@example.com"),
    ("Priya Natarajan", "Priya", "Natarajan", "priya.n@example.org"),
    ("Sam Okafor", "Okafor", "Sammy", "sam.okafor@example.net"),
    ("Zephyrine Quillfeather", "Zephyrine", "Quillfeather", "Zephy", "zq.canary@example.com", "+1 555 010 4477"),
    ("Lee Fox", "lee.fox@example.com"),
    ("Alex New", "new.person@example.net"),
    ("Lucía Fernández", "Lucía", "Lucia", "Fernández", "lucia.f@example.org", "+1 555 010 0207"),
    ("Dana Whitlock", "Dana", "Whitlock", "+1 555 010 0299"),     # an emergency contact
]
# Loggers of the loopback test servers (not the product): what they log is not a leak.
TEST_SERVERS = ("mail.log", "aiosmtpd", "radicale", "tests")
_SEP = r"[\s.\-]*"


def _phone(number: str) -> str:
    """A pattern for one North American number in any common format, with or without +1."""
    digits = re.sub(r"\D", "", number)[-10:]
    area, exchange, line = digits[:3], digits[3:6], digits[6:]
    return (rf"(?<!\d)(?:\+?1{_SEP})?(?:\({area}\)|{area}){_SEP}{exchange}{_SEP}{line}(?!\d)")


def _pattern() -> re.Pattern[str]:
    parts = [r"[\w.+\-]+@example\.(?:com|org|net)\b"]
    for person in PEOPLE:
        for token in person:
            if "@" in token:
                parts.append(re.escape(token))
            elif token[0] in "+0123456789":
                parts.append(_phone(token))
            else:
                parts.append(r"\b" + r"\s+".join(map(re.escape, token.split())) + r"\b")
    return re.compile("|".join(parts), re.IGNORECASE)


PATTERN = _pattern()


def find(text: str) -> list[str]:
    """Every piece of client data in ``text``."""
    return [m.group(0) for m in PATTERN.finditer(text)]


def leaks_in(text: str, where: str) -> list[str]:
    """One line per piece of client data in ``text``, saying where it was seen."""
    return [f"{where}: {hit!r} in {text[:300]!r}" for hit in dict.fromkeys(find(text))]


def assert_no_client_data(text: str, where: str = "output") -> None:
    """For what a test captured itself (a subprocess's stdout and stderr)."""
    leaks = leaks_in(text, where)
    assert not leaks, "client data in " + where + ":\n" + "\n".join(leaks)


_STANDARD = set(logging.LogRecord("n", 10, "p", 1, "m", None, None).__dict__) | {"message", "asctime", "taskName"}


def record_text(record: logging.LogRecord) -> str:
    """All a handler could write of ``record``: message, ``extra=`` fields, exception and stack."""
    try:
        text = record.getMessage()
    except Exception:  # a broken format string: show what there is
        text = f"{record.msg} {record.args}"
    extras = [f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD]
    if record.exc_info and record.exc_info[1] is not None:
        extras.append("".join(traceback.format_exception(*record.exc_info)))
    extras += [str(x) for x in (record.exc_text, record.stack_info) if x]
    return "\n".join([text, *extras])


class LogWatch:
    """Collects every LogRecord created between ``start`` and ``stop`` (any logger, any thread)."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []
        self._previous: Any = None
        self._levels: dict[str, int] = {}

    def start(self) -> None:
        self._levels = {name: lg.level for name, lg in logging.root.manager.loggerDict.items()
                        if isinstance(lg, logging.Logger)} | {"": logging.root.level}
        _as_with_debug()
        for name in ("daemon", "connectors", "welcomeback"):      # ours: DEBUG even without --debug
            logging.getLogger(name).setLevel(logging.DEBUG)
        previous = self._previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            self.records.append(record)
            return record
        logging.setLogRecordFactory(factory)

    def stop(self) -> list[str]:
        """Stop watching, restore logger levels; the leaks seen."""
        logging.setLogRecordFactory(self._previous)
        for name, level in self._levels.items():
            logging.getLogger(name or None).setLevel(level)
        return [leak for r in self.records if not r.name.startswith(TEST_SERVERS)
                for leak in leaks_in(record_text(r), f"log {r.name} {r.levelname}")]


def _as_with_debug() -> None:
    """Logger levels exactly as ``welcomeback --debug`` sets them, without its stderr handler."""
    from daemon.service import logsetup

    root = logging.getLogger()
    handlers = root.handlers[:]
    logsetup.configure(debug=True)
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)


class CheckedCapture:
    """``capsys`` whose every read is checked by the canary, unless read as client data."""

    def __init__(self, capture: Any) -> None:
        self._capture = capture
        self.seen: list[str] = []

    def readouterr(self) -> Any:
        result = self._capture.readouterr()
        self.seen += [result.out, result.err]
        return result

    def read_client_data(self) -> Any:
        """What a command shown to the therapist printed (status --json): not checked."""
        return self._capture.readouterr()

    def leaks(self) -> list[str]:
        self.readouterr()
        return [leak for text in self.seen if text for leak in leaks_in(text, "printed")]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._capture, name)


def read_client_data(capsys: Any) -> Any:
    """``capsys.readouterr()`` for output that is client data by design (works with plain capsys)."""
    reader = getattr(capsys, "read_client_data", None)
    return reader() if reader is not None else capsys.readouterr()
