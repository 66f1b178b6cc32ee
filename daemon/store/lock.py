"""One process per SQLite store: a file lock.

Holding the lock is what makes a ``sending`` row found at start-up provably abandoned (its
process is gone), so it can be marked ``uncertain``.  On PostgreSQL several replicas share the
store; a replica's liveness lease says the same of its rows (daemon/engine/replicas.py).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from daemon.errors import InstanceLocked


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
