"""Dispatch in batches (issue 11, item 3): the due steps are loaded with their sessions, the
clients' flags and the calendars' health in a few queries a chunk, not a dozen a step, and a
chunk's facts never outrun what the client told us meanwhile.

On SQLite and PostgreSQL; the real engine and store, the outbox channel.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from daemon.clock import FixedClock
from daemon.config import load
from daemon.engine.cycle import Engine
from daemon.engine.dispatch import Dispatcher
from daemon.store import followups
from daemon.store.tables import audit, dt, steps
from tests.conftest import _drop_cli_log_handlers, local, make_practice, store_rows
from tests.ics import Ev

PEOPLE = [f"Client{i:02d} Batch" for i in range(24)]
TUESDAY = local(2026, 11, 3, 9)
WEDNESDAY = local(2026, 11, 4, 16)     # every follow-up email is due (one business day after)
EMAIL_ONLY = """
[cadence]
steps = [{ channel = "email", after = "1 business day", template = "email_followup" }]
max_messages_per_hour = 1000
"""


@pytest.fixture(params=["sqlite", "postgres"])
def missed(request, tmp_path):
    """A practice whose 24 clients all missed Tuesday's session: 24 emails due on Wednesday."""
    return _missed(request, tmp_path, request.param)


@pytest.fixture
def missed_pg(request, tmp_path):
    """``missed`` on PostgreSQL only."""
    return _missed(request, tmp_path, "postgres")


def _missed(request, tmp_path, kind):
    store = 'path = "state.db"'
    if kind == "postgres":
        store = f'url = "{request.getfixturevalue("pg_schema")}"'
    p = make_practice(tmp_path / "practice", store=store, extra=EMAIL_ONLY)
    (p.root / "clients.csv").write_text("name,aliases,email,phone,preferred_channel,do_not_contact\n" + "".join(
        f"{n},,c{i}@example.com,,email,false\n" for i, n in enumerate(PEOPLE)))
    events = [Ev(f"b{i}", TUESDAY + timedelta(minutes=10 * i), TUESDAY + timedelta(minutes=10 * i + 8), n)
              for i, n in enumerate(PEOPLE)]
    p.calendar(events)
    assert p.once(local(2026, 11, 2, 8)) == 0
    p.calendar([Ev(e.uid, e.start, e.end, e.summary + " no-show") for e in events])
    assert p.once(local(2026, 11, 3, 20)) == 0
    _drop_cli_log_handlers()        # the CLI's stderr handlers, bound to the setup's capture
    return p


def _engine(p) -> Engine:
    return Engine(load(p.config), FixedClock(WEDNESDAY))


def _read_chunk(engine: Engine) -> tuple[Dispatcher, list, dict]:
    """A dispatcher of ``engine``, the due steps, and the chunk of all of them as it read it."""
    dispatcher = Dispatcher(engine.context)
    with engine.context.store.transaction() as conn:
        due = followups.due(conn, WEDNESDAY)
    return dispatcher, due, dispatcher._load([s["id"] for s in due])


def test_a_dispatch_costs_a_few_statements_a_step(missed):
    """Every step re-checked and handed off with at most 5 statements (the step-by-step
    re-check issued about 30: the step, its session twice, the flags twice, the calendar,
    the step before, the bounce list, the hourly count, one delete per kind of hold …)."""
    engine = _engine(missed)
    statements: list[str] = []
    sa.event.listen(engine.store.engine, "before_cursor_execute",
                    lambda conn, cursor, sql, *rest: statements.append(sql))
    try:
        counts = engine.dispatch()
    finally:
        engine.close()
    assert counts.get("sent") == len(PEOPLE)
    assert len(missed.mails()) == len(PEOPLE)
    per_step = len([s for s in statements if not s.lstrip().upper().startswith(("BEGIN", "COMMIT", "SET", "PRAGMA"))]) / len(PEOPLE)
    assert per_step <= 5, f"{per_step:.1f} statements a step"


