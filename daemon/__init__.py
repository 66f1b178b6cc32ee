"""welcomeback: follows up cancelled and missed sessions, gently, then stops."""

__version__ = "0.1.0"
