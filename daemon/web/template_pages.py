"""The Templates page: edit with the same checks as ``templates edit`` (daemon.templating.checks)
shown beside the line they are about, a live preview for a client chosen from the directory or
the fictional sample, atomic save (refused while a check fails), revert to the packaged default,
SMS length as you type."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from flask import Flask, abort, flash, redirect, render_template, request, url_for

from daemon.errors import UserError
from daemon.model import Client
from daemon.templating import checks
from daemon.templating.templates import (
    Templates,
    babel_locale,
    context_for,
    copy_defaults,
    defaults_dir,
    install_text,
    render_text,
    sample_context,
    split_subject,
)

SMS_SEGMENT = 160
Problem = tuple[int | None, str, str]      # line, message, the text of that line


def check(engine: Any, name: str, text: str, client: Client | None = None
          ) -> tuple[list[Problem], list[Problem], str, str]:
    """(problems, warnings, subject, body of the preview) of ``text`` as template ``name``; the
    preview is rendered for ``client`` (None: the fictional sample)."""
    from connectors.channels.twilio_sms import sms_problems

    problems, warnings = checks.check_edit(engine.config, name, {Path(f"{name}.txt"): text},
                                           sms_problems=sms_problems)
    subject = body = ""
    if not [p for p in problems if "as an SMS" not in p]:
        try:
            subject, body = split_subject(render_text(text, f"{name}.txt", _context(engine, client)))
            body = body.strip()
        except UserError as exc:
            problems.append(str(exc))
    lines = text.splitlines()
    return _placed(problems, lines), _placed(warnings, lines), subject, body


def _placed(found: list[str], lines: list[str]) -> list[Problem]:
    out = []
    for problem in found:
        line, message = checks.line_of(problem)
        source = lines[line - 1] if line and 0 < line <= len(lines) else ""
        out.append((line, message, source))
    return out


def _context(engine: Any, client: Client | None) -> dict[str, str]:
    """The variables for a preview: the sample's, or the chosen client's with their latest
    session (or now) as the missed one."""
    if client is None:
        return sample_context()
    from daemon.store import sessions as session_store

    cfg, p = engine.config, engine.config.practice
    now = engine.clock.now()
    with engine.store.transaction() as conn:
        starts = [s.start for s in session_store.for_client(conn, client.id) if s.start <= now]
    start: datetime = max(starts) if starts else now
    return context_for(client, start, "no_show", tz=p.timezone, locale=babel_locale(client.language, p.locale),
                       therapist=p.therapist, practice=p.name, practice_phone=p.phone,
                       rebooking_link=p.rebooking_link, region=cfg.clients.default_region,
                       safety_protocol=cfg.safety.protocol)


def _folder(engine: Any) -> Path:
    return Path(engine.config.resolve(engine.config.templates.folder))


def register(app: Flask, engine: Any, by: Callable[[], str]) -> None:
    def names() -> list[str]:
        return sorted(set(Templates(_folder(engine)).names()) | {s.template for s in engine.config.cadence.steps})

    def chosen() -> Client | None:
        wanted = request.values.get("client", "")
        if not wanted:
            return None
        client = engine.directory.by_id(wanted)
        if client is None:
            abort(400, "That client is not in the directory.")
        return client

    @app.get("/templates")
    def templates_page() -> Any:
        return render_template("templates.html", names=names())

    @app.route("/templates/<name>", methods=["GET", "POST"])
    def template_edit(name: str) -> Any:
        if name not in names():
            abort(404)
        folder = _folder(engine)
        path = folder / f"{name}.txt"
        if request.method == "POST" and request.form.get("do") == "revert":
            default = defaults_dir().joinpath(f"{name}.txt")
            if not default.is_file():
                abort(400, "This template has no packaged default.")
            folder.mkdir(parents=True, exist_ok=True)
            install_text(path, default.read_text(encoding="utf-8"))
            engine.templates = Templates(folder)
            flash(f"{name}: back to the packaged default.")
            return redirect(url_for("template_edit", name=name))
        if request.method == "POST":
            text = request.form.get("text", "").replace("\r\n", "\n")
        else:
            text = Templates(folder).locate(name).text_path.read_text(encoding="utf-8")
        client = chosen()
        problems, warnings, subject, body = check(engine, name, text, client)
        saved = False
        if request.method == "POST" and request.form.get("do") == "save" and not problems:
            if not folder.is_dir() or not any(folder.glob("*.txt")):
                copy_defaults(folder)
            install_text(path, text)
            engine.templates = Templates(folder)
            saved = True
        status = 200 if not problems else 422
        return render_template("template_edit.html", name=name, text=text, problems=problems, warnings=warnings,
                               subject=subject, body=body, saved=saved, length=len(body.strip()),
                               segment=SMS_SEGMENT, clients=engine.directory.clients,
                               client_id=client.id if client else ""), status

    @app.post("/templates/<name>/preview")
    def template_preview(name: str) -> Any:
        if name not in names():
            abort(404)
        problems, warnings, subject, body = check(engine, name, request.form.get("text", "").replace("\r\n", "\n"),
                                                  chosen())
        return {"problems": [{"line": ln, "text": t, "source": s} for ln, t, s in problems],
                "warnings": [{"line": ln, "text": t, "source": s} for ln, t, s in warnings],
                "subject": subject, "body": body, "length": len(body.strip())}
