"""The due steps of a dispatch with what their re-check reads, loaded together.

One query gives each still-planned step with its sequence, its session, the client's flags
(reached, opt-outs), its calendar's health and the step before it; one more gives the
clients' other sessions (is the client coming back?), one the bounced addresses among them.
A dispatch loads a chunk of steps this way instead of a dozen queries a step
(``daemon.engine.dispatch`` trusts a chunk's facts for a few seconds only, and claims a step
only if the client's flags are still what its re-check read: a STOP never loses that race).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from daemon.model import SessionRow
from daemon.store.followups import JOINED
from daemon.store.sessions import CHUNK, for_clients, from_prefixed
from daemon.store.tables import calendars, client_flags, sequences, sessions, steps, undeliverable

_PREV = steps.alias("prev")
_SESSION = [c.label("s_" + c.key) for c in sessions.c]
_FLAG = [client_flags.c.client_id.label("f_client_id"), client_flags.c.opted_out_at.label("f_opted_out_at"),
         client_flags.c.opted_out_channels.label("f_opted_out_channels"),
         client_flags.c.reached_at.label("f_reached_at")]
_PREVIOUS = [_PREV.c.id.label("p_id"), _PREV.c.n.label("p_n"), _PREV.c.channel.label("p_channel"),
             _PREV.c.state.label("p_state"), _PREV.c.due_at.label("p_due_at"),
             _PREV.c.finished_at.label("p_finished_at")]


@dataclass
class Facts:
    """What the re-check of one step reads, as loaded (``previous``: the step before it)."""

    session: SessionRow | None
    flag: Mapping[str, Any] | None
    degraded: bool
    previous: dict[str, Any] | None
    client_sessions: tuple[SessionRow, ...]


def load(conn: Connection, step_ids: Iterable[str]) -> dict[str, tuple[Any, Facts]]:
    """The still-planned steps among ``step_ids``: id → (the step joined with its sequence, Facts)."""
    ids = list(step_ids)
    rows: list[Any] = []
    for i in range(0, len(ids), CHUNK):
        rows += conn.execute(
            sa.select(*JOINED, *_SESSION, *_FLAG, calendars.c.degraded.label("cal_degraded"), *_PREVIOUS)
            .select_from(
                steps.join(sequences, steps.c.sequence_id == sequences.c.id)
                .outerjoin(sessions, sa.and_(sessions.c.calendar == sequences.c.calendar,
                                             sessions.c.key == sequences.c.session_key))
                .outerjoin(client_flags, client_flags.c.client_id == sequences.c.client_id)
                .outerjoin(calendars, calendars.c.name == sequences.c.calendar)
                .outerjoin(_PREV, sa.and_(_PREV.c.sequence_id == steps.c.sequence_id, _PREV.c.n == steps.c.n - 1)))
            .where(steps.c.id.in_(ids[i:i + CHUNK]), steps.c.state == "planned")).mappings().all()
    theirs = for_clients(conn, {r["client_id"] for r in rows if r["client_id"]})
    out: dict[str, tuple[Any, Facts]] = {}
    for r in rows:
        out[r["id"]] = (r, Facts(
            session=from_prefixed(r, "s_") if r["s_key"] is not None else None,
            flag={k[2:]: r[k] for k in ("f_client_id", "f_opted_out_at", "f_opted_out_channels", "f_reached_at")}
            if r["f_client_id"] is not None else None,
            degraded=bool(r["cal_degraded"]),
            previous={k[2:]: r[k] for k in ("p_id", "p_n", "p_channel", "p_state", "p_due_at", "p_finished_at")}
            if r["p_id"] is not None else None,
            client_sessions=tuple(theirs.get(r["client_id"], ()))))
    return out


def undeliverable_among(conn: Connection, addresses: Iterable[str | None]) -> set[str]:
    """The addresses (lower case) among ``addresses`` that a bounce said cannot receive mail."""
    wanted = sorted({a.strip().lower() for a in addresses if a})
    out: set[str] = set()
    for i in range(0, len(wanted), CHUNK):
        out |= {r[0] for r in conn.execute(sa.select(undeliverable.c.address).where(
            undeliverable.c.address.in_(wanted[i:i + CHUNK]))).all()}
    return out
