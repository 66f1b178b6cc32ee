"""Durable state: SQLAlchemy Core on SQLite (default) or PostgreSQL.

All domain state lives here (sessions seen, sequences, steps, reports,
audit), so the scheduler carries none.  The schema is versioned; upgrades run
in order at start.  A SQLite file is created 0600 in a 0700 folder.
Sending follows the outbox discipline: ``claim`` commits ``sending`` before
the hand-off, ``finish`` records the result; a ``sending`` row left by a dead
process becomes ``uncertain`` and is never sent again.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)
SCHEMA_VERSION = 4
metadata = sa.MetaData()

meta = sa.Table("meta", metadata,
                sa.Column("key", sa.String(64), primary_key=True),
                sa.Column("value", sa.Text, nullable=False))

calendars = sa.Table(
    "calendars", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("first_seen_at", sa.String(40)),
    sa.Column("last_poll_at", sa.String(40)),
    sa.Column("last_ok_at", sa.String(40)),
    sa.Column("state_json", sa.Text, nullable=False, default="{}"),
    sa.Column("degraded", sa.Text),
    sa.Column("degraded_since", sa.String(40)),
    sa.Column("held", sa.Text),          # schema 2: what the vanish breaker holds back
)

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("calendar", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(500), primary_key=True),
    sa.Column("uid", sa.String(500), nullable=False),
    sa.Column("start", sa.String(40), nullable=False),
    sa.Column("end", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("client_id", sa.String(300)),
    sa.Column("client_name", sa.Text, nullable=False, default=""),
    sa.Column("client_email", sa.Text, nullable=False, default=""),
    sa.Column("ambiguous", sa.Text, nullable=False, default=""),
    sa.Column("no_show", sa.Boolean, nullable=False, default=False),
    sa.Column("reached", sa.Boolean, nullable=False, default=False),
    sa.Column("present", sa.Boolean, nullable=False, default=True),
    sa.Column("first_seen_at", sa.String(40)),
    sa.Column("last_seen_at", sa.String(40)),
    sa.Column("cancelled_at", sa.String(40)),
    sa.Column("booked_at", sa.String(40)),   # schema 3: when its event first appeared; NULL: there at the first read
    sa.Index("ix_sessions_client", "client_id"),
)

client_flags = sa.Table(
    "client_flags", metadata,
    sa.Column("client_id", sa.String(300), primary_key=True),
    sa.Column("opted_out_at", sa.String(40)),
    sa.Column("opted_out_channels", sa.Text, nullable=False, default=""),
    sa.Column("reached_at", sa.String(40)),
)

sequences = sa.Table(
    "sequences", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("calendar", sa.String(200), nullable=False),
    sa.Column("session_key", sa.String(500), nullable=False),
    sa.Column("session_start", sa.String(40), nullable=False),
    sa.Column("trigger", sa.String(20), nullable=False),
    sa.Column("client_id", sa.String(300), nullable=False),
    sa.Column("client_name", sa.Text, nullable=False, default=""),
    sa.Column("client_email", sa.Text, nullable=False, default=""),
    sa.Column("detected_at", sa.String(40), nullable=False),
    sa.Column("closed_at", sa.String(40)),
    sa.Column("closed_reason", sa.String(40)),
    sa.UniqueConstraint("calendar", "session_key", "trigger", name="uq_sequence_trigger"),
    sa.Index("ix_sequences_client", "client_id"),
)

steps = sa.Table(
    "steps", metadata,
    sa.Column("id", sa.String(48), primary_key=True),
    sa.Column("sequence_id", sa.String(40), sa.ForeignKey("sequences.id"), nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("template", sa.String(200), nullable=False),
    sa.Column("due_at", sa.String(40), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("claimed_by", sa.String(80)),
    sa.Column("claimed_at", sa.String(40)),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("provider_id", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.UniqueConstraint("sequence_id", "n", name="uq_step_n"),
    sa.Index("ix_steps_due", "state", "due_at"),
)

reports = sa.Table(
    "reports", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("calendar", sa.String(200), nullable=False, default=""),
    sa.Column("ref", sa.String(600), nullable=False, default=""),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("notified", sa.Boolean, nullable=False, default=False),
    sa.UniqueConstraint("kind", "calendar", "ref", name="uq_report"),
)

audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("sequence_id", sa.String(40)),
    sa.Column("step_id", sa.String(48)),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("client_id", sa.String(300)),   # schema 4: what the therapist did for a client
)


def ts(value: datetime | None) -> str | None:
    """A sortable UTC text form of an aware datetime."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dt(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


