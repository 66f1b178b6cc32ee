"""Sending the daily digests: one per therapist per day, whichever replica gets there first.

Each therapist's day is claimed in the store before the hand-off (``daemon.store.digests``):
a second replica, or a second run the same day, finds it taken.  A definite failure releases
the claim (a later run may try again); a hand-off that may have gone out (``uncertain``, or
a process that died during it) keeps the claim and is sent once more after
``digests.STALE``, by the next digest run or by the dispatch loop (``resume``), with a note
that it may arrive twice: a digest goes only to the therapist, and a second copy is better
than a day's calls silently missing.  Logs carry no client data, and no therapist either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from daemon.config.therapists import Therapist
from daemon.engine.context import CycleContext
from daemon.engine.digest import day_of, prepare
from daemon.errors import ChannelError
from daemon.store import digests as claims
from daemon.store.tables import reports

log = logging.getLogger(__name__)
AGAIN = ("This digest may reach you twice: sending it earlier today was interrupted, and "
         "welcomeback could not tell whether it went out.")


def recipients(ctx: CycleContext) -> list[Therapist]:
    """Who gets a digest: each therapist with calendars, and the [practice] therapist (the
    practice's own news: a paused channel, a broken template)."""
    found = {t.key: t for t in ctx.config.all_therapists()}
    found.setdefault(ctx.config.practice_therapist.key, ctx.config.practice_therapist)
    return list(found.values())


def send_all(ctx: CycleContext) -> bool:
    """Send today's digest to each therapist once; True when any was handed to the email channel."""
    if not ctx.config.digest.enabled or not ctx.is_dispatcher:
        return False
    now = ctx.clock.now()
    return _send(ctx, recipients(ctx), now)


def resume(ctx: CycleContext) -> int:
    """Send again today's digests whose hand-off was interrupted long enough ago (the
    dispatch loop calls this); returns how many went out."""
    if not ctx.config.digest.enabled or not ctx.is_dispatcher:
        return 0
    now = ctx.clock.now()
    with ctx.store.transaction() as conn:
        keys = set(claims.waiting(conn, day_of(ctx, now), now))
    if not keys:
        return 0
    return sum(send_one(ctx, t, now) for t in recipients(ctx) if t.key in keys)


def _send(ctx: CycleContext, therapists: Iterable[Therapist], now: datetime) -> bool:
    sent = False
    for therapist in therapists:
        sent |= send_one(ctx, therapist, now)
    return sent


def send_one(ctx: CycleContext, therapist: Therapist, now: datetime) -> bool:
    """The therapist's digest of today, at most once (see the module); True when handed off."""
    day = day_of(ctx, now)
    legacy = therapist.key == ctx.config.practice_therapist.key
    with ctx.store.transaction() as conn:
        known = claims.today(conn, therapist.key, day, legacy=legacy)
    if known is not None and not claims.interrupted(known, now):
        return False
    again = known is not None
    prepared = prepare(ctx, now, therapist, AGAIN if again else "")
    if prepared is None:
        log.info("digest %s: nothing to report", day)
        return False
    if claims.claim(ctx.store, therapist.key, day, ctx.worker, now, legacy=legacy) is None:
        return False
    message, found = prepared
    try:
        ctx.email.send(message)
    except ChannelError as exc:
        log.warning("digest %s not sent (%s): %s", day, exc.outcome, exc.reason)
        if exc.outcome == "uncertain":
            with ctx.store.transaction() as conn:
                claims.finish(conn, therapist.key, day, ctx.worker, "uncertain")
        else:
            claims.release(ctx.store, therapist.key, day, ctx.worker, now)   # a later run may try again
        return False
    except Exception as exc:  # it may have gone out: the claim stays "sending" (taken over once, later)
        log.error("digest %s: unexpected %s during hand-off", day, type(exc).__name__)
        return False
    with ctx.store.transaction() as conn:
        claims.finish(conn, therapist.key, day, ctx.worker, "sent")
        if found.report_ids:
            conn.execute(reports.update().where(reports.c.id.in_(found.report_ids)).values(notified=True))
    log.info("digest %s sent%s (%d report(s) marked notified)", day, " again" if again else "",
             len(found.report_ids))
    return True
