"""The client directory and matching a session to one client (files are read in ``daemon.client_files``).

A row (or vCard entry) that cannot be read is not dropped: it is kept as a
``Rejected`` entry that still protects everyone it names (email, phone, name,
aliases).  Nobody is contacted on a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from daemon.model import Client

BLOCKED_BY_DIRECTORY = "the client directory entry "   # how a session's reason starts when a Rejected blocks it


@dataclass(frozen=True)
class Rejected:
    """A directory entry that failed validation: whatever it names is never contacted
    automatically, and the sessions it matches are reported with its file and line."""

    where: str                      # file:line
    problem: str
    names: tuple[str, ...] = ()     # name and aliases as written
    emails: tuple[str, ...] = ()    # lower-cased, as written
    phones: tuple[str, ...] = ()    # E.164 where readable, else the digits

    def attention(self) -> str:
        """The line the therapist reads (status, digest); never logged."""
        return (f"{BLOCKED_BY_DIRECTORY}{self.where} cannot be read ({self.problem}); "
                "the person it names is not contacted until it is fixed")

    def names_phone(self, phone: str) -> bool:
        digits = re.sub(r"\D", "", phone)
        return bool(phone) and any(p == phone or (len(p) >= 7 and p.isdigit() and digits.endswith(p))
                                   for p in self.phones)


class _Labels:
    """Names and aliases as whole words in a text: one pattern, longest labels first."""

    def __init__(self, owners: list[tuple[object, tuple[str, ...]]]) -> None:
        self.owners: dict[str, list[object]] = {}
        for owner, labels in owners:
            for label in {_label_key(x) for x in labels if x.strip()}:
                self.owners.setdefault(label, []).append(owner)
        alternatives = [r"\s+".join(map(re.escape, label.split()))
                        for label in sorted(self.owners, key=len, reverse=True)]
        self.pattern = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE) \
            if alternatives else None

    def found_in(self, text: str) -> list[object]:
        if self.pattern is None:
            return []
        seen: dict[int, object] = {}
        for m in self.pattern.finditer(text):
            for owner in self.owners.get(_label_key(m.group(0)), ()):
                seen.setdefault(id(owner), owner)
        return list(seen.values())


@dataclass
class Directory:
    clients: list[Client] = field(default_factory=list)
    source: str = ""
    problems: list[str] = field(default_factory=list)   # rows skipped (lenient load)
    rejected: list[Rejected] = field(default_factory=list)
    _index: dict[str, _Labels] = field(default_factory=dict, repr=False, compare=False)

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
        if "clients" not in self._index:
            self._index["clients"] = _Labels([(c, (c.name, *c.aliases)) for c in self.clients])
        return [c for c in self._index["clients"].found_in(title) if isinstance(c, Client)]

    def rejected_naming(self, *, emails: list[str], texts: list[str]) -> Rejected | None:
        """The first rejected entry whose email is one of ``emails`` or whose name or alias
        appears in one of ``texts`` (a session's title, an attendee's name)."""
        wanted = {e.strip().lower() for e in emails if e}
        for entry in self.rejected:
            if wanted & set(entry.emails):
                return entry
        if not self.rejected:
            return None
        if "rejected" not in self._index:
            self._index["rejected"] = _Labels([(r, r.names) for r in self.rejected])
        found = [r for text in texts for r in self._index["rejected"].found_in(text) if isinstance(r, Rejected)]
        return found[0] if found else None

    def rejected_protecting(self, client: Client) -> Rejected | None:
        """The first rejected entry that names ``client`` by email, phone, name or alias."""
        labels = {_label_key(x) for x in (client.name, *client.aliases) if x.strip()}
        for entry in self.rejected:
            if (client.email and client.email.lower() in entry.emails) or entry.names_phone(client.phone) \
                    or labels & {_label_key(n) for n in entry.names if n.strip()}:
                return entry
        return None


def _label_key(text: str) -> str:
    return " ".join(text.casefold().split())


