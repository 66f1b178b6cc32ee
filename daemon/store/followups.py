"""Store access for follow-up sequences and their steps (the durable queue)."""

from __future__ import annotations

import hashlib

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from daemon.model import OPEN_STATES, PlannedStep, Trigger
from daemon.rules import Missed
from daemon.store.tables import audit, client_flags, dt, sequences, steps, ts

JOINED = [*steps.c, sequences.c.calendar, sequences.c.session_key, sequences.c.session_start,
          sequences.c.trigger, sequences.c.client_id, sequences.c.client_name, sequences.c.client_email,
          sequences.c.detected_at, sequences.c.closed_at, sequences.c.closed_reason]


# A poll's statements as text: each compiles in a fraction of Core's time, which counts where a
# statement is compiled once (a ``once`` process); the same SQL.
_EXISTS = sa.text("SELECT id FROM sequences WHERE id = :id")
_INSERT_SEQUENCE = sa.text(
    'INSERT INTO sequences (id, calendar, session_key, session_start, "trigger", client_id, client_name, '
    "client_email, detected_at, closed_at, closed_reason) VALUES (:id, :calendar, :session_key, "
    ":session_start, :trigger, :client_id, :client_name, :client_email, :detected_at, :closed_at, "
    ":closed_reason)")
_OPEN_ON_CALENDAR = sa.text("SELECT * FROM sequences WHERE calendar = :calendar AND closed_at IS NULL")


def exists(conn: Connection, seq_id: str) -> bool:
    return conn.execute(_EXISTS, {"id": seq_id}).first() is not None


def missed_of(row: Any) -> Missed:
    """The missed session a sequence (or a step joined with it) is about."""
    start, detected = dt(row["session_start"]), dt(row["detected_at"])
    assert start is not None and detected is not None
    return Missed(calendar=row["calendar"], key=row["session_key"], start=start, kind=row["trigger"],
                  detected_at=detected, client_id=row["client_id"] or "")


def create(conn: Connection, trigger: Trigger, seq_id: str, planned: list[PlannedStep], now: datetime,
           *, closed_reason: str | None = None, skip_reason: str | None = None,
           skipped: dict[int, str] | None = None) -> None:
    """Insert a sequence and its steps in one go (``closed_reason``: recorded, not followed up;
    ``skipped``: step number → reason for steps planned as already skipped)."""
    conn.execute(_INSERT_SEQUENCE, dict(
        id=seq_id, calendar=trigger.calendar, session_key=trigger.session_key,
        session_start=ts(trigger.session_start), trigger=trigger.kind,
        client_id=trigger.client_id or "", client_name=trigger.client_name,
        client_email=trigger.client_email, detected_at=ts(now),
        closed_at=ts(now) if closed_reason or skip_reason else None,
        closed_reason=closed_reason or skip_reason))
    if closed_reason:
        return
    _insert_steps(conn, seq_id, planned, now, skip_reason, skipped or {})
    if skipped and not skip_reason:
        close_if_done(conn, seq_id, now)


def _insert_steps(conn: Connection, seq_id: str, planned: list[PlannedStep], now: datetime,
                  skip_reason: str | None, skipped: dict[int, str]) -> None:
    rows = []
    for p in planned:
        reason = skip_reason or skipped.get(p.n)
        rows.append({"id": p.id, "sequence_id": seq_id, "n": p.n, "channel": p.channel, "template": p.template,
                     "due_at": ts(p.due_at), "state": "skipped" if reason else "planned",
                     "reason": reason, "attempts": 0, "finished_at": ts(now) if reason else None})
    if rows:
        conn.execute(steps.insert(), rows)


def reopen(conn: Connection, seq_id: str, planned: list[PlannedStep], now: datetime, *,
           skip_reason: str | None = None, skipped: dict[int, str] | None = None) -> None:
    """Start a sequence that was recorded closed (merged) after all: plan its steps now."""
    conn.execute(sequences.update().where(sequences.c.id == seq_id).values(
        closed_at=ts(now) if skip_reason else None, closed_reason=skip_reason))
    _insert_steps(conn, seq_id, planned, now, skip_reason, skipped or {})
    if not skip_reason:
        close_if_done(conn, seq_id, now)


