"""The practice inbox, read-only: answers in (replies, auto-replies, bounces) as plain records."""
