"""``python -m daemon.cli``."""

from daemon.cli.entry import main

main()
