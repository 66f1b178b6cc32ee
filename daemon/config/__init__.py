"""Configuration: loading (``load``), the typed sections, durations and the typed-schema engine.

``daemon.config`` is the room's public API: ``load(path)`` returns a ``Config`` or raises
``ConfigError`` listing every problem with its file, line and key; the sections are re-exported.
"""

from daemon.config.load import TOP_LEVEL, load, parse
from daemon.config.sections import (
    Cadence,
    CadenceCommon,
    CalendarCommon,
    CalendarConfig,
    ChannelConfig,
    Clients,
    Config,
    Detection,
    Digest,
    EmailCommon,
    Inbox,
    PhoneCommon,
    Practice,
    Retention,
    Safety,
    StepSpec,
    Store,
    Templates,
    Web,
)
from daemon.config.therapists import Therapist, TherapistCommon

__all__ = ["TOP_LEVEL", "load", "parse", "Practice", "Store", "CalendarCommon", "CalendarConfig", "Clients", "Detection", "StepSpec", "Cadence", "CadenceCommon", "EmailCommon", "PhoneCommon", "ChannelConfig", "Digest", "Retention", "Safety", "Templates", "Inbox", "Web", "Config",
           "Therapist", "TherapistCommon"]
