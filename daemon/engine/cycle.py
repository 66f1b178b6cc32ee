"""The engine: poll calendars, detect, plan follow-ups, dispatch due steps.

It holds no domain state of its own: every decision is read from and written
to the store, so a restart (or ``once`` after ``once``) picks up exactly where
the last cycle stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from connectors.calendars.base import CalendarSource, Kept, SourceContext, Window
from connectors.channels.base import Channel, ChannelContext
from daemon import secrets
from daemon.backends import EMAIL_BACKENDS, PHONE_BACKENDS, SOURCES
from daemon.client_files import load_directory
from daemon.clients import Directory
from daemon.clock import Clock
from daemon.config import CalendarConfig, Config
from daemon.engine import absences, choices, detect, hearing
from daemon.engine.context import CycleContext
from daemon.engine.health import CycleReport, Health, PollResult
from daemon.engine.places import state_dir, store_url
from daemon.engine.replicas import Replicas
from daemon.errors import SourceError, UserError
from daemon.model import Client, Trigger
from daemon.store import groups as group_store
from daemon.store import sessions as session_store
from daemon.store.db import Store
from daemon.store.lock import FileLock
from daemon.store.tables import calendars, steps, text_update, ts
from daemon.templating.templates import Templates

log = logging.getLogger(__name__)
READ_TTL = timedelta(minutes=10)   # the inbox read's lease lapses after this if its replica died


class Engine:
    """One configured practice.  Raises InstanceLocked when another process owns a SQLite store."""

    def __init__(self, config: Config, clock: Clock, *, dry_run: bool = False, acquire_lock: bool = True,
                 directory: Directory | None = None, replica: bool = False) -> None:
        self.config = config
        self.clock = clock
        self.dry_run = dry_run or config.dry_run
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        self.sources: dict[str, CalendarSource] = {}
        self._file_lock: FileLock | None = None
        self.is_dispatcher = True
        self._heard_at: datetime | None = None
        self.store = Store(store_url(config), dry_run=dry_run)
        # several processes may share a PostgreSQL store: leases say who does what (replicas.py)
        self.replicas = Replicas(self.store, self.worker, shared=not self.store.is_sqlite and not dry_run,
                                 calendars={c.name: c.poll_every.approx for c in config.calendars},
                                 speed=getattr(clock, "speed", 1.0), service=replica)
        try:
            if acquire_lock:
                self._lock()
            self._set_up(config, directory)
        except BaseException:
            self.close()
            raise

    def _set_up(self, config: Config, directory: Directory | None) -> None:
        self.directory = directory if directory is not None else load_directory(
            config.resolve(config.clients.directory) if config.clients.directory else None,
            config.clients.default_region, strict=False)
        for problem in self.directory.problems:
            log.warning("client directory row skipped: %s", problem.split(": ", 1)[0])
        self.templates = Templates(config.resolve(config.templates.folder))
        self.sources = {c.name: self._source(c) for c in config.calendars}
        self.email = self._channel(EMAIL_BACKENDS, config.email)
        self.phone = self._channel(PHONE_BACKENDS, config.phone)
        self.inbox = hearing.inbox_for(config, secrets.lookup)
        self.context = CycleContext(config=config, store=self.store, directory=self.directory,
                                    templates=self.templates, email=self.email, phone=self.phone,
                                    clock=self.clock, worker=self.worker, is_dispatcher=self.is_dispatcher,
                                    stopping=self.stopping, replicas=self.replicas)

    # -- set-up -----------------------------------------------------------------------
    def _lock(self) -> None:
        """SQLite: one process per store (a file lock).  PostgreSQL: any number, sharing the
        work through leases; this one says it is alive before it touches anything."""
        if self.store.is_sqlite:
            self._file_lock = FileLock(self.config.resolve(self.config.store.path))
            self._file_lock.acquire()
        else:
            self.replicas.alive(self.clock.now(), force=True)

    def _source(self, cal: CalendarConfig) -> CalendarSource:
        ctx = SourceContext(base_dir=self.config.base_dir, timezone=self.config.practice.timezone,
                            clock=self.clock, secret=secrets.lookup, state_dir=state_dir(self.config),
                            memo=self._memo)
        return SOURCES.load(cal.kind)(cal.name, cal.source, cal.options, ctx, timeout=cal.timeout.seconds or 30.0)

    def _memo(self, calendar: str) -> Kept:
        """What a source kept per event at the last applied poll (daemon.store.groups): the
        hashes now, an event's data when the source asks for it."""
        def fetch(uids: list[str]) -> dict[str, str]:
            with self.store.transaction() as conn:
                return group_store.data(conn, calendar, uids)

        with self.store.transaction() as conn:
            return Kept(group_store.hashes(conn, calendar), fetch)

    def _channel(self, registry: Any, cfg: Any) -> Channel:
        p = self.config.practice
        ctx = ChannelContext(base_dir=self.config.base_dir, state_dir=state_dir(self.config), timezone=p.timezone,
                             clock=self.clock, secret=secrets.lookup, practice_name=p.name,
                             therapist_name=p.therapist, therapist_email=p.therapist_email,
                             sender=self.config.email.common.sender, dry_run=self.dry_run,
                             sender_name=self.config.email.common.sender_name,
                             email_channel=self.email if registry is PHONE_BACKENDS else None)
        return registry.load(cfg.backend)(cfg.options, ctx)

    def check_ready(self) -> None:
        """Raises UserError when templates or channel secrets the cadence needs are missing."""
        problems: list[str] = []
        for name in sorted({s.template for s in self.config.cadence.steps}):
            problems.extend(self.templates.validate(name))
        for channel in {id(c): c for c in (self.email, self.phone)}.values():
            problems.extend(channel.check())
        if problems:
            raise UserError("not ready to send", problems)

    def request_stop(self) -> None:
        """Let a running dispatch end after its current step (SIGTERM)."""
        self.stopping.set()

    def close(self) -> None:
        channels = [getattr(self, "email", None), getattr(self, "phone", None)]
        for thing in [*self.sources.values(), *filter(None, channels)]:
            try:
                thing.close()
            except Exception:  # closing must never mask the real outcome
                log.debug("close failed for %s", type(thing).__name__)
        if self._file_lock:
            self._file_lock.release()
            self._file_lock = None
        replicas = getattr(self, "replicas", None)
        if replicas is not None:
            replicas.release()
        self.store.close()

    # -- the cycle ----------------------------------------------------------------------
    def run_once(self) -> CycleReport:
        """Poll every calendar, then dispatch what is due."""
        report = CycleReport(polls=[self.poll_one(name) for name in self.sources])
        if self.hears:
            self.hear()
        report.dispatched = self.dispatch()
        return report

    def poll(self, calendar_name: str | None = None) -> list[PollResult]:
        names = [calendar_name] if calendar_name else list(self.sources)
        return [self.poll_one(n) for n in names]

    def poll_one(self, name: str) -> PollResult:
        """Read one calendar and apply what changed; never raises for a bad calendar."""
        source = self.sources[name]
        now = self.clock.now()
        rules = self.config.detection
        window = Window(now - rules.lookback.approx, now + rules.horizon.approx)
        if not self.replicas.may_poll(name, now):
            log.debug("calendar %s: polled by another replica", name)
            return PollResult(name, True, elsewhere=True)
        with self.store.transaction() as conn:
            row = self.store.calendar_row(conn, name)
        try:
            result = source.fetch(window, self.store.calendar_state(row))
        except SourceError as exc:
            return self._degrade(name, now, str(exc), error=True)
        except Exception as exc:  # a connector bug must not stop the other calendars
            log.debug("calendar %s: unexpected %s", name, type(exc).__name__, exc_info=True)
            return self._degrade(name, now, f"calendar '{name}' ({source.display_source}): "
                                 f"unexpected error {type(exc).__name__}", error=True)
        for warning in result.warnings:
            log.warning("calendar %s: %s", name, warning)
        log.debug("calendar %s: %s occurrence(s) in the window (%s)", name,
                  "unchanged" if result.occurrences is None else len(result.occurrences),
                  "snapshot" if result.complete else "changes")
        with self.store.transaction() as conn:
            if result.occurrences is None:
                self._calendar_ok(conn, name, now, result.state, row)
                group_store.save(conn, name, result)
                return PollResult(name, True)
            return self._apply(conn, name, row, result, now, window)

    def _apply(self, conn: Any, name: str, row: dict[str, Any], result: Any, now: datetime,
               window: Window) -> PollResult:
        counts = None
        if result.complete:
            prev = session_store.load(conn, name)
        else:       # a delta: only the rows of what it names, and the window's counts if the breaker may trip
            prev = session_store.load_some(conn, name, {o.key for o in result.occurrences},
                                           {o.uid for o in result.occurrences})
            if breaker_weighs(result.occurrences, self.config.detection.vanish_breaker_min):
                counts = session_store.window_counts(conn, name, window.start, window.end, now)
        first_seen = datetime.fromisoformat(row["first_seen_at"].replace("Z", "+00:00")) \
            if row["first_seen_at"] else now
        last_poll = datetime.fromisoformat(row["last_ok_at"].replace("Z", "+00:00")) if row["last_ok_at"] else None
        ctx = detect.Context(calendar=name, now=now, window=window, baseline=row["first_seen_at"] is None,
                             first_seen_at=first_seen, prev_poll_at=last_poll, rules=self.config.detection,
                             directory=self.directory, therapist_email=self.config.therapist_of(name).email,
                             staff=frozenset(t.email.lower() for t in self.config.therapists),
                             unreadable=frozenset(result.unreadable),
                             absences=absences.load(conn, self.config.same_therapist(name)),
                             chosen=choices.load(conn, name), window_counts=counts)
        outcome = detect.reconcile(prev, result.occurrences, result.complete, ctx)
        log.debug("calendar %s: %d session(s) seen, %d gone, %d trigger(s)", name, len(outcome.rows),
                  len(outcome.gone), len(outcome.triggers))
        if outcome.tripped:
            if not self._accept_held(conn, name, row, outcome, now):
                return PollResult(name, True, degraded=outcome.tripped)
            ctx = replace(ctx, baseline=True)   # accepted as the new normal: nothing inferred from what vanished
            outcome = detect.reconcile(prev, result.occurrences, result.complete, ctx)
        if ctx.baseline:
            log.info("calendar %s read for the first time: %d session(s) noted; nothing that ended "
                     "before now will be followed up", name, len(outcome.rows))
        session_store.save(conn, outcome.rows + outcome.gone, prev)
        absences.save(conn, name, outcome.absences, complete=result.complete,
                      seen=[o.key for o in result.occurrences])
        self._calendar_ok(conn, name, now, result.state, row, first_seen_at=row["first_seen_at"] or ts(now))
        group_store.save(conn, name, result)
        # no block loaded for the therapist's calendars, none saved by this poll: none in the store
        planned = self._plan(conn, name, outcome.triggers, now, blocks=bool(ctx.absences or outcome.absences))
        return PollResult(name, True, triggers=planned)

    def _accept_held(self, conn: Any, name: str, row: dict[str, Any], outcome: Any, now: datetime) -> bool:
        """Hold a tripped poll; True once the same shrunken feed has lasted ``breaker_accept_after``."""
        fingerprint = hashlib.sha256("\n".join(sorted(outcome.held)).encode()).hexdigest()
        held = json.loads(row.get("held") or "{}")
        if held.get("fingerprint") == fingerprint:
            since = datetime.fromisoformat(held["since"])
            if now - since >= self.config.detection.breaker_accept_after.approx:
                log.warning("calendar %s: the held feed lasted since %s; accepted, nothing inferred",
                            name, held["since"])
                return True
        else:
            held = {"fingerprint": fingerprint, "since": now.isoformat()}
        log.warning("calendar %s held back: %s", name, outcome.tripped)
        self.store.report(conn, now, "degraded", name, outcome.tripped, outcome.tripped)
        conn.execute(calendars.update().where(calendars.c.name == name).values(
            last_poll_at=ts(now), degraded=outcome.tripped, held=json.dumps(held),
            degraded_since=row["degraded_since"] or ts(now)))
        return False

    def _calendar_ok(self, conn: Any, name: str, now: datetime, state: dict[str, Any],
                     row: dict[str, Any], *, first_seen_at: str | None = None) -> None:
        """Record a good poll (and, when given, when the calendar was first read: one UPDATE)."""
        if row.get("degraded"):
            log.info("calendar %s healthy again", name)
            self.store.resolve(conn, "degraded", name)
        values: dict[str, Any] = {"last_poll_at": ts(now), "last_ok_at": ts(now), "state_json": json.dumps(state),
                                  "degraded": None, "degraded_since": None, "held": None}
        if first_seen_at is not None:
            values["first_seen_at"] = first_seen_at
        conn.execute(text_update("calendars", tuple(values), ("name",)), {**values, "at_name": name})

    def _degrade(self, name: str, now: datetime, reason: str, *, error: bool) -> PollResult:
        log.error("%s", reason)
        with self.store.transaction() as conn:
            row = self.store.calendar_row(conn, name)
            conn.execute(calendars.update().where(calendars.c.name == name).values(
                last_poll_at=ts(now), degraded=reason, degraded_since=row["degraded_since"] or ts(now)))
            self.store.report(conn, now, "degraded", name, reason, reason)
        return PollResult(name, False, error=reason, degraded=reason)

    # -- planning -----------------------------------------------------------------------
    def _plan(self, conn: Any, calendar: str, triggers: list[Trigger], now: datetime, *, blocks: bool = True) -> int:
        """Review the calendar's open follow-ups, then start one per trigger or record why not
        (daemon.engine.planning; ``blocks``: as ``after_poll``'s)."""
        from daemon.engine.planning import after_poll

        return after_poll(self.context, conn, calendar, triggers, now, blocks=blocks)

    def client_of(self, client_id: str, name: str = "", email: str = "") -> Client:
        """The directory's current entry, or the attendee the session named."""
        return self.context.client_of(client_id, name, email)

    # -- dispatch and health --------------------------------------------------------------
    def dispatch(self) -> dict[str, int]:
        from daemon.engine.dispatch import Dispatcher

        from daemon.engine.notices import send_due

        now = self.clock.now()
        fresh = self._heard_at is not None and abs((now - self._heard_at).total_seconds()) < 30
        if self.hears and not fresh and hearing.anything_due(self.context, now):
            self.hear()   # a client who answered minutes ago is not sent the next step
        counts = Dispatcher(self.context).run()
        return send_due(self.context, counts)

    @property
    def hears(self) -> bool:
        """Whether answers can be read back (an [inbox], or texts through Twilio)."""
        return self.inbox is not None or hearing.sms_reader(self.context) is not None \
            or callable(getattr(self.email, "reader", None))

    def hear(self) -> dict[str, int]:
        """Read the practice inbox and the texts to the practice; apply what arrived
        (daemon.engine.hearing)."""
        now = self.clock.now()
        with self.replicas.exclusive("inbox", now, READ_TTL) as mine:
            if not mine:               # another replica is reading it right now: as fresh
                self._heard_at = now
                return {}
            self._heard_at = now
            return dict(hearing.hear_all(self.context, self.inbox, now))

    def heartbeat(self) -> None:
        """The service's heartbeat: this replica is alive (shared stores)."""
        self.replicas.alive(self.clock.now(), force=True)

    def health(self) -> Health:
        now = self.clock.now()
        try:
            with self.store.transaction() as conn:
                degraded = [r[0] for r in conn.execute(
                    sa.select(calendars.c.name).where(calendars.c.degraded.is_not(None))).all()]
                counts: dict[str, int] = dict(conn.execute(sa.select(steps.c.state, sa.func.count()).group_by(steps.c.state)).all())
                due = conn.execute(sa.select(sa.func.count()).select_from(steps).where(
                    steps.c.state == "planned", steps.c.due_at <= ts(now))).scalar_one()
        except sa.exc.SQLAlchemyError as exc:
            return Health(False, len(self.sources), 0, [], 0, 0, store_down=type(exc).__name__)
        return Health(True, len(self.sources), due, degraded, counts.get("uncertain", 0), counts.get("failed", 0))

    # -- the therapist's digest -------------------------------------------------------------
    def send_digest(self) -> bool:
        """Email the therapist today's digest, at most once a day (see daemon.engine.digest)."""
        from daemon.engine.digest import send_digest

        return send_digest(self.context)


def breaker_weighs(delta: list[Any], vanish_breaker_min: int) -> bool:
    """Whether the vanish breaker could trip on a delta, and so needs the window's counts.

    It trips only on whole events gone, at least ``vanish_breaker_min`` of them and at least
    one (``detect._trips``), and a delta's whole-gone sessions are all keys of its tombstones
    (``detect._vanished``): with fewer tombstone keys than that, no count can make it trip."""
    gone = {o.key for o in delta if o.tombstone or (o.deleted and o.start is None)}
    return len(gone) >= max(vanish_breaker_min, 1)
