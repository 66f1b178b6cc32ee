"""Store bookkeeping for the practice inbox: how far each folder was read (UIDVALIDITY and
the last UID, written in the same transaction as what a message caused) and the addresses
a bounce marked undeliverable."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from daemon.store.tables import inbox_folders, inbox_seen, ts, undeliverable


def position(conn: Connection, account: str, folder: str) -> tuple[int, int] | None:
    """(UIDVALIDITY, last UID) of a folder read before, else None."""
    row = conn.execute(sa.select(inbox_folders.c.uidvalidity, inbox_folders.c.last_uid).where(
        inbox_folders.c.account == account, inbox_folders.c.folder == folder)).first()
    return (int(row[0]), int(row[1])) if row else None


def advance(conn: Connection, account: str, folder: str, uidvalidity: int, uid: int, now: datetime) -> None:
    """Note that every message up to ``uid`` was dealt with."""
    where = (inbox_folders.c.account == account, inbox_folders.c.folder == folder)
    if conn.execute(sa.select(inbox_folders.c.account).where(*where)).first() is None:
        conn.execute(inbox_folders.insert().values(account=account, folder=folder, uidvalidity=uidvalidity,
                                                   last_uid=uid, read_at=ts(now)))
    else:
        conn.execute(inbox_folders.update().where(*where).values(uidvalidity=uidvalidity, last_uid=uid,
                                                                 read_at=ts(now)))


def mark_undeliverable(conn: Connection, address: str, step_id: str | None, reason: str, now: datetime) -> bool:
    """Record a bounced address; True when it is new."""
    address = address.strip().lower()
    if is_undeliverable(conn, address):
        return False
    conn.execute(undeliverable.insert().values(address=address, at=ts(now), step_id=step_id, reason=reason))
    return True


def is_undeliverable(conn: Connection, address: str | None) -> bool:
    if not address:
        return False
    return conn.execute(sa.select(undeliverable.c.address).where(
        undeliverable.c.address == address.strip().lower())).first() is not None


def clear_undeliverable(conn: Connection, address: str) -> None:
    conn.execute(undeliverable.delete().where(undeliverable.c.address == address.strip().lower()))


def seen(conn: Connection, source: str, ref: str) -> bool:
    return conn.execute(sa.select(inbox_seen.c.ref).where(inbox_seen.c.source == source,
                                                          inbox_seen.c.ref == ref)).first() is not None


def mark_seen(conn: Connection, source: str, ref: str, now: datetime) -> None:
    conn.execute(inbox_seen.insert().values(source=source, ref=ref, at=ts(now)))


def forget_seen(conn: Connection, before: datetime) -> None:
    conn.execute(inbox_seen.delete().where(inbox_seen.c.at < ts(before)))
