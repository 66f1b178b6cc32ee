"""What the therapist reads: status table/JSON, previews, the contact log."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from daemon import followups
from daemon.config import Config
from daemon.errors import UserError
from daemon.store import audit, calendars, dt, reports, sequences

def _local(value: str | None, tz: Any) -> str | None:
    moment = dt(value)
    return moment.astimezone(tz).isoformat() if moment else None


def step_records(engine: Any) -> list[dict[str, Any]]:
    tz = engine.config.practice.timezone
    with engine.store.transaction() as conn:
        rows = followups.all_steps(conn)
    out = []
    for r in rows:
        client = engine.client_of(r["client_id"], r["client_name"], r["client_email"])
        out.append({"client": client.name, "session_start": _local(r["session_start"], tz),
                    "trigger": r["trigger"], "step": r["n"], "channel": r["channel"],
                    "due_at": _local(r["due_at"], tz), "state": r["state"],
                    "reason": r["reason"] if r["state"] in ("skipped", "failed", "uncertain") else None,
                    "sequence": r["sequence_id"], "id": r["id"], "calendar": r["calendar"],
                    "sent_at": _local(r["finished_at"], tz) if r["state"] == "sent" else None})
    return out


def render_status(engine: Any, *, as_json: bool) -> tuple[str, bool]:
    """The status text (or JSON) and whether something needs the therapist's attention."""
    records = step_records(engine)
    with engine.store.transaction() as conn:
        cals = conn.execute(sa.select(calendars)).mappings().all()
        open_reports = conn.execute(sa.select(reports).order_by(reports.c.at)).mappings().all()
    attention = any(c["degraded"] for c in cals) or any(r["state"] in ("uncertain", "failed") for r in records)
    if as_json:
        return json.dumps(records, indent=2, ensure_ascii=False), attention
    return _table(engine, records, cals, open_reports), attention


def _table(engine: Any, records: list[dict[str, Any]], cals: Any, open_reports: Any) -> str:
    tz = engine.config.practice.timezone
    now = engine.clock.now()
    lines = ["Calendars:"]
    known = {c["name"]: c for c in cals}
    for name in engine.sources:
        c = known.get(name)
        last = _local(c["last_ok_at"], tz) if c else None
        state = f"DEGRADED: {c['degraded']}" if c and c["degraded"] else "ok"
        lines.append(f"  {name:<16} last good poll {last or 'never':<27} {state}")
    lines.append("")
    lines.append("Follow-ups:" if records else "Follow-ups: none")
    for r in records:
        due = dt_local_short(r["due_at"])
        marker = " (due now)" if r["state"] == "planned" and r["due_at"] and \
            datetime.fromisoformat(r["due_at"]) <= now else ""
        reason = f" ({r['reason']})" if r["reason"] else ""
        lines.append(f"  {r['client']:<22} {dt_local_short(r['session_start'])} {r['trigger']:<11} "
                     f"step {r['step']} {r['channel']:<5} due {due} {r['state']}{reason}{marker}")
    attention = [r for r in open_reports if r["kind"] in ("ambiguous", "uncertain", "failed", "too_late", "paused", "template", "throttled")]
    if attention:
        lines += ["", "Needs your attention:"]
        for r in attention[-20:]:
            lines.append(f"  {r['kind']:<10} {r['calendar'] or '-':<12} {r['detail']}")
    return "\n".join(lines)


def dt_local_short(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "-"


def find_client_ids(engine: Any, text: str) -> list[str]:
    """Client ids named by ``text``: directory first, then clients known only from sessions."""
    matches = engine.directory.find(text)
    if len(matches) > 1:
        names = ", ".join(sorted({c.name for c in matches}))
        raise UserError(f"'{text}' matches several clients ({names}); use the full name or email")
    if matches:
        return [matches[0].id]
    with engine.store.transaction() as conn:
        rows = conn.execute(sa.select(sequences.c.client_id).where(sa.or_(
            sa.func.lower(sequences.c.client_name) == text.strip().lower(),
            sa.func.lower(sequences.c.client_email) == text.strip().lower()))).all()
    ids = sorted({r[0] for r in rows if r[0]})
    if not ids:
        raise UserError(f"no client named '{text}' in the directory or in past follow-ups")
    return ids


def render_preview(config: Config, template: str, client_name: str | None) -> str:
    from daemon.templates import Templates, context_for, sample_context

    templates = Templates(config.resolve(config.templates.folder))
    ctx = sample_context()
    if client_name:
        directory = load_dir(config)
        found = directory.find(client_name)
        if len(found) != 1:
            raise UserError(f"--client '{client_name}': {'no' if not found else 'more than one'} matching client")
        p = config.practice
        ctx = context_for(found[0], datetime.now(p.timezone), "no_show", tz=p.timezone, locale=p.locale,
                          therapist=p.therapist, practice=p.name, practice_phone=p.phone,
                          rebooking_link=p.rebooking_link)
    rendered = templates.render(template, ctx)
    out = [f"Subject: {rendered.subject}", "", rendered.text.rstrip()]
    if rendered.html:
        out += ["", "--- HTML ---", rendered.html.rstrip()]
    return "\n".join(out)


def load_dir(config: Config) -> Any:
    from daemon.clients import load_directory

    return load_directory(config.resolve(config.clients.directory) if config.clients.directory else None,
                          config.clients.default_region)


def render_history(engine: Any, client_ids: list[str], fmt: str) -> str:
    """Each missed session with its trigger, and each step with time, channel and outcome."""
    tz = engine.config.practice.timezone
    rows = []
    with engine.store.transaction() as conn:
        seqs = conn.execute(sa.select(sequences).where(sequences.c.client_id.in_(client_ids))
                            .order_by(sequences.c.session_start)).mappings().all()
        for s in seqs:
            events = conn.execute(sa.select(audit).where(audit.c.sequence_id == s["id"]).order_by(audit.c.id)).mappings().all()
            base = {"client": s["client_name"] or engine.client_of(s["client_id"]).name,
                    "session_start": _local(s["session_start"], tz), "trigger": s["trigger"],
                    "follow_up": s["id"], "closed": s["closed_reason"] or "open"}
            rows.append({**base, "time": _local(s["detected_at"], tz), "event": "detected", "detail": ""})
            for e in events:
                if e["event"] != "detected":
                    rows.append({**base, "time": _local(e["at"], tz), "event": e["event"],
                                 "detail": (e["step_id"] or "") + (f" {e['detail']}" if e["detail"] else "")})
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["client", "session_start", "trigger", "follow_up", "time", "event", "detail", "closed"])
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    if not rows:
        return "no missed sessions recorded for this client"
    return "\n".join(f"{r['time'][:16]}  {r['session_start'][:16]} {r['trigger']:<11} {r['event']:<10} {r['detail']}"
                     for r in rows)
