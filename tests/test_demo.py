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


def test_demo_without_its_templates_says_it_did_not_work_and_exits_1(tmp_path):
    """The packaged wording shadowed by an empty package (an install that lost its templates)."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    (tmp_path / "shadow" / "welcomeback_templates").mkdir(parents=True)
    (tmp_path / "shadow" / "welcomeback_templates" / "__init__.py").write_text("")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
           "PYTHONPATH": f"{tmp_path / 'shadow'}{os.pathsep}{ROOT}"}
    run = subprocess.run([sys.executable, "-m", "daemon.cli", "demo", "--outbox", str(tmp_path / "out")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "The demo did not work: 0 message(s) instead of 3" in run.stderr
    assert "held (template)" in run.stderr
    assert "Read them with any mail program" not in run.stdout
