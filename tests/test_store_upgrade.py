"""The store's schema version and upgrade path: follow-ups made by an older schema survive."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from daemon import config as config_mod
from daemon.engine.places import store_url
from daemon.errors import UserError
from daemon.store.db import Store
from daemon.store.tables import SCHEMA_VERSION
from tests.conftest import local
from tests.stories import jane_no_show


def _columns(url: str, table: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_upgrade_from_schema_1_keeps_pending_follow_ups(practice, capsys):
    """On SQLite and PostgreSQL alike: drop what version 2 added, then let the store upgrade."""
    jane_no_show(practice)
    url = store_url(config_mod.load(practice.config))
    engine = sa.create_engine(url)
    with engine.begin() as conn:                              # make it look like version 1
        conn.exec_driver_sql("ALTER TABLE calendars DROP COLUMN held")
        conn.exec_driver_sql("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    engine.dispose()
    assert "held" not in _columns(url, "calendars")           # the surgery took
    store = Store(url)
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    store.close()
    assert "held" in _columns(url, "calendars")               # ...and the upgrade put it back
    assert practice.once(local(2026, 11, 4, 10, 5)) == 0
    assert [s["state"] for s in practice.status(capsys)] == ["sent", "planned"]


def test_a_newer_schema_is_refused(tmp_path):
    db = tmp_path / "s.db"
    Store(f"sqlite:///{db}").close()
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    engine.dispose()
    with pytest.raises(UserError, match=r"newer") as refused:
        Store(f"sqlite:///{db}")
    assert "99" in str(refused.value)


def test_state_file_is_private(tmp_path):
    Store(f"sqlite:///{tmp_path}/new/state.db").close()
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "new" / "state.db").stat().st_mode & 0o777 == 0o600


def test_upgrade_from_schema_2_dates_each_booking_by_its_event(tmp_path, capsys):
    """Sessions of events there at the first read get no booking date (not new bookings);
    a later one-off gets the time its event was first seen."""
    from tests.conftest import make_practice
    from tests.stories_rules import session, team

    practice = make_practice(tmp_path / "p")
    old, later = session("j1", 10, 10, "Jane Doe"), session("o1", 20, 15, "Omar Haddad")
    practice.calendar([team(), old])
    practice.once(local(2026, 11, 2, 8))
    practice.calendar([team(), old, later])
    practice.once(local(2026, 11, 4, 8))
    db = practice.root / "state.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:                              # make it look like version 2
        conn.exec_driver_sql("ALTER TABLE sessions DROP COLUMN booked_at")
        conn.exec_driver_sql("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    engine.dispose()
    Store(f"sqlite:///{db}").close()
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        booked = dict(conn.exec_driver_sql("SELECT key, booked_at FROM sessions").all())
        version = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema_version'").scalar_one()
    engine.dispose()
    assert version == str(SCHEMA_VERSION)
    assert booked == {"j1": None, "o1": "2026-11-04T13:00:00.000000Z"}


def test_upgrade_to_schema_6_adds_its_indexes(practice):
    """A store made before schema 6 gains its indexes (create_all adds no index to a table that
    exists): the contact log's by follow-up (noting an invitation once never scans the whole
    log) and the sessions' by event (a delta poll's rows of the UIDs it names)."""
    jane_no_show(practice)
    url = store_url(config_mod.load(practice.config))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_audit_sequence")
        conn.exec_driver_sql("DROP INDEX ix_sessions_uid")
        conn.exec_driver_sql("UPDATE meta SET value = '5' WHERE key = 'schema_version'")

    def indexes() -> set[str]:
        return {i["name"] for table in ("audit", "sessions") for i in sa.inspect(engine).get_indexes(table)}

    try:
        assert not {"ix_audit_sequence", "ix_sessions_uid"} & indexes()
        Store(url).close()
        assert {"ix_audit_sequence", "ix_sessions_uid"} <= indexes()
    finally:
        engine.dispose()
