"""The checks an edited template must pass before it is installed, shared by ``templates edit``
and the console's Templates page: syntax, allowlisted variables and constructs, a trial render
against sample data inside the sandbox limits, a ``Subject:`` line for email steps, and one
GSM-7 SMS when a phone step sends SMS (the SMS rule is the channel's, passed in).  Clinical words
in an SMS or a subject line are a warning, not an error.  Problems read ``FILE:LINE: what``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Callable

from daemon.errors import UserError
from daemon.templating.allowlist import client_facing_problems
from daemon.templating.templates import render_text, sample_context, split_subject, validate_text

CLINICAL = re.compile(r"\b(therap\w*|diagnos\w*|sessions?|counsel\w*|psychiatr\w*|treatment\w*)\b", re.I)
_TAGS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_LINE = re.compile(r"^\S+?\.(?:txt|html):(\d+):")


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


def usage(cfg: Any, name: str) -> Usage:
    """Which cadence steps (of a loaded config) use template ``name``, and how."""
    steps, email, sms = [], False, False
    for n, step in enumerate(cfg.cadence.steps, 1):
        if step.template == name:
            backend = cfg.email.backend if step.channel == "email" else cfg.phone.backend
            steps.append(f"step {n} ({step.channel} via {backend})")
            email |= step.channel == "email"
            sms |= step.channel == "phone" and cfg.phone.backend == "twilio-sms"
    return Usage(steps, email, sms)


def check_edit(cfg: Any, name: str, texts: dict[Path, str], *,
               sms_problems: Callable[[str], list[str]]) -> tuple[list[str], list[str]]:
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
    try:
        subject, body = split_subject(render_text(texts[txt_path], str(txt_path), sample_context()))
    except UserError as exc:
        return [str(exc)], []
    if use.email and not subject:
        problems.append(f"{txt_path}:1: an email needs a first line 'Subject: ...'")
    if use.sms:
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


def line_of(problem: str) -> tuple[int | None, str]:
    """(line number or None, the message without its ``FILE:LINE:`` lead) of a problem."""
    m = _LINE.match(problem)
    if m:
        return int(m.group(1)), problem[m.end():].strip()
    lead = re.match(r"^\S+?\.(?:txt|html):\s*", problem)
    return None, problem[lead.end():] if lead else problem
