"""The embedded default: each email written as an RFC 5322 ``.eml`` file.

The file name is the step id, written atomically (temporary file, fsync,
rename), so a repeat hand-off of the same step can never produce a second
message.  No account and no network needed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from connectors.channels.base import Channel, Message, Receipt
from connectors.channels.mime import Unencodable, email_bytes
from daemon.config.fields import option
from daemon.errors import ChannelError


@dataclass
class OutboxOptions:
    outbox: str = option("outbox", doc="Folder for the .eml files (outbox backend), relative to this file.")


class OutboxChannel(Channel):
    backend = "outbox"
    medium = "email"
    idempotent = True
    Options = OutboxOptions

    @property
    def folder(self) -> Path:
        p = Path(os.path.expanduser(self.options.outbox))
        return p if p.is_absolute() else self.context.base_dir / p

    def check(self) -> list[str]:
        parent = self.folder if self.folder.exists() else self.folder.parent
        if not os.access(parent, os.W_OK):
            return [f"[channels.email] outbox: cannot write to {parent}"]
        return []

    def path_for(self, message: Message) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", message.step_id)
        return self.folder / f"{safe}.eml"

    def deliver(self, message: Message) -> Receipt:
        """Write the .eml file.  A message that cannot be encoded fails (permanent); a folder
        that cannot be written holds the step until it is fixed.  Raises ChannelError."""
        target = self.path_for(message)
        if target.exists():  # already handed off: never a second copy
            return Receipt(provider_id=target.name, detail="already in the outbox")
        try:
            data = email_bytes(message, self.context, eight_bit=True)
        except Unencodable as exc:
            raise ChannelError("failed", str(exc)) from None
        try:
            self._write(target, data)
        except OSError as exc:
            raise ChannelError("held", f"cannot write to the outbox folder {self.folder}: "
                               f"{exc.strerror or type(exc).__name__}", hold="folder") from None
        return Receipt(provider_id=target.name)

    def _write(self, target: Path, data: bytes) -> None:
        """Atomically: a temporary file, fsync, rename."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = target.with_suffix(".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
