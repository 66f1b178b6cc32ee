"""What the steps of a cycle use from the practice, in one small typed object.

Planning, dispatch and the digest take a ``CycleContext`` instead of the whole ``Engine``:
the directory, the store, the channels, the templates, the clock and who this process is.
The engine builds one after its set-up; a test builds one from a real store and directory
without an engine.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from connectors.channels.base import Channel
from daemon.clients import Directory
from daemon.clock import Clock
from daemon.config import Config
from daemon.model import Client
from daemon.store.db import Store
from daemon.templating.templates import Templates


@dataclass(kw_only=True, frozen=True)
class CycleContext:
    config: Config
    store: Store
    directory: Directory
    templates: Templates
    email: Channel
    phone: Channel
    clock: Clock
    worker: str                                  # who claims steps: host:pid:random
    is_dispatcher: bool = True                   # every process dispatches (replicas claim row by row)
    stopping: threading.Event = field(default_factory=threading.Event)   # set on SIGTERM
    replicas: Any = None                         # daemon.engine.replicas.Replicas (shared stores)

    def client_of(self, client_id: str, name: str = "", email: str = "") -> Client:
        """The directory's current entry, or the attendee the session named."""
        found = self.directory.by_id(client_id)
        return found or Client(id=client_id, name=name or email, email=email, in_directory=False)

    def channel_for(self, step_channel: str) -> Channel:
        """The channel of a step's ``channel`` (``phone`` or ``email``)."""
        return self.phone if step_channel == "phone" else self.email
