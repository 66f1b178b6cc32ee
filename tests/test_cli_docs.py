"""The README's command list and configuration table stay in step with the argparse parser and
the config schema, and every subcommand and argument has help that names its accepted values."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from daemon import config as config_mod
from daemon.backends import EMAIL_BACKENDS, PHONE_BACKENDS, SOURCES
from daemon.cli.entry import main, parser
from daemon.config.fields import keys_of
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _readme_commands() -> dict[str, str]:
    """Subcommand → its README usage line(s)."""
    block = _section("Command line").split("```")[1]
    out: dict[str, str] = {}
    for line in block.strip().splitlines():
        usage = re.sub(r"\[--(config|debug)[^\]]*\]", " ", line.split("#", 1)[0])
        words = usage.split()[1:]
        out[words[0]] = out.get(words[0], "") + " " + usage
    return out


def test_the_readme_lists_every_subcommand_and_no_other() -> None:
    assert sorted(_readme_commands()) == sorted(_subcommands())


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_each_readme_line_shows_the_options_and_values_of_its_subcommand(name: str) -> None:
    line = _readme_commands()[name]
    sub = _subcommands()[name]
    documented = set(re.findall(r"--[a-z][a-z-]*", line))
    options = {o for a in sub._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    assert documented == options, f"README: {sorted(documented)}, parser: {sorted(options)}"
    for action in sub._actions:
        for choice in action.choices or ():
            assert re.search(rf"(?<![\w-]){re.escape(str(choice))}(?![\w-])", line), f"{name}: {choice}"


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_argument_has_help_naming_its_values(name: str) -> None:
    sub = _subcommands()[name]
    assert sub.description, f"{name} has no description"
    for action in sub._actions:
        assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.dest}: no help"
        for choice in action.choices or ():
            assert str(choice) in action.help, f"{name} {action.dest}: help does not name {choice}"


def test_help_runs_for_every_subcommand(capsys) -> None:
    for name in _subcommands():
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0
        assert "usage: welcomeback" in capsys.readouterr().out


def _table() -> dict[str, set[str]]:
    """Section → the keys its README row names (backticked words outside parentheses)."""
    rows: dict[str, set[str]] = {}
    for line in _section("Configuration reference").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`["):
            continue
        outside = re.sub(r"\([^()]*\)", " ", cells[1])
        rows[cells[0].strip("`")] = set(re.findall(r"`([a-z_]+)`", outside))
    return rows


def _options(registry) -> set[str]:
    out: set[str] = set()
    for name in registry.names():
        options = registry.load(name).Options
        if dataclasses.is_dataclass(options):
            out |= keys_of(options)
    return out


def test_the_configuration_table_matches_the_schema() -> None:
    c = config_mod
    expected = {
        "[practice]": keys_of(c.Practice), "[store]": keys_of(c.Store),
        "[[calendars]]": keys_of(c.CalendarCommon) | _options(SOURCES),
        "[clients]": keys_of(c.Clients), "[detection]": keys_of(c.Detection),
        "[cadence]": keys_of(c.CadenceCommon) | keys_of(c.StepSpec), "[channels]": {"dry_run"},
        "[channels.email]": keys_of(c.EmailCommon) | _options(EMAIL_BACKENDS),
        "[channels.phone]": keys_of(c.PhoneCommon) | _options(PHONE_BACKENDS),
        "[digest]": keys_of(c.Digest), "[retention]": keys_of(c.Retention), "[templates]": keys_of(c.Templates),
        "[web]": keys_of(c.Web),
        "[safety]": keys_of(c.Safety),
        "[inbox]": keys_of(c.Inbox),
        "[[therapists]]": keys_of(c.TherapistCommon),
    }
    assert {s.strip("[]") for s in expected} - {"channels.email", "channels.phone"} == set(c.TOP_LEVEL)
    table = _table()
    assert sorted(table) == sorted(expected)
    for section, keys in expected.items():
        assert table[section] == set(keys), f"{section}: README {sorted(table[section])}, schema {sorted(keys)}"