def for_session(conn: Connection, calendar: str, session_key: str, *, exclude: str = "") -> bool:
    """Whether this session was already followed up (steps planned, not withdrawn) under
    another trigger."""
    followed = sa.select(steps.c.id).where(steps.c.sequence_id == sequences.c.id).exists()
    return conn.execute(sa.select(sequences.c.id).where(
        sequences.c.calendar == calendar, sequences.c.session_key == session_key, sequences.c.id != exclude,
        sequences.c.closed_reason.is_distinct_from("withdrawn"), followed)).first() is not None


def open_for_client(conn: Connection, client_id: str, *, exclude: str = "") -> str | None:
    """The client's open follow-up, if any.  On PostgreSQL the check holds a transaction lock
    on the client first, so two replicas (or two calendars) planning for the same client at once
    take turns and the second sees the first's follow-up (SQLite's writers queue already)."""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(("client|" + client_id).encode()).digest()[:8], "big") >> 1
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    row = conn.execute(sa.select(sequences.c.id).where(
        sequences.c.client_id == client_id, sequences.c.closed_at.is_(None), sequences.c.id != exclude)).first()
    return row[0] if row else None


def sequence(conn: Connection, seq_id: str) -> Any:
    return conn.execute(sa.select(sequences).where(sequences.c.id == seq_id)).mappings().first()


def open_on_calendar(conn: Connection, calendar: str) -> list[Any]:
    return list(conn.execute(_OPEN_ON_CALENDAR, {"calendar": calendar}).mappings().all())


def merged_for_client(conn: Connection, client_id: str) -> list[Any]:
    """Sequences recorded but not started because another follow-up of the client was open."""
    return list(conn.execute(sa.select(sequences).where(
        sequences.c.client_id == client_id, sequences.c.closed_reason == "merged")
        .order_by(sequences.c.session_start, sequences.c.id)).mappings().all())


def delivered_in_withdrawn(conn: Connection, client_id: str) -> list[Any]:
    """Steps that reached (or may have reached) the client under follow-ups since withdrawn:
    rows with ``n``, ``channel`` and the withdrawn sequence's ``session_start``."""
    return list(conn.execute(
        sa.select(steps.c.n, steps.c.channel, sequences.c.session_start)
        .join(sequences, steps.c.sequence_id == sequences.c.id)
        .where(sequences.c.client_id == client_id, sequences.c.closed_reason == "withdrawn",
               steps.c.state.in_(("sent", "uncertain")))).mappings().all())


def set_session_start(conn: Connection, seq_id: str, start: datetime) -> None:
    """The therapist corrected the missed session's date: messages name the new one."""
    conn.execute(sequences.update().where(sequences.c.id == seq_id).values(session_start=ts(start)))


def postpone(conn: Connection, step_id: str, due_at: datetime) -> None:
    """A planned step waits until ``due_at`` (the cadence's spacing after the step before it)."""
    conn.execute(steps.update().where(steps.c.id == step_id, steps.c.state == "planned").values(due_at=ts(due_at)))


def open_sequences(conn: Connection, client_id: str) -> list[str]:
    return [r[0] for r in conn.execute(sa.select(sequences.c.id).where(
        sequences.c.client_id == client_id, sequences.c.closed_at.is_(None))).all()]


def due(conn: Connection, now: datetime) -> list[Any]:
    return list(conn.execute(
        sa.select(*JOINED).join(sequences, steps.c.sequence_id == sequences.c.id)
        .where(steps.c.state == "planned", steps.c.due_at <= ts(now))
        .order_by(steps.c.due_at, steps.c.id)).mappings().all())


def step_row(conn: Connection, step_id: str) -> Any:
    return conn.execute(
        sa.select(*JOINED).join(sequences, steps.c.sequence_id == sequences.c.id)
        .where(steps.c.id == step_id)).mappings().first()


def claim(conn: Connection, step_id: str, worker: str, now: datetime, *, marker: str | None = None,
          flags_as: tuple[str, Any] | None = None) -> bool:
    """planned → sending, only if still planned (another replica may have taken it).
    ``marker`` (the channel's handle for looking the message up) is kept as the provider id
    until the hand-off's outcome replaces it.  ``flags_as`` (client id, the client_flags row the
    re-check read, or None for none): claimed only if the client's flags are still exactly
    that (a STOP written since must be re-checked first)."""
    pg = conn.dialect.name == "postgresql"
    params: dict[str, Any] = {"step_id": step_id, "worker": worker, "at": ts(now), "marker": marker}
    if flags_as is None:
        query = _CLAIM_SKIP_LOCKED if pg else _CLAIM
    else:
        client_id, flag = flags_as
        params["client_id"] = client_id
        if flag is None:
            query = _CLAIM_NO_FLAGS[pg]
        else:
            query = _CLAIM_SAME_FLAGS[pg]
            params.update({k: flag[k] for k in FLAG_VALUES})
    return conn.execute(query, params).rowcount == 1


