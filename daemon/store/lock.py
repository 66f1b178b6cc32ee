"""One dispatcher per store: a file lock for SQLite, an advisory lock for PostgreSQL.

Holding the lock is what makes a ``sending`` row found at start-up provably
abandoned (its process is gone), so it can be marked ``uncertain``.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from daemon.errors import InstanceLocked, UserError


def advisory_key(url: str) -> int:
    """A 63-bit key per store, so practices (or test schemas) sharing a server do not collide."""
    import hashlib

    return int.from_bytes(hashlib.sha256(("welcomeback|" + url).encode()).digest()[:8], "big") >> 1


class FileLock:
    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Raises InstanceLocked when another process holds the store."""
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InstanceLocked(
                f"another welcomeback process is already using {self.path.with_suffix('')}; "
                "stop it first (e.g. systemctl stop welcomeback) or point --config elsewhere") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class AdvisoryLock:
    """A session-level PostgreSQL advisory lock on a dedicated connection (not via a pooler)."""

    def __init__(self, engine: Any, url: str) -> None:
        self.engine = engine
        self.key = advisory_key(url)
        self._conn: Any = None
        self.held = False

    def acquire(self) -> bool:
        """True when this process is now the dispatcher; False when another replica is."""
        if self._conn is None:
            self._conn = self.engine.connect()
        got = self._conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
        self._conn.commit()
        self.held = bool(got)
        if self.held and not self._still_ours():
            self.release()
            raise UserError("the PostgreSQL connection does not keep its session between transactions "
                            "(a transaction pooler such as PgBouncer in transaction mode?); welcomeback's "
                            "dispatcher lock needs a direct connection or session pooling")
        return self.held

    def _still_ours(self) -> bool:
        """In a new transaction, is the lock held by the backend we now talk to?"""
        hi, lo = self.key >> 32, self.key & 0xFFFFFFFF
        count = self._conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND classid = :hi AND objid = :lo AND objsubid = 1"),
            {"hi": hi, "lo": lo}).scalar()
        self._conn.commit()
        return bool(count)

    def release(self) -> None:
        if self._conn is not None:
            try:
                if self.held:
                    self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                    self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None
                self.held = False
