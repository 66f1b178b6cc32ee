"""The command line: parse, load config, configure logging, run, exit code.

Exit codes: 0 success; 2 bad configuration or usage (the message names the
file, line or key); 1 a runtime failure.  Tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

from daemon.errors import UserError
from daemon.service import logsetup

log = logging.getLogger("welcomeback")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors are exit 2 without a traceback
        self.print_usage(sys.stderr)
        raise UserError(f"usage: {message}")


NOW_HELP = ("act as if the clock read this instant: ISO 8601 with a UTC offset, e.g. "
            "2026-03-02T09:00:00-05:00 (default: the real clock)")
CLIENT_HELP = ("the client's full name, an alias or the email address, exactly as in the client "
               "directory (any case); a partial or ambiguous match is refused with the candidates")
TRIGGERS = ("no_show", "late_cancel", "cancelled")


def parser() -> argparse.ArgumentParser:
    """The whole command line; every subcommand and argument says what it accepts (--help)."""
    p = _Parser(prog="welcomeback", description="Gentle follow-ups for missed and cancelled sessions: "
                "a call task first, an email a week later, then stop.")
    p.add_argument("--config", type=Path, metavar="PATH", help="config file (default: $WELCOMEBACK_CONFIG, "
                   "/etc/welcomeback/config.toml, then the user config folder)")
    p.add_argument("--debug", action="store_true", help="tracebacks and debug logs (never client data)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    _service(sub)
    _operator(sub)
    _setup(sub)
    return p


def _add(sub: Any, name: str, text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
    return parser


def _service(sub: Any) -> None:
    run = _add(sub, "run", "the service (systemd runs this): polls the calendars and sends what is due "
               "until stopped (Ctrl+C, SIGTERM)")
    run.add_argument("--now", metavar="ISO", help="rehearsal/testing: run on a virtual clock that starts "
                     "at this instant (" + NOW_HELP + ")")
    run.add_argument("--speed", metavar="N", type=float, help="rehearsal/testing, with --now: the "
                     "virtual clock runs N times as fast as the wall clock (e.g. 60: a minute a second)")
    once = _add(sub, "once", "one poll + dispatch cycle, then exit")
    once.add_argument("--now", metavar="ISO", help=NOW_HELP)
    once.add_argument("--dry-run", action="store_true", help="send nothing and change nothing in the store")
    status = _add(sub, "status", "follow-ups and service health; exits 1 when something needs your attention")
    status.add_argument("--json", action="store_true", help="one JSON array of follow-up steps instead of the table")
    status.add_argument("--now", metavar="ISO", help="show what is due at this instant (" + NOW_HELP + ")")
    digest = _add(sub, "digest", "send the therapist today's digest now (at most once a day)")
    digest.add_argument("--now", metavar="ISO", help=NOW_HELP)
    demo = _add(sub, "demo", "a scripted three-week story on sample data, in virtual time (its messages "
                "are .eml files; nothing leaves the machine)")
    demo.add_argument("--outbox", type=Path, metavar="DIR",
                      help="folder for the story's .eml messages (default: a new temporary folder)")


def _operator(sub: Any) -> None:
    for name, text in (("reached", "you reached the client: stop their open follow-ups"),
                       ("optout", "the client asked not to be contacted: stop and never start again"),
                       ("optin", "undo an opt-out: the client may be contacted again"),
                       ("deliverable", "you fixed or checked an address a bounce marked undeliverable: "
                        "email may go to it again")):
        sp = _add(sub, name, text)
        sp.add_argument("client", metavar="CLIENT", help=CLIENT_HELP)
        if name not in ("optin", "deliverable"):
            sp.add_argument("--undo", action="store_true",
                            help=f"take back '{name}' (its stopped steps are planned again)")
    resolve = _add(sub, "resolve", "settle an uncertain or failed step, recorded in the contact log")
    resolve.add_argument("step_id", metavar="STEP_ID", help="the step's id (the 'id' field of status --json, "
                         "also shown in the status table)")
    how = resolve.add_mutually_exclusive_group(required=True)
    how.add_argument("--sent", dest="action", action="store_const", const="sent",
                     help="it did go out: you checked with the provider")
    how.add_argument("--retry", dest="action", action="store_const", const="retry",
                     help="send it again at the next cycle (the stop conditions are checked first)")
    how.add_argument("--dismiss", dest="action", action="store_const", const="dismiss",
                     help="leave it: do not send it again")
    resolve.add_argument("--now", metavar="ISO", help="record it, and plan a retry, at this instant (" + NOW_HELP + ")")
    for name, text in (("confirm", "a held burst of cancellations: the clients did cancel, their follow-ups go ahead"),
                       ("dismiss", "a held burst of cancellations: you cancelled these, nothing is sent")):
        sp = _add(sub, name, text)
        sp.add_argument("client", metavar="CLIENT", nargs="?", help=CLIENT_HELP)
        sp.add_argument("--all", action="store_true", help="every follow-up a burst holds")
        sp.add_argument("--now", metavar="ISO", help="record it at this instant (" + NOW_HELP + ")")
    report = _add(sub, "report", "the month per client: booked, attended, no-shows, late cancellations, "
                  "cancellations, yours, follow-ups and how they ended (text also writes an SVG chart)")
    report.add_argument("--month", metavar="YYYY-MM", help="which month (default: the current one)")
    report.add_argument("--format", choices=("text", "csv", "json"), default="text",
                        help="text (default), csv or json")
    report.add_argument("--chart", metavar="PATH", type=Path,
                        help="where the text report writes its SVG chart of the last twelve months "
                             "(default: reports/misses-YYYY-MM.svg next to the config)")
    report.add_argument("--now", metavar="ISO", help="count as of this instant (" + NOW_HELP + ")")
    history = _add(sub, "history", "contact log of a client for clinical records")
    history.add_argument("client", metavar="CLIENT", help=CLIENT_HELP)
    history.add_argument("--format", choices=("text", "csv", "json"), default="text",
                         help="text (default), csv or json")


def _setup(sub: Any) -> None:
    _add(sub, "check", "validate config, templates, client directory, libraries and secrets; sends nothing")
    preview = _add(sub, "preview", "print a message exactly as it would be sent")
    preview.add_argument("template", metavar="TEMPLATE",
                         help="a template name, e.g. phone_call, email_followup, sms_checkin "
                              "(see: welcomeback templates list)")
    preview.add_argument("--client", metavar="NAME", help="a client from the directory (" + CLIENT_HELP +
                         "); default: fictional sample values")
    preview.add_argument("--trigger", choices=TRIGGERS, default="no_show",
                         help="what happened to the appointment: no_show (default), late_cancel or cancelled")
    templates = _add(sub, "templates", "list the message templates, or safely edit one")
    templates.add_argument("action", choices=("list", "edit"), help="list, or edit NAME")
    templates.add_argument("name", nargs="?", metavar="NAME", help="the template to edit, e.g. phone_call")
    web = _add(sub, "web", "the therapist's console, a local web page (or: web set-password)")
    web.add_argument("action", nargs="?", choices=("set-password",),
                     help="set-password: store the console's password (read from standard input)")
    web.add_argument("--listen", metavar="HOST:PORT", help="where to listen (default: [web] listen, "
                     "else 127.0.0.1:8765); not loopback only with TLS or trusted_proxy")
    auth = _add(sub, "auth", "sign in to a calendar provider and store its token as a secret")
    auth.add_argument("provider", choices=("google",), help="google (the only provider that needs a sign-in)")
    from daemon.secrets import KNOWN

    secret = _add(sub, "secret", "manage secrets in the keyring")
    secret.add_argument("action", choices=("set", "list", "delete"),
                        help="set NAME (reads the value from the terminal or standard input), list, delete NAME")
    secret.add_argument("name", nargs="?", metavar="NAME", help="one of " + ", ".join(KNOWN))


def config_path(given: Path | None) -> Path:
    """--config, then $WELCOMEBACK_CONFIG, then /etc, then the user config folder."""
    if given:
        return given
    if os.environ.get("WELCOMEBACK_CONFIG"):
        return Path(os.environ["WELCOMEBACK_CONFIG"])
    system = Path("/etc/welcomeback/config.toml")
    if system.exists():
        return system
    import platformdirs

    return Path(platformdirs.user_config_dir("welcomeback")) / "config.toml"


def handlers() -> dict[str, Callable[[argparse.Namespace], int]]:
    from daemon.cli import commands, practice

    return {"confirm": practice.confirm, "dismiss": practice.dismiss, "report": practice.report,
            "run": commands.run, "once": commands.once, "status": commands.status,
            "check": commands.check, "preview": commands.preview, "reached": commands.reached,
            "optout": commands.optout, "optin": commands.optin,
            "deliverable": commands.deliverable, "resolve": commands.resolve,
            "history": commands.history, "digest": commands.digest, "demo": commands.demo,
            "auth": commands.auth, "secret": commands.secret, "templates": commands.templates, "web": _web}


def _web(args: argparse.Namespace) -> int:
    from daemon.cli.web import serve

    return serve(args)


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    logsetup.configure(debug=debug)
    try:
        args = parser().parse_args(argv)
        args.config_path = config_path(args.config)
        code = handlers()[args.command](args)
    except UserError as exc:
        print(f"welcomeback: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:   # `welcomeback status | head`: the reader left, nothing to report
        sys.stderr.close()
        code = 0
    except Exception as exc:
        if debug:
            raise
        print(f"welcomeback: error: {type(exc).__name__}: {_safe(exc)} (run with --debug for details)",
              file=sys.stderr)
        code = 1
    if argv is None:
        sys.exit(code)
    return code


def _safe(exc: Exception) -> str:
    """The first line of an exception's text, short; callers never put client data in exceptions."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:200]


if __name__ == "__main__":
    main()
