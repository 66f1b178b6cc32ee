"""The console's Flask application: pages rendered on the server, one form per action.

Every path but ``/healthz``, ``/login`` and ``/static`` needs a session; every POST carries the
session's CSRF token.  The clock is the engine's (tests drive it).  URLs carry ids, never names.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa
from flask import Flask, abort, flash, g, redirect, render_template, request, session, url_for

from daemon.engine import actions
from daemon.engine.records import step_records
from daemon.errors import UserError
from daemon.store.tables import calendars, dt, sequences
from daemon.templating.templates import readable_phone
from daemon.web import security

log = logging.getLogger(__name__)
access = logging.getLogger("daemon.web.access")
CHART_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
PUBLIC = {"login", "healthz", "static"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; connect-src 'self'")


def create_app(engine: Any, state: Path, *, idle_timeout: timedelta = timedelta(minutes=30),
               secure_cookie: bool = False, seconds: Callable[[], float] | None = None) -> Flask:
    """The console over ``engine`` (its store, directory, templates and clock; ``seconds``: the
    sign-in limit's clock, default the engine's)."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY=security.new_token(), SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=secure_cookie,
                      SESSION_COOKIE_NAME="welcomeback", PERMANENT_SESSION_LIFETIME=idle_timeout,
                      MAX_CONTENT_LENGTH=256 * 1024)
    region = engine.config.clients.default_region
    # a number as the therapist reads it ("(555) 010-0201"); the tel: link keeps E.164
    app.jinja_env.filters["phone"] = lambda number: readable_phone(number or "", region)
    limit = security.SignInLimit()
    clock = seconds or (lambda: float(engine.clock.now().timestamp()))
    live: dict[str, float] = {}   # session id -> last seen (engine clock, epoch seconds)

    def now() -> Any:
        return engine.clock.now()

    @app.before_request
    def guard() -> Any:
        g.signed_in = False
        sid = session.get("sid")
        if sid and sid in live:
            if now().timestamp() - live[sid] > idle_timeout.total_seconds():
                live.pop(sid, None)
                session.clear()
            else:
                live[sid] = now().timestamp()
                g.signed_in = True
        if request.endpoint not in PUBLIC and not g.signed_in:
            return redirect(url_for("login"))
        if request.endpoint == "login" and "csrf" not in session:
            session["csrf"] = security.new_token()   # the sign-in form has its token too
        if request.method == "POST":
            token = request.form.get("csrf")
            if not security.same(token, session.get("csrf")):
                abort(400, "This form has expired; open the page again and repeat.")
        return None

    @app.after_request
    def headers(response: Any) -> Any:
        # The chart is an image of counts (no names): its own inline SVG styles may apply.
        response.headers["Content-Security-Policy"] = CHART_CSP if request.endpoint == "patterns_chart" else CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        # The access log: method, path (ids only, never a query string) and status.
        access.info("%s %s %d", request.method, request.path if request.url_rule else "(unknown path)",
                    response.status_code)
        return response

    @app.context_processor
    def common() -> dict[str, Any]:
        return {"csrf": session.get("csrf", ""), "signed_in": g.get("signed_in", False),
                "practice": engine.config.practice.name, "local": _local_fn(engine)}

    @app.errorhandler(400)
    def bad(exc: Any) -> Any:
        return render_template("message.html", title="Not done", text=exc.description), 400

    @app.get("/healthz")
    def healthz() -> Any:
        return {"ok": True}

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = ""
        if request.method == "POST":
            address = request.remote_addr or ""
            wait = limit.wait(address, clock())
            if wait > 0:
                retry = max(1, math.ceil(wait))
                return render_template("login.html", error=f"Too many attempts; wait {_minutes(retry)} and try again."), \
                    429, {"Retry-After": str(retry)}
            if security.check_password(state, request.form.get("password", "")):
                limit.succeeded(address)
                session.clear()   # a new session id and a new token after sign-in
                sid = security.new_token()
                live[sid] = now().timestamp()
                session.update(sid=sid, csrf=security.new_token())
                session.permanent = True
                log.info("console: signed in")
                return redirect(url_for("today"))
            limit.failed(address, clock())
            error = "That password is not right." if security.password_path(state).exists() else \
                "No password is set yet: run 'welcomeback web set-password' on the server."
        return render_template("login.html", error=error), (401 if error else 200)

    @app.post("/logout")
    def logout() -> Any:
        live.pop(session.get("sid", ""), None)
        session.clear()
        return redirect(url_for("login"))

    @app.get("/")
    def today() -> Any:
        from daemon.engine.records import of_therapist

        team = engine.config.all_therapists()
        chosen = request.args.get("therapist", "")
        who = team[int(chosen)] if chosen.isdigit() and int(chosen) < len(team) else None
        records = of_therapist(engine.config, step_records(engine), who.email if who else None)
        moment = now()
        today_local = moment.astimezone(engine.config.practice.timezone).date()
        open_seqs = {r["sequence"] for r in records if r["state"] == "planned"}
        calls = [r for r in records if r["channel"] == "phone" and r["sequence"] in open_seqs
                 and r["state"] in ("planned", "sent") and dt_of(r["due_at"]) <= moment
                 and not _call_noted(engine, r["id"])]
        for r in calls:
            r["phone"] = _phone(engine, r["sequence"])
            r["script"] = _script(engine, r["id"])
        sent = [r for r in records if r["sent_at"] and dt_of(r["sent_at"]).astimezone(
            engine.config.practice.timezone).date() == today_local]
        due = sorted((r for r in records if r["state"] == "planned" and dt_of(r["due_at"]) > moment),
                     key=lambda r: r["due_at"])[:10]
        return render_template("today.html", calls=calls, sent=sent, due=due,
                               team=team if len(team) > 1 else [], who=who,
                               therapist_of=lambda r: engine.config.therapist_of(r["calendar"]).name)

    @app.post("/sequence/<seq>/call")
    def call_outcome(seq: str) -> Any:
        outcome = request.form.get("outcome")
        client = _client_of_sequence(engine, seq)
        if outcome == "reached":
            stopped = actions.mark(engine, client, "reached", now(), by=_by())
            flash(f"Marked reached; {stopped} planned step(s) stopped.")
        elif outcome in ("no_answer", "dismiss"):
            step = _open_call(engine, seq)
            actions.note_call(engine, step, outcome, now(), by=_by())
            flash("Noted: no answer; the next step stays planned." if outcome == "no_answer"
                  else "Call dismissed; the next step stays planned.")
        else:
            abort(400, "Choose Reached, No answer or Dismiss.")
        return redirect(url_for("today"))

    @app.get("/followups")
    def followups_page() -> Any:
        state = request.args.get("state", "")
        records = [r for r in step_records(engine) if not state or r["state"] == state]
        return render_template("followups.html", records=records, state=state,
                               states=("planned", "sent", "skipped", "held", "failed", "uncertain"))

    @app.post("/step/<step_id>/resolve")
    def resolve_step(step_id: str) -> Any:
        action = request.form.get("action", "")
        if action not in actions.RESOLUTIONS:
            abort(400, "Choose Mark sent, Send again or Dismiss.")
        try:
            outcome = actions.resolve(engine, step_id, action, now(), by=_by())
        except UserError as exc:
            abort(400, str(exc))
        flash(f"Step {step_id}: {outcome}.")
        return redirect(url_for("followups_page"))

    @app.get("/clients")
    def clients_page() -> Any:
        q = request.args.get("q", "").strip().casefold()
        found = [(i, c) for i, c in enumerate(engine.directory.clients)
                 if not q or q in c.name.casefold() or q in (c.email or "").casefold()
                 or any(q in a.casefold() for a in c.aliases)]
        return render_template("clients.html", clients=found, q=request.args.get("q", ""))

    @app.get("/client/<int:index>")
    def client_page(index: int) -> Any:
        client = _nth(engine, index)
        log_rows = actions.history_rows(engine, client.id)
        return render_template("client.html", client=client, index=index, rows=log_rows)

    @app.post("/client/<int:index>/<what>")
    def client_action(index: int, what: str) -> Any:
        client = actions.matched(_nth(engine, index))
        try:
            if what == "optout":
                stopped = actions.mark(engine, client, "opted_out", now(), by=_by())
                flash(f"Opted out; {stopped} planned step(s) stopped.")
            elif what == "optin":
                restored = actions.undo(engine, client, "opted_out", now(), by=_by())
                flash(f"Opted in again; {restored} step(s) planned again.")
            else:
                abort(404)
        except UserError as exc:
            abort(400, str(exc))
        return redirect(url_for("client_page", index=index))

    @app.get("/calendars")
    def calendars_page() -> Any:
        with engine.store.transaction() as conn:
            rows = {r["name"]: r for r in conn.execute(sa.select(calendars)).mappings()}
        return render_template("calendars.html", cals=[(c.name, c.kind, rows.get(c.name))
                                                       for c in engine.config.calendars])

    def _month() -> Any:
        from daemon.engine.report import Month

        try:
            return Month.parse(request.args["month"]) if request.args.get("month") else \
                Month.of(now(), engine.config.practice.timezone)
        except ValueError as exc:
            abort(400, str(exc))

    @app.get("/patterns")
    def patterns() -> Any:
        from daemon.engine import report

        month = _month()
        with engine.store.transaction() as conn:
            names = {c.id: c.name for c in engine.directory.clients}
            found = report.monthly(conn, engine.config, names, month, now())
            series = report.misses_by_month(conn, engine.config, month)
        return render_template("patterns.html", found=found, series=series, month=str(month),
                               previous=str(month.shift(-1)), following=str(month.shift(1)))

    @app.get("/patterns/chart.svg")
    def patterns_chart() -> Any:
        from daemon.engine import report

        month = _month()
        with engine.store.transaction() as conn:
            series = report.misses_by_month(conn, engine.config, month)
        svg = report.chart_svg(series, f"Missed and cancelled sessions, {series[0][0]} to {month}")
        return svg, 200, {"Content-Type": "image/svg+xml"}

    from daemon.web import attention, template_pages

    attention.register(app, engine, _by)
    template_pages.register(app, engine, _by)
    return app


