"""Message templates the therapist edits, and the sandbox they render in."""
