"""``welcomeback run``: the long-running service under systemd (Type=notify).

The store is the record of every follow-up; APScheduler is only an in-memory
timer that says "poll this calendar now", "send what is due now" and "send the
digest now" (see reliability notes §1), rebuilt from the config at each start
and reload.  Polls run on a small pool of their own, the other jobs one at a time on one
thread (daemon/service/jobs.py).

The main thread owns the life cycle: it sends READY=1 once config, store,
templates and secrets are loaded, then every few seconds asks the engine for
its health and pings ``WATCHDOG=1`` only while the store answers and no job is
stuck, so systemd restarts a service that stopped working, not only one that
died.  SIGTERM/SIGINT stop it cleanly; SIGHUP reloads the config.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import sqlalchemy.exc
from apscheduler.schedulers.background import BackgroundScheduler

from daemon import config as config_module
from daemon.clock import Clock, SystemClock
from daemon.config import Config, libraries
from daemon.errors import ConfigError
from daemon.service import sdnotify
from daemon.service.jobs import build_scheduler
from daemon.service.notes import startup_notes
from daemon.service.problems import frames, log_problems, log_rejected

log = logging.getLogger(__name__)

DEFAULT_TICK = 5.0
STUCK_AFTER = 15 * 60.0  # a job running longer than this withholds the watchdog ping
STORE_WAIT = 60.0        # seconds a start waits for a store that does not answer (TimeoutStartSec=90)


class Service:
    """One running welcomeback: config, engine, scheduler, and the notify loop."""

    def __init__(self, config_path: Path, *, debug: bool = False, tick: float | None = None,
                 clock: Clock | None = None, stuck_after: float = STUCK_AFTER,
                 store_wait: float = STORE_WAIT) -> None:
        self.config_path = Path(config_path)
        self.debug = debug
        self.tick = tick if tick is not None else _default_tick()
        self.clock: Clock = clock or SystemClock()
        self.stuck_after = stuck_after
        self.store_wait = store_wait
        self.config: Config | None = None
        self.engine: Any = None
        self.scheduler: BackgroundScheduler | None = None
        self._lock = threading.RLock()  # guards engine/scheduler swaps (reload, heartbeat)
        self._wake = threading.Event()
        self._reload_requested = False
        self._busy: dict[int, float] = {}   # running job's thread → when it started
        self._greeting: list[str] = []
        self.console: Any = None   # the therapist's console when [web] listen is set
        self.watcher: Any = None   # IMAP IDLE on the practice inbox, when it offers it
        self._store_down: str = ""  # why the store does not answer (jobs wait for it), or ""
        self._store_lock = threading.Lock()

    # -- life cycle --------------------------------------------------------------
    def start(self) -> None:
        """Load config, open the engine, schedule the jobs, then READY=1.

        Raises ConfigError / UserError (e.g. InstanceLocked) for what the user can
        fix, anything else for a runtime failure; nothing is left running then.
        """
        config = config_module.load(self.config_path)
        libraries.require(config)          # a missing library stops here: exit 2, never READY
        self._activate_waiting(config)
        try:
            self._start_console(config)
        except BaseException:
            self.stop()
            raise
        sdnotify.notify(ready=True, status=self._summary())
        log.info("service ready: %d calendar(s)", len(config.calendars))
        for line in self._greeting:
            log.info("%s", line)

    def _activate_waiting(self, config: Config) -> None:
        """``_activate``, waiting up to ``store_wait`` seconds for a store that does not answer
        yet (PostgreSQL restarting, or starting after us at boot); then the failure stands."""
        deadline = time.monotonic() + self.store_wait
        pause = 1.0
        while True:
            try:
                with self._lock:
                    self._activate(config)
                return
            except sqlalchemy.exc.DBAPIError as exc:
                if not _lost_store(exc) or time.monotonic() + pause > deadline:
                    raise
                self._note_store(type(exc).__name__)
                sdnotify.notify(status=f"waiting for the store ({type(exc).__name__})")
                time.sleep(pause)
                pause = min(pause * 2, 10.0)

    def _activate(self, config: Config) -> None:
        """Open an engine for ``config`` and start its jobs; closes it on failure."""
        from daemon.engine.cycle import (
            Engine,  # imported late: the engine pulls in every connector
        )

        engine = Engine(config, clock=self.clock, replica=True)
        try:
            check = getattr(engine, "check_ready", None)
            if check is not None:
                check()
            if self.engine is None and not self._greeting:   # before the first poll changes the store
                self._greeting = startup_notes(config, engine)
            scheduler = build_scheduler(config, engine, self._job,
                                        speed=getattr(self.clock, "speed", 1.0))
            scheduler.start()
        except BaseException:
            engine.close()
            raise
        self.config, self.engine, self.scheduler = config, engine, scheduler
        self.watcher = _watch_inbox(engine, scheduler, self._job)

    def _deactivate(self) -> None:
        """Stop the jobs (an in-flight one finishes) and close the engine."""
        request_stop = getattr(self.engine, "request_stop", None)
        if request_stop is not None:  # lets a long dispatch end after its current step
            request_stop()
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def stop(self) -> None:
        """STOPPING=1, then let the running job finish and release the store."""
        sdnotify.notify(stopping=True, status="stopping")
        if self.console is not None:
            server, web_engine = self.console
            self.console = None
            server.stop()
            web_engine.close()
        with self._lock:
            self._deactivate()
        log.info("service stopped")

    def _start_console(self, config: Config) -> None:
        """Serve the console in a thread beside the jobs when ``[web] listen`` is set (its own
        store-only engine on the service's clock; exit 2 before READY when it cannot listen)."""
        if not config.web.listen:
            return
        from daemon.engine.cycle import Engine
        from daemon.web.serve import Server, build, parse_listen, require_web

        require_web("[web] listen")
        listen = parse_listen(config.web.listen)
        engine = Engine(config, clock=self.clock, acquire_lock=False)
        try:
            server = Server(build(engine, config.web), listen, config.web, config.base_dir)
        except BaseException:
            engine.close()
            raise
        server.start()
        self.console = (server, engine)
        self._greeting.append(f"console listening on port {server.port}")

    def reload(self) -> bool:
        """Apply the config file again; True when the new one is now in force.

        A config that does not load, or whose engine cannot start (templates,
        directory, secrets), is logged and ignored: the running engine and jobs
        are untouched.  Safe to call from any thread; SIGHUP goes through the loop.
        """
        sdnotify.notify(reloading=True, status="reloading configuration")
        try:
            new = config_module.load(self.config_path)
        except ConfigError as exc:
            log_rejected(exc)
            sdnotify.notify(ready=True, status="reload rejected: " + self._summary())
            return False
        problem = self._probe(new)
        if problem is not None:
            log.error("reload rejected, the running configuration stays in force: the new one "
                      "cannot start (%s)", type(problem).__name__)
            log_problems(problem)
            sdnotify.notify(ready=True, status="reload rejected: " + self._summary())
            return False
        with self._lock:
            old = self.config
            self._deactivate()
            applied = self._swap_to(new, old)
        sdnotify.notify(ready=True, status=self._summary())
        return applied

    def _probe(self, config: Config) -> Exception | None:
        """Build (and close) an engine for ``config`` without taking the store lock.

        Templates, the client directory, calendars, channels and secrets load
        here while the running engine keeps working; None when all is well.
        """
        from daemon.engine.cycle import Engine

        try:
            libraries.require(config)
            engine = Engine(config, clock=self.clock, acquire_lock=False)
        except Exception as exc:
            return exc
        try:
            check = getattr(engine, "check_ready", None)
            if check is not None:
                check()
        except Exception as exc:
            return exc
        finally:
            engine.close()
        return None

    def _swap_to(self, new: Config, old: Config | None) -> bool:
        try:
            self._activate(new)
        except Exception as exc:
            if old is None:
                raise
            log.error("new configuration could not start (%s); keeping the previous one",
                      type(exc).__name__)
            log_problems(exc)
            self._activate(old)
            return False
        log.info("configuration reloaded: %d calendar(s)", len(new.calendars))
        return True

    # -- the main loop -----------------------------------------------------------
    def run(self, stop_event: threading.Event | None = None) -> int:
        """Start, then loop until ``stop_event`` is set or SIGTERM/SIGINT; returns 0."""
        stop = stop_event or threading.Event()
        restore = self._install_signals(stop)
        try:
            self.start()
            try:
                self._loop(stop)
            finally:
                self.stop()
        finally:
            restore()
        return 0

    def _loop(self, stop: threading.Event) -> None:
        """Heartbeat every tick; reload when asked; return once ``stop`` is set."""
        while not stop.is_set():
            self.heartbeat()
            self._wake.wait(self.tick)
            self._wake.clear()
            if self._reload_requested and not stop.is_set():
                self._reload_requested = False
                self.reload()

    def request_reload(self) -> None:
        """Ask the main loop to reload soon (what SIGHUP does); safe from any thread."""
        self._reload_requested = True
        self._wake.set()

    def heartbeat(self) -> bool:
        """Ping the watchdog with a STATUS if the engine is healthy; True when pinged."""
        with self._lock:
            problem, summary = self._check()
            beat = getattr(self.engine, "heartbeat", None)
            if beat is not None:
                try:
                    beat()               # this replica is alive (a shared store)
                except Exception as exc:
                    log.debug("heartbeat not recorded (%s)", type(exc).__name__)
        if problem:
            log.warning("unhealthy: %s", problem)
            sdnotify.notify(status=f"unhealthy: {problem}; {summary}")
            return False
        sdnotify.notify(watchdog=True, status=summary)
        return True

    def _check(self) -> tuple[str | None, str]:
        """(what is wrong or None, the health summary) for the running engine."""
        if self.engine is None or self.scheduler is None or not self.scheduler.running:
            return "scheduler not running", "not running"
        try:
            health = self.engine.health()
        except Exception as exc:
            return f"health check failed ({type(exc).__name__})", "health unknown"
        if health.store_down:
            # the process is fine and waits for its store: a restart would not help, so the
            # watchdog is still pinged; STATUS and the log say so
            self._note_store(health.store_down)
            return None, f"degraded: the store does not answer ({health.store_down}); waiting for it"
        self._note_store("")
        summary = str(health.summary)
        busy = min(self._busy.values(), default=None)
        if busy is not None and time.monotonic() - busy > self.stuck_after:
            return f"a job has been running for over {int(self.stuck_after)} s", summary
        return (None if health.ok else "engine reports unhealthy"), summary

    def _note_store(self, down: str) -> None:
        """Log once when the store stops answering, once when it answers again (the jobs'
        threads and the heartbeat both report: one lock, one line)."""
        with self._store_lock:
            if down and not self._store_down:
                log.warning("the store does not answer (%s); polls and sends wait for it", down)
            elif not down and self._store_down:
                log.info("the store answers again; carrying on")
            self._store_down = down

    def _summary(self) -> str:
        with self._lock:
            return self._check()[1]

    # -- signals -----------------------------------------------------------------
    def _install_signals(self, stop: threading.Event) -> Callable[[], None]:
        """SIGTERM/SIGINT stop, SIGHUP reloads; only possible in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            stop.set()
            self._wake.set()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self.request_reload()

        previous = {sig: signal.signal(sig, handler) for sig, handler in
                    ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop), (signal.SIGHUP, on_hup))}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return restore

    # -- jobs --------------------------------------------------------------------
    def _job(self, func: Callable[..., Any], *args: Any) -> None:
        """Run one engine call; a failure is logged (type only) and the next run still comes."""
        me = threading.get_ident()
        self._busy[me] = time.monotonic()
        try:
            func(*args)
        except sqlalchemy.exc.DBAPIError as exc:
            if not _lost_store(exc):
                log.error("job %s failed: %s", getattr(func, "__name__", "?"), type(exc).__name__)
            else:                 # the heartbeat reports the outage; the next run tries again
                self._note_store(type(exc).__name__)
                log.debug("job %s waits for the store (%s)", getattr(func, "__name__", "?"), type(exc).__name__)
        except Exception as exc:
            # Exception text may quote calendar content: log the type and, with
            # --debug, the frames, never the message.
            log.error("job %s failed: %s", getattr(func, "__name__", "?"), type(exc).__name__)
            if self.debug:
                log.debug("traceback (frames only): %s", frames(exc))
        finally:
            self._busy.pop(me, None)


def _lost_store(exc: Exception) -> bool:
    """Whether a database error means the store cannot be reached (not a bug in a query)."""
    return isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)) \
        or bool(getattr(exc, "connection_invalidated", False))


def _watch_inbox(engine: Any, scheduler: BackgroundScheduler, job: Callable[..., None]) -> Any:
    """Start IMAP IDLE on the practice inbox: new mail runs the inbox job at once (queued
    behind a running dispatch on its thread); the job's interval stays the fallback."""
    from connectors.inbox.imap import ImapInbox

    inbox = getattr(engine, "inbox", None)
    if not isinstance(inbox, ImapInbox):
        return None
    from connectors.inbox.idle import IdleWatcher

    def read_now() -> None:
        scheduler.add_job(job, args=(engine.hear,), id="inbox-now", name="inbox",
                          replace_existing=True)

    watcher = IdleWatcher(inbox, read_now)
    watcher.start()
    return watcher


def run_service(config_path: Path, *, debug: bool = False,
                stop_event: threading.Event | None = None, tick: float | None = None,
                clock: Clock | None = None) -> int:
    """Run the service until SIGTERM (or ``stop_event``); returns the exit code.

    Raises ConfigError / InstanceLocked (UserError: exit 2) when it cannot start.
    """
    service = Service(config_path, debug=debug, tick=tick, clock=clock)
    try:
        return service.run(stop_event)
    except Exception as exc:
        sdnotify.notify(status=f"failed: {type(exc).__name__}")
        raise


def _default_tick() -> float:
    """Every 5 s, or more often if systemd's watchdog wants it (half its timeout)."""
    interval = sdnotify.watchdog_interval()
    return DEFAULT_TICK if interval is None else max(0.5, min(DEFAULT_TICK, interval / 2))


