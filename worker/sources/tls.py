"""The TLS context a download checks its server's certificate with: the feed's own CA
bundle (mapping.caBundle) instead of the system's CAs, or, with mapping.tlsVerify false,
no check at all, logged as a warning (source.tls_unverified) on every connection. FTPS
(sources/ftpconn.py) and HTTPS (sources/http.py) share it."""

from __future__ import annotations

import ssl

from worker import logs
from worker.errors import FeedError

log = logs.get(__name__)


def client_context(ca_bundle: str | None, verify: bool, *, shown: str,
                   server: str) -> ssl.SSLContext:
    """`shown`: the masked URL, `server`: host:port, both for the warning."""
    if not verify:
        log.warning("source.tls_unverified", source=shown, server=server,
                    reason="mapping.tlsVerify is false: the server's certificate is not "
                           "checked")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cadata=ca_bundle)
    except (ssl.SSLError, ValueError) as exc:
        raise FeedError(f"mapping.caBundle cannot be read as PEM certificates "
                        f"({getattr(exc, 'reason', None) or exc})") from None
