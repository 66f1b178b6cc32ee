"""The console over real TLS: a self-signed certificate made here with `cryptography`,
`welcomeback web` as a real process on a free port (listening on every address, which TLS
allows), /healthz over HTTPS verified against that certificate, and a sign-in whose session
cookie is Secure, HttpOnly and SameSite=Strict."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest
import requests

from daemon import config as config_mod
from daemon.engine.places import state_dir
from daemon.web.security import set_password
from tests import canary
from tests.conftest import ROOT, make_practice
from tests.test_web_cli import free_port

PASSWORD = "harbour-light-31"


def self_signed(folder):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "welcomeback test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem"


def wait_for_line(proc, wanted: str, timeout: float = 30.0) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            seen += os.read(proc.stdout.fileno(), 4096).decode()
    assert wanted in seen, (seen, proc.poll())
    return seen


@pytest.mark.real_timers
@pytest.mark.shows_client_data
def test_the_console_serves_https_and_the_session_cookie_is_secure(tmp_path):
    port = free_port()
    p = make_practice(tmp_path / "p", extra=f'[web]\nlisten = "0.0.0.0:{port}"\ntls_cert = "cert.pem"\n'
                                            'tls_key = "key.pem"\n')
    cert = self_signed(p.root)
    set_password(state_dir(config_mod.load(p.config)), PASSWORD)
    script = ROOT / ".venv" / "bin" / "welcomeback"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "daemon.cli"]
    proc = subprocess.Popen([*cmd, "--config", str(p.config), "web"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(os.environ, WELCOMEBACK_NO_KEYRING="1"))
    try:
        wait_for_line(proc, f"https://0.0.0.0:{port}/")
        base = f"https://127.0.0.1:{port}"
        health = requests.get(base + "/healthz", verify=str(cert), timeout=5)
        assert health.status_code == 200 and health.json() == {"ok": True}
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(base + "/healthz", timeout=5)          # not a certificate the system trusts
        with requests.Session() as browser:
            page = browser.get(base + "/login", verify=str(cert), timeout=5).text
            token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
            resp = browser.post(base + "/login", data={"password": PASSWORD, "csrf": token}, timeout=5, verify=str(cert),
                                allow_redirects=False)
            assert resp.status_code == 302
            cookie = resp.headers["Set-Cookie"]
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert browser.get(base + "/followups", timeout=5, verify=str(cert), allow_redirects=False).status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err.decode()
        canary.assert_no_client_data((out + err).decode(), "welcomeback web")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_forwarded_https_is_believed_from_the_trusted_proxy_only():
    from daemon.web.serve import _FromProxy

    seen = []

    def app(environ, start_response):
        seen.append(environ["wsgi.url_scheme"])
        return []

    wrapped = _FromProxy(app, "10.0.0.5")
    for addr in ("10.0.0.5", "10.0.0.6"):
        wrapped({"wsgi.url_scheme": "http", "REMOTE_ADDR": addr, "HTTP_X_FORWARDED_PROTO": "https"}, None)
    wrapped({"wsgi.url_scheme": "http", "REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_PROTO": "gopher"}, None)
    assert seen == ["https", "http", "http"]


def test_a_public_address_is_accepted_with_tls_and_refused_with_half_of_it():
    from types import SimpleNamespace

    from daemon.errors import UserError
    from daemon.web.serve import Listen, check_exposure

    public = Listen("0.0.0.0", 8765)
    check_exposure(public, SimpleNamespace(tls_cert="c.pem", tls_key="k.pem", trusted_proxy=None))
    with pytest.raises(UserError, match="tls_key is not"):
        check_exposure(public, SimpleNamespace(tls_cert="c.pem", tls_key=None, trusted_proxy=None))
    with pytest.raises(UserError, match="reachable from other machines"):
        check_exposure(public, SimpleNamespace(tls_cert=None, tls_key=None, trusted_proxy=None))
