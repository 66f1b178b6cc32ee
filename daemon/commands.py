"""One short handler per subcommand; errors are raised, never printed here."""

from __future__ import annotations

import argparse
import sys

from daemon import config as config_mod
from daemon import followups
from daemon.clock import FixedClock, SystemClock, parse_instant
from daemon.config import Config
from daemon.errors import UserError


def _config(args: argparse.Namespace) -> Config:
    return config_mod.load(args.config_path)


def _clock(now: str | None) -> FixedClock | SystemClock:
    if not now:
        return SystemClock()
    try:
        return FixedClock(parse_instant(now))
    except ValueError as exc:
        raise UserError(f"--now: {exc}") from None


def _engine(args: argparse.Namespace, *, lock: bool = True, dry_run: bool = False, now: str | None = None):  # type: ignore[no-untyped-def]
    from daemon.engine import Engine

    return Engine(_config(args), _clock(now), dry_run=dry_run, acquire_lock=lock)


def run(args: argparse.Namespace) -> int:
    from daemon.service import run_service

    return run_service(args.config_path, debug=args.debug)


def once(args: argparse.Namespace) -> int:
    engine = _engine(args, dry_run=args.dry_run, now=args.now)
    try:
        report = engine.run_once()
    finally:
        engine.close()
    for poll in report.polls:
        if not poll.ok:
            print(f"calendar '{poll.calendar}': FAILED: {poll.error}", file=sys.stderr)
        elif poll.degraded:
            print(f"calendar '{poll.calendar}': DEGRADED: {poll.degraded}", file=sys.stderr)
    done = ", ".join(f"{v} {k}" for k, v in sorted(report.dispatched.items())) or "nothing due"
    prefix = "dry run: " if args.dry_run else ""
    print(f"{prefix}{len(report.polls)} calendar(s) polled, "
          f"{sum(p.triggers for p in report.polls)} follow-up(s) started; dispatch: {done}")
    return 1 if report.failed or any(p.degraded for p in report.polls) else 0   # README: exit 1


def status(args: argparse.Namespace) -> int:
    from daemon.status import render_status

    engine = _engine(args, lock=False, now=args.now)
    try:
        text, attention = render_status(engine, as_json=args.json)
    finally:
        engine.close()
    print(text)
    return 1 if attention and not args.json else 0


def check(args: argparse.Namespace) -> int:
    from daemon.checks import run_checks

    cfg = _config(args)
    problems, warnings, summary = run_checks(cfg)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if problems:
        raise UserError(f"{cfg.path}: {len(problems)} problem(s)", problems)
    print(summary)
    return 0


def preview(args: argparse.Namespace) -> int:
    from daemon.status import render_preview

    print(render_preview(_config(args), args.template, args.client))
    return 0


def _stop_client(args: argparse.Namespace, reason: str) -> int:
    from daemon.status import find_client_ids
    from daemon.store import ts

    engine = _engine(args, lock=False)
    try:
        now = engine.clock.now()
        stopped = 0
        ids = find_client_ids(engine, args.client)
        with engine.store.transaction() as conn:
            for cid in ids:
                values = {"reached_at": ts(now)} if reason == "reached" else \
                    {"opted_out_at": ts(now), "opted_out_channels": "all"}
                followups.set_client_flag(conn, cid, **values)
                for seq in followups.open_sequences(conn, cid):
                    stopped += followups.stop(conn, seq, reason, now)
                    engine.store.audit(conn, now, reason, sequence_id=seq, detail="by the therapist (CLI)")
    finally:
        engine.close()
    word = "reached" if reason == "reached" else "opted out"
    print(f"marked {word}; {stopped} planned step(s) stopped")
    return 0


def reached(args: argparse.Namespace) -> int:
    return _stop_client(args, "reached")


def optout(args: argparse.Namespace) -> int:
    return _stop_client(args, "opted_out")


def history(args: argparse.Namespace) -> int:
    from daemon.status import find_client_ids, render_history

    engine = _engine(args, lock=False)
    try:
        print(render_history(engine, find_client_ids(engine, args.client), args.format))
    finally:
        engine.close()
    return 0


def digest(args: argparse.Namespace) -> int:
    engine = _engine(args, now=args.now)
    try:
        sent = engine.send_digest()
    finally:
        engine.close()
    print("digest sent" if sent else "no digest: already sent today, disabled, or nothing to say")
    return 0


def demo(args: argparse.Namespace) -> int:
    from daemon.demo import run_demo

    return run_demo(args.outbox)


def auth(args: argparse.Namespace) -> int:
    try:
        from daemon.google_auth import authorize
    except ImportError as exc:
        raise UserError(f"Google sign-in needs the google extra: pip install 'welcomeback[google]' ({exc})") from None
    authorize(_config(args))
    return 0


def secret(args: argparse.Namespace) -> int:
    from daemon import secrets

    if args.action == "list":
        for name in secrets.KNOWN:
            print(f"{name}: {'set' if secrets.available(name) else 'not set'}")
        return 0
    if not args.name:
        raise UserError(f"secret {args.action}: which secret? one of {', '.join(secrets.KNOWN)}")
    if args.name not in secrets.KNOWN:
        raise UserError(f"secret '{args.name}' is not one welcomeback uses; known: {', '.join(secrets.KNOWN)}")
    if args.action == "delete":
        secrets.delete_secret(args.name)
        print(f"secret {args.name} deleted from the keyring")
        return 0
    import getpass

    value = getpass.getpass(f"{args.name}: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not value:
        raise UserError("empty secret; nothing stored")
    secrets.set_secret(args.name, value)
    print(f"secret {args.name} stored in the keyring")
    return 0


def templates(args: argparse.Namespace) -> int:
    from daemon.template_cli import edit_template, list_templates

    cfg = _config(args)
    if args.action == "list":
        print(list_templates(cfg))
        return 0
    if not args.name:
        raise UserError("templates edit: which template? see 'welcomeback templates list'")
    return edit_template(cfg, args.name)
