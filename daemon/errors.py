"""The exceptions that cross module boundaries.

``UserError`` is the one class that means "the user can fix this": the CLI turns
it into a message and exit code 2, never a traceback.  ``SourceError`` and
``ChannelError`` are runtime failures of the outside world; they degrade one
calendar or one step and never stop the service.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem in configuration, templates, the directory or usage (exit 2)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        text = message if not self.problems else message + "\n" + "\n".join(
            f"  - {p}" for p in self.problems
        )
        super().__init__(text)


class ConfigError(UserError):
    """The configuration file is invalid; ``problems`` lists every finding."""


class TemplateError(UserError):
    """A template cannot be loaded or rendered; the message names file and line."""


class SourceError(RuntimeError):
    """A calendar source could not be read or parsed.

    The message names the calendar and its source; it never carries event text.
    """

    def __init__(self, calendar: str, source: str, reason: str) -> None:
        self.calendar = calendar
        self.source = source
        self.reason = reason
        super().__init__(f"calendar '{calendar}' ({source}): {reason}")


class ChannelError(RuntimeError):
    """A channel could not deliver a message.

    ``outcome`` is one of ``failed`` (definitely not delivered, permanent),
    ``retry`` (definitely not delivered, try later), ``uncertain`` (may have been
    delivered), ``paused`` (the provider refused us, e.g. a bad API key; the step
    stays planned), ``held`` (a local cause found before the hand-off: a missing
    library, secret or writable folder; the step stays planned and is tried again
    each cycle until it is fixed; ``hold`` says which).  ``opted_out`` marks a
    recipient that refused messages.
    """

    OUTCOMES = ("failed", "retry", "uncertain", "paused", "held")
    HOLDS = ("missing_library", "secret", "folder")

    def __init__(self, outcome: str, reason: str, *, retry_after: float | None = None,
                 opted_out: bool = False, hold: str = "") -> None:
        if outcome not in self.OUTCOMES:
            raise ValueError(f"unknown channel outcome {outcome!r}")
        if (outcome == "held") != (hold in self.HOLDS):
            raise ValueError(f"a held outcome needs one of {self.HOLDS}, got {hold!r}")
        self.outcome = outcome
        self.reason = reason
        self.retry_after = retry_after
        self.opted_out = opted_out
        self.hold = hold
        super().__init__(f"{outcome}: {reason}")


class SecretMissing(UserError):
    """A secret was needed but is in none of the places looked."""

    def __init__(self, name: str, places: list[str]) -> None:
        self.name = name
        super().__init__(f"secret '{name}' not found; looked in: " + ", ".join(places))


class InstanceLocked(UserError):
    """Another welcomeback process already holds the store."""
