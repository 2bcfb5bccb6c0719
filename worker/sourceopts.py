"""A feed's source options, read from its mapping JSON: which SFTP key the worker holds for
it, the SFTP host key it pins, how FTPS speaks TLS, and which certificates it trusts.

  `sftpKey`      the name of a private key given to the worker (FEED_WORKER_SFTP_KEY_DIR or
                 FEED_WORKER_SFTP_KEY): letters, digits, `.`, `_`, `-`
  `sftpHostKey`  the server's host key fingerprint as `ssh-keygen -lf` prints it
                 (`SHA256:...`), or a list of them; instead of known_hosts
  `ftpsMode`     `explicit` (AUTH TLS) or `implicit` (TLS from the first byte); without
                 it, an ftps:// URL on port 990 is implicit and any other explicit
  `caBundle`     PEM certificates that FTPS and HTTPS trust instead of the system's
  `tlsVerify`    false: FTPS and HTTPS check no certificate (logged as a warning on every
                 connection)

None of these is a secret: the keys and passphrases themselves never sit in a feed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from worker.errors import FeedError
from worker.model import SourceOptions

FTPS_MODES = ("explicit", "implicit")
_KEY_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
_PEM_CERT = "-----BEGIN CERTIFICATE-----"


def parse_source_options(data: Mapping[str, Any]) -> SourceOptions:
    """The mapping's source options; FeedError naming the key at fault."""
    key = data.get("sftpKey")
    if key is not None and (not isinstance(key, str) or not _KEY_NAME.fullmatch(key)):
        raise FeedError("mapping.sftpKey must be the name of a key given to the worker "
                        "(letters, digits, '.', '_', '-'; see FEED_WORKER_SFTP_KEY_DIR)")
    pins = data.get("sftpHostKey")
    if pins is not None:
        pins = [pins] if isinstance(pins, str) else pins
        if not isinstance(pins, list) or not pins or not all(map(is_fingerprint, pins)):
            raise FeedError("mapping.sftpHostKey must be the host key's SHA256 fingerprint as "
                            "ssh-keygen -lf prints it (SHA256:...), or a list of them")
    mode = data.get("ftpsMode", "")
    if mode not in ("", *FTPS_MODES):
        raise FeedError("mapping.ftpsMode must be explicit or implicit")
    bundle = data.get("caBundle")
    if bundle is not None and (not isinstance(bundle, str) or _PEM_CERT not in bundle):
        raise FeedError("mapping.caBundle must be PEM certificates "
                        "(-----BEGIN CERTIFICATE----- ...)")
    verify = data.get("tlsVerify", True)
    if not isinstance(verify, bool):
        raise FeedError("mapping.tlsVerify must be true or false")
    if bundle is not None and not verify:
        raise FeedError("mapping.tlsVerify false checks no certificate: "
                        "a mapping.caBundle beside it would be ignored; keep one")
    return SourceOptions(sftp_key=key, host_keys=tuple(pins or ()), ftps_mode=mode,
                         ca_bundle=bundle, tls_verify=verify)


def is_fingerprint(text: object) -> bool:
    """An OpenSSH SHA256 fingerprint: `SHA256:` and 43 characters of unpadded base64."""
    if not isinstance(text, str) or not text.startswith("SHA256:"):
        return False
    digest = text.removeprefix("SHA256:")
    try:
        return len(base64.b64decode(digest + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        return False
