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
import threading
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from daemon.store.tables import (
    SCHEMA_VERSION,
    UPGRADES,
    audit,
    calendars,
    meta,
    metadata,
    reports,
    ts,
)

log = logging.getLogger(__name__)
_AUDIT = audit.insert()      # built once: every step's record writes one or two
_CALENDAR_ROW = sa.text("SELECT * FROM calendars WHERE name = :name")   # text: compiled in a fraction of Core's time


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
        self._local = threading.local()      # a connection pinned by ``pinned()``, per thread
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
        if self._current():
            return
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

    def _current(self) -> bool:
        """Whether the store already has this version's schema: every command opens the store,
        and checking each table (``create_all``) costs a round trip per table."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(meta.name):
                return False
            row = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).first()
            return row is not None and row[0] == str(SCHEMA_VERSION)

    @property
    def safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Connection]:
        """A transaction; under dry-run a savepoint inside one that is rolled back at close.

        ``durable=False``: committed without waiting for the disk (SQLite ``synchronous=NORMAL``
        in WAL mode, PostgreSQL ``synchronous_commit=off``).  Still atomic and in order: a power
        cut can lose it, never part of it, and the next durable commit makes it durable too.
        Only for writes whose loss is safe: the record after a hand-off (a lost record leaves
        the step ``sending``, which becomes ``uncertain``, never sent again)."""
        if not self.dry_run:
            with self._connection() as conn:
                raw: Any = None
                if not durable and self.is_sqlite:
                    raw = conn.connection.dbapi_connection
                    raw.execute("PRAGMA synchronous=NORMAL")   # not allowed inside a transaction
                try:
                    with conn.begin():
                        if not durable and conn.dialect.name == "postgresql":
                            conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                        yield conn
                finally:
                    if raw is not None:
                        raw.execute("PRAGMA synchronous=FULL")
            return
        if self._dry_conn is None:
            self._dry_conn = self.engine.connect()
            self._dry_conn.begin()
        with self._dry_conn.begin_nested():
            yield self._dry_conn

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Inside it, this thread's transactions reuse one connection: a dispatch's many short
        ones check a connection out (and, on PostgreSQL, ping it) once, not each time."""
        if self.dry_run or getattr(self._local, "conn", None) is not None:
            yield
            return
        with self.engine.connect() as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        pinned = getattr(self._local, "conn", None)
        if pinned is not None and not pinned.in_transaction() and not pinned.invalidated:
            yield pinned
            return
        with self.engine.connect() as conn:
            yield conn

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
        conn.execute(_AUDIT, {"at": ts(at), "sequence_id": sequence_id, "step_id": step_id,
                              "event": event, "detail": detail, "client_id": client_id})

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
        row = conn.execute(_CALENDAR_ROW, {"name": name}).mappings().first()
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


