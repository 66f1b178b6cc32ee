"""The wheel, installed into a fresh virtualenv with the core dependencies only, as users get it.

Built once per test process.  ``.ci/run`` builds and installs the wheel before the suite and
hands its virtualenv over (``WELCOMEBACK_WHEEL_VENV``, ``WELCOMEBACK_WHEEL``), so the work is
not done twice.  The virtualenv lives in a world-readable folder under /tmp: the service-user
test runs it as an unprivileged uid.  Without the extras, twilio, caldav and psycopg are
missing there: the missing-library tests rely on it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _made(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    atexit.register(shutil.rmtree, path, True)
    return path


@lru_cache(maxsize=None)
def wheel() -> Path:
    """The built wheel of this checkout."""
    given = os.environ.get("WELCOMEBACK_WHEEL")
    if given and Path(given).is_file():
        return Path(given)
    out = _made("welcomeback-dist-")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    (built,) = out.glob("welcomeback-*.whl")
    return built


@lru_cache(maxsize=None)
def wheel_venv() -> Path:
    """A virtualenv with the wheel installed (core dependencies only)."""
    given = os.environ.get("WELCOMEBACK_WHEEL_VENV")
    if given and (Path(given) / "bin" / "welcomeback").is_file():
        return Path(given)
    venv = _made("welcomeback-wheel-")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel())],
                   check=True, capture_output=True, timeout=900)
    return venv


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would point Python at the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "WELCOMEBACK_", "VIRTUAL_ENV"))}
    env.update({"WELCOMEBACK_NO_KEYRING": "1", **extra})
    return env


def welcomeback(venv: Path, *args: str, cwd: Path, env: dict[str, str] | None = None,
                timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the installed console script from ``cwd``."""
    return subprocess.run([str(venv / "bin" / "welcomeback"), *args], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def sample_practice(folder: Path) -> Path:
    """config.example.toml and examples/ copied into ``folder`` (outside the checkout)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config.example.toml", folder / "config.example.toml")
    shutil.copytree(ROOT / "examples", folder / "examples", dirs_exist_ok=True)
    return folder / "config.example.toml"
