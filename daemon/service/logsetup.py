"""Logging: journald-aware, one logger per module, no client data by construction.

Log lines carry sequence and step ids, never names, addresses, numbers,
titles or message bodies; callers pass only those ids as arguments.
"""

from __future__ import annotations

import logging
import os
import sys

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """Under systemd: ``<N>`` priority prefixes and no timestamps (journald adds them)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = f"<{_PRIORITY.get(record.levelno, 6)}>"
        return "\n".join(prefix + line for line in text.splitlines())


def configure(debug: bool = False) -> None:
    """Set up the root logger for the CLI and the service."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for noisy in ("googleapiclient", "urllib3", "sqlalchemy", "apscheduler", "icalendar",
                  "recurring_ical_events", "httplib2", "twilio", "python_http_client", "imapclient"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
