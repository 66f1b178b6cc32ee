"""Reading the client directory: a CSV file or a vCard export, each row checked; a row that
cannot be read is kept as a Rejected entry that still protects whom it names."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from pathlib import Path

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from daemon.clients import Directory, Rejected
from daemon.errors import UserError
from daemon.model import Client

CSV_HEADER = ["name", "aliases", "email", "phone", "preferred_channel", "do_not_contact"]
# Optional columns, in any order after ``name``: a safety plan, who to call then (shown only to
# the therapist), and the client's language for messages and dates (BCP 47, e.g. ``es``).
OPTIONAL_COLUMNS = ["safety_concern", "emergency_contact", "language"]


CHANNELS = ("", "phone", "email", "sms", "none")


TRUE = {"1", "true", "yes", "y", "x", "✓", "✔", "t"}


FALSE = {"", "0", "false", "no", "n", "f"}


def load_directory(path: Path | None, default_region: str = "US", *, strict: bool = True) -> Directory:
    """Load a CSV or vCard directory.

    Raises UserError listing every bad row when ``strict``; otherwise bad rows are
    skipped and listed in ``Directory.problems`` (the service carries on with the rest).
    A missing or unreadable file always raises.
    """
    if path is None:
        return Directory()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: client directory not found ([clients] directory)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read client directory: {exc}") from None
    if path.suffix.lower() in (".vcf", ".vcard"):
        clients, rejected = _from_vcard(text, path, default_region)
    else:
        clients, rejected = _from_csv(text, path, default_region)
    problems = [f"{r.where}: {r.problem}" for r in rejected]
    if problems and (strict or not clients and "header" in problems[0]):
        raise UserError(f"{path}: {len(problems)} problem(s) in the client directory", problems)
    return Directory(_unique_ids(clients), str(path), problems, rejected)


def _unique_ids(clients: list[Client]) -> list[Client]:
    from dataclasses import replace

    counts: dict[str, int] = {}
    out = []
    for c in clients:
        counts[c.id] = counts.get(c.id, 0) + 1
        out.append(c if counts[c.id] == 1 else replace(c, id=f"{c.id}#{counts[c.id]}"))
    return out


def _client_id(name: str, email: str) -> str:
    return "dir:" + (email.lower() if email else re.sub(r"\s+", " ", name.strip().casefold()))


def normalise_phone(raw: str, region: str) -> str:
    """E.164 form of ``raw``; raises ValueError when it is not a valid number."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise ValueError(f"'{raw}' is not a phone number (write it as +1 555 010 0199)") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"'{raw}' is not a possible phone number (wrong length for its country)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _normalise_email(raw: str) -> str:
    if not raw.partition("@")[0].isascii():
        raise ValueError(f"'{raw}': the part before @ has non-ASCII letters, which no mail channel "
                         "here can deliver to (it would need SMTPUTF8)")
    try:
        return validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError:
        raise ValueError(f"'{raw}' is not a valid email address") from None


def do_not_contact(raw: str) -> bool:
    """The spellings people write: yes/true/1/x/✓ (or text starting with yes or true) and
    no/false/0/empty.  Raises ValueError for anything else: unreadable means do not contact."""
    value = raw.strip().lower()
    if value in TRUE or value.startswith(("yes", "true")):
        return True
    if value in FALSE:
        return False
    raise ValueError(f"do_not_contact '{raw.strip()}' is not yes or no (until it is fixed, "
                     "this person is treated as do-not-contact)")


