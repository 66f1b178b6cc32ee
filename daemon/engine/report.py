"""The monthly report: per client, what was booked and what became of it, for documentation
and a cancellation policy; and a chart of misses per month.

Counted from the store (sessions as the calendars last showed them, follow-ups and their
outcomes), one month at a time in the practice's time zone.  The counts of a row are
disjoint: ``attended`` (held, not marked a no-show, ended by now), ``no_shows``,
``late_cancels`` (the client cancelled within ``late_cancel_within`` of the start: the ones
a fee policy would bill), ``cancellations`` (the client cancelled in good time),
``therapist_cancellations`` (the therapist's own, never the client's miss); ``booked`` is
every session of the month, including those still to come.  ``follow_ups`` counts the
follow-ups started for the month's sessions and ``ended`` how each ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from daemon.config import Config
from daemon.store.tables import dt, sequences, sessions, steps, ts

COUNTS = ("booked", "attended", "no_shows", "late_cancels", "cancellations", "therapist_cancellations",
          "follow_ups")
ENDINGS = {"rebooked": "returned", "reached": "reached", "replied": "replied", "sent": "invitation_given",
           "opted_out": "opted_out"}


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> "Month":
        """``YYYY-MM``; raises ValueError naming what is expected."""
        try:
            year, month = (int(x) for x in text.split("-"))
            date(year, month, 1)
        except (ValueError, TypeError):
            raise ValueError(f"'{text}' is not a month; expected YYYY-MM, e.g. 2026-11") from None
        return cls(year, month)

    @classmethod
    def of(cls, moment: datetime, tz: Any) -> "Month":
        local = moment.astimezone(tz)
        return cls(local.year, local.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def shift(self, months: int) -> "Month":
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    def bounds(self, tz: Any) -> tuple[str, str]:
        """The month's start and the next month's start, as store times."""
        nxt = self.shift(1)
        return (ts(datetime(self.year, self.month, 1, tzinfo=tz)) or "",
                ts(datetime(nxt.year, nxt.month, 1, tzinfo=tz)) or "")


def monthly(conn: Any, config: Config, names: dict[str, str], month: Month, now: datetime) -> dict[str, Any]:
    """The report object: ``month``, ``clients`` (one row per client, by name) and ``totals``.
    ``names`` maps client ids to the names to show (the directory's, else the session's)."""
    tz = config.practice.timezone
    start, end = month.bounds(tz)
    theirs = _therapist_sessions(conn)
    rows: dict[str, dict[str, Any]] = {}
    late = config.detection.late_cancel_within.approx
    for s in conn.execute(sa.select(sessions).where(sessions.c.start >= start, sessions.c.start < end,
                                                    sessions.c.client_id.is_not(None))).mappings():
        row = rows.setdefault(s["client_id"], _empty(names.get(s["client_id"]) or s["client_name"]))
        row["booked"] += 1
        row[_kind(s, theirs, late, now)] += 1
    for seq in _followed(conn, start, end):
        row = rows.setdefault(seq["client_id"], _empty(names.get(seq["client_id"]) or seq["client_name"]))
        row["follow_ups"] += 1
        ending = ENDINGS.get(seq["closed_reason"] or "", "open" if seq["closed_at"] is None else "other")
        row["ended"][ending] = row["ended"].get(ending, 0) + 1
    for row in rows.values():
        row.pop("upcoming", None)
    clients = sorted(rows.values(), key=lambda r: r["client"].casefold())
    totals = {k: sum(r[k] for r in clients) for k in COUNTS}
    return {"month": str(month), "clients": clients, "totals": totals}


def _empty(name: str) -> dict[str, Any]:
    return {"client": name, **{k: 0 for k in COUNTS}, "upcoming": 0, "ended": {}}


def _kind(s: Any, theirs: set[tuple[str, str]], late: Any, now: datetime) -> str:
    if s["status"] == "cancelled":
        if (s["calendar"], s["key"]) in theirs:
            return "therapist_cancellations"
        start, cancelled = dt(s["start"]), dt(s["cancelled_at"])
        is_late = start is not None and cancelled is not None and start - cancelled <= late
        return "late_cancels" if is_late else "cancellations"
    if s["no_show"]:
        return "no_shows"
    end = dt(s["end"])
    return "attended" if end is not None and end <= now else "upcoming"


def _therapist_sessions(conn: Any) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in conn.execute(sa.select(sequences.c.calendar, sequences.c.session_key)
                                               .where(sequences.c.closed_reason == "therapist_cancelled")).all()}


def _followed(conn: Any, start: str, end: str) -> list[Any]:
    followed = sa.select(steps.c.id).where(steps.c.sequence_id == sequences.c.id).exists()
    return list(conn.execute(sa.select(sequences).where(
        sequences.c.session_start >= start, sequences.c.session_start < end, sequences.c.client_id != "",
        followed, sequences.c.closed_reason.is_distinct_from("therapist_cancelled"))).mappings().all())


def misses_by_month(conn: Any, config: Config, last: Month, months: int = 12) -> list[tuple[str, int]]:
    """(YYYY-MM, no-shows + late cancellations + cancellations by clients) for the ``months``
    months ending with ``last``, oldest first; the therapist's own cancellations never count."""
    tz = config.practice.timezone
    theirs = _therapist_sessions(conn)
    first = last.shift(1 - months)
    start, _ = first.bounds(tz)
    _, end = last.bounds(tz)
    counts = {str(first.shift(i)): 0 for i in range(months)}
    for s in conn.execute(sa.select(sessions).where(sessions.c.start >= start, sessions.c.start < end,
                                                    sessions.c.client_id.is_not(None))).mappings():
        missed = (s["status"] == "cancelled" and (s["calendar"], s["key"]) not in theirs) or \
            (s["status"] == "active" and s["no_show"])
        if missed:
            moment = dt(s["start"])
            assert moment is not None
            counts[str(Month.of(moment, tz))] += 1
    return list(counts.items())


def chart_svg(series: list[tuple[str, int]], title: str) -> bytes:
    """A bar chart (SVG, drawn by pygal) with one bar per month."""
    import pygal
    from pygal.style import Style

    style = Style(background="white", plot_background="white", colors=("#4a7a8c",))
    chart = pygal.Bar(style=style, show_legend=False, title=title, width=800, height=400,
                      x_label_rotation=30, disable_xml_declaration=False, js=[])
    chart.x_labels = [month for month, _ in series]
    chart.add("Misses", [count for _, count in series])
    return chart.render()
