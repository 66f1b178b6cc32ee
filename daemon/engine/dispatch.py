"""Dispatch: for each due step, re-check, claim, hand off, record.

The outbox discipline: the claim (planned → sending) is committed before the
channel is called, and the result is recorded right after.  A crash in
between leaves ``sending``; the next dispatcher (which holds the store's
lock, so the old one is gone) marks it ``uncertain``: never sent twice.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from connectors.channels.base import Channel
from daemon.engine import messages, patterns, planning
from daemon.engine.context import CycleContext
from daemon.engine.recheck import HOLD, Recheck
from daemon.errors import ChannelError, TemplateError
from daemon.store import due as due_store
from daemon.store import followups
from daemon.store.due import Facts
from daemon.store.tables import dt, reports, ts

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
STOPS_SEQUENCE = ("opted_out", "reached", "withdrawn", "rebooked", "dismissed")
CHUNK = 100       # steps loaded together with what their re-check reads
FRESH = 2.0       # seconds (monotonic) a chunk's facts are trusted; slow hand-offs read the rest again


class Dispatcher:
    def __init__(self, ctx: CycleContext) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.config = ctx.config
        self.paused: set[str] = set()
        self.unread: set[str] = set()      # channels whose call tasks could not be read back this cycle
        self.counts: dict[str, int] = {}
        self.recheck = Recheck(ctx)
        self.known_reports: set[tuple[str, str]] = set()   # held/template reports that a sent step resolves
        self.outcomes: dict[str, dict[str, Any]] = {}     # step id → state recorded by this dispatch

    def run(self) -> dict[str, int]:
        now = self.ctx.clock.now()
        replicas = self.ctx.replicas
        live = replicas.live_workers(now) if replicas is not None else None
        with self.store.transaction() as conn:
            for step_id in followups.abandon_stale(conn, self.ctx.worker, now, live):
                log.warning("step %s was being handed off when the service stopped: uncertain", step_id)
                self.store.report(conn, now, "uncertain", "", step_id, "stopped during hand-off")
        self._feedback(now)
        with self.store.transaction() as conn:
            due = followups.due(conn, now)
            self.known_reports = {(r["kind"], r["ref"]) for r in conn.execute(
                sa.select(reports.c.kind, reports.c.ref).where(reports.c.kind.in_(("held", "template")))).mappings()}
        log.debug("dispatch: %d step(s) due", len(due))
        if replicas is not None and replicas.shared:
            due = _spread(due)         # replicas dispatching at once mostly claim different steps
        pending = [step["id"] for step in due]
        with self.store.pinned():
            self._steps(pending, now)
        self._purge(now)
        return self.counts

    def _steps(self, pending: list[str], now: datetime) -> None:
        replicas = self.ctx.replicas
        while pending and not self.ctx.stopping.is_set():
            chunk, pending = pending[:CHUNK], pending[CHUNK:]
            loaded, facts = time.monotonic(), self._load(chunk)
            for i, step_id in enumerate(chunk):
                # stopping, or slow hand-offs: the rest of the chunk is read afresh (or next start)
                if self.ctx.stopping.is_set() or (i and time.monotonic() - loaded > FRESH):
                    pending = chunk[i:] + pending
                    break
                if replicas is not None:
                    replicas.alive(self.ctx.clock.now())
                if step_id in facts:
                    self._one(*facts[step_id], now)
        if self.ctx.stopping.is_set() and pending:
            log.info("stopping: the remaining due steps wait for the next start")

    def _load(self, step_ids: list[str]) -> dict[str, tuple[Any, Facts]]:
        """The steps still planned among ``step_ids`` with what their re-check reads, in a
        few queries."""
        with self.store.transaction() as conn:
            facts = due_store.load(conn, step_ids)
            clients = {row["client_id"]: self.ctx.client_of(row["client_id"], row["client_name"],
                                                            row["client_email"]) for row, _ in facts.values()}
            self.recheck.undeliverable = due_store.undeliverable_among(conn, (c.email for c in clients.values()))
        self.recheck.sent_this_hour = None     # counted afresh with each chunk
        return facts

    def _purge(self, now: datetime) -> None:
        keep = self.config.retention.purge_after
        if keep is None:
            return
        cutoff = now - keep.approx
        with self.store.transaction() as conn:
            purged = followups.purge_closed(conn, cutoff)
        if purged:
            log.info("retention: %d closed follow-up(s) older than %s deleted", purged, keep)

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def channel_for(self, name: str) -> Channel:
        return self.ctx.phone if name == "phone" else self.ctx.email

    def _feedback(self, now: datetime) -> None:
        """Call tasks the therapist closed in their calendar stop their sequences."""
        for channel in {id(c): c for c in (self.ctx.phone, self.ctx.email)}.values():
            try:
                closed = channel.feedback()
            except ChannelError as exc:
                log.warning("cannot read back %s: %s", channel.backend, exc.reason)
                self.unread.add(channel.backend)
                if exc.outcome == "paused":   # refused us (a wrong password): its steps wait, the therapist is told
                    self.paused.add(channel.backend)
                    with self.store.transaction() as conn:
                        self.store.report(conn, now, "paused", "", channel.backend, exc.reason)
                continue
            for step_id, outcome in closed.items():
                with self.store.transaction() as conn:
                    row = followups.step_row(conn, step_id)
                    if row is None or row["closed_at"]:
                        continue
                    if outcome == "reached":
                        followups.set_client_flag(conn, row["client_id"], reached_at=ts(now))
                    followups.stop(conn, row["sequence_id"], outcome, now)
                    self.store.audit(conn, now, outcome, sequence_id=row["sequence_id"], step_id=step_id)
                    log.info("follow-up %s stopped: %s in the calendar", row["sequence_id"], outcome)

    # -- one step -------------------------------------------------------------------------
    def _one(self, step: Any, facts: Facts, now: datetime) -> None:
        """In one transaction re-check, build the message (only for a step that may go) and
        claim it (planned → sending, committed before the hand-off); hand off; record."""
        step_id = step["id"]
        if facts.previous is not None and facts.previous["id"] in self.outcomes:   # it went in this dispatch
            facts.previous = {**facts.previous, **self.outcomes[facts.previous["id"]]}
        client = self.ctx.client_of(step["client_id"], step["client_name"], step["client_email"])
        channel = self.channel_for(step["channel"])
        built: tuple[Any, TemplateError | None, str] | None = None
        with self.store.transaction() as conn:
            for attempt in (1, 2):
                reason = self.recheck.reason(conn, step, client, channel, now, facts)
                if reason == HOLD or channel.backend in self.paused:
                    return
                if reason:
                    self._skip(conn, step, reason, now)
                    return
                if self._after_unread_task(step, facts):
                    return
                if built is None:
                    built = self._build(conn, step, client, channel)
                message, problem, unbuildable = built
                if problem is not None:
                    self._template_problem(conn, step, problem, now)
                    return
                if ("template", step["template"]) in self.known_reports:
                    self.store.resolve(conn, "template", "", step["template"])
                marker = channel.marker(message) if message is not None else None
                # claimed only if what the client told us (STOP, "we spoke") is what was re-checked
                if followups.claim(conn, step_id, self.ctx.worker, now, marker=marker,
                                   flags_as=(step["client_id"], facts.flag)):
                    break
                fresh = followups.client_flag(conn, step["client_id"])
                if attempt == 2 or followups.same_flags(fresh, facts.flag):
                    return          # no longer planned: stopped meanwhile, or another replica's
                facts.flag = fresh  # the client's flags changed since the chunk was read: again
            else:
                return              # never claimed: nothing is handed off
        if message is None:
            log.error("step %s: %s", step_id, unbuildable)
            self._record(step, "failed", now, reason=unbuildable)
            return
        self._send(step, message, channel, now, marker)

    def _build(self, conn: Any, step: Any, client: Any, channel: Channel) -> tuple[Any, TemplateError | None, str]:
        """(the message or None, a template's problem, why it could not be built otherwise)."""
        notes = [n for n in [patterns.note(conn, self.config, step)] if n] if channel.medium == "call-task" else []
        try:
            return messages.build(step, client, channel, self.config, self.ctx.templates, notes=notes), None, ""
        except TemplateError as exc:
            return None, exc, ""
        except Exception as exc:  # permanent: the same data will never build; nothing was handed off
            return None, None, f"the message could not be built ({type(exc).__name__}); nothing was sent"

    def _after_unread_task(self, step: Any, facts: Facts) -> bool:
        """The call task before this step could not be read back: whether the therapist closed it
        there is unknown, so the step waits (and is too late after max_lateness, like any step)."""
        if self.ctx.phone.backend not in self.unread or step["channel"] == "phone":
            return False
        before = facts.previous
        if before is None or before["channel"] != "phone" or before["state"] not in ("sent", "uncertain"):
            return False
        log.info("step %s waits: the call task before it could not be read back", step["id"])
        self._count("waiting:read_back")
        return True

    def _template_problem(self, conn: Any, step: Any, exc: TemplateError, now: datetime) -> None:
        """A broken template holds the step (nothing lost) until the therapist fixes it."""
        log.error("step %s held: template '%s' cannot be rendered", step["id"], step["template"])
        first = str(exc).splitlines()[0][:500]
        self.store.report(conn, now, "template", "", step["template"], first)
        self.known_reports.add(("template", step["template"]))
        followups.hold(conn, step["id"], f"held: template: {first}")
        self._count("held:template")

    def _skip(self, conn: Any, step: Any, reason: str, now: datetime) -> None:
        """Skip the step, or stop its follow-up; nothing when it is no longer planned (the
        chunk's facts are a few seconds old: another job may have stopped it meanwhile)."""
        if reason in STOPS_SEQUENCE:
            if not followups.stop(conn, step["sequence_id"], reason, now):
                return
            log.info("follow-up %s stopped: %s", step["sequence_id"], reason)
            if reason == "withdrawn":
                planning.reconsider(self.ctx, conn, step["client_id"], now)
        else:
            if not followups.skip(conn, step["id"], reason, now):
                return
            followups.close_if_done(conn, step["sequence_id"], now)
            log.info("step %s skipped: %s", step["id"], reason)
            if reason == "too_late":
                self.store.report(conn, now, "too_late", step["calendar"], step["id"], "too late to send")
        self.store.audit(conn, now, "skipped", sequence_id=step["sequence_id"], step_id=step["id"], detail=reason)
        self.outcomes[step["id"]] = {"state": "skipped", "finished_at": ts(now)}
        self._count(f"skipped:{reason}")

    # -- hand-off -------------------------------------------------------------------------
    def _send(self, step: Any, message: Any, channel: Channel, now: datetime, marker: str | None) -> None:
        try:
            receipt = channel.send(message)
        except ChannelError as exc:
            self._failed_send(step, channel, exc, now, marker)
            return
        except Exception as exc:  # unknown: it may have gone out
            log.error("step %s: unexpected %s during hand-off", step["id"], type(exc).__name__)
            self._record(step, "uncertain", now, reason=f"unexpected error {type(exc).__name__}",
                         provider_id=marker)
            return
        self._record(step, "sent", now, provider_id=receipt.provider_id, reason=None)

    def _failed_send(self, step: Any, channel: Channel, exc: ChannelError, now: datetime,
                     marker: str | None = None) -> None:
        step_id = step["id"]
        if exc.outcome == "held":
            self._hold(step, channel, exc, now)
            return
        if exc.outcome in ("retry", "paused"):
            if exc.outcome == "paused":
                self.paused.add(channel.backend)
            if exc.outcome == "retry" and step["attempts"] >= MAX_ATTEMPTS:
                self._record(step, "failed", now, reason=f"gave up after {MAX_ATTEMPTS} attempts: {exc.reason}")
                return
            wait = exc.retry_after if exc.retry_after is not None else 300 * (1 + random.random())
            with self.store.transaction() as conn:
                followups.release(conn, step_id, now + timedelta(seconds=wait), exc.reason)
                if exc.outcome == "paused":
                    self.store.report(conn, now, "paused", "", channel.backend, exc.reason)
            log.warning("step %s not sent (%s): %s", step_id, exc.outcome, exc.reason)
            self._count(exc.outcome)
            return
        if exc.opted_out:
            with self.store.transaction() as conn:
                followups.set_client_flag(conn, step["client_id"], opted_out_at=ts(now),
                                          opted_out_channels=channel.medium)
        self._record(step, exc.outcome, now, reason=exc.reason,
                     provider_id=marker if exc.outcome == "uncertain" else None)

    def _hold(self, step: Any, channel: Channel, exc: ChannelError, now: datetime) -> None:
        """A local cause found before the hand-off (library, secret, folder): the step stays
        planned, due as it was, so every cycle tries it again until the cause is fixed."""
        self.paused.add(channel.backend)   # the rest of this cycle would meet the same cause
        with self.store.transaction() as conn:
            followups.release(conn, step["id"], dt(step["due_at"]) or now, f"held: {exc.hold}: {exc.reason}")
            new = self.store.report(conn, now, "held", "", f"{channel.backend}:{exc.hold}",
                                    f"{exc.hold}: {exc.reason}"[:500])
            self.known_reports.add(("held", f"{channel.backend}:{exc.hold}"))
        log.log(logging.WARNING if new else logging.DEBUG, "step %s held (%s): %s", step["id"],
                exc.hold, exc.reason)
        self._count(f"held:{exc.hold}")

    def _record(self, step: Any, state: str, now: datetime, *, reason: str | None,
                provider_id: str | None = None) -> None:
        channel = self.channel_for(step["channel"])
        with self.store.transaction(durable=False) as conn:   # lost in a power cut: the step is uncertain
            followups.finish(conn, step["id"], state, now, reason=reason, provider_id=provider_id,
                             worker=self.ctx.worker)
            if state == "sent":   # whatever held this channel back is fixed
                held = [f"{channel.backend}:{hold}" for hold in ChannelError.HOLDS]
                if any(("held", ref) in self.known_reports for ref in held):
                    conn.execute(reports.delete().where(reports.c.kind == "held", reports.c.calendar == "",
                                                        reports.c.ref.in_(held)))
                    self.known_reports -= {("held", ref) for ref in held}
            closed = followups.close_if_done(conn, step["sequence_id"], now)
            detail = f"{step['channel']}" + (f": {reason[:500]}" if reason else "")
            if closed == "sent":   # the invitation is noted after the step's own entry
                planning.note_invitation(conn, step["sequence_id"], now,
                                         first={"event": state, "detail": detail, "step_id": step["id"]})
            else:
                self.store.audit(conn, now, state, sequence_id=step["sequence_id"], step_id=step["id"],
                                 detail=detail)
            if state in ("failed", "uncertain"):
                self.store.report(conn, now, state, step["calendar"], step["id"], (reason or "")[:500])
        self.outcomes[step["id"]] = {"state": state, "finished_at": ts(now)}
        if state in ("sent", "uncertain") and channel.medium != "call-task" and self.recheck.sent_this_hour is not None:
            self.recheck.sent_this_hour += 1
        level = logging.INFO if state == "sent" else logging.WARNING
        log.log(level, "step %s %s via %s", step["id"], state, step["channel"])
        self._count(state)


def _spread(due: list[Any]) -> list[Any]:
    """The due steps with their follow-ups in random order, each follow-up's steps still in
    their order (a step waits for the one before it)."""
    groups: dict[str, list[Any]] = {}
    for step in due:
        groups.setdefault(step["sequence_id"], []).append(step)
    order = list(groups.values())
    random.shuffle(order)
    return [step for group in order for step in group]
