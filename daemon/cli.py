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
from typing import Callable, NoReturn

from daemon import logsetup
from daemon.errors import UserError

log = logging.getLogger("welcomeback")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors are exit 2 without a traceback
        self.print_usage(sys.stderr)
        raise UserError(f"usage: {message}")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="welcomeback", description="Gentle follow-ups for missed and cancelled sessions.")
    p.add_argument("--config", type=Path, help="config file (default: $WELCOMEBACK_CONFIG, "
                   "/etc/welcomeback/config.toml, then the user config folder)")
    p.add_argument("--debug", action="store_true", help="tracebacks and debug logs (never client data)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("run", help="the service (systemd runs this)")
    once = sub.add_parser("once", help="one poll + dispatch cycle, then exit")
    once.add_argument("--now", help="act as if the clock read this ISO 8601 instant (with offset)")
    once.add_argument("--dry-run", action="store_true", help="send nothing and change nothing")
    status = sub.add_parser("status", help="follow-ups and service health")
    status.add_argument("--json", action="store_true", help="one JSON array of follow-up steps")
    status.add_argument("--now", help="show what is due at this instant")
    sub.add_parser("check", help="validate config, templates, directory and secrets")
    preview = sub.add_parser("preview", help="print a template exactly as it would be sent")
    preview.add_argument("template")
    preview.add_argument("--client", help="a client from the directory (default: fictional sample)")
    for name, text in (("reached", "stop that client's open follow-ups: you reached them"),
                       ("optout", "the client asked not to be contacted: stop and never start again")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("client", help="name, alias or email as in the client directory")
    digest = sub.add_parser("digest", help="send the therapist today's digest now (once a day)")
    digest.add_argument("--now", help="act as if the clock read this ISO 8601 instant (with offset)")
    history = sub.add_parser("history", help="contact log of a client for clinical records")
    history.add_argument("client")
    history.add_argument("--format", choices=("text", "csv", "json"), default="text")
    demo = sub.add_parser("demo", help="a scripted three-week story on sample data, in virtual time")
    demo.add_argument("--outbox", type=Path, help="where to leave the messages (default: a temp folder)")
    auth = sub.add_parser("auth", help="sign in to a calendar provider")
    auth.add_argument("provider", choices=("google",))
    secret = sub.add_parser("secret", help="manage secrets in the keyring")
    secret.add_argument("action", choices=("set", "list", "delete"))
    secret.add_argument("name", nargs="?")
    templates = sub.add_parser("templates", help="list or safely edit message templates")
    templates.add_argument("action", choices=("list", "edit"))
    templates.add_argument("name", nargs="?")
    return p


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
    from daemon import commands

    return {"run": commands.run, "once": commands.once, "status": commands.status,
            "check": commands.check, "preview": commands.preview, "reached": commands.reached,
            "optout": commands.optout, "history": commands.history, "digest": commands.digest, "demo": commands.demo,
            "auth": commands.auth, "secret": commands.secret, "templates": commands.templates}


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
