"""The command line's side of the therapist's actions; the actions themselves live in
:mod:`daemon.engine.actions` so that the console (``daemon.web``) takes the very same path."""

from __future__ import annotations

from daemon.engine.actions import (  # noqa: F401  (re-exported for the CLI and its tests)
    RESOLUTIONS,
    SETTLEABLE,
    Matched,
    deliverable,
    exact_in,
    match_client,
    mark,
    resolve,
    undo,
    who,
)
