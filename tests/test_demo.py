"""The demo tells the whole story and leaves exactly the expected messages."""

from __future__ import annotations

import pytest

from daemon.cli import main


@pytest.mark.shows_client_data
def test_demo_story(tmp_path, capsys):
    assert main(["demo", "--outbox", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "Jordan Avery: no show detected" in out
    assert "Jordan Avery: step 2 (email to the client) not sent: rebooked" in out
    assert "Priya" not in out.split("Priya cancels")[1].split("Tue 03")[0].replace("Priya cancels", "")
    assert "Sam Okafor: step 2 sent (email to the client)" in out
    mails = sorted((tmp_path / "out").glob("*.eml"))
    assert len(mails) == 3
    texts = [m.read_text() for m in mails]
    assert sum("To: Ana Ruiz <ana@riverside.example>" in t for t in texts) == 2
    assert sum("sam.okafor@example.net" in t for t in texts) == 1
