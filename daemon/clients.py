"""The client directory (CSV or vCard) and matching a session to one client."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from daemon.errors import UserError
from daemon.model import Client

CSV_HEADER = ["name", "aliases", "email", "phone", "preferred_channel", "do_not_contact"]
CHANNELS = ("", "phone", "email", "sms", "none")
TRUE = {"1", "true", "yes", "y", "x", "✓"}


@dataclass
class Directory:
    clients: list[Client] = field(default_factory=list)
    source: str = ""
    problems: list[str] = field(default_factory=list)   # rows skipped (lenient load)
    _index: tuple[re.Pattern[str] | None, dict[str, list[Client]]] | None = field(
        default=None, repr=False, compare=False)

    def by_id(self, client_id: str) -> Client | None:
        return next((c for c in self.clients if c.id == client_id), None)

    def by_email(self, email: str) -> list[Client]:
        e = email.strip().lower()
        return [c for c in self.clients if c.email and c.email.lower() == e]

    def by_phone(self, phone: str) -> list[Client]:
        return [c for c in self.clients if phone and c.phone == phone]

    def find(self, text: str) -> list[Client]:
        """Clients named by ``text`` (name or alias, case-insensitive), for the CLI."""
        t = text.strip().casefold()
        exact = [c for c in self.clients if t in {c.name.casefold(), *(a.casefold() for a in c.aliases)}
                 or (c.email and c.email.lower() == t)]
        return exact or [c for c in self.clients if t and t in c.name.casefold()]

    def named_in(self, title: str) -> list[Client]:
        """Clients whose name or an alias appears in ``title`` as whole words.

        One combined pattern, longest labels first, so ``Jo`` inside ``Jo Smith``
        counts as ``Jo Smith``; a label two clients share, or two different
        clients named in one title, gives several clients (ambiguous).
        """
        pattern, owners = self._label_index()
        if pattern is None:
            return []
        seen: dict[str, Client] = {}
        for m in pattern.finditer(title):
            for client in owners.get(_label_key(m.group(0)), ()):
                seen.setdefault(client.id, client)
        return list(seen.values())

    def _label_index(self) -> tuple[re.Pattern[str] | None, dict[str, list[Client]]]:
        if self._index is None:
            owners: dict[str, list[Client]] = {}
            for client in self.clients:
                for label in {_label_key(x) for x in (client.name, *client.aliases) if x.strip()}:
                    owners.setdefault(label, []).append(client)
            labels = sorted(owners, key=len, reverse=True)
            alternatives = [r"\s+".join(map(re.escape, label.split())) for label in labels]
            pattern = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE) \
                if alternatives else None
            self._index = (pattern, owners)
        return self._index


def _label_key(text: str) -> str:
    return " ".join(text.casefold().split())


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
        clients, problems = _from_vcard(text, path, default_region)
    else:
        clients, problems = _from_csv(text, path, default_region)
    if problems and (strict or not clients and "header" in problems[0]):
        raise UserError(f"{path}: {len(problems)} problem(s) in the client directory", problems)
    return Directory(_unique_ids(clients), str(path), problems)


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
    try:
        return validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError:
        raise ValueError(f"'{raw}' is not a valid email address") from None


def _row_client(row: dict[str, str], region: str) -> Client:
    name = (row.get("name") or "").strip()
    if not name:
        raise ValueError("name is empty")
    email = (row.get("email") or "").strip()
    email = _normalise_email(email) if email else ""
    phone = (row.get("phone") or "").strip()
    phone = normalise_phone(phone, region) if phone else ""
    channel = (row.get("preferred_channel") or "").strip().lower()
    if channel not in CHANNELS:
        raise ValueError(f"preferred_channel '{channel}' is not one of phone, email, sms, none")
    dnc_raw = (row.get("do_not_contact") or "").strip().lower()
    if dnc_raw not in TRUE | {"", "0", "false", "no", "n"}:
        raise ValueError(f"do_not_contact '{dnc_raw}' is not true or false")
    aliases = tuple(a.strip() for a in (row.get("aliases") or "").split(";") if a.strip())
    return Client(_client_id(name, email), name, aliases, email, phone, channel,
                  dnc_raw in TRUE or channel == "none")


def _from_csv(text: str, path: Path, region: str) -> tuple[list[Client], list[str]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if header[:1] != ["name"] or any(h not in CSV_HEADER for h in header):
        return [], [f"{path}:1: the header must be {','.join(CSV_HEADER)}; found {','.join(header)}"]
    reader.fieldnames = header
    clients, problems = [], []
    for row in reader:
        line = reader.line_num
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        try:
            clients.append(_row_client(row, region))
        except ValueError as exc:
            problems.append(f"{path}:{line}: {exc}")
    return clients, problems


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


def _from_vcard(text: str, path: Path, region: str) -> tuple[list[Client], list[str]]:
    clients, problems = [], []
    card: dict[str, str] | None = None
    start = 0
    for number, line in enumerate(_vcard_lines(text), start=1):
        name, _, value = line.partition(":")
        prop = name.split(";")[0].split(".")[-1].upper()
        if prop == "BEGIN" and value.strip().upper() == "VCARD":
            card, start = {}, number
        elif prop == "END" and card is not None:
            try:
                clients.append(_row_client(card, region))
            except ValueError as exc:
                problems.append(f"{path}:{start}: {exc}")
            card = None
        elif card is not None:
            _vcard_prop(card, prop, name, _vcard_value(value))
    return clients, problems


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
