"""The store's tables, its schema version and the upgrades from each older version, and the
sortable UTC text form times are kept in."""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 6


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
    sa.Column("candidates", sa.Text, nullable=False, default=""),   # schema 5: JSON ids an ambiguous one could be
    sa.Index("ix_sessions_client", "client_id"),
    sa.Index("ix_sessions_uid", "calendar", "uid"),   # schema 6: a delta poll's rows of the events it names
)


event_choices = sa.Table(
    "event_choices", metadata,        # schema 5: the client the therapist chose for an ambiguous event
    sa.Column("calendar", sa.String(200), primary_key=True),
    sa.Column("uid", sa.String(500), primary_key=True),
    sa.Column("client_id", sa.String(300), nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
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
    sa.Index("ix_audit_sequence", "sequence_id", "event"),   # schema 6: "noted once?" without a scan
)


absences = sa.Table(
    "absences", metadata,             # the therapist's out-of-office blocks, as each calendar last showed them
    sa.Column("calendar", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(500), primary_key=True),
    sa.Column("start", sa.String(40), nullable=False),
    sa.Column("end", sa.String(40), nullable=False),
)


notices = sa.Table(
    "notices", metadata,              # messages to the therapist alone: reschedule lists, safety alerts
    sa.Column("id", sa.String(60), primary_key=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("sequence_id", sa.String(40)),
    sa.Column("refs", sa.Text, nullable=False, default="[]"),   # JSON: the sequences it is about
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("due_at", sa.String(40), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),         # planned | sending | sent | skipped | failed
    sa.Column("reason", sa.Text),
    sa.Column("finished_at", sa.String(40)),
    sa.Index("ix_notices_due", "state", "due_at"),
)


inbox_folders = sa.Table(
    "inbox_folders", metadata,                 # how far each inbox folder was read
    sa.Column("account", sa.String(300), primary_key=True),
    sa.Column("folder", sa.String(300), primary_key=True),
    sa.Column("uidvalidity", sa.BigInteger, nullable=False),
    sa.Column("last_uid", sa.BigInteger, nullable=False),
    sa.Column("read_at", sa.String(40)),
)


undeliverable = sa.Table(
    "undeliverable", metadata,                 # addresses a bounce said cannot receive mail
    sa.Column("address", sa.String(320), primary_key=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("step_id", sa.String(48)),
    sa.Column("reason", sa.Text, nullable=False, default=""),
)


inbox_seen = sa.Table(
    "inbox_seen", metadata,                    # inbound items read by id (Twilio message SIDs)
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("ref", sa.String(200), primary_key=True),
    sa.Column("at", sa.String(40), nullable=False),
)


digests = sa.Table(
    "digests", metadata,                       # each therapist's digest day, claimed before it is sent
    sa.Column("therapist", sa.String(320), primary_key=True),   # the therapist's email, lower case
    sa.Column("day", sa.String(10), primary_key=True),          # the practice's local ISO date
    sa.Column("state", sa.String(20), nullable=False),          # sending | sent | uncertain
    sa.Column("claimed_by", sa.String(80), nullable=False),
    sa.Column("claimed_at", sa.String(40), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=1),
)


def ts(value: datetime | None) -> str | None:
    """A sortable UTC text form of an aware datetime."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dt(value: str | None) -> datetime | None:
    if not value:
        return None
    if len(value) == 27 and value[-1] == "Z" and value[10] == "T":
        return datetime.fromisoformat(value)    # the form ts() writes, ~40x faster than strptime
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def _add_column(table: str, column: str, ddl: str) -> Any:
    def upgrade(conn: Connection) -> None:
        names = {c["name"] for c in sa.inspect(conn).get_columns(table)}
        if column not in names:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")
    return upgrade


def _indexes(*indexes: tuple[str, str, str]) -> Any:
    """Create (name, table, columns) indexes a store made before them lacks (``create_all``
    adds no index to a table that exists)."""
    def upgrade(conn: Connection) -> None:
        for name, table, columns in indexes:
            conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})")
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
                            4: _add_column("audit", "client_id", "VARCHAR(300)"),
                            5: _add_column("sessions", "candidates", "TEXT NOT NULL DEFAULT ''"),
                            6: _indexes(("ix_audit_sequence", "audit", "sequence_id, event"),
                                        ("ix_sessions_uid", "sessions", "calendar, uid"))}


leases = sa.Table(        # one row per calendar: which replica polls it until when (daemon/store/leases.py)
    "leases", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(80), nullable=False),
    sa.Column("expires_at", sa.String(40), nullable=False),
)


source_groups = sa.Table(  # per event (UID) of an iCal feed: what its next incremental poll needs
    "source_groups", metadata,        # (connectors/calendars/ics_delta.py; daemon/store/groups.py)
    sa.Column("calendar", sa.String(200), primary_key=True),
    sa.Column("uid", sa.String(500), primary_key=True),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)


@functools.lru_cache(maxsize=128)
def text_update(table: str, columns: tuple[str, ...], keys: tuple[str, ...]) -> sa.TextClause:
    """``UPDATE table SET column = :column, … WHERE key = :at_key, …`` as text: it compiles in a
    fraction of Core's time, which counts where each statement is compiled once (a ``once``
    process).  Names are quoted ("key" and "end" are SQL words); the row's key columns are bound
    as ``at_`` + name."""
    known = set(metadata.tables[table].c.keys())
    assert set(columns) <= known and set(keys) <= known, (columns, keys)
    return sa.text(f"UPDATE {table} SET " + ", ".join(f'"{c}" = :{c}' for c in columns)
                   + " WHERE " + " AND ".join(f'"{k}" = :at_{k}' for k in keys))
