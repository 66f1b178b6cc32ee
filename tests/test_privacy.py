"""PHI canary run: a whole story at --debug with canary client data, a provider error
that echoes the recipient, and a broken feed. No canary may appear in anything
logged or printed by the cycle, and no event title or description in any message."""

from __future__ import annotations

import subprocess
import sys
from email import message_from_bytes

import pytest

from tests import canary
from tests.conftest import ROOT, local, make_practice
from tests.fakes.smtp import serve, use_smtp
from tests.ics import Ev

NAME, FIRST, LAST = "Zephyrine Quillfeather", "Zephyrine", "Quillfeather"
EMAIL = "zq.canary@example.com"
PHONE = "+1 555 010 4477"
CANARIES = [FIRST, LAST, EMAIL, "zq.canary", "5550104477", "555 010 4477", "010 4477", "CANARY-Dx", "F41.1"]


class Rejecting:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
        if address == EMAIL:
            return f"550 5.1.1 <{address}>: Recipient address rejected ({NAME})"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.bodies.append(envelope.original_content or envelope.content)
        return "250 OK"


@pytest.fixture
def smtp():
    handler = Rejecting()
    with serve(handler) as port:
        yield port, handler


def test_no_canary_in_logs_or_output(tmp_path, smtp):
    port, handler = smtp
    p = make_practice(tmp_path / "p")
    use_smtp(p, port)
    (p.root / "clients.csv").write_text(
        "name,aliases,email,phone,preferred_channel,do_not_contact\n"
        f"{NAME},Zephy,{EMAIL},{PHONE},,false\n")
    session = Ev("z1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), f"{NAME} CANARY-Dx-F41.1",
                 description="Intake notes: F41.1", attendees=[(EMAIL, NAME, "ACCEPTED")])
    other = Ev("z2", local(2026, 11, 5, 10), local(2026, 11, 5, 10, 50), f"{NAME} CANARY-Dx-F41.1")
    outputs = []

    def once(now, *extra):
        run = subprocess.run([sys.executable, "-m", "daemon.cli", "--debug", "--config", str(p.config),
                              "once", "--now", now.isoformat(), *extra],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        outputs.append(run.stdout + run.stderr)
        return run

    p.calendar([session, other])
    once(local(2026, 11, 2, 8))
    session.summary += " no-show"
    p.calendar([session, other])
    once(local(2026, 11, 3, 11))
    once(local(2026, 11, 4, 10, 5))                     # call task to the therapist
    p.calendar([session])                                # the next session is deleted: no rebooking
    once(local(2026, 11, 6, 9))
    once(local(2026, 11, 10, 10, 5))                    # the email is refused by the server, echoing the client
    (p.root / "practice.ics").write_text("<html>Sign in CANARY-Dx</html>")
    assert once(local(2026, 11, 11, 9)).returncode == 1               # the calendar cannot be read
    assert once(local(2026, 11, 11, 9), "--dry-run").returncode == 1
    run = subprocess.run([sys.executable, "-m", "daemon.cli", "--debug", "--config", str(p.config), "check"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    outputs.append(run.stdout + run.stderr)
    joined = "\n".join(outputs)
    assert "DEBUG" in joined                                           # the run really was at debug level
    canary.assert_no_client_data(joined, "welcomeback --debug")        # the suite-wide matcher, too
    for marker in CANARIES:
        assert marker not in joined, f"canary {marker!r} leaked:\n{joined}"
    assert handler.bodies, "the call task should have reached the server"
    for body in handler.bodies:
        text = message_from_bytes(body).as_string()
        assert "CANARY-Dx" not in text and "Intake" not in text and "F41.1" not in text
