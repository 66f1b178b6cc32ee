"""The re-check right before each step: does the trigger still hold, may this step go now?

Against the latest snapshot: opted out, reached, withdrawn or rebooked end the follow-up; a
directory entry that cannot be read, a degraded calendar, the cadence's spacing and the
channels' limits hold the step (``HOLD``); too late or no contact details skip it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from connectors.channels.base import Channel
from daemon import rules
from daemon.clients import BLOCKED_BY_DIRECTORY
from daemon.engine import bursts, messages, planning, safety
from daemon.engine.cadence import gap_before
from daemon.engine.context import CycleContext
from daemon.model import OPEN_STATES, Client
from daemon.store import followups
from daemon.store.due import Facts
from daemon.store.tables import dt, ts

log = logging.getLogger(__name__)
HOLD = "hold"
SMS_PER_DAY, SMS_PER_WEEK = 1, 3
ON_TIME = timedelta(hours=1)   # a step that went within this of its due time went on time


class Recheck:
    """The stop conditions of one dispatch run, for its context.

    What it reads of the store comes in ``Facts`` (``daemon.store.due``), loaded with the
    step; ``sent_this_hour`` is the dispatch's count of client messages handed off within
    the hour (loaded with the chunk, counted on as steps go), confirmed in the store at the cap.
    """

    def __init__(self, ctx: CycleContext) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.config = ctx.config
        self.sent_this_hour: int | None = None
        self.undeliverable: set[str] = set()

    def reason(self, conn: Any, step: Any, client: Client, channel: Channel, now: datetime,
               facts: Facts) -> str | None:
        """Re-check the trigger and the stop conditions against the latest snapshot."""
        reason = self._no_longer_wanted(conn, step, client, channel, now, facts)
        if reason:
            return reason
        if bursts.is_held(step):     # nothing in a held burst goes before the therapist's word
            return HOLD
        if self._protected(conn, step, client, now, facts):
            return HOLD
        if facts.degraded:
            log.info("step %s held: calendar %s is degraded", step["id"], step["calendar"])
            return HOLD
        due = dt(step["due_at"])
        assert due is not None
        if now - due > self.config.cadence.max_lateness.approx and not safety.is_safety(conn, step["sequence_id"]):
            return "too_late"            # a safety client's follow-up is never closed silently
        if self._keeps_spacing(conn, step, now, facts):
            return HOLD
        return self._channel_limits(conn, step, client, channel, now)

    def _no_longer_wanted(self, conn: Any, step: Any, client: Client, channel: Channel, now: datetime,
                          facts: Facts) -> str | None:
        """opted_out, reached, withdrawn (the trigger no longer holds) or rebooked, else None."""
        flag, session = facts.flag, facts.session
        if client.id != step["client_id"]:     # the flags loaded are the sequence's client's
            flag = followups.client_flag(conn, client.id)
        if client.do_not_contact or followups.flag_opts_out(flag, channel.medium):
            return "opted_out"
        if (flag and flag["reached_at"] and flag["reached_at"] >= step["detected_at"]) or (session and session.reached):
            return "reached"
        if rules.trigger_withdrawn(followups.missed_of(step), session, now):
            return "withdrawn"
        if planning.rebooked_among(step, facts.client_sessions, self.config.detection.rebook_window.approx):
            return "rebooked"
        return None

    def _protected(self, conn: Any, step: Any, client: Client, now: datetime, facts: Facts) -> bool:
        """A client directory entry that cannot be read names this client, or the session no
        longer tells whose it is: hold, tell the therapist (never contact on a guess)."""
        entry = self.ctx.directory.rejected_protecting(client)
        session = facts.session
        unclear = session is not None and session.present and session.client_id is None \
            and not session.ambiguous.startswith(BLOCKED_BY_DIRECTORY)   # that one is checked live, above
        if entry is None and not unclear:
            return False
        why = entry.attention() if entry is not None else (session.ambiguous if session else "") or "no client"
        self.store.report(conn, now, "ambiguous", step["calendar"], step["session_key"],
                          f"{step['trigger']} on {step['session_start']}: {why}")
        log.warning("step %s held: it is not clear the session is still this client's", step["id"])
        return True

    def _keeps_spacing(self, conn: Any, step: Any, now: datetime, facts: Facts) -> bool:
        """Call first, the email a gap later: a step waits while the one before it has not
        gone, and until the cadence's gap after it when it went out late (downtime)."""
        before = facts.previous
        if before is None or before["state"] not in OPEN_STATES + ("sent", "uncertain"):
            return False
        if before["state"] in OPEN_STATES:
            log.info("step %s waits: step %d has not gone yet", step["id"], before["n"])
            return True
        went, was_due, start = dt(before["finished_at"]), dt(before["due_at"]), dt(step["session_start"])
        assert went is not None and was_due is not None and start is not None
        if went - was_due <= ON_TIME:
            return False
        hours = self.config.therapist_of(step["calendar"]).working_hours
        earliest = hours.next_open(went + gap_before(self.config, start, step["n"], calendar=step["calendar"]),
                                   self.config.practice.timezone)
        if now >= earliest:
            return False
        followups.postpone(conn, step["id"], earliest)
        log.info("step %s postponed to %s: step %d went out late", step["id"], ts(earliest), before["n"])
        return True

    def _channel_limits(self, conn: Any, step: Any, client: Client, channel: Channel, now: datetime) -> str | None:
        if messages.contact_missing(channel, client):
            return "no_contact_details"
        if channel.medium == "email" and (client.email or "").strip().lower() in self.undeliverable:
            return "no_contact_details"   # a bounce said the address cannot receive mail
        if channel.medium == "sms" and self._over_sms_cap(conn, client, now):
            log.info("step %s held: the client's text-message limit is reached", step["id"])
            return HOLD
        if channel.medium != "call-task" and self._over_hourly_cap(conn, now):
            return HOLD
        if channel.medium == "sms" and len(self.ctx.directory.by_phone(client.phone)) > 1:
            self.store.report(conn, now, "ambiguous", step["calendar"], step["id"],
                              "the phone number is shared by several clients: no text message sent")
            return "no_contact_details"
        return None

    def _over_hourly_cap(self, conn: Any, now: datetime) -> bool:
        """The runaway guard: at most ``max_messages_per_hour`` messages to clients."""
        client_facing = tuple(name for name, ch in (("email", self.ctx.email), ("phone", self.ctx.phone))
                              if ch.medium != "call-task")
        cap = self.config.cadence.max_messages_per_hour
        if self.sent_this_hour is not None and self.sent_this_hour < cap:
            return False
        self.sent_this_hour = followups.messages_since(conn, now - timedelta(hours=1), client_facing)
        if self.sent_this_hour < cap:   # other replicas' messages are counted here, at the latest
            return False
        hour = now.strftime("%Y-%m-%dT%H")
        if self.store.report(conn, now, "throttled", "", hour,
                             f"more than {cap} messages to clients within an hour; the rest wait"):
            log.warning("send cap of %d messages an hour reached; remaining steps wait", cap)
        return True

    @staticmethod
    def _over_sms_cap(conn: Any, client: Client, now: datetime) -> bool:
        """At most one text a day and three a week per client."""
        day = followups.sent_since(conn, client.id, "phone", now - timedelta(days=1))
        week = followups.sent_since(conn, client.id, "phone", now - timedelta(days=7))
        return day >= SMS_PER_DAY or week >= SMS_PER_WEEK
