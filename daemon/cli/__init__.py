"""The command line: argument parsing and one module per group of subcommands."""

from daemon.cli.entry import main

__all__ = ["main"]
