"""One short handler per subcommand; errors are raised, never printed here."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any, Callable

from daemon import config as config_mod
from daemon.clock import AcceleratedClock, FixedClock, SystemClock, parse_instant
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


def _engine(args: argparse.Namespace, *, lock: bool = True, dry_run: bool = False, now: str | None = None,
            store_only: bool = True):  # type: ignore[no-untyped-def]
    """The engine; first refuses (exit 2) a configured backend whose library is missing
    (``store_only``: only the store's, for commands that read and mark)."""
    from daemon.config import libraries
    from daemon.engine.cycle import Engine

    config = _config(args)
    clock = _clock(now)
    libraries.require(config, store_only=store_only)
    return Engine(config, clock, dry_run=dry_run, acquire_lock=lock)


def run(args: argparse.Namespace) -> int:
    from daemon.service.run import run_service

    speed = getattr(args, "speed", None)
    now = getattr(args, "now", None)
    if speed is not None and not now:
        raise UserError("--speed needs --now ISO (the virtual instant to start from)")
    if not now:
        return run_service(args.config_path, debug=args.debug)
    try:
        start = parse_instant(now)
        clock = AcceleratedClock(start, 1.0 if speed is None else speed)
    except ValueError as exc:
        raise UserError(f"--now/--speed: {exc}") from None
    return run_service(args.config_path, debug=args.debug, clock=clock)


def once(args: argparse.Namespace) -> int:
    from daemon.service.notes import polled_ahead

    engine = _engine(args, dry_run=args.dry_run, now=args.now, store_only=False)
    try:
        ahead = [] if args.now else polled_ahead(engine)
        report = engine.run_once()
    finally:
        engine.close()
    for note in ahead:
        print(f"note: {note}", file=sys.stderr)
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
    from daemon.cli.status import render_status

    engine = _engine(args, lock=False, now=args.now)
    try:
        text, attention = render_status(engine, as_json=args.json)
    finally:
        engine.close()
    print(text)
    return 1 if attention and not args.json else 0


def check(args: argparse.Namespace) -> int:
    from daemon.cli.checks import run_checks

    cfg = _config(args)
    problems, warnings, summary = run_checks(cfg)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if problems:
        raise UserError(f"{cfg.path}: {len(problems)} problem(s)", problems)
    print(summary)
    return 0


def preview(args: argparse.Namespace) -> int:
    from daemon.cli.status import render_preview

    text, note = render_preview(_config(args), args.template, args.client, args.trigger)
    print(f"({note})", file=sys.stderr)
    print(text)
    return 0


def _client_action(args: argparse.Namespace, act: Callable[[Any, Any, datetime], str]) -> int:
    """Match the client exactly, print whom, then act; every action is in the contact log."""
    from daemon.cli.actions import match_client

    engine = _engine(args, lock=False)
    try:
        client = match_client(engine, args.client)
        print(f"matched: {client.label}")
        print(act(engine, client, engine.clock.now()))
    finally:
        engine.close()
    return 0


def reached(args: argparse.Namespace) -> int:
    from daemon.cli.actions import mark, undo

    if args.undo:
        return _client_action(args, lambda e, c, now: f"no longer marked reached; "
                              f"{undo(e, c, 'reached', now)} step(s) planned again")
    return _client_action(args, lambda e, c, now: f"marked reached; "
                          f"{mark(e, c, 'reached', now)} planned step(s) stopped")


def optout(args: argparse.Namespace) -> int:
    if args.undo:
        return optin(args)
    from daemon.cli.actions import mark

    return _client_action(args, lambda e, c, now: f"marked opted out; "
                          f"{mark(e, c, 'opted_out', now)} planned step(s) stopped")


def optin(args: argparse.Namespace) -> int:
    from daemon.cli.actions import undo

    return _client_action(args, lambda e, c, now: f"opted in again; "
                          f"{undo(e, c, 'opted_out', now)} step(s) planned again")


def deliverable(args: argparse.Namespace) -> int:
    from daemon.cli.actions import deliverable as clear

    return _client_action(args, lambda e, c, now: f"address marked deliverable again "
                          f"({clear(e, c, now)} cleared); a failed step is sent again with resolve STEP_ID --retry")


def resolve(args: argparse.Namespace) -> int:
    from daemon.cli.actions import resolve as settle

    engine = _engine(args, lock=False, now=args.now)
    try:
        outcome = settle(engine, args.step_id, args.action, engine.clock.now())
    finally:
        engine.close()
    print(f"step {args.step_id.strip()}: {outcome}")
    return 0


def history(args: argparse.Namespace) -> int:
    from daemon.cli.actions import match_client
    from daemon.cli.status import render_history

    engine = _engine(args, lock=False)
    try:
        client = match_client(engine, args.client)
        print(f"matched: {client.label}", file=sys.stderr)
        print(render_history(engine, client.client_id, args.format))
    finally:
        engine.close()
    return 0


def digest(args: argparse.Namespace) -> int:
    engine = _engine(args, now=args.now, store_only=False)
    try:
        sent = engine.send_digest()
    finally:
        engine.close()
    print("digest sent" if sent else "no digest: already sent today, disabled, or nothing to say")
    return 0


def demo(args: argparse.Namespace) -> int:
    from daemon.cli.demo import run_demo

    return run_demo(args.outbox)


def auth(args: argparse.Namespace) -> int:
    from daemon.config import libraries

    cfg = _config(args)
    for need in (libraries.GOOGLE, libraries.GOOGLE_SIGN_IN):
        module = libraries.missing(need)
        if module:
            raise UserError(libraries.explain("auth google", need, module))
    from daemon.cli.google_auth import authorize

    authorize(cfg)
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
    from daemon.cli.templates import edit_template, list_templates

    cfg = _config(args)
    if args.action == "list":
        print(list_templates(cfg))
        return 0
    if not args.name:
        raise UserError("templates edit: which template? see 'welcomeback templates list'")
    return edit_template(cfg, args.name)
