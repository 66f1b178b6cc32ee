"""The practice a benchmark polls: a config, a store and a calendar feed (file or loopback HTTP)
built from the generated appointments, polled through the real engine."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generate
import icalendar
import recurring_ical_events
import sqlalchemy as sa
from measure import Split, patched, peak_rss_kib

from connectors.calendars.base import Window
from daemon import config as config_mod
from daemon.clock import FixedClock
from daemon.engine import detect
from daemon.engine.cycle import Engine
from daemon.engine.health import PollResult
from daemon.store import sessions as session_store
from daemon.store.tables import sequences, sessions

CALENDAR = "main"


def _copy(source: Path, target: Path) -> None:
    """Copy a store file and flush it to disk before anything is timed: a fresh copy's unwritten
    pages are the benchmark's own write, and SQLite's first checkpoint (at the end of every
    ``once``) would otherwise wait for all of them, charging the measured process for the copy."""
    shutil.copyfile(source, target)
    with open(target, "rb+") as fh:
        os.fsync(fh.fileno())


@dataclass
class Practice:
    """A generated folder and the engine settings the benchmark drives."""

    gen: generate.Generated
    config_path: Path
    clock: FixedClock = field(init=False)

    def __post_init__(self) -> None:
        self.clock = FixedClock(self.gen.reference)
        self.config = config_mod.load(self.config_path)

    @property
    def db(self) -> Path:
        return self.config.resolve(self.config.store.path)

    def window(self) -> Window:
        now = self.clock.now()
        d = self.config.detection
        return Window(now - d.lookback.approx, now + d.horizon.approx)

    def reset_store(self, snapshot: Path | None = None) -> None:
        """Remove the store (and outbox); restore ``snapshot`` files if given."""
        for p in self.db.parent.glob(self.db.name + "*"):
            p.unlink()
        shutil.rmtree(self.gen.folder / "outbox", ignore_errors=True)
        if snapshot is not None:
            for p in snapshot.parent.glob(snapshot.name + "*"):
                _copy(p, self.db.parent / (self.db.name + p.name[len(snapshot.name):]))

    def snapshot(self, to: Path) -> None:
        for p in self.db.parent.glob(self.db.name + "*"):
            _copy(p, to.parent / (to.name + p.name[len(self.db.name):]))

    def engine_free_read(self) -> bytes:
        """The file read exactly as IcsSource._read does it (for its memory peak)."""
        with open(self.gen.ics, "rb") as fh:
            return fh.read()

    def engine(self) -> Engine:
        return Engine(self.config, self.clock)

    def poll(self) -> PollResult:
        """One poll with a fresh Engine (construction untimed is the caller's business)."""
        eng = self.engine()
        try:
            return checked(eng.poll_one(CALENDAR))
        finally:
            eng.close()

    def counts(self) -> tuple[int, list[str]]:
        """(sessions stored, follow-up sequences as "trigger/state") in the store."""
        eng = self.engine()
        try:
            with eng.store.transaction() as conn:
                n = conn.execute(sa.select(sa.func.count()).select_from(sessions)).scalar_one()
                seqs = [f"{t}/{r or 'open'}" for t, r in conn.execute(
                    sa.select(sequences.c.trigger, sequences.c.closed_reason)).all()]
            return n, seqs
        finally:
            eng.close()


def parse_entry(source: Any) -> str:
    """The method IcsSource.fetch parses with (``parse_text`` in newer code, then ``parse_full``, ``parse``)."""
    for name in ("parse_text", "parse_full"):
        if hasattr(source, name):
            return name
    return "parse"


def checked(result: PollResult) -> PollResult:
    if not result.ok or result.degraded:
        raise SystemExit(f"benchmark poll failed: {result.error or result.degraded}")
    return result


def timed_poll(practice: Practice, split: Split | None = None) -> tuple[float, PollResult]:
    """Construct an Engine (untimed), time ``poll_one`` alone, close."""
    eng = practice.engine()
    try:
        stack = contextlib.ExitStack()
        if split is not None:
            src = eng.sources[CALENDAR]
            src.fetch = split.wrap("fetch", src.fetch)            # type: ignore[method-assign]
            entry = parse_entry(src)
            setattr(src, entry, split.wrap("parse", split.count(getattr(src, entry))))
            src._expand = split.wrap("expand", src._expand)       # type: ignore[method-assign]
            stack.enter_context(patched(detect, "reconcile", split.wrap("reconcile", detect.reconcile)))
            stack.enter_context(patched(session_store, "load", split.wrap("load", session_store.load)))
            stack.enter_context(patched(session_store, "load_some", split.wrap("load", session_store.load_some)))
            stack.enter_context(patched(session_store, "save", split.wrap("save", session_store.save)))
        with stack:
            gc.collect()
            t0 = time.perf_counter()
            result = eng.poll_one(CALENDAR)
            elapsed = time.perf_counter() - t0
        return elapsed, checked(result)
    finally:
        eng.close()


# -- the bare baseline ---------------------------------------------------------------------
def bare(body: bytes, window: Window) -> tuple[int, float, float]:
    """Parse + window query; returns (occurrences, parse seconds, query seconds)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        cal = icalendar.Calendar.from_ical(body)
        t1 = time.perf_counter()
        occ = recurring_ical_events.of(cal).between(window.start, window.end)
        t2 = time.perf_counter()
    return len(occ), t1 - t0, t2 - t1


# -- HTTP variant --------------------------------------------------------------------------
class Feed:
    """A one-file feed on 127.0.0.1 with an ETag; counts 200s and 304s."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.honour_etag = True
        self.hits = {200: 0, 304: 0}
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                etag = '"' + hashlib.sha256(feed.body).hexdigest()[:32] + '"'
                if feed.honour_etag and self.headers.get("If-None-Match") == etag:
                    feed.hits[304] += 1
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                feed.hits[200] += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar; charset=utf-8")
                self.send_header("Content-Length", str(len(feed.body)))
                self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(feed.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/practice.ics"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def memory_probe(what: str, folder: Path) -> int:
    """Child of rss_growth_mib: everything imported and set up, then measure one operation."""
    logging.disable(logging.CRITICAL)
    gen = generate.Generated(folder, folder / "practice.ics", folder / "config.toml", [], [],
                             generate.REFERENCE)
    p = Practice(gen, gen.config)
    body, window = gen.ics.read_bytes(), p.window()
    p.reset_store()
    eng = p.engine()
    try:
        bare(body[:2000].rsplit(b"BEGIN:VEVENT", 1)[0] + b"END:VCALENDAR\r\n", window)  # warm imports
        gc.collect()
        before = peak_rss_kib()
        if what == "bare":
            bare(body, window)
        else:
            checked(eng.poll_one(CALENDAR))
        after = peak_rss_kib()
    finally:
        eng.close()
        p.reset_store()
    print(json.dumps({"rss_growth_mib": (after - before) / 1024}))
    return 0
