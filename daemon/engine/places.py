"""Where a practice's state lives: the store's database URL and the state folder (systemd's
STATE_DIRECTORY when set, else beside the SQLite file)."""

from __future__ import annotations

import os
from pathlib import Path

from daemon.config import Config


def store_url(config: Config) -> str:
    if config.store.url:
        url = config.store.url
        return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url
    return "sqlite:///" + str(config.resolve(config.store.path))


def state_dir(config: Config) -> Path:
    return Path(os.environ.get("STATE_DIRECTORY", "").split(":")[0] or config.resolve(config.store.path).parent)