FLAG_VALUES = ("opted_out_at", "opted_out_channels", "reached_at")   # what a re-check reads of them


def same_flags(a: Any, b: Any) -> bool:
    """Whether two client_flags rows (or None) say the same to a re-check."""
    if a is None or b is None:
        return a is None and b is None
    return all(a[k] == b[k] for k in FLAG_VALUES)


# The statements of every step's hand-off, built once (building one costs ~5x executing it).
_B = sa.bindparam
_CLAIM_VALUES: dict[str, Any] = dict(state="sending", claimed_by=_B("worker"), claimed_at=_B("at"),
                     attempts=steps.c.attempts + 1, provider_id=_B("marker"))
_CLAIM = steps.update().where(steps.c.id == _B("step_id"), steps.c.state == "planned").values(**_CLAIM_VALUES)
# on PostgreSQL another replica claiming the same row right now is skipped, not waited for.
# The state is compared as an expression (``state || ''``) so that only the primary key can find
# the row: with a young table's statistics PostgreSQL rated the (state, due_at) index as good and
# walked every planned step for each claim (2-8 ms a claim at 300 due steps, growing with them).
_PLANNED = (steps.c.state + "") == "planned"
_CLAIM_SKIP_LOCKED = steps.update().where(
    steps.c.id.in_(sa.select(steps.c.id).where(steps.c.id == _B("step_id"), _PLANNED)
                   .with_for_update(skip_locked=True).scalar_subquery()),
    _PLANNED).values(**_CLAIM_VALUES)
_FLAGS_OF = client_flags.c.client_id == _B("client_id", type_=sa.String)
_NO_FLAGS = ~sa.exists().where(_FLAGS_OF)
_SAME_FLAGS = sa.exists().where(_FLAGS_OF, *(client_flags.c[k].is_not_distinct_from(_B(k, type_=sa.String))
                                             for k in FLAG_VALUES))
_CLAIM_NO_FLAGS = {False: _CLAIM.where(_NO_FLAGS), True: _CLAIM_SKIP_LOCKED.where(_NO_FLAGS)}
_CLAIM_SAME_FLAGS = {False: _CLAIM.where(_SAME_FLAGS), True: _CLAIM_SKIP_LOCKED.where(_SAME_FLAGS)}
_FINISH_VALUES: dict[str, Any] = dict(state=_B("state"), reason=_B("reason"), provider_id=_B("provider_id"), finished_at=_B("at"))
_FINISH = steps.update().where(steps.c.id == _B("step_id")).values(**_FINISH_VALUES)
_FINISH_MINE = steps.update().where(steps.c.id == _B("step_id"), steps.c.claimed_by == _B("worker"),
                                    steps.c.state == "sending").values(**_FINISH_VALUES)
_THEIRS = steps.c.sequence_id == _B("seq_id")
_LAST = (sa.select(sa.case((steps.c.state == "skipped", steps.c.reason), else_=steps.c.state))
         .where(_THEIRS).order_by(steps.c.n.desc()).limit(1).scalar_subquery())
# closed in one statement when no step is open: the reason given, else the last step's (its
# skip reason, or its state), "done" for a follow-up without steps
_CLOSE = (sequences.update()
          .where(sequences.c.id == _B("seq_id"), sequences.c.closed_at.is_(None),
                 ~sa.exists().where(_THEIRS, steps.c.state.in_(sorted(OPEN_STATES))))
          .values(closed_at=_B("at"), closed_reason=sa.case(
              (_B("reason", type_=sa.String).is_not(None), _B("reason", type_=sa.String)),
              (sa.exists().where(_THEIRS), _LAST), else_=sa.literal("done")))
          .returning(sequences.c.closed_reason))
_AUDIT_COLUMNS = ("at", "sequence_id", "step_id", "event", "detail", "client_id")
# a contact-log entry written only if the follow-up has none of that event yet, in one statement
_ONCE = (sa.select(*(_B(name, type_=audit.c[name].type) for name in _AUDIT_COLUMNS))
         .where(~sa.exists().where(audit.c.sequence_id == _B("sequence_id"), audit.c.event == _B("event"))))
