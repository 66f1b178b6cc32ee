"""The configuration: one typed schema, every problem reported at once.

``load(path)`` returns a ``Config`` or raises ``ConfigError`` listing each
problem with its file, line and key.  The sections themselves are declared in
``daemon.config.sections`` (re-exported by ``daemon.config``).
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from daemon.backends import EMAIL_BACKENDS, PHONE_ALIASES, PHONE_BACKENDS, SOURCES
from daemon.config.fields import Problems, build, keys_of, line_locator
from daemon.config.sections import (
    Cadence,
    CadenceCommon,
    CalendarCommon,
    CalendarConfig,
    ChannelConfig,
    Clients,
    Config,
    Detection,
    Digest,
    EmailCommon,
    Inbox,
    PhoneCommon,
    Practice,
    Retention,
    Safety,
    StepSpec,
    Store,
    Templates,
    Web,
)
from daemon.config.therapists import parse_therapists
from daemon.errors import ConfigError
from daemon.hosts import is_loopback

TOP_LEVEL = ("practice", "store", "calendars", "clients", "detection", "cadence", "channels",
             "digest", "retention", "templates", "safety", "inbox", "web", "therapists")


def load(path: Path) -> Config:
    """Read and validate the config file.  Raises ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (use --config PATH or set "
                          "WELCOMEBACK_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    problems = Problems(locate=line_locator(text), file=str(path))
    config = parse(data, path.resolve(), problems)
    if problems.items:
        raise ConfigError(f"{path}: {len(problems.items)} problem(s) in the configuration",
                          problems.items)
    assert config is not None
    return config


def parse(data: dict[str, Any], path: Path, problems: Problems) -> Config | None:
    """Validate parsed TOML; adds to ``problems`` and returns None when invalid."""
    for key in data:
        if key not in TOP_LEVEL:
            problems.add(key, None, f"unknown section (known: {', '.join(TOP_LEVEL)})")
    for required in ("practice", "calendars", "channels"):
        if required not in data:
            problems.add(required, None, "missing section")
    practice = build(Practice, data.get("practice", {}), "practice", problems)
    store = build(Store, data.get("store", {}), "store", problems)
    calendars = _calendars(data.get("calendars", []), problems)
    clients = build(Clients, data.get("clients", {}), "clients", problems)
    detection = build(Detection, data.get("detection", {}), "detection", problems)
    cadence = _cadence(data.get("cadence", {}), problems)
    email, phone, dry_run = _channels(data.get("channels", {}), problems)
    digest = build(Digest, data.get("digest", {}), "digest", problems)
    retention = build(Retention, data.get("retention", {}), "retention", problems)
    templates = build(Templates, data.get("templates", {}), "templates", problems)
    web = build(Web, data.get("web", {}), "web", problems)
    safety = build(Safety, data.get("safety", {}), "safety", problems)
    inbox = _inbox(data["inbox"], problems) if "inbox" in data else None
    therapists = parse_therapists(data.get("therapists", []), _calendar_names(data.get("calendars")),
                                  practice.working_hours if practice else None, path.parent, problems)
    if digest is not None and not _is_hhmm(digest.at):
        problems.add("digest", "at", f"'{digest.at}' is not a time like 07:30")
    parts = [practice, store, calendars, clients, detection, cadence, email, phone, digest,
             retention, templates, safety, web]
    if any(p is None for p in parts) or problems.items:
        return None
    assert calendars is not None and cadence is not None
    return Config(path, practice, store, calendars, clients, detection, cadence, email, phone,
                  dry_run, digest, retention, templates, raw=data, safety=safety, inbox=inbox, web=web,
                  therapists=therapists)


def _calendar_names(items: Any) -> list[str] | None:
    """The names the [[calendars]] tables give (None when there are none to check against)."""
    if not isinstance(items, list):
        return None
    return [i["name"] for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)] or None


def _inbox(data: Any, problems: Problems) -> Inbox | None:
    inbox = build(Inbox, data, "inbox", problems)
    if inbox is not None and inbox.security == "none" and not is_loopback(inbox.host):
        problems.add("inbox", "security", f"\"none\" sends the password in the clear; it is allowed only "
                     f"for a loopback host, not '{inbox.host}' (use tls or starttls)")
    return inbox


