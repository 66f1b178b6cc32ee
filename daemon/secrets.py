"""Secrets by fixed name, never from the config file.

``x_y`` is looked up as ``$CREDENTIALS_DIRECTORY/x_y`` (systemd credentials),
then in the keyring (service ``welcomeback``), then in ``$WELCOMEBACK_X_Y``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from daemon.errors import SecretMissing, UserError

log = logging.getLogger(__name__)
SERVICE = "welcomeback"
KNOWN = ("google_token", "google_client", "sendgrid_api_key", "smtp_password", "twilio_auth_token", "caldav_password",
         "imap_password")


def _env_name(name: str) -> str:
    return "WELCOMEBACK_" + name.upper()


def places(name: str) -> list[str]:
    return [f"$CREDENTIALS_DIRECTORY/{name}", f"keyring service '{SERVICE}' entry '{name}'",
            f"environment variable {_env_name(name)}"]


def _keyring_get(name: str) -> str | None:
    try:
        import keyring
        from keyring.errors import KeyringError

        try:
            return keyring.get_password(SERVICE, name)
        except (KeyringError, RuntimeError, OSError):
            return None
    except Exception:  # no usable backend on a headless server is normal
        return None


def lookup(name: str) -> str:
    """Return the secret ``name``; raises SecretMissing naming the three places looked."""
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if folder:
        path = Path(folder) / name
        try:
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot read credential %s: %s", name, exc.strerror)
    if os.environ.get("WELCOMEBACK_NO_KEYRING") != "1":
        value = _keyring_get(name)
        if value:
            return value
    value = os.environ.get(_env_name(name))
    if value:
        return value
    raise SecretMissing(name, places(name))


def available(name: str) -> bool:
    try:
        lookup(name)
        return True
    except SecretMissing:
        return False


def set_secret(name: str, value: str) -> None:
    """Store ``name`` in the keyring; raises UserError when no keyring backend works."""
    try:
        import keyring

        keyring.set_password(SERVICE, name, value)
    except Exception as exc:
        raise UserError(f"cannot write secret '{name}' to the keyring ({type(exc).__name__}); on a "
                        f"server use systemd credentials (LoadCredentialEncrypted={name}:...) or the "
                        f"environment variable {_env_name(name)}") from None


def delete_secret(name: str) -> None:
    """Remove ``name`` from the keyring; raises UserError when it cannot."""
    try:
        import keyring

        keyring.delete_password(SERVICE, name)
    except Exception as exc:
        raise UserError(f"cannot delete secret '{name}' from the keyring ({type(exc).__name__})") from None
