"""The Templates page: edit with the same checks as ``templates edit``, live preview, atomic
save, revert to the packaged default, SMS length as you type."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from flask import Flask, abort, flash, redirect, render_template, request, url_for

from daemon.errors import UserError
from daemon.templating.allowlist import client_facing_problems
from daemon.templating.templates import (
    Templates,
    copy_defaults,
    install_text,
    defaults_dir,
    render_text,
    sample_context,
    split_subject,
    validate_text,
)

_LINE = re.compile(r":(\d+):")
_LEAD = re.compile(r"^\S+?\.(txt|html):(\d+:)?\s*")
SMS_SEGMENT = 160


def check(engine: Any, name: str, text: str) -> tuple[list[tuple[int | None, str]], str, str]:
    """(problems with their line, subject, body of the preview) of ``text`` as template ``name``."""
    client_facing = _client_facing(engine, name)
    problems = validate_text(text, f"{name}.txt")
    if client_facing:
        problems += client_facing_problems(text, f"{name}.txt")
    subject = body = ""
    if not problems:
        try:
            subject, body = split_subject(render_text(text, f"{name}.txt", sample_context()))
            body = body.strip()
        except UserError as exc:
            problems.append(str(exc))
        if _is_email(engine, name) and not subject and not problems:
            problems.append(f"{name}.txt:1: an email needs a first line 'Subject: ...'")
    return [(_line(p), _LEAD.sub("", p)) for p in problems], subject, body


def _line(problem: str) -> int | None:
    m = _LINE.search(problem)
    return int(m.group(1)) if m else None


def _is_email(engine: Any, name: str) -> bool:
    return any(s.template == name and s.channel == "email" for s in engine.config.cadence.steps)


def _client_facing(engine: Any, name: str) -> bool:
    return _is_email(engine, name) or (engine.config.phone.backend == "twilio-sms" and any(
        s.template == name and s.channel == "phone" for s in engine.config.cadence.steps))


def _folder(engine: Any) -> Path:
    return Path(engine.config.resolve(engine.config.templates.folder))


def register(app: Flask, engine: Any, by: Callable[[], str]) -> None:
    def names() -> list[str]:
        return sorted(set(Templates(_folder(engine)).names()) | {s.template for s in engine.config.cadence.steps})

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
        problems, subject, body = check(engine, name, text)
        saved = False
        if request.method == "POST" and request.form.get("do") == "save" and not problems:
            if not folder.is_dir() or not any(folder.glob("*.txt")):
                copy_defaults(folder)
            install_text(path, text)
            engine.templates = Templates(folder)
            saved = True
        status = 200 if not problems else 422
        return render_template("template_edit.html", name=name, text=text, problems=problems,
                               subject=subject, body=body, saved=saved, length=len(body.strip()),
                               segment=SMS_SEGMENT), status

    @app.post("/templates/<name>/preview")
    def template_preview(name: str) -> Any:
        if name not in names():
            abort(404)
        problems, subject, body = check(engine, name, request.form.get("text", "").replace("\r\n", "\n"))
        return {"problems": [{"line": ln, "text": t} for ln, t in problems], "subject": subject,
                "body": body, "length": len(body.strip())}