_AUDIT_ONCE = audit.insert().from_select(list(_AUDIT_COLUMNS), _ONCE)
# the same, after an entry written in any case (the step's own), in one statement
_AUDIT_THEN_ONCE = audit.insert().from_select(list(_AUDIT_COLUMNS), sa.union_all(
    sa.select(*(_B(f"first_{name}", type_=audit.c[name].type) for name in _AUDIT_COLUMNS)), _ONCE))
_FLAG = sa.select(client_flags).where(client_flags.c.client_id == _B("client_id"))


def finish(conn: Connection, step_id: str, state: str, now: datetime, *, reason: str | None = None,
           provider_id: str | None = None, worker: str | None = None) -> None:
    conn.execute(_FINISH if worker is None else _FINISH_MINE,
                 {"step_id": step_id, "worker": worker, "state": state, "reason": reason,
                  "provider_id": provider_id, "at": ts(now)})


def release(conn: Connection, step_id: str, due_at: datetime, reason: str) -> None:
    """sending → planned again: the hand-off definitely did not happen."""
    conn.execute(steps.update().where(steps.c.id == step_id, steps.c.state == "sending")
                 .values(state="planned", due_at=ts(due_at), reason=reason, claimed_by=None))


def hold(conn: Connection, step_id: str, reason: str) -> None:
    """Note why a planned step waits (``held: KIND: …``); it stays planned and due."""
    conn.execute(steps.update().where(steps.c.id == step_id, steps.c.state == "planned")
                 .values(reason=reason))


def skip(conn: Connection, step_id: str, reason: str, now: datetime) -> bool:
    """planned → skipped; False when the step was no longer planned."""
    return conn.execute(steps.update().where(steps.c.id == step_id, steps.c.state == "planned")
                        .values(state="skipped", reason=reason, finished_at=ts(now))).rowcount == 1


def stop(conn: Connection, seq_id: str, reason: str, now: datetime) -> int:
    """Skip every planned step of a sequence and close it; returns how many were skipped."""
    result = conn.execute(steps.update().where(steps.c.sequence_id == seq_id, steps.c.state == "planned")
                          .values(state="skipped", reason=reason, finished_at=ts(now)))
    close_if_done(conn, seq_id, now, reason)
    return result.rowcount


def close_if_done(conn: Connection, seq_id: str, now: datetime, reason: str | None = None) -> str | None:
    """Close the sequence when none of its steps is open; returns the reason it was closed
    with now (None: still open, or closed before)."""
    row = conn.execute(_CLOSE, {"seq_id": seq_id, "at": ts(now), "reason": reason or None}).first()
    return row[0] if row is not None else None


def abandon_stale(conn: Connection, worker: str, now: datetime, live: set[str] | None = None) -> list[str]:
    """``sending`` rows claimed by no live process → ``uncertain``.  ``live`` are the workers
    still alive on a shared store (this one always); on SQLite only this process is."""
    alive = sorted((live or set()) | {worker})
    stale = [r[0] for r in conn.execute(sa.select(steps.c.id).where(
        steps.c.state == "sending", sa.or_(steps.c.claimed_by.is_(None), steps.c.claimed_by.not_in(alive)))).all()]
    for step_id in stale:
        conn.execute(steps.update().where(steps.c.id == step_id, steps.c.state == "sending").values(
            state="uncertain", finished_at=ts(now),
            reason="the service stopped during the hand-off; it may or may not have been delivered"))
    return stale


def audit_once(conn: Connection, at: datetime, seq_id: str, event: str, detail: str, *,
               first: dict[str, Any] | None = None) -> None:
    """A contact-log entry for the follow-up unless it already has ``event``.  ``first``
    (``event``, ``detail``, ``step_id``) is an entry of the same follow-up written before it in
    any case, in the same statement."""
    values = {"at": ts(at), "sequence_id": seq_id, "step_id": None, "event": event, "detail": detail,
              "client_id": None}
    if first is None:
        conn.execute(_AUDIT_ONCE, values)
    else:
        conn.execute(_AUDIT_THEN_ONCE, {**values, **{f"first_{name}": values[name] for name in _AUDIT_COLUMNS},
                                        **{f"first_{name}": value for name, value in first.items()}})


def client_flag(conn: Connection, client_id: str) -> Any:
    return conn.execute(_FLAG, {"client_id": client_id}).mappings().first()


