"""The service's timers: APScheduler only says "poll this calendar now", "send what is due now"
and "send the digest now" (reliability notes §1); every job runs through the service's ``job``
wrapper.  Polls run on their own small pool (``POLL_WORKERS`` threads: network feeds overlap
their waits), the rest — dispatch, the inbox, the digest — one at a time on another thread, so a
long dispatch never keeps a calendar from being polled, nor a slow feed a step from being sent.
Built anew at each start and reload."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from daemon.config import Config

POLL_WORKERS = 2
DISPATCH_EVERY = timedelta(seconds=60)
SMS_EVERY = timedelta(minutes=2)             # texts to the practice, without an [inbox]
FIRST_DISPATCH_DELAY = timedelta(seconds=5)  # let the first polls go first


def build_scheduler(config: Config, engine: Any, job: Callable[..., None],
                    speed: float = 1.0) -> BackgroundScheduler:
    """An in-memory scheduler: one poll job per calendar, dispatch, digest.

    ``speed`` > 1 (``run --speed``) runs every interval that many times faster on the wall
    clock, so the engine's virtual clock sees the usual spacing; the daily digest then fires
    every 24 h of virtual time, counted from the start."""
    scheduler = BackgroundScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(max_workers=1),
                   "polls": ThreadPoolExecutor(max_workers=max(1, min(POLL_WORKERS, len(config.calendars))))},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone=timezone.utc)
    now = datetime.now(timezone.utc)

    def every(delta: timedelta) -> IntervalTrigger:
        return IntervalTrigger(seconds=max(0.05, _seconds(delta) / speed))

    for calendar in config.calendars:
        scheduler.add_job(job, every(calendar.poll_every.approx),
                          args=(engine.poll, calendar.name), id=f"poll:{calendar.name}",
                          name="poll", next_run_time=now, executor="polls")
    scheduler.add_job(job, every(DISPATCH_EVERY),
                      args=(engine.dispatch,), id="dispatch", name="dispatch",
                      next_run_time=now + FIRST_DISPATCH_DELAY / speed)
    if getattr(engine, "hears", False):
        every_inbox = config.inbox.poll_every.approx if config.inbox is not None else SMS_EVERY
        scheduler.add_job(job, every(every_inbox),
                          args=(engine.hear,), id="inbox", name="inbox", next_run_time=now)
    digest = getattr(engine, "send_digest", None)
    if config.digest.enabled and digest is not None:
        hour, minute = (int(part) for part in config.digest.at.split(":"))
        trigger = (CronTrigger(hour=hour, minute=minute, timezone=config.practice.timezone)
                   if speed == 1.0 else every(timedelta(days=1)))
        scheduler.add_job(job, trigger, args=(digest,), id="digest", name="digest")
    return scheduler


def _seconds(delta: timedelta) -> float:
    return max(1.0, delta.total_seconds())
