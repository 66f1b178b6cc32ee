"""How the service reports what went wrong without quoting client data: an exception's frames
(file:line only), and a rejected configuration's findings as the CLI prints them."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from daemon.errors import ConfigError, UserError

log = logging.getLogger(__name__)


def frames(exc: BaseException) -> str:
    """Where ``exc`` came from, file:line per frame, without source text or values."""
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}"
                       for f in reversed(traceback.extract_tb(exc.__traceback__)))


def log_rejected(exc: ConfigError) -> None:
    log.error("reload rejected, the running configuration stays in force: %s",
              str(exc).splitlines()[0])
    log_problems(exc)


def log_problems(exc: Exception) -> None:
    """A UserError's message and findings (written for the user, as the CLI prints them)."""
    if isinstance(exc, UserError) and not isinstance(exc, ConfigError):
        log.error("  %s", str(exc).splitlines()[0])
    for problem in getattr(exc, "problems", []):
        log.error("  - %s", problem)
