"""Patterns, for the therapist only: a client's no-shows and late cancellations within
``[detection] pattern.within`` reaching ``pattern.misses``.

Counted from the store, one per missed session (whatever its triggers), only what
``daemon.rules.is_a_miss`` calls a miss, so the therapist's own cancellations, withdrawn
markers and reschedules never count.  The call task, the digest and ``status --json`` say
so; the client's messages never do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from babel.dates import format_date

from daemon.config import Config
from daemon.rules import is_a_miss
from daemon.store.tables import dt, sequences, steps, ts

COUNTED = ("no_show", "late_cancel")


def misses(conn: Any, config: Config, client_id: str, session_start: datetime) -> list[datetime]:
    """The starts of the client's counted misses in the window ending at ``session_start``."""
    if not client_id:
        return []
    since = session_start - config.detection.pattern.within.approx
    followed = sa.select(steps.c.id).where(steps.c.sequence_id == sequences.c.id).exists()
    rows = conn.execute(sa.select(sequences.c.calendar, sequences.c.session_key, sequences.c.session_start,
                                  sequences.c.closed_reason, followed.label("followed"))
                        .where(sequences.c.client_id == client_id, sequences.c.trigger.in_(COUNTED),
                               sequences.c.session_start > ts(since),
                               sequences.c.session_start <= ts(session_start))).mappings().all()
    found: dict[tuple[str, str], datetime] = {}
    for r in rows:
        start = dt(r["session_start"])
        if start is not None and is_a_miss(r["closed_reason"], bool(r["followed"])):
            found[(r["calendar"], r["session_key"])] = start
    return sorted(found.values())


def pattern_of(conn: Any, config: Config, row: Any) -> int | None:
    """The count for a follow-up (a sequence row, or a step joined with it) when at or over
    the threshold, else None."""
    if row["trigger"] not in COUNTED:
        return None
    start = dt(row["session_start"])
    assert start is not None
    count = len(misses(conn, config, row["client_id"], start))
    return count if count >= config.detection.pattern.misses else None


def note(conn: Any, config: Config, row: Any) -> str:
    """"3rd missed session since 4 December — consider talking about it together", or ""."""
    count = pattern_of(conn, config, row)
    if count is None:
        return ""
    start = dt(row["session_start"])
    assert start is not None
    first = misses(conn, config, row["client_id"], start)[0]
    p = config.practice
    since = format_date(first.astimezone(p.timezone).date(), "d MMMM", locale=p.locale)
    return f"{ordinal(count)} missed session since {since} — consider talking about it together"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
