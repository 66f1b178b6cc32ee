"""A private Dovecot IMAP server on loopback for the inbox tests (Debian ``dovecot-imapd``).

One instance per test module: passwd-file auth, a Maildir under a throw-away folder, a plain
port (STARTTLS offered) and an implicit-TLS port with a self-signed certificate (trustme)
whose CA the tests hand to the product as ``ca_file``.  Messages are delivered with APPEND
of real MIME bytes, which is what a mail server's delivery amounts to.
"""

from __future__ import annotations

import atexit
import imaplib
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD = "ana@riverside.example", "app-password-1"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Dovecot:
    root: Path
    port: int
    tls_port: int
    ca_file: Path

    def append(self, folder: str, raw: bytes) -> None:
        """Deliver one message into ``folder`` (created when missing)."""
        with imaplib.IMAP4("127.0.0.1", self.port) as imap:
            imap.login(USER, PASSWORD)
            imap.create(folder)
            status, _ = imap.append(folder, "", imaplib.Time2Internaldate(time.time()), raw)
            assert status == "OK"

    def flags(self, folder: str) -> list[bytes]:
        with imaplib.IMAP4("127.0.0.1", self.port) as imap:
            imap.login(USER, PASSWORD)
            imap.select(folder, readonly=True)
            _, data = imap.fetch("1:*", "(FLAGS)")
            return [d for d in data if d]

    def count(self, folder: str) -> int:
        with imaplib.IMAP4("127.0.0.1", self.port) as imap:
            imap.login(USER, PASSWORD)
            status, data = imap.select(folder, readonly=True)
            return int(data[0] or 0)

    def recreate(self, folder: str) -> None:
        """Delete and create the folder again: a new UIDVALIDITY."""
        with imaplib.IMAP4("127.0.0.1", self.port) as imap:
            imap.login(USER, PASSWORD)
            imap.delete(folder)
            imap.create(folder)


CONF = """base_dir = {d}/run
state_dir = {d}/run
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls_port}
    ssl = yes
  }}
}}
"""


def start(extra: str = "") -> Dovecot:
    """Start Dovecot in a fresh folder under /tmp (its users must traverse every parent, which
    pytest's 0700 tmp_path forbids); returns it once it answers.  ``stop`` removes the folder.
    ``extra`` is appended to its configuration (e.g. an ``imap_capability`` without IDLE)."""
    import tempfile

    import trustme

    root = Path(tempfile.mkdtemp(prefix="wb-dovecot-"))
    os.chmod(root, 0o755)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    (root / "mail").mkdir()
    shutil.chown(root / "mail", "nobody", "nogroup")
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    os.chmod(root / "users", 0o644)
    port, tls_port = free_port(), free_port()
    (root / "dovecot.conf").write_text(CONF.format(d=root, port=port, tls_port=tls_port) + extra)
    subprocess.run([DOVECOT, "-c", str(root / "dovecot.conf")], check=True)
    server = Dovecot(root, port, tls_port, root / "ca.pem")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("dovecot did not start: " + (root / "dovecot.log").read_text(errors="replace"))


def stop(server: Dovecot) -> None:
    """SIGTERM to Dovecot's master; it takes a few seconds to wind its services down, so the
    wait for it to exit and the removal of its folder happen in the background (joined at the
    latest when the test process exits)."""
    pid_file = server.root / "run" / "master.pid"
    pid = int(pid_file.read_text().strip()) if pid_file.exists() else None
    if pid is not None:
        os.kill(pid, 15)
    reaper = threading.Thread(target=_reap, args=(pid, server.root), name="dovecot-stop", daemon=True)
    reaper.start()
    _stopping.append(reaper)


def _reap(pid: int | None, root: Path) -> None:
    if pid is not None:
        for _ in range(500):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
    shutil.rmtree(root, ignore_errors=True)


_stopping: list[threading.Thread] = []
atexit.register(lambda: [t.join(15) for t in _stopping])
