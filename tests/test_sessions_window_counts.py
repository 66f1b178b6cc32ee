"""session_store.window_counts (what the vanish breaker weighs a delta against) counts the present
sessions starting in the window and the active ones among them after now, in one query, on a real
store; an empty calendar counts (0, 0)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from daemon.model import SessionRow
from daemon.store import sessions as session_store
from daemon.store.db import Store

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)


def test_window_counts_match_the_rows(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    rng = random.Random(7)
    rows = []
    for n in range(200):
        start = NOW + timedelta(hours=rng.randint(-24 * 60, 24 * 60))
        rows.append(SessionRow(calendar=rng.choice(["main", "other"]), key=f"k{n}", uid=f"u{n}", start=start,
                               end=start + timedelta(minutes=50), status=rng.choice(["active", "cancelled"]),
                               present=rng.random() < 0.8, first_seen_at=NOW, last_seen_at=NOW))
    start, end = NOW - timedelta(days=30), NOW + timedelta(days=30)
    try:
        with store.transaction() as conn:
            assert session_store.window_counts(conn, "main", start, end, NOW) == (0, 0)
            session_store.save(conn, rows, {})
        with store.transaction() as conn:
            got = session_store.window_counts(conn, "main", start, end, NOW)
    finally:
        store.close()
    shown = [r for r in rows if r.calendar == "main" and r.present and start <= r.start < end]
    ahead = [r for r in shown if r.status == "active" and r.start > NOW]
    assert got == (len(shown), len(ahead)) and 0 < len(ahead) < len(shown)
