"""A newcomer's first minutes, with the README's own commands: `run` says what it does, the sample
calendar shows a call task after `once --now <the README's time>`, a store polled "in the
future" is said plainly, a never-polled store needs attention, the shipped example is not a
permissions warning."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, make_practice
from tests.installed import sample_practice

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _quick_start_lines() -> list[str]:
    section = README[README.index("## Quick start"):README.index("## How it decides")]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()
            and not line.startswith("#")]


def _readme_command(pattern: str) -> str:
    (found,) = [line for line in _quick_start_lines() if re.search(pattern, line)]
    return found


def _folder(tmp_path: Path) -> Path:
    folder = sample_practice(tmp_path / "checkout").parent
    (folder / ".venv").symlink_to(Path(sys.prefix))
    return folder


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WELCOMEBACK_", "NOTIFY_SOCKET", "INVOCATION_ID"))}
    return {**env, "WELCOMEBACK_NO_KEYRING": "1"}


def _run_until(folder: Path, command: str, wanted: str, timeout: float = 60) -> str:
    """Start the README's `run`, read its log until ``wanted`` appears, then Ctrl+C (SIGINT)."""
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=folder, env=_env(),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stderr is not None
    seen, deadline = "", time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:     # unbuffered reads: select() sees every byte
        sel.register(proc.stderr, selectors.EVENT_READ)
        while wanted not in seen and time.monotonic() < deadline and proc.poll() is None:
            if sel.select(timeout=0.5):
                seen += os.read(proc.stderr.fileno(), 65536).decode("utf-8", "replace")
    proc.send_signal(signal.SIGINT)
    _, tail = proc.communicate(timeout=30)
    rest = tail.decode("utf-8", "replace")
    assert proc.returncode == 0, seen + rest
    assert wanted in seen, seen
    return seen + rest


def test_the_readme_quick_start_shows_a_call_task(tmp_path) -> None:
    folder = _folder(tmp_path)
    run = _readme_command(r"welcomeback --config config\.example\.toml run$").split("&&")[-1].strip()
    once = _readme_command(r"once --now \S+$")
    log = _run_until(folder, run, "read for the first time")
    for said in ("watching 1 calendar(s)", f"state in {folder / 'state.db'}", str(folder / "outbox"),
                 "first start", "stop with Ctrl+C"):
        assert said in log, said
    assert list((folder / "outbox").glob("*.eml")) == []       # a first start sends nothing
    done = subprocess.run(["bash", "-c", once], cwd=folder, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 follow-up(s) started" in done.stdout and "1 sent" in done.stdout
    shown = subprocess.run(["bash", "-c", _readme_command(r"^cat outbox")], cwd=folder, capture_output=True,
                           text=True, check=True)
    assert "Subject: Call Jordan" in shown.stdout
    assert "Missed: Monday, March 4 at 10:00 AM (did not come)" in shown.stdout
    later = _run_until(folder, run, "stop with")
    assert "later than now" in later and "once --now" in later


def test_status_of_a_store_never_polled_needs_attention(tmp_path, capsys) -> None:
    p = make_practice(tmp_path / "p")
    assert p.cli("status") == 1
    out = capsys.readouterr().out
    attention = out.split("Needs your attention:")[1]
    assert "never polled" in attention and "main" in attention
    assert p.cli("once", "--now", "2026-11-02T08:00:00-05:00") == 0
    capsys.readouterr()
    assert p.cli("status") == 0
    assert "never polled" not in capsys.readouterr().out


def test_the_shipped_example_is_no_permissions_warning_but_a_copy_elsewhere_is(tmp_path, capsys) -> None:
    from daemon.cli import main

    assert main(["--config", str(ROOT / "config.example.toml"), "check"]) == 0
    assert "readable by every user" not in capsys.readouterr().err
    copy = sample_practice(tmp_path / "etc")
    copy.chmod(0o644)
    assert main(["--config", str(copy), "check"]) == 0
    assert f"{copy} is readable by every user" in capsys.readouterr().err
