"""A provider's rate-limit reset is a wall-clock fact: under `once --now` (virtual time, here
years away from the real clock) a 429 is retried after the real wait, exactly once."""

from __future__ import annotations

import time

import pytest

from tests.conftest import local, make_practice
from tests.fakes.sendgrid_server import FakeSendGrid, accepted, rate_limited
from tests.stories import jane_no_show

pytestmark = pytest.mark.realtime
EMAIL_ONLY = '\n[cadence]\nsteps = [{ channel = "email", after = "1 business day", template = "email_followup" }]\n'


@pytest.fixture
def sendgrid_practice(tmp_path, monkeypatch):
    monkeypatch.setenv("WELCOMEBACK_SENDGRID_API_KEY", "SG.test")
    with FakeSendGrid() as sendgrid:
        p = make_practice(tmp_path / "p", extra=EMAIL_ONLY)
        p.config.write_text(p.config.read_text().replace(
            'backend = "outbox"\noutbox = "outbox"', f'backend = "sendgrid"\napi_base = "{sendgrid.url}"\ntimeout = 5'))
        jane_no_show(p)
        yield p, sendgrid


def test_a_429_under_now_waits_the_real_reset_then_sends(sendgrid_practice, capsys):
    p, sendgrid = sendgrid_practice
    sendgrid.script(rate_limited(time.time() + 1.0), accepted("sg-after-the-wait"))
    started = time.monotonic()
    assert p.once(local(2026, 11, 4, 10, 5)) == 0
    waited = time.monotonic() - started
    assert len(sendgrid.requests) == 2
    assert 0.9 <= waited < 5, waited                 # the real wait, not one measured on --now
    assert p.status(capsys)[0]["state"] == "sent"


def test_a_429_is_retried_exactly_once_then_left_for_a_later_cycle(sendgrid_practice, capsys):
    p, sendgrid = sendgrid_practice
    sendgrid.script(*[rate_limited(time.time() + 0.5) for _ in range(5)])
    started = time.monotonic()
    assert p.once(local(2026, 11, 4, 10, 5)) == 0
    assert time.monotonic() - started < 5
    assert len(sendgrid.requests) == 2
    (step,) = p.status(capsys)
    assert step["state"] == "planned"               # released for a later cycle, never uncertain
