"""``welcomeback templates list|edit``: the therapist owns the words, safely.

``edit`` works like ``visudo`` and ``crontab -e``: the defaults are copied into
the therapist's folder on first use (never over an existing file), the editor
(``$VISUAL``, ``$EDITOR``, else ``vi``) opens a temporary *copy*, and the copy
is installed only when it passes every check: syntax, allowlisted variables
and constructs, a trial render against sample data inside the sandbox limits,
a ``Subject:`` line for email steps, and one GSM-7 SMS when a phone step sends
SMS through Twilio.  Clinical words in an SMS or a subject line are a warning,
not an error.  A broken template is never installed.

When ``NAME.html`` exists, the editor is started with both copies as
arguments (``vi NAME.txt NAME.html``), so the therapist can change either or
both; both are checked and installed together.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Callable

from daemon.config import Config
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

CLINICAL = re.compile(r"\b(therap\w*|diagnos\w*|sessions?|counsel\w*|psychiatr\w*|treatment\w*)\b", re.I)
_TAGS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
PROMPT = "(e)dit again / (q)uit without saving? "


@dataclass
class Usage:
    """How the cadence uses one template."""

    steps: list[str]
    email: bool
    sms: bool

    @property
    def client_facing(self) -> bool:
        """Sent to the client (email or SMS): call-task-only variables are refused."""
        return self.email or self.sms


def usage(cfg: Config, name: str) -> Usage:
    steps, email, sms = [], False, False
    for n, step in enumerate(cfg.cadence.steps, 1):
        if step.template == name:
            backend = cfg.email.backend if step.channel == "email" else cfg.phone.backend
            steps.append(f"step {n} ({step.channel} via {backend})")
            email |= step.channel == "email"
            sms |= step.channel == "phone" and cfg.phone.backend == "twilio-sms"
    return Usage(steps, email, sms)


def list_templates(cfg: Config) -> str:
    """Each template, where it lives (yours or the packaged default) and which steps use it."""
    folder = cfg.resolve(cfg.templates.folder)
    templates = Templates(folder)
    names = sorted(set(templates.names()) | {s.template for s in cfg.cadence.steps})
    lines = [f"Your templates folder: {folder}", f"Packaged defaults:     {defaults_dir()}", ""]
    for name in names:
        try:
            src = templates.locate(name)
        except UserError:
            lines.append(f"  {name:<20} MISSING   used by: {', '.join(usage(cfg, name).steps)}")
            continue
        where = src.origin
        files = src.text_path.name + (f" + {src.html_path.name}" if src.html_path else "")
        used = ", ".join(usage(cfg, name).steps) or "not used by the cadence"
        lines.append(f"  {name:<20} {where:<9} {files:<40} used by: {used}")
    lines += ["", "Edit one with: welcomeback templates edit NAME"]
    return "\n".join(lines)


def check_edit(cfg: Config, name: str, texts: dict[Path, str]) -> tuple[list[str], list[str]]:
    """(problems, warnings) of an edited template; ``texts`` maps each target file to its new text."""
    use = usage(cfg, name)
    problems: list[str] = []
    for path, text in texts.items():
        problems += validate_text(text, str(path))
        if use.client_facing:
            problems += client_facing_problems(text, str(path))
    if problems:
        return problems, []
    txt_path = next(p for p in texts if p.suffix == ".txt")
    subject, body = split_subject(render_text(texts[txt_path], str(txt_path), sample_context()))
    if use.email and not subject:
        problems.append(f"{txt_path}:1: an email needs a first line 'Subject: ...'")
    if use.sms:
        from connectors.channels.twilio_sms import sms_problems

        problems += [f"{txt_path}: as an SMS (with the sample data): {p}" for p in sms_problems(body.strip())]
    return problems, clinical_warnings(txt_path, texts[txt_path], whole=use.sms)


def clinical_warnings(path: Path | Traversable, source: str, *, whole: bool) -> list[str]:
    """Clinical words in the therapist's own words: the Subject line, or the whole text of an SMS."""
    out = []
    for number, line in enumerate(source.splitlines(), 1):
        is_subject = number == 1 and line.lower().startswith("subject:")
        if not (whole or is_subject):
            continue
        for word in sorted({m.group(0).lower() for m in CLINICAL.finditer(_TAGS.sub(" ", line))}):
            where = "a subject line" if is_subject else "an SMS"
            out.append(f"{path}:{number}: '{word}' in {where} can tell others that the client sees a "
                       "therapist; consider a neutral word such as 'appointment'")
    return out


