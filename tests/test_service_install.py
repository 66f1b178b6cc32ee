"""The README's "Install as a system service", followed step by step into a scratch root and
run as the unprivileged service user (there is no systemd as PID 1 here: `systemctl`,
`systemd-creds` and the unit's sandbox are not exercised; the wheel's virtualenv stands in for
/opt/welcomeback)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.installed import ROOT, clean_env, wheel_venv

README = (ROOT / "README.md").read_text(encoding="utf-8")
UNIT = (ROOT / "systemd" / "welcomeback.service").read_text(encoding="utf-8")
EXAMPLE = (ROOT / "config.example.toml").read_text(encoding="utf-8")
NEEDS_PID1 = ("systemctl", "systemd-creds")
TOOLS = ("systemd-sysusers", "setpriv", "install")

pytestmark = [pytest.mark.installed,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it creates a system user in a "
                                 "scratch root and runs welcomeback as that user"),
              pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                 reason=f"needs {', '.join(TOOLS)}")]


def _install_block() -> list[str]:
    section = README[README.index("## Install as a system service"):]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _written_paths() -> dict[str, str]:
    """The absolute paths the README's edit step asks for: store, outbox, templates."""
    found = dict(re.findall(r"\[(store|channels\.email|templates)\] (?:path|outbox|folder) = \"(/[^\"]+)\"",
                            README[README.index("## Install as a system service"):]))
    assert set(found) == {"store", "channels.email", "templates"}, found
    return found


class Scratch:
    """A scratch root the README's commands are pointed at; ids of the user sysusers made there."""

    def __init__(self, base: Path, venv: Path) -> None:
        self.root = base
        self.venv = venv
        self.uid = self.gid = -1

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def rewrite(self, line: str) -> str | None:
        """The README line aimed at the scratch root, or None for what needs systemd as PID 1."""
        if line.startswith(("python3 -m venv",)) or line.split()[0] in NEEDS_PID1:
            return None
        line = line.replace("/opt/welcomeback/bin/welcomeback", str(self.venv / "bin" / "welcomeback"))
        line = re.sub(r"(?<![\w/.-])/(etc|var)/", lambda m: f"{self.root}/{m.group(1)}/", line)
        line = re.sub(r"\bsystemd-sysusers$", f"systemd-sysusers --root={self.root}", line)
        line = line.replace("runuser -u welcomeback --", f"setpriv --reuid={self.uid} --regid={self.gid} --clear-groups --")
        return line.replace("-o welcomeback", f"-o {self.uid}").replace("-g welcomeback", f"-g {self.gid}")

    def learn_ids(self) -> None:
        passwd = self.path("/etc/passwd").read_text()
        uid, gid = re.search(r"^welcomeback:x:(\d+):(\d+):", passwd, re.M).groups()  # type: ignore[union-attr]
        self.uid, self.gid = int(uid), int(gid)

    def as_service(self, *args: str, uid: int | None = None, env: dict[str, str] | None = None,
                   **kw) -> subprocess.CompletedProcess[str]:
        """As the service user, or as another (``uid``, in a group of its own)."""
        gid = self.gid if uid is None else uid
        command = ["setpriv", f"--reuid={self.uid if uid is None else uid}", f"--regid={gid}",
                   "--clear-groups", "--", str(self.venv / "bin" / "welcomeback"),
                   "--config", str(self.path("/etc/welcomeback/config.toml")), *args]
        return subprocess.run(command, cwd="/", env=env or self.env(), capture_output=True, text=True,
                              timeout=kw.pop("timeout", 180), **kw)

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(HOME=str(self.path("/var/lib/welcomeback")), **extra)


