"""Store access for what a calendar source keeps per event between polls (``FetchResult.kept``,
``SourceContext.memo``): one row per (calendar, UID) in ``source_groups``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from daemon.store.tables import source_groups

CHUNK = 500


# As text: each compiles in a fraction of Core's time (once per ``once`` process); the same SQL.
_HASHES = sa.text("SELECT uid, hash FROM source_groups WHERE calendar = :calendar")
_DATA = sa.text("SELECT uid, data FROM source_groups WHERE calendar = :calendar AND uid IN :uids").bindparams(
    sa.bindparam("uids", expanding=True))
_DELETE = sa.text("DELETE FROM source_groups WHERE calendar = :calendar AND uid IN :uids").bindparams(
    sa.bindparam("uids", expanding=True))
_INSERT = sa.text("INSERT INTO source_groups (calendar, uid, hash, data) VALUES (:calendar, :uid, :hash, :data)")


def hashes(conn: Connection, calendar: str) -> dict[str, str]:
    """UID → hash for one calendar."""
    return {r[0]: r[1] for r in conn.execute(_HASHES, {"calendar": calendar}).all()}


def data(conn: Connection, calendar: str, uids: list[str]) -> dict[str, str]:
    """UID → data for those of ``uids`` the calendar has."""
    out: dict[str, str] = {}
    for i in range(0, len(uids), CHUNK):
        out.update((r[0], r[1]) for r in conn.execute(_DATA, {"calendar": calendar, "uids": uids[i:i + CHUNK]}).all())
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
            conn.execute(_DELETE, {"calendar": calendar, "uids": uids[i:i + CHUNK]})
    rows = [{"calendar": calendar, "uid": uid, "hash": r[0], "data": r[1]}
            for uid, r in kept.items() if r is not None]
    if rows:
        conn.execute(_INSERT, rows)
