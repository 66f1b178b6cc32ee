"""Which occurrences are sessions and whose: the one client of a session (attendee address first,
then the title against the directory), and what the therapist marked on it (no-show,
reached, cancelled).  Pure functions over values; daemon.engine.detect compares polls."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from connectors.calendars.base import Occurrence
from daemon.clients import Directory
from daemon.model import Client

if TYPE_CHECKING:
    from daemon.engine.detect import Context


@dataclass(frozen=True)
class Classified:
    """An occurrence that is a session, with what it says about its client."""

    occ: Occurrence
    client: Client | None
    ambiguous: str
    cancelled: bool
    no_show: bool
    reached: bool
    candidates: tuple[str, ...] = ()   # ambiguous: the directory clients it could be (ids)


def word_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    parts = [r"\s*[-_ ]?\s*".join(map(re.escape, w.split())) if " " in w else re.escape(w)
             for w in words if w]
    if not parts:
        return None
    return re.compile(r"(?<![\w])(?:" + "|".join(parts) + r")(?![\w])", re.IGNORECASE)


def identify(occ: Occurrence, directory: Directory, therapist_email: str,
             staff: frozenset[str] = frozenset()) -> tuple[Client | None, str]:
    """The one client of a session, or (None, why it is ambiguous), or (None, "").  ``staff``:
    the other therapists' addresses (a group practice), never taken for the client either."""
    therapist = therapist_email.lower()
    people = [a for a in occ.attendees if a.email and a.email.lower() != therapist and a.email.lower() not in staff]
    protected = directory.rejected_naming(emails=[a.email for a in people],
                                          texts=[occ.summary, *(a.name for a in people if a.name)])
    if protected is not None:
        return None, protected.attention()
    found: dict[str, Client] = {}
    for a in people:
        matches = directory.by_email(a.email)
        if len(matches) > 1:
            return None, "an attendee address belongs to several clients"
        client = matches[0] if matches else Client(
            id="email:" + a.email.lower(), name=a.name or a.email.split("@")[0], email=a.email.lower(),
            in_directory=False)
        found.setdefault(client.id, client)
    if len(found) > 1:
        return None, "several attendees"
    if found:
        conflict = _names_someone_else(occ, next(iter(found.values())), people, directory)
        if conflict:
            return None, conflict
    if not found:
        named = directory.named_in(occ.summary)
        if len(named) > 1:
            return None, "the title matches several clients"
        found = {c.id: c for c in named}
    if not found:
        return None, ""
    client = next(iter(found.values()))
    if client.email and (client.email.lower() == therapist or client.email.lower() in staff):
        return None, "the client's address is the therapist's own"
    protected = directory.rejected_protecting(client)
    if protected is not None:
        return None, protected.attention()
    return client, ""


def _names_someone_else(occ: Occurrence, client: Client, people: list, directory: Directory) -> str:
    """The title or the attendee's name points to another directory client than the address."""
    named = directory.named_in(occ.summary) + [c for a in people if a.name for c in directory.named_in(a.name)]
    if any(c.id != client.id for c in named):
        return "the attendee's address and the name on the session belong to different clients"
    return ""


def classify(occ: Occurrence, ctx: Context) -> Classified | None:
    """A session if timed and with an identifiable (or ambiguous) client, else None."""
    if occ.tombstone or occ.all_day or occ.start is None:
        return None
    client, ambiguous, fits = _identified(occ, ctx)
    if client is None and not ambiguous:
        return None
    rules = ctx.rules
    text = " ".join([occ.summary, occ.description, " ".join(occ.categories)])
    no_show = bool(_matches(rules.no_show_markers, text)) or (
        occ.color is not None and occ.color in rules.no_show_colors)
    reached = bool(_matches(rules.reached_markers, occ.summary + " " + occ.description))
    declined = _declined(occ, client, ctx.therapist_email)
    prefixed = any(occ.summary.strip().lower().startswith(p.lower()) for p in rules.cancelled_prefixes)
    cancelled = occ.status == "cancelled" or declined or prefixed
    return Classified(occ, client, ambiguous, cancelled, no_show, reached, fits)


def _identified(occ: Occurrence, ctx: Context) -> tuple[Client | None, str, tuple[str, ...]]:
    """:func:`identify` (and an ambiguous one's candidates), once per distinct (title, attendees)
    in one reconcile, not per occurrence; then the therapist's choice for the event, when it
    is one of the candidates."""
    pair = (id(ctx.directory), ctx.therapist_email, ctx.staff, occ.summary,
            tuple((a.email, a.name) for a in occ.attendees))
    known = ctx.identities.get(pair)
    if known is None:
        client, why = identify(occ, ctx.directory, ctx.therapist_email, ctx.staff)
        found = candidates(occ, ctx.directory, ctx.therapist_email, ctx.staff) if why else ()
        known = ctx.identities[pair] = (client, why, found)
    chosen = ctx.chosen.get(occ.uid)
    if chosen and chosen in known[2]:
        picked = ctx.directory.by_id(chosen)
        if picked is not None:
            return picked, "", ()
    return known


def candidates(occ: Occurrence, directory: Directory, therapist_email: str,
               staff: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The directory clients an ambiguous session could be (ids: attendee addresses, then names
    in the title and attendee names); none when a directory entry that cannot be read is named."""
    therapist = therapist_email.lower()
    people = [a for a in occ.attendees if a.email and a.email.lower() != therapist and a.email.lower() not in staff]
    if directory.rejected_naming(emails=[a.email for a in people],
                                 texts=[occ.summary, *(a.name for a in people if a.name)]) is not None:
        return ()
    found = [c for a in people for c in directory.by_email(a.email)]
    found += directory.named_in(occ.summary) + [c for a in people if a.name for c in directory.named_in(a.name)]
    ids: dict[str, None] = {}
    for c in found:
        if not (c.email and c.email.lower() in {therapist, *staff}) and directory.rejected_protecting(c) is None:
            ids.setdefault(c.id, None)
    return tuple(ids) if len(ids) > 1 else ()


def _declined(occ: Occurrence, client: Client | None, therapist_email: str) -> bool:
    """The client's answer is 'declined'; for a session whose client cannot be told apart,
    any invited person's (so it is still reported to the therapist)."""
    if client is None:
        return any(a.partstat == "DECLINED" and a.email.lower() != therapist_email.lower() for a in occ.attendees)
    return bool(client.email) and any(a.email.lower() == client.email.lower() and a.partstat == "DECLINED"
                                      for a in occ.attendees)


_PATTERNS: dict[tuple[str, ...], re.Pattern[str] | None] = {}


def _matches(words: tuple[str, ...], text: str) -> bool:
    if words not in _PATTERNS:
        _PATTERNS[words] = word_pattern(words)
    pattern = _PATTERNS[words]
    return bool(pattern and pattern.search(text))