@pytest.fixture
def scratch():
    base = Path(tempfile.mkdtemp(prefix="welcomeback-root-", dir="/tmp"))
    base.chmod(0o755)
    for skeleton in ("etc/sysusers.d", "etc/systemd/system", "var/lib"):   # what a systemd system has
        (base / skeleton).mkdir(parents=True, mode=0o755)
    try:
        yield Scratch(base, wheel_venv())
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _follow_readme(scratch: Scratch) -> list[str]:
    """Run the README's install block as written, pointed at the scratch root; returns what ran."""
    ran = []
    for original in _install_block():
        line = scratch.rewrite(original)
        if line is None:
            continue
        if "runuser" in original:                    # before the check: the README's edit step
            _edit_config(scratch)
        done = subprocess.run(["bash", "-c", line], cwd=ROOT, env=scratch.env(), capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, f"{original}\n{done.stdout}{done.stderr}"
        if "systemd-sysusers" in original:
            scratch.learn_ids()
        ran.append(original)
    return ran


def _edit_config(scratch: Scratch) -> None:
    """The README's edit step: absolute paths for everything the service writes."""
    config = scratch.path("/etc/welcomeback/config.toml")
    paths = _written_paths()
    text = config.read_text()
    for key, old, target in (("path", '"state.db"', paths["store"]), ("outbox", '"outbox"', paths["channels.email"]),
                             ("folder", '"my-templates"', paths["templates"])):
        assert f"{key} = {old}" in text
        text = text.replace(f"{key} = {old}", f'{key} = "{scratch.path(target)}"', 1)
    config.write_text(text)                          # as root: owner and mode stay


def _owner_mode(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_the_readme_system_service_install_runs_as_the_service_user(scratch) -> None:
    ran = _follow_readme(scratch)
    assert any("systemd-sysusers" in line for line in ran) and any("runuser" in line for line in ran)
    assert scratch.uid > 0
    config = scratch.path("/etc/welcomeback/config.toml")
    state = scratch.path("/var/lib/welcomeback")
    assert _owner_mode(config) == (0, scratch.gid, 0o640)
    assert _owner_mode(state) == (scratch.uid, scratch.gid, 0o700)

    checked = scratch.as_service("check")
    assert checked.returncode == 0, checked.stderr
    assert "readable by every user" not in checked.stderr
    first = scratch.as_service("once")
    assert first.returncode == 0, first.stderr
    later = scratch.as_service("once", "--now", "2030-03-05T10:30:00-05:00")
    assert later.returncode == 0 and "1 sent" in later.stdout, later.stderr
    (task,) = (state / "outbox").glob("*.eml")
    assert _owner_mode(state / "state.db") == (scratch.uid, scratch.gid, 0o600)
    assert _owner_mode(state / "outbox")[::2] == (scratch.uid, 0o700)
    assert _owner_mode(task)[::2] == (scratch.uid, 0o600)
    assert "Subject: Call Jordan" in task.read_text()

    stranger = scratch.as_service("check", uid=scratch.uid + 1)
    assert stranger.returncode == 2 and "cannot read config file" in stranger.stderr


def test_the_service_starts_as_its_user_and_says_ready(scratch) -> None:
    _follow_readme(scratch)
    notify = scratch.root / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        notify.chmod(0o777)
        sock.settimeout(60)
        command = ["setpriv", f"--reuid={scratch.uid}", f"--regid={scratch.gid}", "--clear-groups", "--",
                   str(scratch.venv / "bin" / "welcomeback"), "--config",
                   str(scratch.path("/etc/welcomeback/config.toml")), "run"]
        proc = subprocess.Popen(command, cwd="/", env=scratch.env(NOTIFY_SOCKET=str(notify)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            messages = ""
            while "READY=1" not in messages:
                messages += sock.recv(4096).decode()
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stop with: systemctl stop welcomeback" in err
    assert _owner_mode(scratch.path("/var/lib/welcomeback/state.db"))[0] == scratch.uid


def test_the_readme_unit_and_example_config_name_the_same_paths() -> None:
    paths = _written_paths()
    assert paths == {"store": "/var/lib/welcomeback/state.db", "channels.email": "/var/lib/welcomeback/outbox",
                     "templates": "/var/lib/welcomeback/templates"}
    for path in paths.values():
        assert f'"{path}"' in EXAMPLE, f"config.example.toml does not mention {path}"
        assert path in UNIT, f"the unit's comments do not mention {path}"
    assert "ExecStart=/opt/welcomeback/bin/welcomeback --config /etc/welcomeback/config.toml run" in UNIT
    assert "StateDirectory=welcomeback" in UNIT and "User=welcomeback" in UNIT
    block = "\n".join(_install_block())
    assert "/opt/welcomeback/bin/pip install" in block and "/etc/welcomeback/config.toml" in block
    assert "-o root -g welcomeback config.example.toml /etc/welcomeback/config.toml" in block
    assert "install -d -m 0700 -o welcomeback -g welcomeback /var/lib/welcomeback" in block
    assert "/etc/welcomeback/config.toml (root:welcomeback 0640)" in EXAMPLE
