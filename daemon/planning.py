"""Starting a follow-up: whether a trigger becomes a sequence, and why not.

Each trigger is considered exactly once (its sequence id is deterministic); a
trigger that does not become a follow-up is recorded closed with the reason,
so it is never reconsidered: ambiguous client, rescheduled within the rebook
window, a session already followed up, or a client with one open already.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from daemon import followups
from daemon import sessions as session_store
from daemon.cadence import plan, sequence_id
from daemon.model import Trigger
from daemon.store import ts

if TYPE_CHECKING:
    from daemon.engine import Engine

log = logging.getLogger(__name__)
CANCELS = ("cancelled", "late_cancel")


def start_follow_up(engine: "Engine", conn: Any, trigger: Trigger, now: datetime) -> int:
    """Returns 1 when a follow-up with steps to send was started, else 0."""
    seq = sequence_id(trigger)
    if followups.exists(conn, seq):
        return 0
    why_not = _why_not(engine, conn, trigger, now)
    if why_not:
        followups.create(conn, trigger, seq, [], now, closed_reason=why_not)
        if why_not == "ambiguous":
            engine.store.report(conn, now, "ambiguous", trigger.calendar, trigger.session_key,
                                f"{trigger.kind} on {ts(trigger.session_start)}: {trigger.ambiguous}")
            log.warning("follow-up %s not started: client ambiguous (%s)", seq, trigger.ambiguous)
        else:
            log.info("follow-up %s not started: %s", seq, why_not)
        return 0
    assert trigger.client_id is not None
    client = engine.client_of(trigger.client_id, trigger.client_name, trigger.client_email)
    skip = "opted_out" if client.do_not_contact or followups.opted_out(conn, client.id) else None
    followups.create(conn, trigger, seq, plan(engine.config, trigger, seq), now, skip_reason=skip)
    engine.store.audit(conn, now, "detected", sequence_id=seq, detail=trigger.kind)
    log.info("follow-up %s started (%s)%s", seq, trigger.kind, " but opted out" if skip else "")
    return 0 if skip else 1


def _why_not(engine: "Engine", conn: Any, trigger: Trigger, now: datetime) -> str | None:
    if trigger.ambiguous or not trigger.client_id:
        return "ambiguous"
    window = engine.config.detection.rebook_window.approx
    if trigger.kind in CANCELS and session_store.booked_after(
            conn, trigger.client_id, min(now, trigger.session_start),
            exclude=(trigger.calendar, trigger.session_key), until=trigger.session_start + window):
        return "rebooked"
    if followups.for_session(conn, trigger.calendar, trigger.session_key):
        return "merged"          # this session was already followed up under another trigger
    if followups.open_for_client(conn, trigger.client_id):
        return "merged"          # at most one open follow-up per client
    return None
