"""What ``run`` and ``once`` tell a newcomer: what runs, where state and messages go, how to stop,
and a clock that an earlier ``--now`` left behind."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa

from daemon.config import Config
from daemon.store.tables import calendars, dt


def _local(value: str | None, tz: Any) -> str | None:
    moment = dt(value)
    return moment.astimezone(tz).isoformat() if moment else None


def polled_ahead(engine: Any) -> list[str]:
    """Calendars whose last poll lies after the clock (an earlier ``--now`` moved ahead)."""
    now = engine.clock.now()
    config = engine.config
    with engine.store.transaction() as conn:
        rows = conn.execute(sa.select(calendars.c.name, calendars.c.last_poll_at)).all()
    afresh = "empty its database" if config.store.url else f"delete {config.resolve(config.store.path)}"
    return [f"calendar '{name}' was last read at {_local(last, config.practice.timezone)}, which is later "
            f"than now (an earlier `once --now` ran ahead of the clock); follow-ups planned then wait "
            f"for their due times. To start afresh, stop welcomeback and {afresh}"
            for name, last in rows if last and (dt(last) or now) > now]


def startup_notes(config: Config, engine: Any) -> list[str]:
    """What a newcomer wants to know at start: what runs, where state and messages go, how to stop."""
    from daemon.engine.places import state_dir

    where = config.store.url and engine.store.safe_url or str(config.resolve(config.store.path))
    lines = [f"watching {len(config.calendars)} calendar(s): "
             + ", ".join(f"{c.name} ({c.kind})" for c in config.calendars)
             + f"; state in {where}; state folder {state_dir(config)}"]
    if config.email.backend == "outbox":
        lines.append(f"messages are written as .eml files into {config.resolve(config.email.options.outbox)} "
                     "(nothing leaves this machine)")
    else:
        lines.append(f"email is sent through {config.email.backend}; phone step: {config.phone.backend}")
    if engine.dry_run:
        lines.append("DRY RUN: nothing is sent")
    with engine.store.transaction() as conn:
        first = not conn.execute(sa.select(calendars.c.name).where(calendars.c.first_seen_at.is_not(None))).first()
    if first:
        lines.append("first start: the calendars are read now and only noted; nothing that already "
                     "happened is followed up")
    lines += polled_ahead(engine)
    managed = bool(os.environ.get("INVOCATION_ID") or os.environ.get("NOTIFY_SOCKET"))
    lines.append("stop with: systemctl stop welcomeback" if managed else "stop with Ctrl+C")
    return lines
