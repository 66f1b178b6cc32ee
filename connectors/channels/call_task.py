"""The phone step as a call task emailed to the therapist (the default).

The therapist gets the client's name and number and a call script; the
message goes out through whatever email backend is configured.
"""

from __future__ import annotations

from dataclasses import replace

from connectors.channels.base import Channel, Message, Receipt


class TherapistEmailCallTask(Channel):
    backend = "therapist-email"
    medium = "call-task"

    @property
    def email(self) -> Channel:
        assert self.context.email_channel is not None, "the engine hands call tasks the email channel"
        return self.context.email_channel

    @property
    def idempotent(self) -> bool:  # type: ignore[override]
        return self.email.idempotent

    def backends(self) -> tuple[str, ...]:
        return (self.backend, *self.email.backends())

    def deliver(self, message: Message) -> Receipt:
        """Hand the task to the email backend, addressed to the therapist: the session's (a group
        practice's task names its therapist), else the practice's."""
        mine = message.audience == "therapist" and bool(message.to_address)
        task = replace(message, audience="therapist",
                       to_address=message.to_address if mine else self.context.therapist_email,
                       to_name=message.to_name if mine else self.context.therapist_name)
        return self.email.deliver(task)
