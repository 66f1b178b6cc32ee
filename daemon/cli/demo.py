"""`welcomeback demo`: a scripted three-week practice story on sample data, in virtual time.

Nothing leaves the machine: messages land as .eml files in an outbox folder.
The story: Jordan misses a session (a no-show), Priya cancels late but books
another time (a reschedule, no follow-up), and Sam drifts away (a call, an
email a week later, then welcomeback stops).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon import config as config_mod
from daemon.cli.status import step_records
from daemon.clock import FixedClock
from daemon.engine.cycle import Engine

NY = ZoneInfo("America/New_York")


def _t(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=NY)


def _ev(uid: str, start: str, summary: str, *, rrule: str = "", rid: str = "", status: str = "",
        attendee: str = "") -> str:
    lines = ["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z",
             f"DTSTART;TZID=America/New_York:{start}", "DURATION:PT50M", f"SUMMARY:{summary}"]
    lines += [f"RRULE:{rrule}"] if rrule else []
    lines += [f"RECURRENCE-ID;TZID=America/New_York:{rid}"] if rid else []
    lines += [f"STATUS:{status}"] if status else []
    lines += [f"ATTENDEE;CN=Priya Natarajan;PARTSTAT=ACCEPTED:mailto:{attendee}"] if attendee else []
    return "\r\n".join(lines + ["END:VEVENT"])


def _calendar(chapter: int) -> str:
    """The practice calendar as it looks after each chapter of the story."""
    sam_rule = "FREQ=WEEKLY;BYDAY=WE" + (";UNTIL=20260303T000000Z" if chapter >= 3 else "")
    events = [
        _ev("jordan", "20260105T100000", "Jordan Avery", rrule="FREQ=WEEKLY;BYDAY=MO"),
        _ev("priya", "20260106T140000", "Session", rrule="FREQ=WEEKLY;BYDAY=TU", attendee="priya.n@example.org"),
        _ev("sam", "20260107T160000", "Sam Okafor", rrule=sam_rule),
        _ev("team", "20260109T120000", "Team meeting", rrule="FREQ=WEEKLY;BYDAY=FR"),
    ]
    if chapter >= 1:
        events.append(_ev("jordan", "20260302T100000", "Jordan Avery (no-show)", rid="20260302T100000"))
    if chapter >= 2:
        events.append(_ev("priya", "20260303T140000", "Session", rid="20260303T140000", status="CANCELLED",
                          attendee="priya.n@example.org"))
        events.append(_ev("priya-moved", "20260305T150000", "Session", attendee="priya.n@example.org"))
    body = "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//welcomeback//demo//EN", *events,
                        "END:VCALENDAR"])
    return body + "\r\n"


STORY = [
    (_t(2, 8), 0, "Monday morning: welcomeback starts and reads the calendar. Nothing in the past is followed up."),
    (_t(2, 11), 1, "Jordan did not come at 10:00. Ana adds \"no-show\" to the session title."),
    (_t(2, 19), 2, "Priya cancels tomorrow's session at short notice, and books Thursday instead."),
    (_t(3, 10, 5), 2, "Tuesday: Jordan's call task falls due."),
    (_t(3, 20), 3, "Sam's sessions are taken off the calendar: the series ends before Wednesday."),
    (_t(5, 16, 5), 3, "Thursday: Sam's call task falls due."),
    (_t(9, 10, 5), 3, "Next Monday: Jordan's email falls due, and Jordan is booked for today."),
    (_t(11, 16, 5), 3, "Wednesday (clocks changed on Sunday): Sam has not been in touch; the email falls due."),
    (_t(20, 12), 3, "Two weeks on: the follow-ups are over. The door stays open; welcomeback does not nag."),
]
EXPECTED_MESSAGES = 3   # two call tasks to Ana, one email to Sam


CLIENTS = """name,aliases,email,phone,preferred_channel,do_not_contact
Jordan Avery,Jordan,jordan.avery@example.com,+1 555 010 0101,phone,false
Priya Natarajan,Priya,priya.n@example.org,+1 555 010 0102,email,false
Sam Okafor,Sammy,sam.okafor@example.net,+1 555 010 0103,,false
"""

CONFIG = """[practice]
name = "Riverside Counselling"
therapist = "Ana Ruiz"
therapist_email = "ana@riverside.example"
timezone = "America/New_York"
working_hours = "Mon-Fri 09:00-17:00"

