"""Calendar sources: ``ics`` files and feeds, ``google`` Calendar, ``caldav`` servers
(registered by name in ``daemon.backends.SOURCES``)."""
