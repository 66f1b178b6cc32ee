"""Message templates the therapist edits: Jinja2 in a locked-down sandbox.

A template is ``NAME.txt`` (optional first line ``Subject: ...``, then a blank
line, then the body) and optionally ``NAME.html``.  What a template may contain
and the limits of a render live in ``daemon.template_sandbox``; every render
validates the text first, so a broken or hostile file is refused, never run.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from babel.dates import format_date, format_datetime, format_time

from daemon.errors import TemplateError
from daemon.model import Client
from daemon.template_sandbox import (ALLOWED, CALL_TASK_ONLY, MAX_OUTPUT, MAX_SECONDS, SandboxEnv, check_source,
                                     client_facing_problems, environment, sandboxed_render)

__all__ = ["ALLOWED", "MAX_OUTPUT", "MAX_SECONDS", "Rendered", "Source", "Templates", "context_for",
           "copy_defaults", "defaults_dir", "environment", "render_text", "sample_context",
           "split_subject", "validate_text"]
DEFAULTS_DIR = Path(__file__).resolve().parent.parent / "templates"


def defaults_dir() -> Path:
    """The packaged default templates (repo checkout or installed package)."""
    if DEFAULTS_DIR.is_dir():
        return DEFAULTS_DIR
    import importlib.resources

    return Path(str(importlib.resources.files("welcomeback_templates")))


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


@dataclass(frozen=True)
class Source:
    name: str
    text_path: Path
    html_path: Path | None


class Templates:
    """Finds, validates and renders the templates of one configuration."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = environment()

    def locate(self, name: str) -> Source:
        """The files of template ``name``; the therapist's folder wins over the defaults."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name):
            raise TemplateError(f"'{name}' is not a template name (letters, digits, _ and -)")
        for base in (self.folder, defaults_dir()):
            text = base / f"{name}.txt"
            if text.is_file():
                html = base / f"{name}.html"
                return Source(name, text, html if html.is_file() else None)
        raise TemplateError(f"template '{name}' not found: looked for {name}.txt in {self.folder} "
                            f"and {defaults_dir()}")

    def names(self) -> list[str]:
        found = {p.stem for base in (defaults_dir(), self.folder) if base.is_dir()
                 for p in base.glob("*.txt")}
        return sorted(found)

    def validate(self, name: str, *, client_facing: bool = False) -> list[str]:
        """Every problem of template ``name`` (syntax, unknown variables, forbidden constructs,
        and with ``client_facing`` the call-task-only variables)."""
        try:
            src = self.locate(name)
            problems = []
            for path in filter(None, (src.text_path, src.html_path)):
                problems.extend(validate_text(_read(path), str(path)))
                if client_facing:
                    problems.extend(client_facing_problems(_read(path), str(path)))
            if not problems:
                self.render(name, sample_context())
        except TemplateError as exc:
            return exc.problems or [str(exc)]
        return problems

    def render(self, name: str, context: dict[str, str], *, audience: str = "therapist") -> Rendered:
        """Render template ``name``; raises TemplateError (only) naming file and line.

        For ``audience="client"`` every part (subject and text, HTML) is refused when it uses
        a call-task-only variable, and those values are not even in the context."""
        src = self.locate(name)
        texts = {path: _read(path) for path in filter(None, (src.text_path, src.html_path))}
        if audience == "client":
            problems = [p for path, text in texts.items() for p in client_facing_problems(text, str(path))]
            if problems:
                raise TemplateError(f"template '{name}' cannot be sent to a client", problems)
            context = {k: v for k, v in context.items() if k not in CALL_TASK_ONLY}
        raw = render_text(texts[src.text_path], str(src.text_path), context, env=self.env)
        subject, text = split_subject(raw)
        html = (render_text(texts[src.html_path], str(src.html_path), context, escape=True, env=self.env)
                if src.html_path else None)
        return Rendered(subject, text, html)


def split_subject(raw: str) -> tuple[str, str]:
    lines = raw.lstrip("\n").split("\n")
    if lines and lines[0].lower().startswith("subject:"):
        subject = lines[0][len("subject:"):].strip()
        body = "\n".join(lines[1:]).lstrip("\n")
        return subject, body.rstrip() + "\n"
    return "", raw.strip() + "\n"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read template: {getattr(exc, 'strerror', None) or exc}") from None


def validate_text(source: str, filename: str) -> list[str]:
    """Problems of one template text, each with ``file:line``: the static check, then a
    trial render against sample data in the sandbox within the limits."""
    problems = check_source(source, filename)
    if not problems:
        try:
            sandboxed_render(environment(), source, filename, sample_context())
        except TemplateError as exc:
            problems.append(str(exc))
    return problems


def render_text(source: str, filename: str, context: dict[str, str], *, escape: bool = False,
                env: SandboxEnv | None = None) -> str:
    """Check, then render one template text within the limits; raises TemplateError only."""
    problems = check_source(source, filename)
    if problems:
        raise TemplateError(f"{filename}: template is not valid", problems)
    if escape:
        from markupsafe import escape as html_escape

        context = {k: str(html_escape(v)) for k, v in context.items()}
    return sandboxed_render(env or environment(), source, filename, context)


def context_for(client: Client, session_start: datetime, trigger: str, *, tz: tzinfo, locale: str,
                therapist: str, practice: str, practice_phone: str = "",
                rebooking_link: str = "") -> dict[str, str]:
    """The allowlisted variables for one message (built once, used by every channel)."""
    local = session_start.astimezone(tz)
    return {
        "client_first_name": client.first_name, "client_name": client.name,
        "client_phone": client.phone,
        "session_date": format_date(local.date(), format="EEEE, MMMM d", locale=locale),
        "session_time": format_time(local, format="short", tzinfo=tz, locale=locale),
        "session_weekday": format_datetime(local, format="EEEE", tzinfo=tz, locale=locale),
        "trigger": trigger, "therapist": therapist,
        "therapist_first_name": therapist.split()[0] if therapist.split() else therapist,
        "practice": practice, "practice_phone": practice_phone, "rebooking_link": rebooking_link,
    }


def sample_context() -> dict[str, str]:
    """Fictional sample data for validation and preview."""
    return {"client_first_name": "Sam", "client_name": "Sam Example", "client_phone": "+15550100199",
            "session_date": "Tuesday, March 3", "session_time": "10:00 AM", "session_weekday": "Tuesday",
            "trigger": "no_show", "therapist": "Ana Ruiz", "therapist_first_name": "Ana",
            "practice": "Riverside Counselling", "practice_phone": "+1 555 010 0100",
            "rebooking_link": "https://book.example/riverside"}


def copy_defaults(folder: Path) -> list[str]:
    """Copy default templates the folder lacks; never overwrites the therapist's words."""
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in defaults_dir().glob("*.*"):
        if src.suffix in (".txt", ".html") and not (folder / src.name).exists():
            shutil.copy2(src, folder / src.name)
            copied.append(src.name)
    return copied
