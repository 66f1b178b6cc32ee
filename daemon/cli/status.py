"""What the therapist reads: status table/JSON, previews, the contact log."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from daemon.config import Config
from daemon.engine import safety
from daemon.engine.records import HELD, _local, shown_state, step_records  # noqa: F401
from daemon.store import followups
from daemon.store.tables import audit, calendars, dt, reports, sequences

# Reports the therapist must see; each makes `status` exit 1 until the digest has told them.
ATTENTION = ("ambiguous", "uncertain", "failed", "too_late", "paused", "template", "throttled")


def render_status(engine: Any, *, as_json: bool) -> tuple[str, bool]:
    """The status text (or JSON) and whether something needs the therapist's attention."""
    records = step_records(engine)
    with engine.store.transaction() as conn:
        cals = conn.execute(sa.select(calendars)).mappings().all()
        open_reports = conn.execute(sa.select(reports).order_by(reports.c.at)).mappings().all()
        waiting = [engine.client_of(r["client_id"], r["client_name"], r["client_email"]).name
                   for r in safety.awaiting_outcome(conn)]
    polled = {c["name"] for c in cals if c["last_ok_at"] or c["degraded"]}
    attention = any(c["degraded"] for c in cals) or any(n not in polled for n in engine.sources) \
        or any(r["state"] in ("uncertain", "failed", "held") for r in records) \
        or any(r["kind"] in ATTENTION and not r["notified"] for r in open_reports) or bool(waiting)
    if as_json:
        return json.dumps(records, indent=2, ensure_ascii=False), attention
    text = _table(engine, records, cals, open_reports)
    if waiting:
        text += "\n\nSafety: no outcome recorded yet (record it with welcomeback reached CLIENT):\n" + \
            "\n".join(f"  {name}" for name in waiting)
    return text, attention


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
                     f"step {r['step']} {r['channel']:<5} due {due} {r['state']}{reason}{marker}"
                     + (f"  [id {r['id']}]" if r["state"] in ("uncertain", "failed") else ""))
    attention = [r for r in open_reports if r["kind"] in ATTENTION]
    held = sorted({(r["reason"], r["detail"]) for r in records if r["state"] == "held" and r["reason"] != "template"})
    never = [name for name in engine.sources if not (known.get(name) or {}).get("last_ok_at")
             and not (known.get(name) or {}).get("degraded")]
    if attention or never or held:
        lines += ["", "Needs your attention:"]
        for name in never:
            lines.append(f"  {'never polled':<12} {name:<12} not read yet: start the service "
                         "(welcomeback run) or run `welcomeback once`")
        for kind, detail in held:      # from the steps themselves: gone once they move on
            then = "welcomeback confirm --all (they cancelled) or dismiss --all (you did)" if kind == "burst" \
                else "fix it and the step goes out"
            lines.append(f"  {'held':<12} {'-':<12} {kind}: {detail}; {then}")
        for r in attention[-20:]:
            lines.append(f"  {r['kind']:<12} {r['calendar'] or '-':<12} {r['detail']}")
    if any(r["state"] in ("uncertain", "failed") for r in records):
        lines += ["", "Settle an uncertain or failed step with: welcomeback resolve ID --sent | --retry | --dismiss"]
    return "\n".join(lines)


