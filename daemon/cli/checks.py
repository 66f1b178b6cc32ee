"""``welcomeback check``: everything that can be verified without sending."""

from __future__ import annotations

import os
import stat

from connectors.calendars.base import SourceContext
from connectors.channels.base import ChannelContext
from daemon import secrets
from daemon.backends import EMAIL_BACKENDS, PHONE_BACKENDS, SOURCES
from daemon.client_files import load_directory
from daemon.clock import SystemClock
from daemon.config import Config, libraries
from daemon.errors import UserError
from daemon.templating.templates import Templates


def run_checks(cfg: Config) -> tuple[list[str], list[str], str]:
    """(problems, warnings, summary) for a config that already parsed."""
    problems: list[str] = []
    warnings: list[str] = []
    clients = 0
    try:
        directory = load_directory(cfg.resolve(cfg.clients.directory) if cfg.clients.directory else None,
                                   cfg.clients.default_region)
        clients = len(directory.clients)
    except UserError as exc:
        problems.extend(exc.problems or [str(exc)])
    if not cfg.clients.directory:
        warnings.append("[clients] directory is not set: only attendee addresses identify clients")
    templates = Templates(cfg.resolve(cfg.templates.folder))
    from daemon.cli.templates import usage

    for name in sorted({s.template for s in cfg.cadence.steps}):
        problems.extend(templates.validate(name, client_facing=usage(cfg, name).client_facing))
    problems.extend(templates.validate("safety_call"))   # the urgent call task (daemon.engine.safety)
    problems.extend(therapist_templates(cfg, templates))
    missing = libraries.problems(cfg)
    problems.extend(missing)
    if not missing:      # a backend without its library cannot check its own settings
        problems.extend(_sources(cfg))
        problems.extend(_channels(cfg))
    problems.extend(_sms_lengths(cfg, templates))
    warnings.extend(_permissions(cfg))
    warnings.extend(_clinical(cfg, templates))
    summary = (f"{cfg.path}: OK\n"
               f"  calendars: {', '.join(f'{c.name} ({c.kind})' for c in cfg.calendars)}\n"
               + _therapists_line(cfg)
               + f"  clients:   {clients} in the directory\n"
               f"  steps:     " + "; ".join(f"{i}. {s.channel} after {s.after} ({s.template})"
                                           for i, s in enumerate(cfg.cadence.steps, 1)) + "\n"
               f"  email:     {cfg.email.backend}; phone: {cfg.phone.backend}"
               + ("; DRY RUN (nothing is sent)" if cfg.dry_run else ""))
    return problems, warnings, summary


def _therapists_line(cfg: Config) -> str:
    """"  therapists: Ana Ruiz (main, groups); Ben Marsh (ben)" for a group practice, else ""."""
    if not cfg.therapists:
        return ""
    owned: dict[str, list[str]] = {}
    for c in cfg.calendars:
        owned.setdefault(cfg.therapist_of(c.name).name, []).append(c.name)
    return "  therapists: " + "; ".join(f"{name} ({', '.join(cals)})" for name, cals in owned.items()) + "\n"


def therapist_templates(cfg: Config, templates: Templates) -> list[str]:
    """Each [[therapists]] templates folder: it must be a readable folder, and the templates the
    cadence uses must be valid with their wording first."""
    from daemon.cli.templates import usage

    out: list[str] = []
    for i, t in enumerate(cfg.therapists, start=1):
        if t.templates is None:
            continue
        where = f"{cfg.path}: [[therapists]] #{i} ({t.name}) templates"
        if not t.templates.is_dir():
            out.append(f"{where}: '{t.templates}' is not a folder (create it, or remove the key)")
            continue
        theirs = templates.with_own(t.templates)
        for name in sorted({s.template for s in cfg.cadence.steps} | {"safety_call"}):
            facing = name != "safety_call" and usage(cfg, name).client_facing
            out.extend(f"{where}: {p}" for p in theirs.validate(name, client_facing=facing)
                       if str(t.templates) in p)    # the practice's own files are checked above
    return out


