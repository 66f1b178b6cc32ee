"""Lazy name → class registry, so an SDK loads only when a connector is configured."""

from __future__ import annotations

import importlib
from typing import Any


class Registry:
    """Maps a configured name (``ics``, ``sendgrid``) to ``module:Class`` and loads it on demand."""

    def __init__(self, what: str, entries: dict[str, str]) -> None:
        self.what = what
        self.entries = entries

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def load(self, name: str) -> Any:
        """Import and return the class for ``name``; raises KeyError when unknown."""
        target = self.entries[name]
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
