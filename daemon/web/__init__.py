"""The therapist's console: a small local web page served by ``welcomeback web`` or ``run``."""
