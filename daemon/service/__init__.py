"""The systemd service: the run loop, sd_notify, logging set-up."""
