"""Durable state: tables and schema upgrades, sessions, follow-ups, the instance lock."""
