"""How the monthly report reads: text for the therapist, CSV for a spreadsheet, JSON for tools."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from daemon.engine.report import COUNTS

ENDINGS = ("returned", "reached", "replied", "invitation_given", "opted_out", "open", "other")
HEAD = {"booked": "booked", "attended": "came", "no_shows": "no-show", "late_cancels": "late",
        "cancellations": "cancelled", "therapist_cancellations": "by you", "follow_ups": "follow-ups"}


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)


def as_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["month", "client", *COUNTS, *(f"ended_{e}" for e in ENDINGS)])
    for row in [*report["clients"], {"client": "TOTAL", **report["totals"], "ended": {}}]:
        writer.writerow([report["month"], row["client"], *(row[k] for k in COUNTS),
                         *(row["ended"].get(e, 0) for e in ENDINGS)])
    return buf.getvalue().rstrip("\n")


def as_text(report: dict[str, Any]) -> str:
    rows = report["clients"]
    width = max([len(r["client"]) for r in rows] + [6])
    lines = [f"Sessions and follow-ups, {report['month']}", "",
             f"{'client':<{width}}  " + "  ".join(f"{HEAD[k]:>10}" for k in COUNTS)]
    for r in rows:
        lines.append(f"{r['client']:<{width}}  " + "  ".join(f"{r[k]:>10}" for k in COUNTS))
        ended = ", ".join(f"{n} {e.replace('_', ' ')}" for e, n in sorted(r["ended"].items()))
        if ended:
            lines.append(f"{'':<{width}}  follow-ups ended: {ended}")
    t = report["totals"]
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{t[k]:>10}" for k in COUNTS))
    lines += ["", f"Your own cancellations this month: {t['therapist_cancellations']} (never counted as a "
              "client's miss).", "'late' are cancellations inside the late-cancel window (what a fee policy "
              "would bill); 'cancelled' were in good time."]
    return "\n".join(lines)