def test_what_the_client_says_after_the_chunk_was_read_still_stops_its_step(missed):
    """The chunk is read; then one client texts STOP (their flags change, as the inbox job
    writes them) and another replies (their follow-up is stopped): neither is sent, neither
    is recorded twice, every other step goes."""
    engine = _engine(missed)
    try:
        dispatcher, due, loaded = _read_chunk(engine)
        assert len(loaded) == len(PEOPLE)
        stop, reply = due[0], due[1]
        with engine.context.store.transaction() as conn:    # what the inbox job writes, after the chunk was read
            followups.set_client_flag(conn, stop["client_id"], opted_out_at="2026-11-04T16:59:00+00:00",
                                      opted_out_channels="")
            followups.stop(conn, reply["sequence_id"], "replied", WEDNESDAY)
        for step_id in [s["id"] for s in due]:
            dispatcher._one(*loaded[step_id], WEDNESDAY)
        counts = dispatcher.counts
    finally:
        engine.close()
    assert counts.get("sent") == len(PEOPLE) - 2
    mails = missed.mails()
    assert len(mails) == len(PEOPLE) - 2
    assert not any(f"c{PEOPLE.index(n)}@example.com" in m for m in mails
                   for n in (stop["client_name"], reply["client_name"]))
    state = dict(store_rows(missed, sa.select(steps.c.id, steps.c.state)))
    assert state[stop["id"]] == "skipped" and state[reply["id"]] == "skipped"
    events = [r.event for r in store_rows(missed, sa.select(audit.c.event).where(audit.c.step_id == reply["id"]))]
    assert events == [], "a step stopped by the reply is not skipped a second time by the dispatch"


def test_flags_that_changed_but_do_not_stop_the_step_are_rechecked_and_it_goes(missed):
    """After the chunk was read the client texts STOP: their text messages stop, their email
    does not.  The claim sees the flags changed, the re-check runs again on them, the email goes."""
    engine = _engine(missed)
    try:
        dispatcher, due, loaded = _read_chunk(engine)
        with engine.context.store.transaction() as conn:
            followups.set_client_flag(conn, due[0]["client_id"], opted_out_at="2026-11-04T16:59:00+00:00",
                                      opted_out_channels="sms")
        dispatcher._one(*loaded[due[0]["id"]], WEDNESDAY)
        counts = dispatcher.counts
    finally:
        engine.close()
    assert counts == {"sent": 1}
    assert len(missed.mails()) == 1


def test_a_step_that_went_earlier_in_the_same_dispatch_counts_as_gone(tmp_path):
    """Facts are read per chunk, but the step before is what this dispatch recorded for it.
    After a day's downtime the call task and the email of one follow-up are due together: the
    call task goes (late), and the email is postponed to its gap after it, as the step-by-step
    re-check did; read from the chunk alone, it would only "wait for step 1"."""
    p = make_practice(tmp_path / "practice", extra="""
[cadence]
steps = [{ channel = "phone", after = "1 business day", template = "phone_call" },
         { channel = "email", after = "2 business days", template = "email_followup" }]
""")
    p.calendar([Ev("j1", TUESDAY, TUESDAY + timedelta(minutes=50), "Jane Doe")])
    assert p.once(local(2026, 11, 2, 8)) == 0
    p.calendar([Ev("j1", TUESDAY, TUESDAY + timedelta(minutes=50), "Jane Doe no-show")])
    assert p.once(local(2026, 11, 3, 20)) == 0
    before = {r.n: r.due_at for r in store_rows(p, sa.select(steps.c.n, steps.c.due_at))}
    thursday = local(2026, 11, 5, 16)
    assert all(dt(d) <= thursday for d in before.values()), "both steps are due on Thursday afternoon"
    assert p.once(thursday) == 0
    rows = {r.n: r for r in store_rows(p, sa.select(steps.c.n, steps.c.state, steps.c.due_at))}
    assert (rows[1].state, rows[2].state) == ("sent", "planned")
    assert dt(rows[2].due_at) > thursday, "the email is postponed to its gap after the late call task"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_record_commits_without_waiting_for_the_disk_and_only_it(kind, tmp_path, request):
    """``transaction(durable=False)`` (the record after a hand-off) relaxes only itself: the
    claim and every other transaction after it wait for the disk again."""
    from daemon.store.db import Store

    url = f"sqlite:///{tmp_path / 'state.db'}" if kind == "sqlite" else request.getfixturevalue("pg_schema")
    show = "PRAGMA synchronous" if kind == "sqlite" else "SHOW synchronous_commit"
    store = Store(url)
    try:
        with store.transaction(durable=False) as conn:
            relaxed = conn.exec_driver_sql(show).scalar()
            conn.execute(audit.insert().values(at="2026-11-04T00:00:00Z", event="sent", detail=""))
        with store.transaction() as conn:
            after = conn.exec_driver_sql(show).scalar()
            rows = conn.execute(sa.select(sa.func.count()).select_from(audit)).scalar()
    finally:
        store.close()
    assert (str(relaxed), str(after)) == (("1", "2") if kind == "sqlite" else ("off", "on"))
    assert rows == 1