def _minutes(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 90 else f"{math.ceil(seconds / 60)} minutes"


def _by() -> str:
    return "by the therapist in the console"


def dt_of(value: str | None) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value) if value else None


def _local_fn(engine: Any) -> Callable[[str | None], str]:
    """A stored time (UTC text, or already the practice's local time) on the practice's clock."""
    def local(value: str | None) -> str:
        moment = dt_of(value)
        if moment is None:
            return ""
        if moment.tzinfo is not None:
            moment = moment.astimezone(engine.config.practice.timezone)
        return moment.strftime("%a %d %b %Y, %H:%M")
    return local


def _nth(engine: Any, index: int) -> Any:
    if not 0 <= index < len(engine.directory.clients):
        abort(404)
    return engine.directory.clients[index]


def _client_of_sequence(engine: Any, seq: str) -> Any:
    with engine.store.transaction() as conn:
        row = conn.execute(sa.select(sequences).where(sequences.c.id == seq)).mappings().first()
    if row is None:
        abort(404)
    client = engine.client_of(row["client_id"], row["client_name"], row["client_email"])
    return actions.Matched(row["client_id"], client.name, client.email or "")


def _open_call(engine: Any, seq: str) -> Any:
    with engine.store.transaction() as conn:
        from daemon.store.tables import steps

        row = conn.execute(sa.select(steps).where(steps.c.sequence_id == seq, steps.c.channel == "phone",
                                                  steps.c.state.in_(("planned", "sent")))).mappings().first()
    if row is None:
        abort(400, "That call is no longer open.")
    return row


def _call_noted(engine: Any, step_id: str) -> bool:
    from daemon.store.tables import audit

    with engine.store.transaction() as conn:
        return conn.execute(sa.select(audit.c.id).where(
            audit.c.step_id == step_id, audit.c.event.in_(("call_no_answer", "call_dismissed")))).first() is not None


def _script(engine: Any, step_id: str) -> str:
    """The call script: the step's template rendered for the client, as the call task shows it."""
    from daemon.engine.messages import build_for
    from daemon.errors import TemplateError
    from daemon.store import followups

    with engine.store.transaction() as conn:
        row = followups.step_row(conn, step_id)
    if row is None:
        return ""
    try:
        client = engine.client_of(row["client_id"], row.get("client_name", ""), row.get("client_email", ""))
        return build_for(row, client, "call-task", engine.config, engine.templates).text.strip()
    except (TemplateError, KeyError):
        return ""


def _phone(engine: Any, seq: str) -> str:
    with engine.store.transaction() as conn:
        row = conn.execute(sa.select(sequences.c.client_id).where(sequences.c.id == seq)).first()
    client = engine.directory.by_id(row[0]) if row else None
    return getattr(client, "phone", "") or ""


_ = dt
