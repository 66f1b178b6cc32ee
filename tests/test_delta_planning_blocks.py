"""A delta poll skips the out-of-office look-ups only when the store holds no block for the
therapist (none loaded, none saved by the poll): a cancellation inside a block known from an
earlier poll, or added by the same delta, is still the therapist's; without any block it is the
client's (who is coming back: rebooked).  Each as a twin that parses the whole feed decides."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import local, make_practice, store_rows
from tests.test_ics_delta_engine import _forget
from tests.ics import Ev

JANE = ("jane.doe@example.com", "Jane Doe", "ACCEPTED")
WEEKLY = local(2026, 11, 10, 10)
T0 = local(2026, 11, 5, 9)


def _jane(cancel: bool) -> list[Ev]:
    at = local(2026, 11, 24, 10)
    return [Ev("jane-1", at, at + timedelta(minutes=50), "Jane Doe", status="CANCELLED" if cancel else "",
               attendees=[JANE])]


VACATION = Ev("vac", local(2026, 11, 23), local(2026, 11, 28), "Vacation", all_day=True)
OTHERS = [Ev(f"o{i}", local(2026, 11, 11 + i, 14), local(2026, 11, 11 + i, 15), "Team meeting") for i in range(4)]


def _followups(p: Any) -> list[tuple[str, str | None]]:
    """(trigger, closed reason) of every follow-up the store holds."""
    from daemon.store.tables import sequences

    return sorted((r.trigger, r.closed_reason) for r in store_rows(p, sequences.select()))


@pytest.mark.parametrize("block", ["before", "same-poll", "after", "none"])
def test_a_cancellation_in_a_delta_sees_the_blocks_the_store_holds(tmp_path: Path, capsys: Any, block: str) -> None:
    """``after``: the block comes in a later delta, when the follow-up is open (the review)."""
    p, twin = make_practice(tmp_path / "p"), make_practice(tmp_path / "twin")
    feeds = [[*OTHERS, *_jane(False), *([VACATION] if block == "before" else [])],
             [*OTHERS, *_jane(True), *([VACATION] if block in ("before", "same-poll") else [])],
             [*OTHERS, *_jane(True), *([VACATION] if block != "none" else [])]]
    for n, feed in enumerate(feeds):
        for q in (p, twin):
            q.calendar(feed)
        if n:
            _forget(twin)                    # the twin reads each changed feed whole
        capsys.readouterr()
        assert p.once(T0 + timedelta(hours=n)) == 0
        assert "(changes)" in capsys.readouterr().err or n == 0 or feeds[n] == feeds[n - 1]
        assert twin.once(T0 + timedelta(hours=n)) == 0
        assert _followups(p) == _followups(twin)
    reasons = [reason for _, reason in _followups(p)]
    assert reasons == ([None] if block == "none" else ["therapist_cancelled"])
