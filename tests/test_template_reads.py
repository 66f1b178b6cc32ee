"""A template file is read again after every edit, however quick, and not re-read when it did
not change (every dispatched step renders its template)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from daemon.templating import templates
from daemon.templating.templates import Templates, _read


def test_an_edit_of_the_same_size_within_the_clock_tick_is_seen(tmp_path: Path):
    t = Templates(tmp_path)
    (tmp_path / "note.txt").write_text("Subject: Hi\n\nfirst {{ practice }}\n")
    assert "first" in t.render("note", {"practice": "P"}).text
    (tmp_path / "note.txt").write_text("Subject: Hi\n\nFIRST {{ practice }}\n")   # same size, at once
    assert "FIRST" in t.render("note", {"practice": "P"}).text


def test_an_old_unchanged_file_is_taken_from_memory_until_it_changes(tmp_path: Path, monkeypatch):
    path = tmp_path / "note.txt"
    path.write_text("old words\n")
    old = time.time() - 60
    os.utime(path, (old, old))           # ctime stays now: not yet cached
    assert _read(path) == "old words\n"
    assert str(path) not in templates._TEXTS            # changed (its ctime) just now: not remembered
    reads = []
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self) or real(self, *a, **k))
    now_ns = time.time_ns
    monkeypatch.setattr(templates.time, "time_ns", lambda: now_ns() + 10_000_000_000)   # ten seconds on
    assert _read(path) == "old words\n" and len(reads) == 1      # read, now remembered
    assert _read(path) == "old words\n" and len(reads) == 1      # not read again
    path.write_text("new words\n")       # the same size, new times
    assert _read(path) == "new words\n" and len(reads) == 2
