"""The systemd units: required directives (pure Python), then systemd's own checks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"
SYSTEM = UNITS / "welcomeback.service"
USER = UNITS / "welcomeback-user.service"
SECRETS = ("google_token", "sendgrid_api_key", "smtp_password", "twilio_auth_token",
           "caldav_password")
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None,
                                   reason="systemd-analyze is not installed on this machine")


def directives(path: Path) -> dict[str, list[str]]:
    """``Key`` → every value it is set to, ignoring comments (systemd's parse rules)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or line.startswith("["):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


SYSTEM_REQUIRED = {
    "Type": "notify", "NotifyAccess": "main", "Restart": "on-failure", "WatchdogSec": "60",
    "User": "welcomeback", "Group": "welcomeback", "StateDirectory": "welcomeback", "StateDirectoryMode": "0700",
    "ConfigurationDirectory": "welcomeback", "UMask": "0077",
    "ExecStart": "/opt/welcomeback/bin/welcomeback --config /etc/welcomeback/config.toml run",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
    "NoNewPrivileges": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "ProtectClock": "yes",
    "ProtectHostname": "yes", "ProtectProc": "invisible", "ProcSubset": "pid",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "", "AmbientCapabilities": "", "DevicePolicy": "closed",
    "KeyringMode": "private", "RemoveIPC": "yes", "PrivateUsers": "yes",
}


def test_system_unit_sets_required_directives() -> None:
    found = directives(SYSTEM)
    for key, value in SYSTEM_REQUIRED.items():
        assert value in found.get(key, []), f"{key}={value} missing from {SYSTEM.name}"
    assert found["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert "DynamicUser" not in found   # the static sysusers user: its state folder stays reachable
    assert "WELCOMEBACK_CONFIG=/etc/welcomeback/config.toml" in found["Environment"]
    for key in ("RestartSec", "TimeoutStopSec", "StartLimitBurst", "StartLimitIntervalSec",
                "IPAddressDeny"):
        assert found.get(key), f"{key}= missing from {SYSTEM.name}"


def test_system_unit_never_disables_hardening_silently() -> None:
    """Each hardening line carries a comment saying why (the unit is documentation)."""
    lines = SYSTEM.read_text(encoding="utf-8").splitlines()
    hardening = re.compile(r"^(Protect|Restrict|Private|SystemCall|Capability|NoNewPriv|Memory"
                           r"Deny|LockPersonality|RemoveIPC|KeyringMode|DevicePolicy|IPAddress)")
    section_start = 0
    for number, line in enumerate(lines):
        if not line.strip() or line.startswith("# ---"):
            section_start = number
        if hardening.match(line):
            block = lines[section_start:number]
            assert any(b.startswith("#") for b in block), f"no comment above: {line}"


def test_every_secret_has_a_credential_example() -> None:
    text = SYSTEM.read_text(encoding="utf-8")
    for name in SECRETS:
        assert re.search(rf"^#?LoadCredentialEncrypted={name}:/", text, re.M), name
    assert re.search(r"^#?LoadCredential=\w+:/", text, re.M)
    assert "SetCredential=" not in directives(SYSTEM)


def test_user_unit_sets_required_directives() -> None:
    found = directives(USER)
    assert found["Type"] == ["notify"]
    assert found["ExecStart"] == ["%h/.local/bin/welcomeback --config %E/welcomeback/config.toml run"]
    assert found["ConfigurationDirectory"] == ["welcomeback"]
    assert found["WatchdogSec"] == ["60"]
    assert found["WantedBy"] == ["default.target"]
    assert "User" not in found and "DynamicUser" not in found  # a user manager runs as you


def _runnable_copy(unit: Path, tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at a binary that exists, so verify looks at the rest."""
    text = unit.read_text(encoding="utf-8")
    binary = shutil.which("true") or "/bin/true"
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={binary}", text, flags=re.M)
    copy = tmp_path / unit.name
    copy.write_text(text, encoding="utf-8")
    return copy


def _analyze(*args: str, cwd: Path, user: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="", LC_ALL="C.UTF-8")
    if user:
        runtime = cwd / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        args = ("--user", *args)
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def _complaints(result: subprocess.CompletedProcess[str], unit: Path) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines()
            if unit.name in line or re.search(r"Unknown|ignoring|Invalid|Failed", line)]


@needs_analyze
@pytest.mark.parametrize("unit", [SYSTEM, USER], ids=["system", "user"])
def test_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    copy = _runnable_copy(unit, tmp_path)
    result = _analyze("verify", str(copy), cwd=tmp_path, user=unit is USER)
    assert result.returncode == 0, result.stderr
    assert _complaints(result, copy) == []


def exposure(output: str) -> float:
    """The number on systemd-analyze's "Overall exposure level" line."""
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert match, f"no exposure line in: {output[-500:]}"
    return float(match.group(1))


@needs_analyze
def test_system_unit_exposure_at_most_2(tmp_path: Path) -> None:
    copy = _runnable_copy(SYSTEM, tmp_path)
    result = _analyze("security", "--offline=yes", "--no-pager", str(copy), cwd=tmp_path)
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze predates --offline (systemd < 250)")
    assert exposure(result.stdout) <= 2.0, result.stdout


def test_exposure_parser() -> None:
    line = "→ Overall exposure level for welcomeback.service: 1.1 OK 🙂"
    assert exposure(line) == 1.1
