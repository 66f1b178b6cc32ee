"""Message templates the therapist edits: Jinja2 in a locked-down sandbox.

A template is ``NAME.txt`` (optional first line ``Subject: ...``, then a blank
line, then the body) and optionally ``NAME.html``.  Only allowlisted variables
exist; unknown ones fail at ``check`` with file and line.  No globals, no
macros or includes, no ``|attr``, bounded arithmetic and output size.
"""

from __future__ import annotations

import operator
import shutil
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_datetime, format_time
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError, TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from daemon.errors import TemplateError
from daemon.model import Client

ALLOWED = {
    "client_first_name": "the client's first name",
    "client_name": "the client's full name (call tasks only: it never appears in a subject)",
    "client_phone": "the client's phone number (call tasks)",
    "session_date": "the missed session's date, e.g. 'Tuesday, March 3'",
    "session_time": "the missed session's start time, e.g. '10:00 AM'",
    "session_weekday": "the weekday of the missed session",
    "trigger": "cancelled, late_cancel or no_show",
    "therapist": "the therapist's name",
    "therapist_first_name": "the therapist's first name",
    "practice": "the practice's name",
    "practice_phone": "the practice's phone number (may be empty)",
    "rebooking_link": "where the client can book again (may be empty)",
}
FORBIDDEN_NODES = (nodes.Macro, nodes.CallBlock, nodes.Import, nodes.FromImport, nodes.Include,
                   nodes.Extends, nodes.Block, nodes.FilterBlock, nodes.With, nodes.ScopedEvalContextModifier)
MAX_OUTPUT = 32_000
MAX_LOOP_DEPTH = 2
DEFAULTS_DIR = Path(__file__).resolve().parent.parent / "templates"


def defaults_dir() -> Path:
    """The packaged default templates (repo checkout or installed package)."""
    if DEFAULTS_DIR.is_dir():
        return DEFAULTS_DIR
    import importlib.resources

    return Path(str(importlib.resources.files("welcomeback_templates")))


class _Env(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            raise SecurityError("the power operator is not allowed in templates")
        result = {"*": operator.mul, "+": operator.add}[operator_](left, right)
        if isinstance(result, (str, list, tuple)) and len(result) > MAX_OUTPUT:
            raise SecurityError("the template builds a text that is too long")
        return result


def environment() -> _Env:
    env = _Env(undefined=StrictUndefined, autoescape=False, trim_blocks=True, keep_trailing_newline=False)
    env.globals.clear()
    for name in ("attr", "format", "map", "select", "reject", "selectattr", "rejectattr", "groupby",
                 "sum", "batch", "slice", "xmlattr", "tojson", "dictsort", "pprint"):
        env.filters.pop(name, None)
    return env


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

    def validate(self, name: str) -> list[str]:
        """Every problem of template ``name`` (syntax, unknown variables, forbidden constructs)."""
        try:
            src = self.locate(name)
        except TemplateError as exc:
            return [str(exc)]
        problems = []
        for path in filter(None, (src.text_path, src.html_path)):
            problems.extend(validate_text(path.read_text(encoding="utf-8"), str(path)))
        if not problems:
            try:
                self.render(name, sample_context())
            except TemplateError as exc:
                problems.append(str(exc))
        return problems

    def render(self, name: str, context: dict[str, str]) -> Rendered:
        """Render template ``name``; raises TemplateError naming file and line."""
        src = self.locate(name)
        raw = _render_file(self.env, src.text_path, context)
        subject, text = split_subject(raw)
        html = _render_file(self.env, src.html_path, context, escape=True) if src.html_path else None
        return Rendered(subject, text, html)


def split_subject(raw: str) -> tuple[str, str]:
    lines = raw.lstrip("\n").split("\n")
    if lines and lines[0].lower().startswith("subject:"):
        subject = lines[0][len("subject:"):].strip()
        body = "\n".join(lines[1:]).lstrip("\n")
        return subject, body.rstrip() + "\n"
    return "", raw.strip() + "\n"


def validate_text(source: str, filename: str) -> list[str]:
    """Problems of one template text, each with ``file:line``."""
    env = environment()
    try:
        tree = env.parse(source, filename=filename)
    except TemplateSyntaxError as exc:
        return [f"{filename}:{exc.lineno}: {exc.message}"]
    problems = []
    for node in tree.find_all(FORBIDDEN_NODES):
        problems.append(f"{filename}:{node.lineno}: '{type(node).__name__.lower()}' is not allowed in templates")
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load" and node.name not in ALLOWED and node.name not in _loop_names(tree):
            problems.append(f"{filename}:{node.lineno}: unknown variable '{node.name}'; "
                            f"allowed: {', '.join(sorted(ALLOWED))}")
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.attr if isinstance(node, nodes.Getattr) else ""
        if isinstance(node, nodes.Getattr) and (target.startswith("_") or target not in ("upper", "lower", "title", "capitalize", "strip")):
            problems.append(f"{filename}:{node.lineno}: attribute '{target}' is not allowed")
    if _loop_depth(tree) > MAX_LOOP_DEPTH:
        problems.append(f"{filename}: loops nested deeper than {MAX_LOOP_DEPTH} are not allowed")
    return problems


def _loop_names(tree: nodes.Template) -> set[str]:
    names: set[str] = {"loop"}
    for node in tree.find_all((nodes.For, nodes.Assign)):
        target = node.target
        for n in ([target] if isinstance(target, nodes.Name) else target.find_all(nodes.Name)):
            names.add(n.name)
    return names


def _loop_depth(node: nodes.Node, depth: int = 0) -> int:
    here = depth + 1 if isinstance(node, nodes.For) else depth
    return max([here] + [_loop_depth(child, here) for child in node.iter_child_nodes()])


def _render_file(env: _Env, path: Path, context: dict[str, str], escape: bool = False) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read template: {exc.strerror}") from None
    problems = validate_text(text, str(path))
    if problems:
        raise TemplateError(f"{path}: template is not valid", problems)
    if escape:
        from markupsafe import escape as html_escape

        context = {k: str(html_escape(v)) for k, v in context.items()}
    try:
        out: list[str] = []
        size = 0
        for chunk in env.from_string(text).generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateError(f"{path}: the rendered text is longer than {MAX_OUTPUT} characters")
            out.append(chunk)
        return "".join(out)
    except TemplateError:
        raise
    except (UndefinedError, SecurityError, JinjaTemplateError, TypeError, ValueError,
            ArithmeticError, RecursionError, MemoryError) as exc:
        line = _line_of(exc)
        raise TemplateError(f"{path}{':' + str(line) if line else ''}: cannot render: "
                            f"{type(exc).__name__}: {exc}") from None


def _line_of(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


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
