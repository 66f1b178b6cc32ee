"""Message channels.  ``[channels.email] backend`` and ``[channels.phone] backend`` pick one of
these by name (``daemon.backends``); the SDKs load only when configured."""
