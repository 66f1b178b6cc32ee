"""Sign-in for the console: the Argon2 password file, the sign-in rate limit, CSRF tokens."""

from __future__ import annotations

import hmac
import os
import secrets
import threading
from pathlib import Path

from daemon.errors import UserError

PASSWORD_FILE = "web-password"


def password_path(state: Path) -> Path:
    return state / PASSWORD_FILE


def set_password(state: Path, password: str) -> Path:
    """Store only the Argon2 hash of ``password`` (mode 0600, written atomically)."""
    from argon2 import PasswordHasher

    if len(password) < 8:
        raise UserError("web set-password: use at least 8 characters")
    state.mkdir(parents=True, exist_ok=True)
    path = password_path(state)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(PasswordHasher().hash(password) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def check_password(state: Path, password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        stored = password_path(state).read_text(encoding="utf-8").strip()
    except OSError:
        return False
    try:
        return PasswordHasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


class RateLimit:
    """At most ``attempts`` failed sign-ins per ``window`` seconds (all addresses together: a
    one-person console has no reason for more)."""

    def __init__(self, attempts: int = 5, window: float = 300.0) -> None:
        self.attempts, self.window = attempts, window
        self._failures: list[float] = []
        self._lock = threading.Lock()

    def allowed(self, now: float) -> bool:
        with self._lock:
            self._failures = [t for t in self._failures if now - t < self.window]
            return len(self._failures) < self.attempts

    def failed(self, now: float) -> None:
        with self._lock:
            self._failures.append(now)

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
