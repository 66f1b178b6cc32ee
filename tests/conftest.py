"""Shared fixtures: a practice folder with config, directory and calendar, driven through the CLI."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.cli import main
from tests import canary
from tests.ics import Ev, write

NY = ZoneInfo("America/New_York")
ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"

CLIENTS = """name,aliases,email,phone,preferred_channel,do_not_contact
Jane Doe,Janie,jane.doe@example.com,+1 555 010 0201,phone,false
Omar Haddad,,omar.h@example.org,+1 555 010 0202,email,false
Rosa Lind,,rosa.lind@example.net,+1 555 010 0203,,true
Chris Park,,chris.park@example.com,+1 555 010 0204,,false
Chris Park,,c.park@example.org,+1 555 010 0205,,false
Mia Stone,,,+1 555 010 0206,,false
"""

CONFIG = """
[practice]
name = "Riverside Counselling"
therapist = "Ana Ruiz"
therapist_email = "ana@riverside.example"
timezone = "America/New_York"
working_hours = "Mon-Fri 09:00-17:00"

[store]
{store}

[[calendars]]
name = "main"
kind = "ics"
source = "practice.ics"

[clients]
directory = "clients.csv"

[channels.email]
backend = "outbox"
outbox = "outbox"
from = "ana@riverside.example"

[channels.phone]
backend = "therapist-email"
{extra}
"""


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)


@dataclass
class Practice:
    """A practice folder; ``once(now)`` runs one cycle through the real CLI."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def calendar(self, events: list[Ev]) -> None:
        write(self.root / "practice.ics", events)

    def cli(self, *args: str) -> int:
        return main(["--config", str(self.config), *args])

    def once(self, now: datetime, *extra: str) -> int:
        return self.cli("once", "--now", now.isoformat(), *extra)

    def status(self, capsys: Any, now: datetime | None = None) -> list[dict[str, Any]]:
        """The follow-ups as ``status --json`` lists them (client data by design: not canary-checked)."""
        capsys.readouterr()
        args = ["status", "--json"] + (["--now", now.isoformat()] if now else [])
        assert self.cli(*args) == 0
        return json.loads(canary.read_client_data(capsys).out)

    def mails(self) -> list[str]:
        if not self.outbox.exists():
            return []
        return sorted(p.read_text() for p in self.outbox.glob("*.eml"))

    def mails_to(self, address: str) -> list[str]:
        return [m for m in self.mails() if "To: " in m and address in m.split("To:", 1)[1].splitlines()[0]]


def make_practice(root: Path, *, store: str = 'path = "state.db"', extra: str = "") -> Practice:
    root.mkdir(parents=True, exist_ok=True)
    (root / "clients.csv").write_text(CLIENTS)
    (root / "config.toml").write_text(CONFIG.format(store=store, extra=extra))
    write(root / "practice.ics", [])
    return Practice(root)


def store_rows(p: Practice, query: Any) -> list[Any]:
    """Rows of the practice's store, SQLite or PostgreSQL (whichever its config names), read
    through the product's own Store."""
    from daemon.config import load
    from daemon.engine.places import store_url
    from daemon.store.db import Store

    db = Store(store_url(load(p.config)))
    try:
        with db.transaction() as conn:
            return list(conn.execute(query))
    finally:
        db.close()


PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_BASE, connect_timeout=2):
            return True
    except Exception:
        return False


@pytest.fixture
def pg_schema() -> Any:
    """A fresh schema in the local PostgreSQL; yields a store URL that uses it."""
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    import uuid

    import psycopg

    name = "wb_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def practice(request: pytest.FixtureRequest, tmp_path: Path) -> Practice:
    """Every scenario runs on SQLite and, where reachable, on PostgreSQL."""
    if request.param == "sqlite":
        return make_practice(tmp_path / "practice")
    url = request.getfixturevalue("pg_schema")
    return make_practice(tmp_path / "practice", store=f'url = "{url}"')


for _server in ("mail.log", "radicale"):        # the loopback test servers' chatter (even under --debug)
    logging.getLogger(_server).setLevel(logging.WARNING)


@pytest.fixture
def capsys(capsys: pytest.CaptureFixture[str]) -> canary.CheckedCapture:
    """pytest's capsys, with everything read through it checked by the privacy canary."""
    return canary.CheckedCapture(capsys)


@pytest.fixture(autouse=True)
def _no_client_data_in_logs_or_output(request: pytest.FixtureRequest, capsys: canary.CheckedCapture) -> Any:
    """Privacy, suite-wide (tests/canary.py): every log record of any logger, at the levels
    ``--debug`` runs them, and everything the test printed, must name none of the canary
    people.  A test marked ``shows_client_data`` (a command whose purpose is to show the
    therapist client data on their own terminal) has only its printed output exempt."""
    watch = canary.LogWatch()
    watch.start()
    try:
        yield
    finally:
        leaks = watch.stop()
        _drop_cli_log_handlers()
    if request.node.get_closest_marker("shows_client_data") is None:
        leaks += capsys.leaks()
    assert not leaks, "client data in logs or output:\n" + "\n".join(leaks)


def _drop_cli_log_handlers() -> None:
    """The stderr handlers ``welcomeback`` installed on the root logger, bound to this test's
    captured stream: a later test must not write into a closed one."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)


@pytest.fixture(autouse=True)
def _no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch a real keyring."""
    monkeypatch.setenv("WELCOMEBACK_NO_KEYRING", "1")
    monkeypatch.delenv("WELCOMEBACK_CONFIG", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
