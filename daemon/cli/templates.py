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
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from daemon.config import Config
from daemon.errors import UserError
from daemon.templating import checks
from daemon.templating.checks import clinical_warnings, usage
from daemon.templating.templates import Templates, copy_defaults, defaults_dir, install_text

__all__ = ["clinical_warnings", "check_edit", "edit_template", "list_templates", "usage"]


def check_edit(cfg: Config, name: str, texts: dict[Path, str]) -> tuple[list[str], list[str]]:
    """(problems, warnings) of an edited template (``daemon.templating.checks``, with the
    Twilio SMS rules)."""
    from connectors.channels.twilio_sms import sms_problems

    return checks.check_edit(cfg, name, texts, sms_problems=sms_problems)

PROMPT = "(e)dit again / (q)uit without saving? "


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
