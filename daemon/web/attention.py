"""The Needs-attention page: ambiguous appointments with their candidate clients (the choice is
remembered for the event), calendars that need a look, held bursts (Confirm / I cancelled
these), and the steps waiting for the therapist."""

from __future__ import annotations

from typing import Any, Callable

import sqlalchemy as sa
from flask import Flask, abort, flash, redirect, render_template, request, url_for

from daemon.engine import bursts, choices
from daemon.engine.records import step_records
from daemon.errors import UserError
from daemon.store.tables import calendars


def register(app: Flask, engine: Any, by: Callable[[], str]) -> None:
    def now() -> Any:
        return engine.clock.now()

    @app.get("/attention")
    def attention() -> Any:
        with engine.store.transaction() as conn:
            ambiguous = choices.waiting(conn)
            degraded = conn.execute(sa.select(calendars).where(calendars.c.degraded.is_not(None))).mappings().all()
            held = [{"client_id": r["client_id"], "session_start": r["session_start"], "trigger": r["trigger"],
                     "client": engine.client_of(r["client_id"], r["client_name"], r["client_email"]).name}
                    for r in bursts.held_sequences(conn)]
        for n, event in enumerate(ambiguous):
            event["n"] = n
            event["options"] = [c for c in (engine.directory.by_id(i) for i in event["candidates"]) if c is not None]
        records = [r for r in step_records(engine) if r["state"] in ("uncertain", "failed", "held")]
        return render_template("attention.html", ambiguous=ambiguous, degraded=degraded, records=records,
                               held=held)

    @app.post("/attention/choose")
    def choose_client() -> Any:
        calendar, uid = request.form.get("calendar", ""), request.form.get("uid", "")
        client_id = request.form.get("client", "")
        if not client_id:
            abort(400, "Choose the client this appointment is with.")
        try:
            started = choices.choose(engine.context, calendar, uid, client_id, now(), by())
        except UserError as exc:
            abort(400, str(exc))
        name = engine.directory.by_id(client_id).name
        flash(f"Remembered: this appointment is with {name}"
              + (f"; {started} follow-up(s) started." if started else "; it is followed up like any other."))
        return redirect(url_for("attention"))

    @app.post("/bursts/<what>")
    def burst(what: str) -> Any:
        client_id = request.form.get("client") or None
        if what == "confirm":
            n = bursts.confirm(engine.store, client_id, now(), by=by())
            flash(f"Confirmed: {n} follow-up(s) go ahead.")
        elif what == "dismiss":
            n = bursts.dismiss(engine.store, client_id, now(), by=by())
            flash(f"Noted as your own cancellations: {n} follow-up(s) closed, nothing is sent.")
        else:
            abort(404)
        return redirect(url_for("attention"))
