"""A group practice: ``[[therapists]]``, each with their own calendars.

A session's therapist is its calendar's.  A calendar no ``[[therapists]]`` table lists belongs
to the ``[practice]`` therapist (``therapist``, ``therapist_email``); without any
``[[therapists]]`` that one therapist is the whole practice, exactly as before.  What a
therapist does not set (working hours, phone) comes from ``[practice]``; their ``templates``
folder holds only the wording they want different, the rest comes from ``[templates]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.config.durations import WorkingHours
from daemon.config.fields import Problems, build, option


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError('expected a list of calendar names, e.g. ["main", "groups"]')
    return tuple(v.strip() for v in value)


def _email(value: Any) -> str:
    from daemon.config.sections import _email as email

    return email(value)


def _hours(value: Any) -> WorkingHours:
    from daemon.config.durations import parse_working_hours

    return parse_working_hours(value)


@dataclass
class TherapistCommon:
    name: str = option(doc="The therapist's name, used in their clients' messages.", example="Ben Okafor")
    email: str = option(parse=_email, doc="Where their call tasks, notices and digest go; the Reply-To of "
                                          "their clients' emails.", example="ben@riverside.example")
    calendars: tuple[str, ...] = option(default_factory=tuple, parse=_names,
                                        doc="Names of the [[calendars]] whose sessions are theirs.")
    working_hours: WorkingHours | None = option(None, parse=_hours,
                                                doc="When their steps may land (default: [practice] working_hours).")
    signature: str = option("", doc="Lines that close their clients' emails (added below the template's text).")
    templates: str = option("", doc="A folder of their own wording, relative to this file; a template "
                                    "not there comes from [templates] folder.")
    phone: str = option("", doc="Their phone number, shown as practice_phone in their clients' messages "
                                "(default: [practice] phone).")


@dataclass(frozen=True)
class Therapist:
    """One therapist as the engine routes to them (``listed``: from ``[[therapists]]``)."""

    name: str
    email: str
    calendars: tuple[str, ...]
    working_hours: WorkingHours
    signature: str = ""
    templates: Path | None = None
    phone: str = ""
    listed: bool = False

    @property
    def key(self) -> str:
        """What the store files this therapist's digest under."""
        return self.email.lower()

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.split() else self.name


def parse_therapists(items: Any, calendar_names: list[str] | None, hours: WorkingHours | None,
                     base_dir: Path, problems: Problems) -> list[Therapist]:
    """The ``[[therapists]]`` tables; every problem (unknown calendar, a calendar listed twice,
    an email used twice) added to ``problems`` with its place."""
    if not isinstance(items, list):
        problems.add("therapists", None, "expected [[therapists]] tables")
        return []
    out: list[Therapist] = []
    owner: dict[str, str] = {}
    emails: set[str] = set()
    for i, item in enumerate(items, start=1):
        table = f"therapists#{i}"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            table += f" ({item['name']})"
        common = build(TherapistCommon, item, table, problems)
        if common is None:
            continue
        for name in common.calendars:
            if calendar_names is not None and name not in calendar_names:
                known = ", ".join(calendar_names) or "none"
                problems.add(table, "calendars", f"no calendar named '{name}' (the [[calendars]] are: {known})")
            elif name in owner:
                problems.add(table, "calendars", f"calendar '{name}' already belongs to {owner[name]}; "
                             "a calendar has one therapist")
            owner.setdefault(name, common.name)
        if common.email.lower() in emails:
            problems.add(table, "email", f"'{common.email}' is another therapist's email; each needs their own")
        emails.add(common.email.lower())
        folder = None
        if common.templates:
            p = Path(common.templates).expanduser()
            folder = p if p.is_absolute() else base_dir / p
        out.append(Therapist(common.name, common.email, common.calendars,
                             common.working_hours or hours or _default_hours(), common.signature,
                             folder, common.phone, listed=True))
    return out


def _default_hours() -> WorkingHours:
    from daemon.config.durations import parse_working_hours

    return parse_working_hours("Mon-Fri 09:00-17:00")
