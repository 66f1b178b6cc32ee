"""Message templates the therapist edits: Jinja2 in a locked-down sandbox.

A template is ``NAME.txt`` (optional first line ``Subject: ...``, then a blank
line, then the body) and optionally ``NAME.html``; per language ``NAME.LANG.txt`` (``LANG`` a
BCP 47 tag such as ``es`` or ``es-MX``), used for clients whose directory ``language`` is
that one, falling back from ``es-MX`` to ``es`` to the default template.  What a template may contain
and the limits of a render live in ``daemon.templating.allowlist`` and ``daemon.templating.sandbox``; every render
validates the text first, so a broken or hostile file is refused, never run.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, tzinfo
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import phonenumbers
from babel import Locale
from babel.dates import format_date, format_datetime, format_time, match_skeleton

from daemon.errors import TemplateError
from daemon.model import Client
from daemon.templating.allowlist import (
    ALLOWED,
    CALL_TASK_ONLY,
    check_source,
    client_facing_problems,
)
from daemon.templating.sandbox import (
    MAX_OUTPUT,
    MAX_SECONDS,
    SandboxEnv,
    environment,
    sandboxed_render,
)

__all__ = ["ALLOWED", "MAX_OUTPUT", "MAX_SECONDS", "Rendered", "Source", "Templates", "context_for",
           "copy_defaults", "defaults_dir", "environment", "readable_phone", "render_text",
           "sample_client", "sample_context", "spoken_date", "split_subject", "validate_text", "when"]
DEFAULTS_PACKAGE = "welcomeback_templates"   # the top-level templates/ folder, shipped in the wheel
FORMATS = (".txt", ".html")


@functools.lru_cache(maxsize=1)
def defaults_dir() -> Traversable:
    """The packaged default templates, read through importlib.resources: a checkout, an
    installed package or a zip (never a file-system path assumed); looked up once."""
    return files(DEFAULTS_PACKAGE)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


@dataclass(frozen=True)
class Source:
    """The files of one template; ``origin`` is ``yours`` (the therapist's folder) or ``default``."""

    name: str
    text_path: Traversable
    html_path: Traversable | None
    origin: str = "yours"


class Templates:
    """Finds, validates and renders the templates of one configuration."""

    def __init__(self, folder: Path, *, own: Path | None = None) -> None:
        self.folder = folder
        self.own = own               # a therapist's own wording, searched before ``folder``
        self.env = environment()
        self._theirs: dict[Path, Templates] = {}

    def with_own(self, folder: Path | None) -> Templates:
        """These templates with a therapist's own ``folder`` searched first (the same object
        without one); one object per folder, so its environment is built once."""
        if folder is None:
            return self
        if folder not in self._theirs:
            self._theirs[folder] = Templates(self.folder, own=folder)
        return self._theirs[folder]

    @property
    def folders(self) -> list[Path]:
        """The therapist's own folder (if any), then the practice's."""
        return [self.own, self.folder] if self.own is not None else [self.folder]

    def locate(self, name: str, language: str = "") -> Source:
        """The files of template ``name`` (in ``language`` where such a template exists).

        The therapist's folder wins over the defaults: their own ``NAME.LANG``, then their own
        ``NAME`` (their words, which may be fitted to the step, e.g. a text message), and only
        then the packaged ``NAME.LANG`` and ``NAME``."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name):
            raise TemplateError(f"'{name}' is not a template name (letters, digits, _ and -)")
        stems = [*(f"{name}.{tag}" for tag in language_candidates(language)), name]
        order = [(folder, "yours", stem) for folder in self.folders for stem in stems] + \
            [(defaults_dir(), "default", stem) for stem in stems]
        for base, origin, stem in order:
            text, html = base.joinpath(f"{stem}.txt"), base.joinpath(f"{stem}.html")
            try:
                if text.is_file():
                    return Source(name, text, html if html.is_file() else None, origin)
            except OSError as exc:    # e.g. a folder this user may not enter
                raise TemplateError(f"{base}: cannot read the templates folder: "
                                    f"{exc.strerror or type(exc).__name__}") from None
        raise TemplateError(f"template '{name}' not found: looked for {name}.txt in "
                            f"{' and '.join(map(str, self.folders))} "
                            f"and in the packaged defaults ({defaults_dir()})")

    def names(self) -> list[str]:
        found: set[str] = set()
        for base in (defaults_dir(), *self.folders):
            try:
                if base.is_dir():
                    found |= {item.name[:-len(".txt")] for item in base.iterdir()
                              if item.name.endswith(".txt") and "." not in item.name[:-len(".txt")]}
            except OSError:           # unreadable: locate() names the problem when it matters
                continue
        return sorted(found)

    def validate(self, name: str, *, client_facing: bool = False) -> list[str]:
        """Every problem of template ``name`` (syntax, unknown variables, forbidden constructs,
        and with ``client_facing`` the call-task-only variables)."""
        try:
            sources = [self.locate(name)] + [self.locate(name, tag) for tag in self.languages(name)]
            problems = []
            for path in dict.fromkeys(p for src in sources for p in (src.text_path, src.html_path) if p):
                problems.extend(validate_text(_read(path), str(path)))
                if client_facing:
                    problems.extend(client_facing_problems(_read(path), str(path)))
            if not problems:
                self.render(name, sample_context())
        except TemplateError as exc:
            return exc.problems or [str(exc)]
        return problems

    def languages(self, name: str) -> list[str]:
        """The language tags template ``name`` has its own files for (either folder)."""
        found: set[str] = set()
        for base in (defaults_dir(), *self.folders):
            try:
                if base.is_dir():
                    found |= {item.name[len(name) + 1:-len(".txt")] for item in base.iterdir()
                              if item.name.startswith(name + ".") and item.name.endswith(".txt")}
            except OSError:
                continue
        return sorted(t for t in found if t and "." not in t)

    def render(self, name: str, context: dict[str, str], *, audience: str = "therapist",
               language: str = "") -> Rendered:
        """Render template ``name`` (in ``language`` where it exists); raises TemplateError
        (only) naming file and line.

        For ``audience="client"`` every part (subject and text, HTML) is refused when it uses
        a call-task-only variable, and those values are not even in the context."""
        src = self.locate(name, language)
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


_TEXTS: dict[str, tuple[tuple[int, int, int, int], str]] = {}   # path → (its stat, its text)


def _read(path: Traversable) -> str:
    """The template file's text; read again whenever its size, times or inode differ from the
    last read (an edit, a replacement, a chmod), else the text read then.  As git does with its
    index, a file changed in the last two seconds is never taken from memory: the file system's
    clock is coarser than two quick edits of the same size."""
    try:
        if not isinstance(path, Path):
            return path.read_text(encoding="utf-8")
        st = os.stat(path)
        key = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        known = _TEXTS.get(str(path))
        if known is not None and known[0] == key:
            return known[1]
        text = path.read_text(encoding="utf-8")
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > 2_000_000_000:
            _TEXTS[str(path)] = (key, text)
        return text
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


# How each language joins a date and a time in a sentence; CLDR's "atTime" patterns, which
# babel does not ship.  Other languages get babel's own joint ("{1}, {0}").
AT_TIME = {"en": "{1} 'at' {0}", "de": "{1} 'um' {0}", "fr": "{1} 'à' {0}", "es": "{1}, 'a las' {0}",
           "it": "{1} 'alle ore' {0}", "nl": "{1} 'om' {0}", "pt": "{1} 'às' {0}"}


def spoken_date(moment: datetime, *, tz: tzinfo, locale: str) -> str:
    """The weekday, month and day as the locale writes them: "Monday, March 2", "Montag, 2. März"."""
    loc, pattern, _ = _patterns(locale)
    return format_date(moment.astimezone(tz).date(), format=pattern, locale=loc)


@functools.lru_cache(maxsize=64)
def _patterns(locale: str) -> tuple[Locale, str, str]:
    """(the locale, its weekday-month-day pattern, how it joins a date and a time), worked
    out once per locale: every message of a dispatch asks again."""
    loc = Locale.parse(locale)
    key = match_skeleton("MMMMEd", loc.datetime_skeletons) or "MMMMEd"
    pattern = re.sub(r"E+", "EEEE", str(getattr(loc.datetime_skeletons.get(key), "pattern", "EEEE, MMMM d")))
    joint = AT_TIME.get(loc.language) or str(loc.datetime_formats.get("long", "{1}, {0}"))
    return loc, pattern, joint


def when(moment: datetime, *, tz: tzinfo, locale: str) -> str:
    """A session time as people say it: "Monday, March 2 at 10:00 AM"."""
    loc, _, joint = _patterns(locale)
    time = _plain(format_time(moment.astimezone(tz), format="short", tzinfo=tz, locale=loc))
    parts = {"{1}": spoken_date(moment, tz=tz, locale=locale), "{0}": time}
    return "".join(parts.get(piece, piece.strip("'"))
                   for piece in re.split(r"(\{[01]\}|'[^']*')", joint) if piece)


def _plain(text: str) -> str:
    """CLDR puts a narrow no-break space before AM/PM; a plain one reads the same, stays
    7-bit in email and fits the GSM-7 alphabet of a text message."""
    return text.replace("\u202f", " ").replace("\u00a0", " ")


def readable_phone(number: str, region: str) -> str:
    """A stored E.164 number as one reads it in the practice's region: national form for a
    number of that region ("(555) 010-0101"), international otherwise ("+44 20 7946 0958")."""
    if not number:
        return ""
    try:
        parsed = phonenumbers.parse(number, region or None)
    except phonenumbers.NumberParseException:
        return number
    same = parsed.country_code == phonenumbers.country_code_for_region((region or "").upper())
    kind = phonenumbers.PhoneNumberFormat.NATIONAL if same else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    return phonenumbers.format_number(parsed, kind)


def language_candidates(language: str) -> list[str]:
    """``es-MX`` → ``["es-MX", "es"]``; "" → []."""
    tag = language.strip().replace("_", "-")
    if not tag:
        return []
    parts = tag.split("-")
    return list(dict.fromkeys("-".join(parts[:n]) for n in range(len(parts), 0, -1)))


def babel_locale(language: str, default: str) -> str:
    """The Babel locale for a client's BCP 47 ``language`` (``es-MX`` → ``es_MX``), else ``default``."""
    if not language:
        return default
    try:
        return str(Locale.parse(language.replace("_", "-"), sep="-"))
    except (ValueError, LookupError):
        return default


def context_for(client: Client, session_start: datetime, trigger: str, *, tz: tzinfo, locale: str,
                therapist: str, practice: str, practice_phone: str = "",
                rebooking_link: str = "", region: str = "", safety_protocol: str = "") -> dict[str, str]:
    """The allowlisted variables for one message (built once, used by every channel)."""
    local = session_start.astimezone(tz)
    return {
        "client_first_name": client.first_name, "client_name": client.name,
        "client_phone": readable_phone(client.phone, region),
        "session_date": spoken_date(local, tz=tz, locale=locale),
        "session_time": _plain(format_time(local, format="short", tzinfo=tz, locale=locale)),
        "session_weekday": format_datetime(local, format="EEEE", tzinfo=tz, locale=locale),
        "trigger": trigger, "therapist": therapist,
        "therapist_first_name": therapist.split()[0] if therapist.split() else therapist,
        "practice": practice, "practice_phone": readable_phone(practice_phone, region) or practice_phone,
        "rebooking_link": rebooking_link,
        "safety_protocol": safety_protocol, "emergency_contact": client.emergency_contact,
    }


def sample_context() -> dict[str, str]:
    """Fictional sample data for validation (every variable set, so every branch renders)."""
    return {"client_first_name": "Sam", "client_name": "Sam Example", "client_phone": "+15550100199",
            "session_date": "Tuesday, March 3", "session_time": "10:00 AM", "session_weekday": "Tuesday",
            "trigger": "no_show", "therapist": "Ana Ruiz", "therapist_first_name": "Ana",
            "practice": "Riverside Counselling", "practice_phone": "+1 555 010 0100",
            "rebooking_link": "https://book.example/riverside",
            "safety_protocol": "Try the client again; if you cannot reach them, call their emergency contact.",
            "emergency_contact": "Robin Example (partner) +1 555 010 0111"}


SAMPLE_CLIENT = "Sam Example"
SAMPLE_SESSION = (2026, 3, 2, 10, 0)   # a Monday, 10:00 in the practice's time zone


def sample_client(region: str) -> Client:
    """A fictional client with the documentation example number of the practice's region."""
    example = phonenumbers.example_number_for_type(region or "US", phonenumbers.PhoneNumberType.MOBILE)
    phone = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164) if example else ""
    return Client(id="sample", name=SAMPLE_CLIENT, email="sam.example@example.invalid", phone=phone,
                  emergency_contact=sample_context()["emergency_contact"])


def copy_defaults(folder: Path) -> list[str]:
    """Copy default templates the folder lacks; never overwrites the therapist's words."""
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in sorted(defaults_dir().iterdir(), key=lambda item: item.name):
        if src.name.endswith(FORMATS) and not (folder / src.name).exists():
            (folder / src.name).write_bytes(src.read_bytes())
            copied.append(src.name)
    return copied


def install_text(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (a temporary file beside it, fsync, rename;
    mode 0644): a template is never half-written, whoever saves it (``templates edit``, the console)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
