"""Store access for what a calendar source keeps per event between polls (``FetchResult.kept``,
``SourceContext.memo``): one row per (calendar, UID) in ``source_groups``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from daemon.store.tables import source_groups

CHUNK = 500


def hashes(conn: Connection, calendar: str) -> dict[str, str]:
    """UID → hash for one calendar."""
    rows = conn.execute(sa.select(source_groups.c.uid, source_groups.c.hash)
                        .where(source_groups.c.calendar == calendar)).all()
    return {r[0]: r[1] for r in rows}


def data(conn: Connection, calendar: str, uids: list[str]) -> dict[str, str]:
    """UID → data for those of ``uids`` the calendar has."""
    out: dict[str, str] = {}
    for i in range(0, len(uids), CHUNK):
        out.update((r[0], r[1]) for r in conn.execute(
            sa.select(source_groups.c.uid, source_groups.c.data)
            .where(source_groups.c.calendar == calendar, source_groups.c.uid.in_(uids[i:i + CHUNK]))).all())
    return out


def save(conn: Connection, calendar: str, result: Any) -> None:
    """Write what ``result`` (a FetchResult) keeps: replace all, or only the UIDs it names."""
    kept: dict[str, tuple[str, str] | None] | None = getattr(result, "kept", None)
    if kept is None:
        return
    mine = source_groups.c.calendar == calendar
    if result.kept_reset:
        conn.execute(source_groups.delete().where(mine))
    else:
        uids = list(kept)
        for i in range(0, len(uids), CHUNK):
            conn.execute(source_groups.delete().where(mine, source_groups.c.uid.in_(uids[i:i + CHUNK])))
    rows = [{"calendar": calendar, "uid": uid, "hash": r[0], "data": r[1]}
            for uid, r in kept.items() if r is not None]
    if rows:
        conn.execute(source_groups.insert(), rows)