def _sources(cfg: Config) -> list[str]:
    out: list[str] = []
    ctx = SourceContext(base_dir=cfg.base_dir, timezone=cfg.practice.timezone, clock=SystemClock(),
                        secret=secrets.lookup, state_dir=cfg.resolve(cfg.store.path).parent)
    for cal in cfg.calendars:
        try:
            source = SOURCES.load(cal.kind)(cal.name, cal.source, cal.options, ctx)
            out.extend(f"{cfg.path}: [[calendars]] {p}" for p in source.check())
        except ImportError as exc:
            out.append(f"{cfg.path}: calendar '{cal.name}': kind '{cal.kind}' needs an extra package ({exc.name})")
        except UserError as exc:
            out.append(str(exc))
    return out


def _channels(cfg: Config) -> list[str]:
    out = []
    p = cfg.practice
    ctx = ChannelContext(base_dir=cfg.base_dir, state_dir=cfg.resolve(cfg.store.path).parent, timezone=p.timezone,
                         clock=SystemClock(), secret=secrets.lookup, practice_name=p.name,
                         therapist_name=p.therapist, therapist_email=p.therapist_email,
                         sender=cfg.email.common.sender)
    for registry, ch in ((EMAIL_BACKENDS, cfg.email), (PHONE_BACKENDS, cfg.phone)):
        try:
            channel = registry.load(ch.backend)(ch.options, ctx)
            out.extend(channel.check())
        except ImportError as exc:
            out.append(f"{cfg.path}: backend '{ch.backend}' needs an extra package ({exc.name})")
        except UserError as exc:
            out.append(str(exc))
    if cfg.inbox is not None:
        try:
            secrets.lookup("imap_password")
        except UserError as exc:
            out.append(f"{cfg.path}: [inbox]: {exc}")
    return out


def _sms_lengths(cfg: Config, templates: Templates) -> list[str]:
    if cfg.phone.backend != "twilio-sms":
        return []
    try:
        from connectors.channels.twilio_sms import sms_problems
    except ImportError:
        return []
    from daemon.templating.templates import sample_context

    out: list[str] = []
    for step in cfg.cadence.steps:
        if step.channel != "phone":
            continue
        for tag in ["", *templates.languages(step.template)]:   # each language's text must fit too
            try:
                text = templates.render(step.template, sample_context(), language=tag).text.strip()
            except UserError:
                continue
            label = f"{step.template}.{tag}" if tag else step.template
            out.extend(f"template '{label}' (SMS): {p}" for p in sms_problems(text))
    return out


def _clinical(cfg: Config, templates: Templates) -> list[str]:
    """Clinical words in a Subject line, or anywhere in a text message."""
    from daemon.templating.checks import clinical_warnings

    out: list[str] = []
    for step in cfg.cadence.steps:
        try:
            src = templates.locate(step.template)
        except UserError:
            continue
        sms = step.channel == "phone" and cfg.phone.backend == "twilio-sms"
        out.extend(clinical_warnings(src.text_path, src.text_path.read_text(encoding="utf-8"), whole=sms))
    return out


def _permissions(cfg: Config) -> list[str]:
    """The config file, the state file and a dedicated state folder must not be open to others.

    The shipped example in a checkout (``config.example.toml`` next to ``pyproject.toml``) is
    exempt: it holds no secrets (none ever go in a config) and git leaves it world-readable."""
    db = cfg.resolve(cfg.store.path)
    shipped = cfg.path.name == "config.example.toml" and (cfg.base_dir / "pyproject.toml").is_file()
    paths = ([] if shipped else [cfg.path]) + [db] + \
        ([db.parent] if db.parent.resolve() != cfg.base_dir.resolve() else [])
    out = []
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            out.append(f"{path} is readable by every user on this machine; run: chmod o-rwx {path}")
    return out
