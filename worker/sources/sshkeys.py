"""SFTP's keys for sources/sftp.py: the client key a feed names (mapping.sftpKey), loaded
from what the worker was given, and the check of the server's host key (a feed's pinned
fingerprints, else known_hosts) that remembers what the server presented.

A feed names a key; the worker holds it: the file NAME in FEED_WORKER_SFTP_KEY_DIR (its
passphrase, if any, in NAME.passphrase), or, for the name `default`, FEED_WORKER_SFTP_KEY
(the key's text or its file's path) with FEED_WORKER_SFTP_KEY_PASSPHRASE. Keys are read
for each connection, so a replaced key file is used from the next run on. Errors name the
key and the setting, never the key's text or its passphrase.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from worker.errors import FeedError
from worker.settings import Settings

DEFAULT_KEY = "default"
_PASSPHRASE_SUFFIX = ".passphrase"  # noqa: S105 (a file name, not a secret)


def client_key(name: str, settings: Settings) -> asyncssh.SSHKey:
    """The private key a feed names, decrypted; FeedError (permanent) saying why not."""
    passphrase: str | None
    if name == DEFAULT_KEY and settings.sftp_key:
        data, where = _env_key(settings.sftp_key)
        passphrase = settings.sftp_key_passphrase or None
        passphrase_where = "FEED_WORKER_SFTP_KEY_PASSPHRASE"  # noqa: S105 (its name)
    else:
        if not settings.sftp_key_dir:
            raise FeedError(f"mapping.sftpKey names the SFTP key {name!r}, but the worker "
                            "was given no SFTP keys (FEED_WORKER_SFTP_KEY_DIR)")
        path = Path(os.path.expanduser(settings.sftp_key_dir)) / name
        where = f"{name} in FEED_WORKER_SFTP_KEY_DIR"
        data = _read(path, name, where, missing="the worker does not hold it (no file "
                                                 f"{where})")
        secret = path.with_name(name + _PASSPHRASE_SUFFIX)
        passphrase_where = f"{secret.name} in FEED_WORKER_SFTP_KEY_DIR"
        passphrase = (_read(secret, name, passphrase_where, missing="").decode()
                      .rstrip("\r\n") if secret.exists() else None) or None
    try:
        return asyncssh.import_private_key(data, passphrase)
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        text = str(exc)
        if passphrase:
            text = text.replace(passphrase, "***")
        lowered = text.lower()
        if "passphrase must be specified" in lowered:
            raise FeedError(f"the SFTP key {name!r} ({where}) has a passphrase, and the worker "
                            f"was given none ({passphrase_where})") from None
        if "incorrect passphrase" in lowered or "unable to decrypt" in lowered:
            raise FeedError(f"the SFTP key {name!r} ({where}) cannot be decrypted: wrong "
                            f"passphrase ({passphrase_where})") from None
        raise FeedError(f"the SFTP key {name!r} ({where}) cannot be read: {text} "
                        "(an OpenSSH or PEM private key is needed)") from None


def _env_key(value: str) -> tuple[bytes, str]:
    """FEED_WORKER_SFTP_KEY: the key's text, or the path of its file."""
    if "-----BEGIN" in value or "\n" in value:
        return value.encode(), "FEED_WORKER_SFTP_KEY"
    path = Path(os.path.expanduser(value.strip()))
    return _read(path, DEFAULT_KEY, "the file FEED_WORKER_SFTP_KEY names",
                 missing="its file does not exist"), "the file FEED_WORKER_SFTP_KEY names"


def _read(path: Path, name: str, where: str, *, missing: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FeedError(f"mapping.sftpKey names the SFTP key {name!r}, but {missing}") from None
    except OSError as exc:
        raise FeedError(f"the SFTP key {name!r} cannot be read ({where}): "
                        f"{exc.strerror or type(exc).__name__}") from None


class HostKeyCheck(asyncssh.SSHClient):
    """The client side of one connection: trusts a host key whose SHA256 fingerprint the
    feed pins, and remembers the fingerprint the server presented, for the error."""

    def __init__(self, pins: tuple[str, ...]) -> None:
        self.pins = pins
        self.presented: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        # asyncssh asks here for a key its known_hosts did not trust (none, with pins).
        self.presented = key.get_fingerprint("sha256")
        return self.presented in self.pins
