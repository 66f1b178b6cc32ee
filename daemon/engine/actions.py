"""What the therapist settles (command line or console), each written to the contact log with who and when.

``reached``, ``optout`` and ``optin`` (and their undo) act on one client, matched only by an
exact name, alias or email (any case) that names exactly one client; a partial or ambiguous
match is refused with the candidates.  ``resolve`` settles one uncertain or failed step:
``sent`` (the therapist checked the provider), ``retry`` (plan it again now) or ``dismiss``.
Candidates are printed on the operator's terminal only; log lines carry ids.
"""

from __future__ import annotations

import getpass
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from daemon.errors import UserError
from daemon.model import Client
from daemon.store import followups
from daemon.store.tables import sequences, sessions, steps, ts

log = logging.getLogger(__name__)
RESOLUTIONS = ("sent", "retry", "dismiss")
SETTLEABLE = ("uncertain", "failed")


def who() -> str:
    """The operating-system user running the command (for the contact log)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):   # a uid without a passwd entry and no $USER
        return f"uid {os.getuid()}"


@dataclass(frozen=True)
class Matched:
    client_id: str
    name: str
    email: str = ""
    in_directory: bool = True
    do_not_contact: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} <{self.email}>" if self.email else self.name


def _of(client: Client) -> Matched:
    return Matched(client.id, client.name, client.email, client.in_directory, client.do_not_contact)


def _labels(client: Client) -> set[str]:
    return {_key(client.name), *(_key(a) for a in client.aliases),
            *([_key(client.email)] if client.email else [])}


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def exact_in(clients: list[Client], text: str, what: str = "client") -> Client:
    """The one directory client ``text`` names exactly; raises UserError with the candidates."""
    key = _key(text)
    hits = [c for c in clients if key and key in _labels(c)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UserError(f"{what} '{text}' fits {len(hits)} clients; give the one you mean exactly, "
                        "e.g. by email:", [_of(c).label for c in hits])
    near = sorted({_of(c).label for c in clients if key and any(key in label for label in _labels(c))})
    raise UserError(f"{what}: no client is named exactly '{text}' (name, alias or email)"
                    + ("; did you mean one of these?" if near else ""), near)


def match_client(engine: Any, text: str) -> Matched:
    """The one client ``text`` names exactly (directory first, then clients known only from
    their sessions).  Raises UserError listing the candidates when none or several fit."""
    key = _key(text)
    if not key:
        raise UserError("which client? give a name, alias or email exactly as in the client directory")
    hits = [_of(c) for c in engine.directory.clients if key in _labels(c)]
    if not hits:
        hits = [m for m in _known(engine) if key in {m.name.casefold(), m.email.casefold()}]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UserError(f"'{text}' fits {len(hits)} clients; give the one you mean exactly, "
                        "e.g. by email:", [m.label for m in hits])
    near = [_of(c).label for c in engine.directory.clients
            if any(key in label for label in _labels(c))]
    near += [m.label for m in _known(engine) if key in m.name.casefold() or key in m.email.casefold()]
    raise UserError(f"no client is named exactly '{text}' (name, alias or email)"
                    + ("; did you mean one of these?" if near else ""), sorted(set(near)))


def _known(engine: Any) -> list[Matched]:
    """Clients outside the directory that sessions or follow-ups named (attendee addresses)."""
    found: dict[str, Matched] = {}
    with engine.store.transaction() as conn:
        for table in (sequences, sessions):
            for row in conn.execute(sa.select(table.c.client_id, table.c.client_name, table.c.client_email)
                                    .distinct()).all():
                if row[0] and engine.directory.by_id(row[0]) is None:
                    found.setdefault(row[0], Matched(row[0], row[1] or row[2], row[2] or "", False))
    return list(found.values())


def cli_by() -> str:
    """Who did it, as the contact log records an action taken on the command line."""
    return f"by {who()} on the command line"


def mark(engine: Any, client: Matched, reason: str, now: datetime, by: str | None = None) -> int:
    """``reached`` or ``opted_out``: flag the client and stop their open follow-ups.
    Returns how many planned steps were stopped.  ``by`` is who did it (default: the CLI user)."""
    by = by or cli_by()
    values = {"reached_at": ts(now)} if reason == "reached" else \
        {"opted_out_at": ts(now), "opted_out_channels": "all"}
    stopped = 0
    with engine.store.transaction() as conn:
        followups.set_client_flag(conn, client.client_id, **values)
        open_seqs = followups.open_sequences(conn, client.client_id)
        for seq in open_seqs:
            stopped += followups.stop(conn, seq, reason, now)
            engine.store.audit(conn, now, reason, sequence_id=seq, client_id=client.client_id, detail=by)
        if not open_seqs:
            engine.store.audit(conn, now, reason, client_id=client.client_id, detail=by)
    log.info("client marked %s (%s); %d step(s) stopped", reason, _where(by), stopped)
    return stopped


def undo(engine: Any, client: Matched, reason: str, now: datetime, by: str | None = None) -> int:
    """Take back ``reached`` or ``opted_out`` (optin): the flag goes, and the steps it stopped
    are planned again.  Returns how many.  Raises UserError when there is nothing to undo."""
    column = "reached_at" if reason == "reached" else "opted_out_at"
    word = "reached" if reason == "reached" else "opted out"
    if reason == "opted_out" and client.do_not_contact:
        raise UserError(f"{client.label} is marked do_not_contact in the client directory; "
                        "change it there (welcomeback never overrides the directory)")
    with engine.store.transaction() as conn:
        flag = followups.client_flag(conn, client.client_id)
        since = flag[column] if flag else None
        if not since:
            raise UserError(f"{client.label} is not marked {word}; nothing to undo")
        cleared = {column: None} if reason == "reached" else {column: None, "opted_out_channels": ""}
        followups.set_client_flag(conn, client.client_id, **cleared)
        restored = followups.reopen_stopped(conn, client.client_id, reason, since)
        event = "reached_undone" if reason == "reached" else "opted_in"
        engine.store.audit(conn, now, event, client_id=client.client_id,
                           detail=f"{by or cli_by()}; {restored} step(s) planned again")
    log.info("client no longer %s (%s); %d step(s) planned again", word, _where(by), restored)
    return restored


def deliverable(engine: Any, client: Matched, now: datetime, by: str | None = None) -> int:
    """The therapist fixed or confirmed a bounced address: every address of the client that a
    bounce marked undeliverable may be written to again.  Returns how many were cleared.
    Raises UserError when none was marked.  A step that failed on the bounce stays failed
    (``resolve STEP_ID --retry`` sends it again)."""
    from daemon.store import inbox as inbox_store

    known = engine.directory.by_id(client.client_id)
    addresses = {a.strip().lower() for a in (client.email, *(known.aliases if known else ()),
                                             known.email if known else "") if "@" in a}
    with engine.store.transaction() as conn:
        bounced = [a for a in sorted(addresses) if inbox_store.is_undeliverable(conn, a)]
        if not bounced:
            raise UserError(f"no address of {client.label} is marked undeliverable; nothing to clear")
        for address in bounced:
            inbox_store.clear_undeliverable(conn, address)
        engine.store.audit(conn, now, "address_deliverable", client_id=client.client_id,
                           detail=f"{by or cli_by()}; {len(bounced)} address(es) may be written to again")
    log.info("client address(es) marked deliverable again (%s): %d", _where(by), len(bounced))
    return len(bounced)


def resolve(engine: Any, step_id: str, action: str, now: datetime, by: str | None = None) -> str:
    """Settle an uncertain or failed step; returns what became of it.  Raises UserError."""
    with engine.store.transaction() as conn:
        row = followups.step_row(conn, step_id.strip())
        if row is None:
            raise UserError(f"no step '{step_id}'; step ids are the 'id' field of `welcomeback status --json`")
        if row["state"] not in SETTLEABLE:
            raise UserError(f"step {row['id']} is {row['state']}; only an uncertain or failed step "
                            "can be resolved")
        outcome = _settle(conn, row, action, now)
        for kind in SETTLEABLE:        # filed under the calendar, or under none (a crash)
            for calendar in {row["calendar"], ""}:
                engine.store.resolve(conn, kind, calendar, row["id"])
        engine.store.audit(conn, now, "resolved", sequence_id=row["sequence_id"], step_id=row["id"],
                           client_id=row["client_id"],
                           detail=f"{outcome} (was {row['state']}), {by or cli_by()}")
    log.info("step %s resolved (%s): %s", row["id"], _where(by), outcome)
    return outcome


def _where(by: str | None) -> str:
    """Where an action came from, for the log (never who: a user name is not client data, but
    the log needs no more than the place)."""
    return "console" if by and "console" in by else "command line"


def _settle(conn: Any, row: Any, action: str, now: datetime) -> str:
    query = steps.update().where(steps.c.id == row["id"], steps.c.state == row["state"])
    if action == "sent":
        conn.execute(query.values(state="sent", reason="confirmed sent by the therapist"))
        followups.close_if_done(conn, row["sequence_id"], now)
        return "sent"
    if action == "dismiss":
        conn.execute(query.values(state="skipped", reason="dismissed", finished_at=ts(now)))
        followups.close_if_done(conn, row["sequence_id"], now)
        return "dismissed"
    if not followups.reopen_sequence(conn, row["sequence_id"]):
        raise UserError(f"step {row['id']}: another follow-up of this client is open; "
                        "it cannot be sent again now")
    conn.execute(query.values(state="planned", reason=None, due_at=ts(now), finished_at=None,
                              claimed_by=None, claimed_at=None, attempts=0))
    return "planned again"



def matched(client: Client) -> Matched:
    """A directory client as the actions take it."""
    return _of(client)


def note_call(engine: Any, step: Any, outcome: str, now: datetime, by: str | None = None) -> None:
    """The therapist's call: ``no_answer`` (noted; the follow-up goes on) or ``dismiss`` (this
    call is not made: a call step still planned is skipped as ``dismissed``)."""
    with engine.store.transaction() as conn:
        if outcome == "dismiss" and step["state"] == "planned":
            conn.execute(steps.update().where(steps.c.id == step["id"], steps.c.state == "planned")
                         .values(state="skipped", reason="dismissed", finished_at=ts(now)))
            followups.close_if_done(conn, step["sequence_id"], now)
        event = "call_no_answer" if outcome == "no_answer" else "call_dismissed"
        seq = conn.execute(sa.select(sequences.c.client_id).where(sequences.c.id == step["sequence_id"])).first()
        engine.store.audit(conn, now, event, sequence_id=step["sequence_id"], step_id=step["id"],
                           client_id=seq[0] if seq else None, detail=by or cli_by())
    log.info("step %s: call %s (%s)", step["id"], outcome, _where(by))


def history_rows(engine: Any, client_id: str) -> list[dict[str, Any]]:
    """The client's contact log, oldest first (what ``history`` prints)."""
    from daemon.store.tables import audit, dt

    tz = engine.config.practice.timezone

    def local(value: str | None) -> str:
        moment = dt(value)
        return moment.astimezone(tz).isoformat() if moment else ""

    rows: list[dict[str, Any]] = []
    with engine.store.transaction() as conn:
        seqs = conn.execute(sa.select(sequences).where(sequences.c.client_id == client_id)).mappings().all()
        for s in seqs:
            rows.append({"time": local(s["detected_at"]), "session_start": local(s["session_start"]),
                         "trigger": s["trigger"], "event": "detected", "detail": ""})
            for e in conn.execute(sa.select(audit).where(audit.c.sequence_id == s["id"])
                                  .order_by(audit.c.id)).mappings():
                if e["event"] != "detected":
                    rows.append({"time": local(e["at"]), "session_start": local(s["session_start"]),
                                 "trigger": s["trigger"], "event": e["event"], "detail": e["detail"] or ""})
        for e in conn.execute(sa.select(audit).where(audit.c.client_id == client_id,
                                                     audit.c.sequence_id.is_(None)).order_by(audit.c.id)).mappings():
            rows.append({"time": local(e["at"]), "session_start": "", "trigger": "", "event": e["event"],
                         "detail": e["detail"] or ""})
    rows.sort(key=lambda r: r["time"])
    return rows