class Store:
    """The database.  ``transaction()`` is the only way to write."""

    def __init__(self, url: str, *, dry_run: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self._prepare_sqlite_file(url)
        self.engine: Engine = sa.create_engine(url, future=True, pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        self.dry_run = dry_run
        self._dry_conn: Connection | None = None
        self.upgrade()

    @staticmethod
    def _prepare_sqlite_file(url: str) -> None:
        path = Path(url.split("///", 1)[1]) if "///" in url else None
        if path is None or str(path) in ("", ":memory:"):
            return
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)

    def upgrade(self) -> None:
        """Create tables or upgrade an older schema; refuses a newer one."""
        with self.engine.begin() as conn:
            metadata.create_all(conn)
            row = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).first()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                from daemon.errors import UserError

                raise UserError(f"the store {self.safe_url} has schema version {current}, newer than "
                                f"this welcomeback ({SCHEMA_VERSION}); upgrade welcomeback")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                UPGRADES.get(version, lambda c: None)(conn)
            if current != SCHEMA_VERSION:
                if row:
                    conn.execute(meta.update().where(meta.c.key == "schema_version")
                                 .values(value=str(SCHEMA_VERSION)))
                else:
                    conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))

    @property
    def safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction; under dry-run a savepoint inside one that is rolled back at close."""
        if not self.dry_run:
            with self.engine.begin() as conn:
                yield conn
            return
        if self._dry_conn is None:
            self._dry_conn = self.engine.connect()
            self._dry_conn.begin()
        with self._dry_conn.begin_nested():
            yield self._dry_conn

    def close(self) -> None:
        if self._dry_conn is not None:
            self._dry_conn.rollback()
            self._dry_conn.close()
            self._dry_conn = None
        self.engine.dispose()

    # -- small helpers -------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self.transaction() as conn:
            row = conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).first()
            return row[0] if row else None

    def audit(self, conn: Connection, at: datetime, event: str, *, sequence_id: str | None = None,
              step_id: str | None = None, detail: str = "", client_id: str | None = None) -> None:
        """One contact-log entry (``client_id``: an action on the client, not on one follow-up)."""
        conn.execute(audit.insert().values(at=ts(at), sequence_id=sequence_id, step_id=step_id,
                                           event=event, detail=detail, client_id=client_id))

    def report(self, conn: Connection, at: datetime, kind: str, calendar: str, ref: str,
               detail: str) -> bool:
        """Record something for the therapist once; returns True when it is new."""
        exists = conn.execute(sa.select(reports.c.id).where(
            reports.c.kind == kind, reports.c.calendar == calendar, reports.c.ref == ref)).first()
        if exists:
            return False
        conn.execute(reports.insert().values(at=ts(at), kind=kind, calendar=calendar, ref=ref,
                                             detail=detail, notified=False))
        return True

    def resolve(self, conn: Connection, kind: str, calendar: str, ref: str | None = None) -> None:
        """Forget reports that no longer hold (a calendar healthy again, a template fixed)."""
        query = reports.delete().where(reports.c.kind == kind, reports.c.calendar == calendar)
        if ref is not None:
            query = query.where(reports.c.ref == ref)
        conn.execute(query)

    def calendar_row(self, conn: Connection, name: str) -> dict[str, Any]:
        row = conn.execute(sa.select(calendars).where(calendars.c.name == name)).mappings().first()
        if row is None:
            conn.execute(calendars.insert().values(name=name, state_json="{}"))
            return {"name": name, "first_seen_at": None, "last_poll_at": None, "last_ok_at": None,
                    "state_json": "{}", "degraded": None, "degraded_since": None, "held": None}
        return dict(row)

    def calendar_state(self, row: dict[str, Any]) -> dict[str, Any]:
        try:
            return json.loads(row.get("state_json") or "{}")
        except ValueError:
            return {}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None   # let SQLAlchemy issue BEGIN (savepoints work, see below)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    """BEGIN IMMEDIATE: take the write lock up front, so two writers queue instead of failing."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _add_column(table: str, column: str, ddl: str) -> Any:
    def upgrade(conn: Connection) -> None:
        names = {c["name"] for c in sa.inspect(conn).get_columns(table)}
        if column not in names:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")
    return upgrade


def _booked_at(conn: Connection) -> None:
    """Schema 3: each session's ``booked_at`` is when its event (UID) was first seen on its
    calendar; sessions of events already there at the calendar's first read get NULL."""
    _add_column("sessions", "booked_at", "VARCHAR(40)")(conn)
    conn.exec_driver_sql(
        "UPDATE sessions SET booked_at = (SELECT MIN(s2.first_seen_at) FROM sessions s2 "
        "WHERE s2.calendar = sessions.calendar AND s2.uid = sessions.uid)")
    conn.exec_driver_sql(
        "UPDATE sessions SET booked_at = NULL WHERE booked_at IS NULL OR booked_at <= "
        "(SELECT c.first_seen_at FROM calendars c WHERE c.name = sessions.calendar)")


# version → function(conn) that brings the previous version up to it
UPGRADES: dict[int, Any] = {1: lambda conn: None, 2: _add_column("calendars", "held", "TEXT"), 3: _booked_at,
                            4: _add_column("audit", "client_id", "VARCHAR(300)")}