def test_small_chunks_and_stale_facts_still_send_every_step_once(missed, monkeypatch):
    """Chunks of 5, and facts that are always too old (every step after the first of a chunk
    sends the rest of the chunk back to be read again): every step goes, once."""
    import daemon.engine.dispatch as dispatch_module

    monkeypatch.setattr(dispatch_module, "CHUNK", 5)
    monkeypatch.setattr(dispatch_module, "FRESH", 0.0)
    engine = _engine(missed)
    loads: list[int] = []
    real_load = Dispatcher._load
    monkeypatch.setattr(Dispatcher, "_load", lambda self, ids: loads.append(len(ids)) or real_load(self, ids))
    try:
        counts = engine.dispatch()
    finally:
        engine.close()
    assert counts.get("sent") == len(PEOPLE)
    mails = missed.mails()
    assert len(mails) == len(set(mails)) == len(PEOPLE)
    assert len(loads) == len(PEOPLE) and max(loads) == 5, "each step read afresh, in chunks of at most 5"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_follow_up_closes_in_one_statement_with_the_reason_its_steps_give(kind, tmp_path, request):
    """``close_if_done`` (one UPDATE now, a read and an UPDATE before): still open while a step
    is; else closed with the reason given, or the last step's skip reason, or its state, or
    "done" without steps; never closed twice.  ``audit_once`` writes its entry once, after the
    step's own."""
    from daemon.store.db import Store
    from daemon.store.tables import sequences

    url = f"sqlite:///{tmp_path / 'state.db'}" if kind == "sqlite" else request.getfixturevalue("pg_schema")
    store = Store(url)
    at = WEDNESDAY

    def follow_up(conn, seq_id, states):
        conn.execute(sequences.insert().values(
            id=seq_id, calendar="main", session_key="k-" + seq_id, session_start="2026-11-03T14:00:00Z",
            trigger="no_show", client_id="c", client_name="", client_email="", detected_at="2026-11-03T20:00:00Z"))
        for n, (state, reason) in enumerate(states):
            conn.execute(steps.insert().values(id=f"{seq_id}-{n}", sequence_id=seq_id, n=n, channel="email",
                                               template="t", due_at="2026-11-04T14:00:00Z", state=state,
                                               reason=reason, attempts=0))

    try:
        with store.transaction() as conn:
            follow_up(conn, "open", [("sent", None), ("planned", None)])
            follow_up(conn, "sending", [("sending", None)])
            follow_up(conn, "sent", [("skipped", "rebooked"), ("sent", None)])
            follow_up(conn, "skipped", [("sent", None), ("skipped", "rebooked")])
            follow_up(conn, "failed", [("failed", "rejected")])
            follow_up(conn, "given", [("planned", "x")])
            follow_up(conn, "empty", [])
        with store.transaction() as conn:
            got = {seq: followups.close_if_done(conn, seq, at) for seq in
                   ("open", "sending", "sent", "skipped", "failed", "empty")}
            conn.execute(steps.update().where(steps.c.sequence_id == "given").values(state="skipped"))
            got["given"] = followups.close_if_done(conn, "given", at, "client_asked")
            again = followups.close_if_done(conn, "sent", at, "client_asked")
            for _ in range(2):
                followups.audit_once(conn, at, "sent", "invitation_given", "once",
                                     first={"event": "sent", "detail": "email", "step_id": "sent-1"})
            closed = dict(conn.execute(sa.select(sequences.c.id, sequences.c.closed_reason)).all())
            log = conn.execute(sa.select(audit.c.event, audit.c.step_id).where(audit.c.sequence_id == "sent")
                               .order_by(audit.c.id)).all()
    finally:
        store.close()
    assert got == {"open": None, "sending": None, "sent": "sent", "skipped": "rebooked", "failed": "failed",
                   "empty": "done", "given": "client_asked"}
    assert again is None and closed["sent"] == "sent" and closed["open"] is None
    assert [tuple(r) for r in log] == [("sent", "sent-1"), ("invitation_given", None), ("sent", "sent-1")]


def test_a_claim_on_postgresql_finds_its_step_by_the_primary_key(missed_pg):
    """On PostgreSQL a claim looks its step up by id, never by walking the planned steps of the
    (state, due_at) index (which a young table's statistics made look as good: each claim then
    cost time in proportion to the steps due)."""
    from daemon.store.followups import _CLAIM_NO_FLAGS

    engine = _engine(missed_pg)
    try:
        with engine.store.transaction() as conn:
            step_id = conn.execute(sa.select(steps.c.id).where(steps.c.state == "planned")).scalars().first()
            compiled = _CLAIM_NO_FLAGS[True].compile(dialect=conn.dialect)
            params = compiled.construct_params({"step_id": step_id, "worker": "w", "at": "2026-11-04T21:00:00Z",
                                                "marker": None, "client_id": "dir:c0@example.com"})
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + str(compiled), params))
    finally:
        engine.close()
    assert "steps_pkey" in plan and "ix_steps_due" not in plan, plan
