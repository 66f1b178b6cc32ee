"""Each therapist's daily digest day, claimed in the store before the hand-off.

The key is (therapist, day): the first replica to insert it sends that digest, every other
one (or a second run the same day) finds it taken.  The claim is committed before the
email channel is called and marked ``sent`` after it, like a step.  A claim left
``sending`` by a process that died during the hand-off, or ``uncertain`` after a channel
that could not tell, is not dropped: once it is ``STALE`` old, one replica takes it over
(a compare-and-set on the claim) and sends the digest again, saying it may arrive twice.
A digest goes only to the therapist, so a possible second copy is better than a day's
calls silently missing; it is re-sent at most once (``MAX_ATTEMPTS``).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from daemon.store.db import Store
from daemon.store.tables import digests, dt, meta, ts

STALE = timedelta(minutes=10)   # far longer than one bounded hand-off
MAX_ATTEMPTS = 2
LEGACY_KEY = "digest_last"      # the one digest's day before [[therapists]] (meta table)


def previous(conn: Any, therapist: str, day: str, *, legacy: bool) -> dict[str, Any]:
    """The therapist's latest digest before ``day``: ``day``, ``at`` (claim time), ``state``;
    {} for none.  ``legacy``: fall back to the single digest recorded by older versions."""
    row = conn.execute(sa.select(digests).where(digests.c.therapist == therapist, digests.c.day < day)
                       .order_by(digests.c.day.desc()).limit(1)).mappings().first()
    if row is not None:
        return {"day": row["day"], "at": row["claimed_at"], "state": row["state"]}
    old = _legacy(conn) if legacy else {}
    return old if old.get("day", "") < day else {}


def today(conn: Any, therapist: str, day: str, *, legacy: bool) -> dict[str, Any] | None:
    """The claim of ``day`` (None: not claimed)."""
    row = conn.execute(sa.select(digests).where(digests.c.therapist == therapist,
                                                digests.c.day == day)).mappings().first()
    if row is not None:
        return dict(row)
    old = _legacy(conn) if legacy else {}
    return {"state": old.get("state", "sent"), "attempts": MAX_ATTEMPTS} if old.get("day") == day else None


def _legacy(conn: Any) -> dict[str, Any]:
    raw = conn.execute(sa.select(meta.c.value).where(meta.c.key == LEGACY_KEY)).scalar()
    try:
        found = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def interrupted(claim: dict[str, Any] | None, now: datetime) -> bool:
    """A claim whose hand-off was cut short long enough ago to be taken over."""
    if claim is None or claim["state"] not in ("sending", "uncertain") or claim["attempts"] >= MAX_ATTEMPTS:
        return False
    at = dt(claim.get("claimed_at"))
    return at is not None and at <= now - STALE


def claim(store: Store, therapist: str, day: str, worker: str, now: datetime, *, legacy: bool) -> str | None:
    """Claim the therapist's digest of ``day``: ``"new"``, ``"again"`` (an interrupted claim
    taken over), or None when another run has it."""
    try:
        with store.transaction() as conn:
            found = today(conn, therapist, day, legacy=legacy)
            if found is None:
                conn.execute(digests.insert().values(therapist=therapist, day=day, state="sending",
                                                     claimed_by=worker, claimed_at=ts(now), attempts=1))
                return "new"
            if not interrupted(found, now):
                return None
            taken = conn.execute(digests.update().where(
                digests.c.therapist == therapist, digests.c.day == day,
                digests.c.claimed_at == found["claimed_at"], digests.c.attempts == found["attempts"])
                .values(state="sending", claimed_by=worker, claimed_at=ts(now),
                        attempts=found["attempts"] + 1)).rowcount
            return "again" if taken == 1 else None
    except sa.exc.IntegrityError:    # another replica inserted the same day first
        return None


def finish(conn: Any, therapist: str, day: str, worker: str, state: str) -> None:
    """Record the hand-off's outcome on this worker's claim (``sent`` or ``uncertain``)."""
    conn.execute(digests.update().where(digests.c.therapist == therapist, digests.c.day == day,
                                        digests.c.claimed_by == worker).values(state=state))


def release(store: Store, therapist: str, day: str, worker: str, now: datetime) -> None:
    """A definite failure: nothing went out, so a later run may claim the day afresh."""
    with store.transaction() as conn:
        conn.execute(digests.delete().where(digests.c.therapist == therapist, digests.c.day == day,
                                            digests.c.claimed_by == worker, digests.c.claimed_at == ts(now)))


def waiting(conn: Any, day: str, now: datetime) -> list[str]:
    """Therapists whose digest of ``day`` was interrupted and may be taken over now."""
    rows = conn.execute(sa.select(digests).where(digests.c.day == day, digests.c.state.in_(
        ("sending", "uncertain")))).mappings().all()
    return [r["therapist"] for r in rows if interrupted(dict(r), now)]
