"""The follow-up steps as the therapist reads them (``status``, ``status --json`` and the console)."""

from __future__ import annotations

from typing import Any

from daemon.store import followups
from daemon.store.tables import dt


def _local(value: str | None, tz: Any) -> str | None:
    moment = dt(value)
    return moment.astimezone(tz).isoformat() if moment else None


HELD = "held: "   # a planned step's reason while a local cause holds it (daemon.engine.dispatch)


def shown_state(state: str, reason: str | None) -> tuple[str, str | None, str]:
    """(state, reason, detail) as the therapist reads them: a planned step that a local cause
    holds is ``held`` with the cause's kind (``template``, ``missing_library``, ``secret``,
    ``folder``) as its reason and the explanation as detail."""
    if state == "planned" and reason and reason.startswith(HELD):
        kind, _, detail = reason[len(HELD):].partition(": ")
        return "held", kind, detail
    if state in ("skipped", "failed", "uncertain"):
        return state, reason, reason or ""
    return state, None, ""


def step_records(engine: Any) -> list[dict[str, Any]]:
    from daemon.engine.patterns import pattern_of

    tz = engine.config.practice.timezone
    with engine.store.transaction() as conn:
        rows = followups.all_steps(conn)
        firsts = {r["sequence_id"]: r for r in rows}
        pattern = {seq: pattern_of(conn, engine.config, r) for seq, r in firsts.items()}
    out = []
    for r in rows:
        client = engine.client_of(r["client_id"], r["client_name"], r["client_email"])
        state, reason, detail = shown_state(r["state"], r["reason"])
        out.append({"client": client.name, "session_start": _local(r["session_start"], tz),
                    "trigger": r["trigger"], "step": r["n"], "channel": r["channel"],
                    "due_at": _local(r["due_at"], tz), "state": state, "reason": reason,
                    "detail": detail, "sequence": r["sequence_id"], "id": r["id"], "calendar": r["calendar"],
                    "therapist": engine.config.therapist_of(r["calendar"]).name,
                    "sent_at": _local(r["finished_at"], tz) if r["state"] == "sent" else None,
                    "pattern": pattern[r["sequence_id"]]})
    return out


def of_therapist(config: Any, records: list[dict[str, Any]], who: str | None) -> list[dict[str, Any]]:
    """The records of one therapist's sessions (``who``: their email, any case; None or "": all),
    e.g. the console's *Today* per therapist; ``config.all_therapists()`` lists whom to offer."""
    if not who:
        return records
    key = who.strip().lower()
    return [r for r in records if config.therapist_of(r["calendar"]).key == key]
