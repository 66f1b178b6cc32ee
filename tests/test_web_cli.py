"""`welcomeback web set-password`, `web --listen`, and `run` serving the console beside the jobs
(a real process: READY, the watchdog, /healthz, SIGTERM)."""

from __future__ import annotations

import io
import os
import signal
import socket
import stat
import subprocess
import sys

import pytest
import requests

from daemon.cli import main
from tests import canary
from tests.conftest import ROOT, make_practice
from tests.test_service import Notifications, ready


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_set_password_reads_stdin_and_keeps_only_a_0600_hash(tmp_path, monkeypatch, capsys):
    p = make_practice(tmp_path / "p")
    monkeypatch.setattr(sys, "stdin", io.StringIO("quiet-river-77\n"))
    assert p.cli("web", "set-password") == 0
    path = p.root / "web-password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("$argon2") and "quiet-river-77" not in path.read_text()
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert p.cli("web", "set-password") == 2
    assert "at least 8 characters" in capsys.readouterr().err


@pytest.mark.parametrize("extra,args,message", [
    ("", ["--listen", "0.0.0.0:8765"], "reachable from other machines"),
    ("", ["--listen", "nonsense"], "is not HOST:PORT"),
    ('[web]\nlisten = "192.0.2.10:8765"\n', [], "trusted_proxy"),
    ('[web]\nlisten = "127.0.0.1:99999"\n', [], "web"),
    ('[web]\nlisten = "127.0.0.1:8765"\ncolour = "blue"\n', [], "colour"),
])
def test_web_refuses_what_it_must_with_exit_2(tmp_path, capsys, extra, args, message):
    p = make_practice(tmp_path / "p", extra=extra)
    assert p.cli("web", *args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("web,message", [
    ('tls_cert = "missing.pem"\ntls_key = "key.pem"\n', "[web] tls_cert = '"),
    ('tls_cert = "cert.pem"\ntls_key = "missing.pem"\n', "[web] tls_key = '"),
    ('tls_cert = "garbage.pem"\ntls_key = "garbage.pem"\n', "not a certificate and its private key"),
    ('tls_cert = "cert.pem"\n', "[web] tls_cert is set but [web] tls_key is not"),
])
def test_unusable_tls_files_exit_2_naming_the_key(tmp_path, capsys, web, message):
    p = make_practice(tmp_path / "p", extra=f'[web]\nlisten = "127.0.0.1:{free_port()}"\n{web}')
    (p.root / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (p.root / "garbage.pem").write_text("not pem at all\n")
    assert p.cli("web") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _run(config, notes):
    env = dict(os.environ, NOTIFY_SOCKET=str(notes.path), WELCOMEBACK_NO_KEYRING="1", WATCHDOG_USEC="2000000")
    script = ROOT / ".venv" / "bin" / "welcomeback"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "daemon.cli"]
    return subprocess.Popen([*cmd, "--config", str(config), "run"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.real_timers
def test_run_serves_the_console_and_still_pings_the_watchdog_and_stops_on_sigterm(tmp_path):
    port = free_port()
    p = make_practice(tmp_path / "p", extra=f'[web]\nlisten = "127.0.0.1:{port}"\n')
    notes = Notifications(tmp_path / "notify.sock")
    proc = _run(p.config, notes)
    try:
        notes.wait_for(ready, timeout=30)
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 200 and health.json() == {"ok": True}
        page = requests.get(f"http://127.0.0.1:{port}/followups", timeout=5, allow_redirects=False)
        assert page.status_code == 302 and page.headers["Location"].endswith("/login")
        notes.wait_for(lambda f: f.get("WATCHDOG") == "1", timeout=10)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err.decode()
        canary.assert_no_client_data((out + err).decode(), "welcomeback run")
        notes.wait_for(lambda f: f.get("STOPPING") == "1", timeout=5)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notes.close()


@pytest.mark.real_timers
def test_run_with_a_public_address_and_no_tls_exits_2_before_ready(tmp_path):
    p = make_practice(tmp_path / "p", extra='[web]\nlisten = "0.0.0.0:8765"\n')
    notes = Notifications(tmp_path / "notify.sock")
    try:
        proc = _run(p.config, notes)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 2 and b"reachable from other machines" in err
        with pytest.raises(AssertionError):
            notes.wait_for(ready, timeout=0.3)   # it has exited: whatever it sent is queued already
    finally:
        notes.close()
