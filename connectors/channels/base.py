"""The one interface every message channel implements.

Invariants live here so a new channel cannot forget them: dry-run, logging
by step id only (never recipient or body), and the outcome vocabulary of
``daemon.errors.ChannelError``.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Callable, ClassVar

from daemon.clock import Clock
from daemon.errors import ChannelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """One message, fully rendered.  ``audience`` is ``client`` or ``therapist``."""

    step_id: str
    sequence_id: str
    audience: str
    to_address: str
    to_name: str
    subject: str
    text: str
    html: str | None = None
    message_id: str = ""
    reply_to: str | None = None
    due_at: datetime | None = None
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """What a channel reports after a hand-off it knows succeeded."""

    provider_id: str | None = None
    detail: str = ""


@dataclass(kw_only=True, frozen=True)
class ChannelContext:
    """What a channel may use from the engine (built with keywords: two swapped paths or
    names would otherwise type-check)."""

    base_dir: Path
    state_dir: Path
    timezone: tzinfo
    clock: Clock
    secret: Callable[[str], str]
    practice_name: str
    therapist_name: str
    therapist_email: str
    sender: str = ""
    dry_run: bool = False
    sender_name: str = ""                        # display name in From (default: the practice)
    email_channel: "Channel | None" = None      # the email channel, for call tasks sent by email


class NoOptions:
    """For channels without backend-specific keys."""


class Channel(ABC):
    """A way to deliver a Message.

    ``medium`` is ``email``, ``sms`` or ``call-task``; ``idempotent`` says whether
    a second hand-off of the same step can never produce a second message.
    ``deliver`` raises ``ChannelError`` with an outcome; anything else escaping a
    channel is treated as ``uncertain`` by the engine.
    """

    backend: ClassVar[str] = ""
    medium: ClassVar[str] = "email"
    idempotent: ClassVar[bool] = False
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any, context: ChannelContext) -> None:
        self.options = options
        self.context = context

    def send(self, message: Message) -> Receipt:
        """Deliver, or only log under dry-run.  Raises ChannelError.

        The libraries of every backend involved are imported first: one that cannot
        be imported holds the step (``missing_library``) before anything is handed off.
        """
        if self.context.dry_run:
            log.info("dry-run: step %s would go by %s (%s); nothing sent",
                     message.step_id, self.backend, message.audience)
            return Receipt(provider_id="dry-run", detail="dry run: not delivered")
        self._import_libraries()
        return self.deliver(message)

    def backends(self) -> tuple[str, ...]:
        """The backends a hand-off goes through (a call task also uses the email backend)."""
        return (self.backend,)

    def _import_libraries(self) -> None:
        from daemon.config.libraries import CHANNELS, cannot_import

        for backend in self.backends():
            need = CHANNELS.get(backend)
            problem = cannot_import(f"backend '{backend}'", need) if need else None
            if problem:
                raise ChannelError("held", problem, hold="missing_library")

    @abstractmethod
    def deliver(self, message: Message) -> Receipt:
        """Hand the message to the outside world.  Raises ChannelError."""

    def check(self) -> list[str]:
        """Problems visible without sending (missing secret, bad folder)."""
        return []

    def marker(self, message: Message) -> str | None:
        """What identifies this message at the provider, known before the hand-off (kept on
        the step from its claim, so an ``uncertain`` step can be looked up later); None when
        the provider cannot be asked."""
        return None

    def feedback(self) -> dict[str, str]:
        """What the therapist did with delivered items, by step id.

        A channel whose messages the therapist can close (a call task in their
        calendar) returns ``{step_id: "reached" | "dismissed"}``; the engine then
        stops that sequence.  Raises ChannelError when it cannot be read.
        """
        return {}

    def close(self) -> None:
        """Release connections."""


def read_state(path: Path) -> dict[str, Any]:
    """A channel's JSON state file as a dict; missing or unreadable is an empty state."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
