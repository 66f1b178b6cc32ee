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
    """At most ``attempts`` failed sign-ins per ``window`` seconds; ``wait`` says how long until
    the next attempt may be made (0: now).  Times are seconds on the app's clock."""

    def __init__(self, attempts: int = 5, window: float = 300.0) -> None:
        self.attempts, self.window = attempts, window
        self._failures: list[float] = []

    def wait(self, now: float) -> float:
        self._failures = [t for t in self._failures if now - t < self.window]
        if len(self._failures) < self.attempts:
            return 0.0
        return self._failures[-self.attempts] + self.window - now

    def failed(self, now: float) -> None:
        self._failures.append(now)

    def reset(self) -> None:
        self._failures.clear()


class SignInLimit:
    """Failed sign-ins limited per address (``per_address`` in ``address_window`` seconds) and,
    in addition, for all addresses together (``overall`` in ``overall_window``), so guessing
    from many addresses is slowed as much as from one.  A good sign-in clears its address's
    count, never the overall one."""

    def __init__(self, per_address: int = 5, address_window: float = 300.0, overall: int = 20,
                 overall_window: float = 60.0) -> None:
        self._per, self._window = per_address, address_window
        self._overall = RateLimit(overall, overall_window)
        self._addresses: dict[str, RateLimit] = {}
        self._lock = threading.Lock()

    def wait(self, address: str, now: float) -> float:
        """Seconds until ``address`` may try again (0: now)."""
        with self._lock:
            one = self._addresses.get(address)
            mine = one.wait(now) if one else 0.0
            if one is not None and mine == 0.0 and not one._failures:
                del self._addresses[address]
            return max(mine, self._overall.wait(now))

    def failed(self, address: str, now: float) -> None:
        with self._lock:
            self._addresses.setdefault(address, RateLimit(self._per, self._window)).failed(now)
            self._overall.failed(now)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._addresses.pop(address, None)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