def opted_out(conn: Connection, client_id: str, medium: str | None = None) -> bool:
    """Whether the client opted out of everything, or of ``medium`` (e.g. SMS after STOP)."""
    return flag_opts_out(client_flag(conn, client_id), medium)


def flag_opts_out(flag: Any, medium: str | None = None) -> bool:
    """``opted_out`` for a client_flags row already read (None: no flags)."""
    if flag is None or not flag["opted_out_at"]:
        return False
    channels = set(filter(None, (flag["opted_out_channels"] or "").split(",")))
    return not channels or "all" in channels or (medium is not None and medium in channels)


def set_client_flag(conn: Connection, client_id: str, **values: Any) -> None:
    if client_flag(conn, client_id) is None:
        conn.execute(client_flags.insert().values(**{"client_id": client_id, "opted_out_channels": "", **values}))
    else:
        conn.execute(client_flags.update().where(client_flags.c.client_id == client_id).values(**values))


def all_steps(conn: Connection) -> list[Any]:
    return list(conn.execute(
        sa.select(*JOINED).join(sequences, steps.c.sequence_id == sequences.c.id)
        .order_by(sequences.c.session_start, steps.c.n)).mappings().all())


def sent_since(conn: Connection, client_id: str, channel: str, since: datetime) -> int:
    """How many steps on ``channel`` were sent to the client since ``since``."""
    return conn.execute(
        sa.select(sa.func.count()).select_from(steps.join(sequences, steps.c.sequence_id == sequences.c.id))
        .where(sequences.c.client_id == client_id, steps.c.channel == channel, steps.c.state == "sent",
               steps.c.finished_at >= ts(since))).scalar_one()


def purge_closed(conn: Connection, before: datetime) -> int:
    """Delete sequences closed before ``before`` with their steps and audit rows."""
    ids = [r[0] for r in conn.execute(sa.select(sequences.c.id).where(
        sequences.c.closed_at.is_not(None), sequences.c.closed_at < ts(before))).all()]
    for chunk in range(0, len(ids), 500):
        part = ids[chunk:chunk + 500]
        conn.execute(audit.delete().where(audit.c.sequence_id.in_(part)))
        conn.execute(steps.delete().where(steps.c.sequence_id.in_(part)))
        conn.execute(sequences.delete().where(sequences.c.id.in_(part)))
    return len(ids)


def messages_since(conn: Connection, since: datetime, channels: tuple[str, ...]) -> int:
    """Steps on ``channels`` handed off (sent or uncertain) since ``since``."""
    return conn.execute(sa.select(sa.func.count()).select_from(steps).where(
        steps.c.state.in_(("sent", "uncertain")), steps.c.finished_at >= ts(since),
        steps.c.channel.in_(channels))).scalar_one()


def reopen_stopped(conn: Connection, client_id: str, reason: str, since: str) -> int:
    """Undo a stop: the client's latest follow-up closed for ``reason`` at or after ``since``
    gets the steps that reason skipped planned again.  Nothing when another follow-up of the
    client is open (at most one at a time).  Returns how many steps are planned again."""
    if open_for_client(conn, client_id):
        return 0
    row = conn.execute(sa.select(sequences.c.id).where(
        sequences.c.client_id == client_id, sequences.c.closed_reason == reason,
        sequences.c.closed_at >= since).order_by(sequences.c.session_start.desc())).first()
    if row is None:
        return 0
    result = conn.execute(steps.update().where(
        steps.c.sequence_id == row[0], steps.c.state == "skipped", steps.c.reason == reason,
        steps.c.finished_at >= since).values(state="planned", reason=None, finished_at=None))
    if result.rowcount:
        conn.execute(sequences.update().where(sequences.c.id == row[0])
                     .values(closed_at=None, closed_reason=None))
    return result.rowcount


def reopen_sequence(conn: Connection, seq_id: str) -> bool:
    """Open a closed sequence again (a step resolved for a retry); False when another
    follow-up of the same client is open."""
    seq = conn.execute(sa.select(sequences.c.client_id, sequences.c.closed_at)
                       .where(sequences.c.id == seq_id)).first()
    if seq is None or seq.closed_at is None:
        return seq is not None
    other = open_for_client(conn, seq.client_id)
    if other and other != seq_id:
        return False
    conn.execute(sequences.update().where(sequences.c.id == seq_id).values(closed_at=None, closed_reason=None))
    return True
