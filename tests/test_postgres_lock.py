"""Several replicas on one PostgreSQL store: exactly one dispatches."""

from __future__ import annotations

import sqlalchemy as sa

from daemon.store.lock import AdvisoryLock


def test_one_dispatcher_among_replicas(pg_schema):
    url = pg_schema.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    first, second = AdvisoryLock(engine, url), AdvisoryLock(engine, url)
    try:
        assert first.acquire() is True          # a direct connection keeps its session: accepted
        assert second.acquire() is False        # another replica only polls
        first.release()
        assert second.acquire() is True         # the lock moves when the dispatcher goes
    finally:
        first.release()
        second.release()
        engine.dispose()


def test_stores_sharing_a_server_do_not_share_the_lock(pg_schema):
    url = pg_schema.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    a, b = AdvisoryLock(engine, url), AdvisoryLock(engine, url + "&application_name=other")
    a_again = AdvisoryLock(engine, url)
    try:
        assert a.acquire() is True and b.acquire() is True
        assert a_again.acquire() is False       # the locks are real: a's store is still taken
    finally:
        a.release()
        b.release()
        a_again.release()
        engine.dispose()
