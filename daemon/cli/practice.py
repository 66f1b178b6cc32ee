"""The therapist's word on a held burst (``confirm``, ``dismiss``) and the monthly ``report``.

``confirm`` and ``dismiss`` take one client (exact name, alias or email, printed as matched)
or ``--all``; the logic lives in ``daemon.engine.bursts`` so the web console shares it.
``report`` prints the month as text (and writes the SVG chart of the last twelve months
beside it), CSV or JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from daemon.errors import UserError


def _burst(args: argparse.Namespace, act: Any, done: str) -> int:
    from daemon.cli.actions import match_client, who
    from daemon.cli.commands import _engine

    if bool(args.all) == bool(args.client):
        raise UserError(f"{args.command}: give one client (name, alias or email) or --all, not both")
    engine = _engine(args, lock=False, now=args.now)
    try:
        client_id = None
        if args.client:
            client = match_client(engine, args.client)
            print(f"matched: {client.label}")
            client_id = client.client_id
        count = act(engine.store, client_id, engine.clock.now(), by=f"by {who()} on the command line")
    finally:
        engine.close()
    if not count:
        raise UserError(f"{args.command}: no follow-up {'of this client ' if client_id else ''}is held in a burst")
    print(f"{count} follow-up(s) {done}")
    return 0


def confirm(args: argparse.Namespace) -> int:
    from daemon.engine import bursts

    return _burst(args, bursts.confirm, "confirmed: the clients cancelled; their follow-ups go ahead")


def dismiss(args: argparse.Namespace) -> int:
    from daemon.engine import bursts

    return _burst(args, bursts.dismiss, "dismissed: your own cancellations; nothing is sent to them")


def report(args: argparse.Namespace) -> int:
    from daemon.cli.commands import _engine
    from daemon.engine import report as monthly, report_text
    from daemon.engine.report import Month

    engine = _engine(args, lock=False, now=args.now)
    try:
        now = engine.clock.now()
        tz = engine.config.practice.timezone
        try:
            month = Month.parse(args.month) if args.month else Month.of(now, tz)
        except ValueError as exc:
            raise UserError(f"--month: {exc}") from None
        with engine.store.transaction() as conn:
            names = _names(engine, conn)
            found = monthly.monthly(conn, engine.config, names, month, now)
            series = monthly.misses_by_month(conn, engine.config, month)
    finally:
        engine.close()
    if args.format == "json":
        print(report_text.as_json(found))
    elif args.format == "csv":
        print(report_text.as_csv(found))
    else:
        path = _chart_path(args, engine.config, month)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(monthly.chart_svg(series, f"Missed and cancelled sessions, {series[0][0]} to {month}"))
        print(report_text.as_text(found))
        print(f"\nchart of the last twelve months: {path}", file=sys.stderr)
    return 0


def _names(engine: Any, conn: Any) -> dict[str, str]:
    import sqlalchemy as sa

    from daemon.store.tables import sessions

    ids = {r[0] for r in conn.execute(sa.select(sessions.c.client_id).distinct()).all() if r[0]}
    return {i: engine.client_of(i).name for i in ids if engine.directory.by_id(i) is not None}


def _chart_path(args: argparse.Namespace, config: Any, month: Any) -> Path:
    if args.chart:
        return Path(args.chart)
    return config.resolve("reports") / f"misses-{month}.svg"
