"""A console over a real practice store, for the route tests and the browser tests."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from daemon import config as config_mod
from daemon.clock import FixedClock
from daemon.engine.cycle import Engine
from daemon.engine.places import state_dir
from daemon.store.tables import steps
from daemon.web.app import create_app
from daemon.web.security import password_path
from tests.conftest import Practice, local
from tests.stories import jane_no_show

PASSWORD = "calm-harbour-42"
CALL_DUE = local(2026, 11, 4, 12)   # Jane's call step (1 business day after Tuesday 10:00) is due


def console(practice: Practice, now: datetime = CALL_DUE, *, story: bool = True,
            **kw: Any) -> tuple[Any, Engine, FixedClock]:
    """The Flask app over the practice (Jane's no-show story already run), its engine and clock."""
    if story:
        jane_no_show(practice)
    quiet_cli_handlers()
    cfg = config_mod.load(practice.config)
    clock = FixedClock(now)
    engine = Engine(cfg, clock, acquire_lock=False)
    quick_password(state_dir(cfg))
    app = create_app(engine, state_dir(cfg), idle_timeout=kw.pop("idle_timeout", timedelta(minutes=30)), **kw)
    app.config["TESTING"] = True
    return app, engine, clock


def quick_password(state: Path, password: str = PASSWORD) -> Path:
    """The console's password file as ``set_password`` writes it (an Argon2id hash, mode 0600),
    but hashed with Argon2's lowest cost parameters: ``check_password`` verifies with the
    parameters stored in the hash, so each sign-in costs about a millisecond instead of the
    default's quarter second (on 2 cores, across the web tests, that is most of a minute).
    A wrong password is refused all the same.  ``set_password`` itself (default parameters,
    0600, atomic) is checked in tests/test_web_routes.py and tests/test_web_cli.py."""
    from argon2 import PasswordHasher

    path = password_path(state)
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(password) + "\n")
    return path


def quiet_cli_handlers() -> None:
    """The CLI's root handler writes to the stderr of the phase that ran it, which pytest closes;
    the console logs through the same loggers later (caplog and the canary keep their own)."""
    import logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)


def make_uncertain(engine: Engine, n: int = 2) -> str:
    """Step ``n`` of Jane's follow-up as a crash between hand-off and record leaves it."""
    with engine.store.transaction() as conn:
        row = conn.execute(sa.select(steps.c.id).where(steps.c.n == n)).first()
        assert row is not None
        conn.execute(steps.update().where(steps.c.id == row[0])
                     .values(state="uncertain", reason="crashed between hand-off and record"))
    return str(row[0])


def state_folder(practice: Practice) -> Path:
    return state_dir(config_mod.load(practice.config))