def _is_hhmm(text: str) -> bool:
    import re

    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text or "")
    return m is not None and int(m.group(1)) < 24 and int(m.group(2)) < 60


def _calendars(items: Any, problems: Problems) -> list[CalendarConfig] | None:
    if not isinstance(items, list) or not items:
        problems.add("calendars", None, "expected at least one [[calendars]] table")
        return None
    out: list[CalendarConfig] = []
    names: set[str] = set()
    for i, item in enumerate(items, start=1):
        table = f"calendars#{i}"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            table += f" ({item['name']})"
        kind = item.get("kind") if isinstance(item, dict) else None
        opt_cls = _options_class(SOURCES, kind)
        common = build(CalendarCommon, item, table, problems, extra_keys=keys_of(opt_cls)
                       if dataclasses.is_dataclass(opt_cls) else frozenset())
        opts = _build_options(opt_cls, item, table, problems)
        if common is None or opts is _BAD:
            continue
        if common.name in names:
            problems.add(table, "name", f"'{common.name}' is used by another calendar; names must be unique")
        names.add(common.name)
        out.append(CalendarConfig(common.name, common.kind, common.source, common.poll_every,
                                  common.timeout, opts))
    return out


_BAD = object()


def _options_class(registry: Any, name: Any) -> type | None:
    if not isinstance(name, str) or name not in registry.entries:
        return None
    try:
        return registry.load(name).Options
    except ImportError:
        return None


def _build_options(cls: type | None, item: Any, table: str, problems: Problems) -> Any:
    if cls is None or not dataclasses.is_dataclass(cls) or not isinstance(item, dict):
        return None
    subset = {k: v for k, v in item.items() if k in keys_of(cls)}
    before = len(problems.items)
    built = build(cls, subset, table, problems)
    return _BAD if built is None or len(problems.items) > before else built


def _cadence(data: Any, problems: Problems) -> Cadence | None:
    common = build(CadenceCommon, data, "cadence", problems)
    if common is None:
        return None
    if "steps" not in data:
        return Cadence(max_lateness=common.max_lateness, max_messages_per_hour=common.max_messages_per_hour)
    steps: list[StepSpec] = []
    if not common.steps:
        problems.add("cadence", "steps", "expected at least one step, e.g. "
                     '{ channel = "phone", after = "1 business day", template = "phone_call" }')
        return None
    for i, raw in enumerate(common.steps, start=1):
        step = build(StepSpec, raw, f"cadence.steps#{i}", problems)
        if step is not None:
            steps.append(step)
    if len(steps) != len(common.steps):
        return None
    return Cadence(steps=steps, max_lateness=common.max_lateness,
                   max_messages_per_hour=common.max_messages_per_hour)


def _channels(data: Any, problems: Problems) -> tuple[Any, Any, bool]:
    if not isinstance(data, dict):
        problems.add("channels", None, "expected a table with [channels.email] and [channels.phone]")
        return None, None, False
    for key in data:
        if key not in ("email", "phone", "dry_run"):
            problems.add("channels", key, "unknown key (known: email, phone, dry_run)")
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        problems.add("channels", "dry_run", f"expected true or false, found {dry_run!r}")
        dry_run = False
    if "email" not in data:
        problems.add("channels.email", None, "missing section; expected at least: from = \"you@example\"")
        email = None
    else:
        email = _channel(data["email"], "channels.email", EmailCommon, EMAIL_BACKENDS, problems)
    phone = _channel(data.get("phone", {}), "channels.phone", PhoneCommon, PHONE_BACKENDS, problems)
    return email, phone, dry_run


def _channel(data: Any, table: str, common_cls: type, registry: Any, problems: Problems) -> Any:
    backend: Any = data.get("backend", common_cls().backend if common_cls is PhoneCommon else "outbox") \
        if isinstance(data, dict) else None
    backend = PHONE_ALIASES.get(backend, backend) if common_cls is PhoneCommon else backend
    opt_cls = _options_class(registry, backend)
    extra = keys_of(opt_cls) if opt_cls is not None and dataclasses.is_dataclass(opt_cls) else frozenset()
    common = build(common_cls, data, table, problems, extra_keys=extra)
    opts = _build_options(opt_cls, data, table, problems)
    if common is None or opts is _BAD:
        return None
    return ChannelConfig(backend, common, opts)