def _printable(field_name: str, value: str) -> str:
    """Refuse a control character or line break (no channel can carry it in a header)."""
    bad = next((ch for ch in value if unicodedata.category(ch) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        raise ValueError(f"{field_name} contains a control character or line break (U+{ord(bad):04X})")
    return value


def _row_client(row: dict[str, str], region: str) -> Client:
    name = _printable("name", (row.get("name") or "").strip())
    if not name:
        raise ValueError("name is empty")
    email = (row.get("email") or "").strip()
    email = _normalise_email(email) if email else ""
    phone = (row.get("phone") or "").strip()
    phone = normalise_phone(phone, region) if phone else ""
    channel = (row.get("preferred_channel") or "").strip().lower()
    if channel not in CHANNELS:
        raise ValueError(f"preferred_channel '{channel}' is not one of phone, email, sms, none")
    dnc = do_not_contact(row.get("do_not_contact") or "")
    aliases = tuple(_printable("aliases", a.strip()) for a in (row.get("aliases") or "").split(";") if a.strip())
    safety = yes_no("safety_concern", row.get("safety_concern") or "")
    contact = _printable("emergency_contact", " ".join((row.get("emergency_contact") or "").split()))
    language = language_tag((row.get("language") or "").strip())
    return Client(_client_id(name, email), name, aliases, email, phone, channel, dnc or channel == "none",
                  safety_concern=safety, emergency_contact=contact, language=language)


def yes_no(column: str, raw: str) -> bool:
    """A yes/no column (empty is no); raises ValueError naming the column."""
    value = raw.strip().lower()
    if value in TRUE or value.startswith(("yes", "true")):
        return True
    if value in FALSE:
        return False
    raise ValueError(f"{column} '{raw.strip()}' is not yes or no")


def language_tag(raw: str) -> str:
    """A BCP 47 language tag Babel knows (``es``, ``es-MX``, ``pt-BR``), as written with a hyphen;
    "" for none.  Raises ValueError naming what is expected."""
    if not raw:
        return ""
    from babel import Locale, UnknownLocaleError

    tag = raw.replace("_", "-")
    try:
        Locale.parse(tag, sep="-")
    except (UnknownLocaleError, ValueError):
        raise ValueError(f"language '{raw}' is not a language tag welcomeback knows; "
                         "expected BCP 47 like 'es', 'es-MX' or 'pt-BR'") from None
    return tag


def _rejected(row: dict[str, str], where: str, problem: str, region: str) -> Rejected:
    """What a row that failed validation still names, so it keeps protecting them."""
    names = [(row.get("name") or "").strip()] + (row.get("aliases") or "").split(";")
    email = (row.get("email") or "").strip().lower()
    phone = (row.get("phone") or "").strip()
    try:
        phones = (normalise_phone(phone, region),) if phone else ()
    except ValueError:
        phones = (re.sub(r"\D", "", phone),) if re.sub(r"\D", "", phone) else ()
    return Rejected(where, problem, tuple(" ".join(n.split()) for n in names if n.strip()),
                    (email,) if email else (), phones)


def _from_csv(text: str, path: Path, region: str) -> tuple[list[Client], list[Rejected]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if header[:1] != ["name"] or any(h not in CSV_HEADER + OPTIONAL_COLUMNS for h in header):
        return [], [Rejected(f"{path}:1", f"the header must be {','.join(CSV_HEADER)} (optionally also "
                                          f"{','.join(OPTIONAL_COLUMNS)}); found {','.join(header)}")]
    reader.fieldnames = header
    clients, rejected = [], []
    for row in reader:
        extra = row.pop(None, None)  # type: ignore[call-overload]
        breaks = sum(v.count("\n") for v in [*row.values(), *(extra or [])] if isinstance(v, str))
        start = reader.line_num - breaks
        if not extra and not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        try:
            if extra:
                raise ValueError(f"the row has {len(header) + len(extra)} fields, the header {len(header)} "
                                 "(a comma inside a name needs quotes)")
            clients.append(_row_client(row, region))
        except ValueError as exc:
            rejected.append(_rejected(row, f"{path}:{start}", str(exc), region))
    return clients, rejected


def _vcard_lines(text: str) -> list[str]:
    unfolded: list[str] = []
    for raw in text.splitlines():
        if raw[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += raw[1:]
        else:
            unfolded.append(raw)
    return unfolded


def _vcard_value(v: str) -> str:
    return v.replace("\\,", ",").replace("\\;", ";").replace("\\n", " ").replace("\\\\", "\\").strip()


def _from_vcard(text: str, path: Path, region: str) -> tuple[list[Client], list[Rejected]]:
    clients, rejected = [], []
    card: dict[str, str] | None = None
    start = 0
    for number, line in enumerate(_vcard_lines(text), start=1):
        name, _, value = line.partition(":")
        prop = name.split(";")[0].split(".")[-1].upper()
        if prop == "BEGIN" and value.strip().upper() == "VCARD":
            if card is not None:
                rejected.append(_rejected(card, f"{path}:{start}", "the entry has no END:VCARD", region))
            card, start = {}, number
        elif prop == "END" and card is not None:
            try:
                clients.append(_row_client(card, region))
            except ValueError as exc:
                rejected.append(_rejected(card, f"{path}:{start}", str(exc), region))
            card = None
        elif card is not None:
            _vcard_prop(card, prop, name, _vcard_value(value))
    if card is not None:
        rejected.append(_rejected(card, f"{path}:{start}", "the entry has no END:VCARD", region))
    return clients, rejected


def _vcard_prop(card: dict[str, str], prop: str, name: str, value: str) -> None:
    if prop == "FN":
        card["name"] = value
    elif prop == "N" and "name" not in card:
        parts = [p for p in value.split(";")]
        card["name"] = " ".join(p for p in (parts[1:2] + parts[:1]) if p)
    elif prop == "EMAIL" and "email" not in card:
        card["email"] = value
    elif prop == "TEL" and ("phone" not in card or "CELL" in name.upper()):
        card["phone"] = value
    elif prop == "NICKNAME":
        card["aliases"] = ";".join(a.strip() for a in value.split(",") if a.strip())
    elif prop in ("CATEGORIES", "NOTE") and re.search(r"do[- ]not[- ]contact", value, re.I):
        card["do_not_contact"] = "true"
    elif prop == "X-WELCOMEBACK-CHANNEL":
        card["preferred_channel"] = value.lower()
    elif prop == "X-WELCOMEBACK-SAFETY-CONCERN":
        card["safety_concern"] = value
    elif prop == "X-WELCOMEBACK-EMERGENCY-CONTACT":
        card["emergency_contact"] = value
    elif prop == "LANG" and "language" not in card:
        card["language"] = value
