"""Settling an uncertain email from SendGrid's Email Activity API (real sendgrid client,
loopback fake); without the add-on the step stays for the therapist, never re-sent."""

from __future__ import annotations

import pytest

from tests.conftest import local, make_practice
from tests.fakes.sendgrid_server import FakeSendGrid, Reply
from tests.stories import jane_no_show

EMAIL_ONLY = """
[cadence]
steps = [{ channel = "email", after = "1 business day", template = "email_followup" }]
"""


@pytest.mark.parametrize("activity,settled", [
    ([{"status": "delivered", "msg_id": "sg-abc.1"}], "sent"),
    ([{"status": "not_delivered", "msg_id": "sg-abc.1"}], "failed"),
    ([], "uncertain"),          # the add-on has not seen it (yet)
    (None, "uncertain"),        # no Email Activity on this account (403)
])
def test_uncertain_email_settled_from_email_activity(tmp_path, monkeypatch, capsys, activity, settled):
    monkeypatch.setenv("WELCOMEBACK_SENDGRID_API_KEY", "SG.test")
    with FakeSendGrid() as sendgrid:
        p = make_practice(tmp_path / "p", extra=EMAIL_ONLY)
        p.config.write_text(p.config.read_text().replace(
            'backend = "outbox"\noutbox = "outbox"', f'backend = "sendgrid"\napi_base = "{sendgrid.url}"\ntimeout = 1'))
        sendgrid.script(Reply(0, hang=True))
        jane_no_show(p)
        p.once(local(2026, 11, 4, 10, 5))
        (step,) = p.status(capsys)
        assert step["state"] == "uncertain"
        if activity is not None:
            sendgrid.activity = [{**m, "step": step["id"]} for m in activity]
        p.once(local(2026, 11, 4, 12))
        (step,) = p.status(capsys)
        assert step["state"] == settled
        assert len(sendgrid.requests) == 1, "never re-sent"
        assert sendgrid.reads and "welcomeback_step" in sendgrid.reads[-1].path
