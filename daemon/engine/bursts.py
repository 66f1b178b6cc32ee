"""Bursts: several clients' cancellations noticed at once are held for the therapist.

``[detection] burst = { count = 3, within = "30 minutes" }``: when a cancellation follow-up
starts and, counting it, follow-ups of at least ``count`` different clients started for
cancellations noticed within ``within``, each of them waits: its first open step stays
planned with reason ``held: burst: …`` (shown as state ``held``, reason ``burst``) and the
dispatcher never sends it.  Most often the therapist cancelled a day and forgot the marker.
``confirm`` (the clients did cancel: go ahead) releases the steps; ``dismiss`` (the therapist
cancelled these) closes the follow-ups as ``therapist_cancelled``.  Both take one client or
all, are written to the contact log, and are here so the CLI and the web console share them.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from daemon.config import Config
from daemon.rules import CANCELS
from daemon.store import followups
from daemon.store.db import Store
from daemon.store.tables import sequences, steps, ts

log = logging.getLogger(__name__)
PREFIX = "held: burst: "


def is_held(step: Any) -> bool:
    """Whether a step waits for the therapist's word on a burst."""
    return step["state"] == "planned" and (step["reason"] or "").startswith(PREFIX)


def check(store: Store, conn: Any, config: Config, now: datetime) -> int:
    """Hold the follow-ups of a burst noticed up to ``now``; returns how many steps were held."""
    rule = config.detection.burst
    since = ts(now - rule.within.approx)
    followed = sa.select(steps.c.id).where(steps.c.sequence_id == sequences.c.id).exists()
    rows = conn.execute(sa.select(sequences.c.id, sequences.c.client_id).where(
        sequences.c.trigger.in_(CANCELS), sequences.c.detected_at >= since, sequences.c.detected_at <= ts(now),
        sequences.c.client_id != "", sequences.c.closed_at.is_(None), followed)).all()
    if len({r.client_id for r in rows}) < rule.count:
        return 0
    detail = (f"{PREFIX}{len({r.client_id for r in rows})} clients' cancellations noticed within {rule.within}; "
              "nothing is sent until you confirm (they cancelled) or dismiss (you cancelled them)")
    held = 0
    for r in rows:
        first = conn.execute(sa.select(steps.c.id, steps.c.reason).where(
            steps.c.sequence_id == r.id, steps.c.state == "planned").order_by(steps.c.n)).first()
        if first is None or (first.reason or "").startswith(PREFIX):
            continue
        followups.hold(conn, first.id, detail)
        store.audit(conn, now, "held", sequence_id=r.id, step_id=first.id, detail="burst")
        held += 1
    if held:
        log.warning("burst: %d follow-up(s) held until the therapist confirms or dismisses", held)
    return held


def held_sequences(conn: Any, client_id: str | None = None) -> list[Any]:
    """The open follow-ups a burst holds (all, or one client's): rows with ``id``, ``client_id``."""
    query = sa.select(sequences.c.id, sequences.c.client_id, sequences.c.client_name, sequences.c.client_email,
                      sequences.c.session_start, sequences.c.calendar,
                      sequences.c.trigger).distinct().join(steps, steps.c.sequence_id == sequences.c.id).where(
        steps.c.state == "planned", steps.c.reason.like(PREFIX + "%"), sequences.c.closed_at.is_(None))
    if client_id is not None:
        query = query.where(sequences.c.client_id == client_id)
    return list(conn.execute(query.order_by(sequences.c.session_start)).mappings().all())


def confirm(store: Store, client_id: str | None, now: datetime, *, by: str) -> int:
    """The clients did cancel: their held first steps go ahead (due now if their time has
    passed, so the wait never makes them too late).  Returns how many follow-ups."""
    with store.transaction() as conn:
        rows = held_sequences(conn, client_id)
        for r in rows:
            conn.execute(steps.update().where(steps.c.sequence_id == r["id"], steps.c.state == "planned",
                                              steps.c.reason.like(PREFIX + "%")).values(reason=None))
            conn.execute(steps.update().where(steps.c.sequence_id == r["id"], steps.c.state == "planned",
                                              steps.c.due_at < ts(now)).values(due_at=ts(now)))
            store.audit(conn, now, "burst_confirmed", sequence_id=r["id"], client_id=r["client_id"], detail=by)
    log.info("burst: %d follow-up(s) confirmed, they go ahead", len(rows))
    return len(rows)


def dismiss(store: Store, client_id: str | None, now: datetime, *, by: str) -> int:
    """The therapist cancelled these: the follow-ups close as ``therapist_cancelled`` and
    nothing is sent.  Returns how many follow-ups."""
    with store.transaction() as conn:
        rows = held_sequences(conn, client_id)
        for r in rows:
            followups.stop(conn, r["id"], "therapist_cancelled", now)
            store.audit(conn, now, "burst_dismissed", sequence_id=r["id"], client_id=r["client_id"],
                        detail=f"therapist_cancelled, {by}")
    log.info("burst: %d follow-up(s) dismissed as the therapist's own cancellations", len(rows))
    return len(rows)
