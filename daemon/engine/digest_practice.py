"""The digest's sections about the practice around a missed session: held bursts, safety
follow-ups waiting for the therapist's outcome, patterns worth talking about together, and
follow-ups that ended with the invitation to return given (daemon.engine.digest)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from daemon.engine import bursts, patterns, safety
from daemon.engine.context import CycleContext
from daemon.store import followups
from daemon.store.tables import audit, sequences, ts


def _client(ctx: CycleContext, row: Any) -> Any:
    return ctx.client_of(row["client_id"], row["client_name"], row["client_email"])


def attention(ctx: CycleContext, conn: Any, fmt: Any, scope: Any) -> list[str]:
    """Held bursts and safety follow-ups still waiting for the therapist's outcome (of the
    digest's calendars, ``scope``)."""
    out = []
    held = scope.rows(bursts.held_sequences(conn))
    if held:
        names = ", ".join(_client(ctx, r).name for r in held)
        out.append(f"BURST: {len(held)} clients' cancellations came in at once ({names}); nothing was sent. "
                   "If they cancelled: welcomeback confirm --all (or one name); if you cancelled them: "
                   "welcomeback dismiss --all (or one name)")
    for r in scope.rows(safety.awaiting_outcome(conn)):
        out.append(f"SAFETY: {_client(ctx, r).name} did not come on {fmt.when(r['session_start'])} and has a "
                   f"safety concern; no outcome recorded yet. Record it: welcomeback reached \"{_client(ctx, r).name}\"")
    return out


def patterns_since(ctx: CycleContext, conn: Any, since: datetime, now: datetime, scope: Any) -> list[str]:
    """Follow-ups still open, or noticed since the last digest, that make a pattern."""
    rows = conn.execute(sa.select(sequences).where(sequences.c.client_id != "", sequences.c.trigger.in_(
        patterns.COUNTED)).order_by(sequences.c.detected_at)).mappings().all()
    out: dict[str, str] = {}
    for r in scope.rows(rows):
        if r["closed_at"] is None or (ts(since) or "") < r["detected_at"] <= (ts(now) or ""):
            line = patterns.note(conn, ctx.config, r)
            if line:
                out[r["client_id"]] = f"{_client(ctx, r).name}: {line}"
    return sorted(out.values())


def invitations(ctx: CycleContext, conn: Any, since: datetime, now: datetime, fmt: Any, scope: Any) -> list[str]:
    """Follow-ups that ended with every step sent and no answer: the invitation was given."""
    rows = conn.execute(sa.select(audit.c.sequence_id, audit.c.at).where(
        audit.c.event == "invitation_given", audit.c.at > ts(since), audit.c.at <= ts(now))
        .order_by(audit.c.at)).all()
    out = []
    for seq_id, at in rows:
        s = followups.sequence(conn, seq_id)
        if s is not None and scope.owns(s["calendar"]):
            out.append(f"{_client(ctx, s).name}: the invitation to return was given ({fmt.when(at)}) and "
                       "welcomeback sends nothing more. You may want to document it in your notes.")
    return out
