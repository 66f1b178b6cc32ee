"""The real-world corpus (../shared/corpus) read through the ICS source, file by file, against
tests/corpus_expected.toml: the occurrences and unreadable events each file yields in its window,
or the named error a broken file must give.  A file that newly yields nothing, or newly fails,
fails here; rows marked ``bug`` state what is right and stay xfail(strict) until it is."""

from __future__ import annotations

import tomllib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.calendars.base import SourceContext, Window
from connectors.calendars.ics import IcsSource
from daemon.clock import FixedClock
from daemon.errors import SourceError
from tests.conftest import CORPUS, local

TABLE = Path(__file__).with_name("corpus_expected.toml")
EXPECTED: dict[str, dict[str, Any]] = tomllib.loads(TABLE.read_text(encoding="utf-8"))
NOW = datetime(2026, 10, 1, tzinfo=timezone.utc)
DAYS = 150
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not present in this checkout")


def _cases(broken: bool) -> list[Any]:
    """The table's rows that expect an error (``broken``) or what a file yields."""
    return [pytest.param(name, row, id=name,
                         marks=[pytest.mark.xfail(strict=True, reason=row["bug"])] if "bug" in row else [])
            for name, row in sorted(EXPECTED.items()) if ("error" in row) == broken]


def _read(path: Path, start: datetime) -> tuple[int, int]:
    """(occurrences, unreadable events) of one file in the 150 days from ``start``."""
    ctx = SourceContext(base_dir=path.parent, timezone=ZoneInfo("America/New_York"),
                        clock=FixedClock(local(2026, 11, 2)), secret=lambda n: "", state_dir=path.parent)
    result = IcsSource("corpus", str(path), None, ctx).fetch(Window(start, start + timedelta(days=DAYS)), {})
    assert result.occurrences is not None                 # a first read is always a full snapshot
    return len(result.occurrences), len(result.unreadable)


def _windows(row: dict[str, Any]) -> dict[str, datetime]:
    """The table's windows: from the day before the file's first event, and the present."""
    out = {"now": NOW}
    if "from" in row:
        day = date.fromisoformat(row["from"])
        out["events"] = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return out


@needs_corpus
def test_the_table_has_one_row_per_corpus_file() -> None:
    files = sorted(f"{p.parent.name}/{p.name}" for p in CORPUS.glob("*/*.ics"))
    assert len(files) > 250
    assert files == sorted(EXPECTED)


@needs_corpus
@pytest.mark.parametrize("name,row", _cases(broken=False))
def test_corpus_file_yields_what_the_table_records(name: str, row: dict[str, Any]) -> None:
    seen: dict[str, int] = {}
    for key, start in _windows(row).items():
        unreadable = "unreadable" if key == "events" else "now_unreadable"
        seen[key], seen[unreadable] = _read(CORPUS / name, start)
    assert seen == {key: row.get(key, 0) for key in seen}, row.get("why", "")


@needs_corpus
@pytest.mark.parametrize("name,row", _cases(broken=True))
def test_broken_corpus_file_fails_with_the_named_error(name: str, row: dict[str, Any]) -> None:
    path = CORPUS / name
    for start in _windows(row).values():
        with pytest.raises(SourceError) as caught:
            _read(path, start)
        assert row["error"] in caught.value.reason
        assert str(caught.value).startswith(f"calendar 'corpus' ({path}): ")
