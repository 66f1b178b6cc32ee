"""Calendar sources: ``ics`` files and feeds, ``google`` Calendar, ``caldav`` servers."""

from connectors.registry import Registry

SOURCES = Registry("calendar kind", {
    "ics": "connectors.calendars.ics:IcsSource",
    "google": "connectors.calendars.google:GoogleSource",
    "caldav": "connectors.calendars.caldav:CaldavSource",
})