def edit_template(cfg: Config, name: str, *, editor: str | None = None,
                  ask: Callable[[str], str] | None = None) -> int:
    """Edit template ``name`` safely; 0 when installed (or unchanged), 1 when abandoned.

    ``editor`` is a command line (default ``$VISUAL``, ``$EDITOR``, ``vi``); ``ask``
    answers the edit-again prompt (default: the terminal; without one, quit).
    Raises UserError for an unknown template or an editor that cannot start.
    """
    folder = cfg.resolve(cfg.templates.folder)
    known = Templates(folder).names()
    if name not in known:
        raise UserError(f"no template named '{name}'; known: {', '.join(known)}")
    for copied in _first_use(folder, name):
        print(f"copied the default {copied} into {folder}")
    targets = [p for p in (folder / f"{name}.txt", folder / f"{name}.html") if p.is_file()]
    with tempfile.TemporaryDirectory(prefix="welcomeback-edit-") as tmp:
        copies = {target: Path(tmp) / target.name for target in targets}
        for target, copy in copies.items():
            copy.write_text(target.read_text(encoding="utf-8"), encoding="utf-8")
        return _edit_loop(cfg, name, copies, editor, ask or _ask_terminal)


def _first_use(folder: Path, name: str) -> list[str]:
    """All defaults into a new folder; later only the files of a template the folder lacks
    (so an HTML part the therapist deleted on purpose does not come back)."""
    if not folder.is_dir() or not any(folder.glob("*.txt")):
        return copy_defaults(folder)
    if (folder / f"{name}.txt").exists():
        return []
    copied = []
    for suffix in (".txt", ".html"):
        src = defaults_dir().joinpath(f"{name}{suffix}")
        if src.is_file() and not (folder / src.name).exists():
            (folder / src.name).write_bytes(src.read_bytes())
            copied.append(src.name)
    return copied


def _edit_loop(cfg: Config, name: str, copies: dict[Path, Path], editor: str | None,
               ask: Callable[[str], str]) -> int:
    while True:
        if not _run_editor(editor, list(copies.values())):
            return 1
        texts = {target: copy.read_text(encoding="utf-8") for target, copy in copies.items()}
        problems, warnings = check_edit(cfg, name, texts)
        if not problems:
            for w in warnings:
                print(f"warning: {w}", file=sys.stderr)
            return _install(texts)
        print(f"template '{name}' NOT installed:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        if ask(PROMPT).strip().lower()[:1] != "e":
            print(f"quit without saving; {name} is unchanged", file=sys.stderr)
            return 1


def _run_editor(editor: str | None, paths: list[Path]) -> bool:
    """Whether the editor exited successfully.  Raises UserError when it cannot start."""
    command = editor or os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    argv = shlex.split(command) + [str(p) for p in paths]
    try:
        result = subprocess.run(argv, check=False)
    except OSError as exc:
        raise UserError(f"cannot start the editor '{command}': {exc.strerror}; "
                        "set $VISUAL or $EDITOR") from None
    if result.returncode != 0:
        print(f"the editor '{command}' exited with status {result.returncode}; nothing installed",
              file=sys.stderr)
    return result.returncode == 0


def _ask_terminal(prompt: str) -> str:
    if not sys.stdin or not sys.stdin.isatty():
        return "q"
    try:
        return input(prompt)
    except EOFError:
        return "q"


def _install(texts: dict[Path, str]) -> int:
    """Atomically replace each changed file (temporary file, fsync, rename; mode 0644)."""
    changed = {p: t for p, t in texts.items() if p.read_text(encoding="utf-8") != t}
    if not changed:
        print("no changes; nothing installed")
        return 0
    for path, text in changed.items():
        install_text(path, text)
        print(f"installed {path}")
    return 0