[[calendars]]
name = "main"
kind = "ics"
source = "practice.ics"

[clients]
directory = "clients.csv"

[channels.email]
backend = "outbox"
outbox = "{outbox}"
from = "ana@riverside.example"

[channels.phone]
backend = "therapist-email"

[templates]
folder = "{templates}"
"""


def run_demo(outbox: Path | None) -> int:
    """Tell the story; 0 when every expected message was left in the outbox, else 1 (and why)."""
    import logging

    logging.getLogger().setLevel(logging.WARNING)   # the timeline below tells the story
    work = Path(tempfile.mkdtemp(prefix="welcomeback-demo-"))
    out = (outbox or work / "outbox").resolve()
    (work / "clients.csv").write_text(CLIENTS, encoding="utf-8")
    # A templates folder that does not exist: the packaged default wording is used.
    (work / "config.toml").write_text(CONFIG.format(outbox=_toml(out), templates=_toml(work / "templates")),
                                      encoding="utf-8")
    config = config_mod.load(work / "config.toml")
    clock = FixedClock(STORY[0][0])
    seen: dict[str, tuple[str, str | None]] = {}
    trouble: set[str] = set()
    print("welcomeback demo: three weeks at Riverside Counselling, in a few seconds of virtual time\n")
    for when, chapter, text in STORY:
        (work / "practice.ics").write_text(_calendar(chapter), encoding="utf-8")
        clock.set(when)
        engine = Engine(config, clock)
        try:
            engine.run_once()
            records = step_records(engine)
        finally:
            engine.close()
        trouble |= {f"{r['state']} ({r['reason']})" for r in records if r["state"] in ("held", "failed", "uncertain")}
        print(f"{when.strftime('%a %d %b %H:%M')}  {text}")
        for line in _changes(records, seen):
            print(f"{'':19}→ {line}")
    if outbox is not None:    # the story's calendar and store are of no further use
        shutil.rmtree(work, ignore_errors=True)
    return _summary(out, seen, trouble)


def _toml(path: Path) -> str:
    return str(path).replace("\\", "\\\\").replace('"', '\\"')


def _summary(out: Path, seen: dict[str, tuple[str, str | None]], trouble: set[str]) -> int:
    """List the messages left; say plainly (and exit 1) when the story did not produce them all."""
    sent = [step_id for step_id, (state, _) in seen.items() if state == "sent"]
    left = [out / f"{re.sub(r'[^A-Za-z0-9._-]', '_', step_id)}.eml" for step_id in sent]
    left = sorted(path for path in left if path.is_file())
    print(f"\nMessages left in {out}:")
    for path in left:
        print(f"  {path.name}")
    if len(left) != EXPECTED_MESSAGES:
        print(f"\nThe demo did not work: {len(left)} message(s) instead of {EXPECTED_MESSAGES}"
              + (f"; steps were {', '.join(sorted(trouble))}" if trouble else "") + ". Run `welcomeback check` "
              "on your own config, or `welcomeback --debug demo`, to see why.", file=sys.stderr)
        return 1
    print("\nRead them with any mail program, or: cat", out / "*.eml")
    return 0


def _changes(records: list[dict], seen: dict[str, tuple[str, str | None]]) -> list[str]:
    lines = []
    for r in records:
        key = r["id"]
        state = (r["state"], r["reason"])
        if seen.get(key) == state:
            continue
        first = key not in seen
        seen[key] = state
        what = {"phone": "call task to Ana", "email": "email to the client"}[r["channel"]]
        due = datetime.fromisoformat(r["due_at"]).strftime("%a %d %b %H:%M")
        if first and r["state"] == "planned":
            lines.append(f"{r['client']}: {r['trigger'].replace('_', ' ')} detected; step {r['step']} "
                         f"({what}) planned for {due}")
        elif r["state"] == "sent":
            lines.append(f"{r['client']}: step {r['step']} sent ({what})")
        elif r["state"] == "skipped":
            lines.append(f"{r['client']}: step {r['step']} ({what}) not sent: {r['reason']}")
        else:
            lines.append(f"{r['client']}: step {r['step']} ({what}) {r['state']}"
                         + (f" ({r['reason']})" if r["reason"] else "") + ": not sent")
    return lines
