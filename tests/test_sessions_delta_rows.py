"""session_store.load_some (one query for a small delta, by chunks for a big one) returns the
calendar's rows with one of the keys or of one of the events, as filtering every row would; and
save, which updates only the columns that changed, leaves each row as the new one, on a real store."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.model import SessionRow
from daemon.store import sessions as session_store
from daemon.store.db import Store

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)


def _rows(rng: random.Random, n: int) -> list[SessionRow]:
    out = []
    for i in range(n):
        start = NOW + timedelta(hours=rng.randint(-24 * 60, 24 * 60))
        uid = f"u{rng.randint(0, n // 3)}"
        out.append(SessionRow(calendar=rng.choice(["main", "other"]), key=f"{uid}@{i}" if rng.random() < 0.7 else f"k{i}",
                              uid=uid, start=start, end=start + timedelta(minutes=50),
                              status=rng.choice(["active", "cancelled"]), client_id=rng.choice([None, "dir:jane"]),
                              client_name=rng.choice(["", "Jane Doe"]), present=rng.random() < 0.8,
                              no_show=rng.random() < 0.1, first_seen_at=NOW, last_seen_at=NOW,
                              booked_at=rng.choice([None, NOW - timedelta(days=3)])))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_load_some_is_the_rows_with_a_key_or_a_uid(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    rows = _rows(rng, 900)
    try:
        with store.transaction() as conn:
            session_store.save(conn, rows, {})
        everything = {r.key: r for r in rows if r.calendar == "main"}
        for size in (1, 5, 40, 400, 700):      # one query, and (over CHUNK keys and uids) by chunks
            keys = {r.key for r in rng.sample(rows, min(size, len(rows)))} | {"missing"}
            uids = {r.uid for r in rng.sample(rows, min(size, len(rows)))} | {"gone"}
            with store.transaction() as conn:
                got = session_store.load_some(conn, "main", keys, uids)
                assert session_store.load(conn, "main") == everything
            assert got == {k: r for k, r in everything.items() if k in keys or r.uid in uids}
    finally:
        store.close()


def test_save_updates_the_changed_columns_to_the_new_row(tmp_path: Path) -> None:
    rng = random.Random(3)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    rows = {r.key: r for r in _rows(rng, 60) if r.calendar == "main"}
    try:
        with store.transaction() as conn:
            session_store.save(conn, list(rows.values()), {})
        later = NOW + timedelta(hours=1)
        new = []
        for r in rows.values():
            change = rng.choice(["none", "seen", "cancel", "move", "flags", "client"])
            if change == "seen":
                r = replace(r, last_seen_at=later)
            elif change == "cancel":
                r = replace(r, status="cancelled", cancelled_at=later, last_seen_at=later)
            elif change == "move":
                r = replace(r, start=r.start + timedelta(days=1), end=r.end + timedelta(days=1))
            elif change == "flags":
                r = replace(r, no_show=not r.no_show, present=not r.present, reached=True)
            elif change == "client":
                r = replace(r, client_id=None if r.client_id else "dir:omar", client_name="Omar Haddad",
                            ambiguous="two clients", candidates='["a","b"]')
            new.append(r)
        with store.transaction() as conn:
            previous = session_store.load(conn, "main")
            session_store.save(conn, new, previous)
        with store.transaction() as conn:
            stored = session_store.load(conn, "main")
    finally:
        store.close()
    for r in new:       # ``last_seen_at`` alone is no change: the stored one stays
        want = r if replace(rows[r.key], last_seen_at=r.last_seen_at) != r else rows[r.key]
        assert stored[r.key] == want
