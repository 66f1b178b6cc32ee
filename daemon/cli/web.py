"""``welcomeback web [--listen HOST:PORT]`` and ``welcomeback web set-password``."""

from __future__ import annotations

import argparse
import getpass
import signal
import threading
import sys

from daemon.config import libraries
from daemon.errors import UserError
from daemon.web.serve import build, require_web

DEFAULT_LISTEN = "127.0.0.1:8765"


def set_password(args: argparse.Namespace) -> int:
    from daemon import config as config_mod
    from daemon.engine.places import state_dir
    from daemon.web.security import set_password as store

    require_web("web set-password")
    cfg = config_mod.load(args.config_path)
    if sys.stdin.isatty():
        first = getpass.getpass("console password: ")
        if getpass.getpass("again: ") != first:
            raise UserError("web set-password: the two entries differ; nothing stored")
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    path = store(state_dir(cfg), first)
    print(f"console password stored as an Argon2 hash in {path}")
    return 0


def serve(args: argparse.Namespace) -> int:
    if getattr(args, "action", None) == "set-password":
        return set_password(args)
    require_web("web")
    from daemon import config as config_mod
    from daemon.clock import SystemClock
    from daemon.engine.cycle import Engine
    from daemon.web.serve import Server, parse_listen

    cfg = config_mod.load(args.config_path)
    listen = parse_listen(args.listen or cfg.web.listen or DEFAULT_LISTEN,
                          "--listen" if args.listen else "[web] listen")
    libraries.require(cfg, store_only=True)
    engine = Engine(cfg, SystemClock(), acquire_lock=False)
    try:
        server = Server(build(engine, cfg.web), listen, cfg.web, cfg.base_dir)
        # the server runs on its own thread; the main thread only waits for SIGTERM or Ctrl+C,
        # so a signal never lands inside the server's loop or a TLS handshake
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        scheme = "https" if server.tls else "http"
        server.start()
        print(f"the console is at {scheme}://{listen.host}:{server.port}/ (Ctrl+C to stop)", flush=True)
        try:
            while not stop.wait(0.5):
                if not server.running():
                    break
        finally:
            server.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        engine.close()
    return 0