def dt_local_short(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "-"


def render_preview(config: Config, template: str, client_name: str | None,
                   trigger: str = "no_show") -> tuple[str, str]:
    """(the message exactly as it would be sent, a note on whose values it shows).

    Without ``client_name``: a fictional client and session, with the practice's own name,
    phone and link from the config (nothing the practice does not have)."""
    from daemon.cli.actions import exact_in
    from daemon.clock import SystemClock
    from daemon.engine import messages
    from daemon.store.tables import ts
    from daemon.templating.templates import (
        SAMPLE_SESSION,
        Templates,
        sample_client,
        sample_context,
        when,
    )

    p = config.practice
    templates = Templates(config.resolve(config.templates.folder))
    start = datetime(*SAMPLE_SESSION, tzinfo=p.timezone)
    client = sample_client(config.clients.default_region)
    note = (f"preview with sample values: a fictional client ({client.name}) whose appointment on "
            f"{when(start, tz=p.timezone, locale=p.locale)} was {_TRIGGER_WORDS[trigger]}; the practice's "
            "name, phone and link come from the config. Use --client NAME for a client's own.")
    if client_name:
        client = exact_in(load_dir(config).clients, client_name, "--client")
        start = SystemClock().now()
        note = f"preview for {client.name}, as if the appointment just now was {_TRIGGER_WORDS[trigger]}"
    step = {"id": "preview", "sequence_id": "preview", "session_start": ts(start), "due_at": ts(start),
            "trigger": trigger, "template": template}
    medium = _medium(config, template) or ("email" if templates.render(template, sample_context()).subject
                                           else "sms")
    message = messages.build_for(step, client, medium, config, templates)
    out = [f"Subject: {message.subject}", "", message.text.rstrip()]
    if message.html:
        out += ["", "--- HTML ---", message.html.rstrip()]
    return "\n".join(out), note


_TRIGGER_WORDS = {"no_show": "missed (a no-show)", "late_cancel": "cancelled at short notice",
                  "cancelled": "cancelled"}


def _medium(config: Config, template: str) -> str | None:
    """How the cadence sends ``template``; None when no step uses it."""
    if template == "safety_call":       # always a call task for the therapist (daemon.engine.safety)
        return "call-task"
    for step in config.cadence.steps:
        if step.template == template:
            if step.channel == "email":
                return "email"
            return {"twilio-sms": "sms"}.get(config.phone.backend, "call-task")
    return None


def load_dir(config: Config) -> Any:
    from daemon.client_files import load_directory

    return load_directory(config.resolve(config.clients.directory) if config.clients.directory else None,
                          config.clients.default_region)


HISTORY_FIELDS = ["client", "session_start", "trigger", "follow_up", "time", "event", "detail", "closed"]


def render_history(engine: Any, client_id: str, fmt: str) -> str:
    """Each missed session with its trigger, each step with time, channel and outcome, and what
    the therapist did for the client (reached, opted out, resolved), with who and when."""
    tz = engine.config.practice.timezone
    name = engine.client_of(client_id).name
    rows = []
    with engine.store.transaction() as conn:
        seqs = conn.execute(sa.select(sequences).where(sequences.c.client_id == client_id)
                            .order_by(sequences.c.session_start)).mappings().all()
        for s in seqs:
            events = conn.execute(sa.select(audit).where(audit.c.sequence_id == s["id"]).order_by(audit.c.id)).mappings().all()
            base = {"client": s["client_name"] or name, "session_start": _local(s["session_start"], tz),
                    "trigger": s["trigger"], "follow_up": s["id"], "closed": s["closed_reason"] or "open"}
            unfollowed = s["closed_reason"] and not any(e["step_id"] for e in events) \
                and s["closed_reason"] not in ("sent",)
            rows.append({**base, "time": _local(s["detected_at"], tz), "event": "detected",
                         "detail": f"not followed up: {s['closed_reason']}" if unfollowed else ""})
            for e in events:
                if e["event"] != "detected":
                    rows.append({**base, "time": _local(e["at"], tz), "event": e["event"],
                                 "detail": (e["step_id"] or "") + (f" {e['detail']}" if e["detail"] else "")})
        for e in conn.execute(sa.select(audit).where(audit.c.client_id == client_id,
                                                     audit.c.sequence_id.is_(None)).order_by(audit.c.id)).mappings():
            rows.append({"client": name, "session_start": "", "trigger": "", "follow_up": "", "closed": "",
                         "time": _local(e["at"], tz), "event": e["event"], "detail": e["detail"]})
    rows.sort(key=lambda r: r["time"] or "")
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    if not rows:
        return "nothing recorded for this client"
    return "\n".join(f"{r['time'][:16]}  {r['session_start'][:16]:<16} {r['trigger']:<11} {r['event']:<14} "
                     f"{r['detail']}".rstrip() for r in rows)
