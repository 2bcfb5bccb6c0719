"""HTTP(S) downloads with aiohttp: basic auth from the URL, timeouts, a byte cap, and only
to allowed addresses (every redirect is checked before it is followed)."""

from __future__ import annotations

import email.utils
import re
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp.http_exceptions import ContentLengthError, TransferEncodingError
from yarl import URL

from worker import __version__
from worker.errors import (
    FeedError,
    NoSuchFile,
    NotModified,
    SourceError,
    TransientSourceError,
    TruncatedError,
)
from worker.model import SourceOptions
from worker.settings import Settings
from worker.sources.download import Download
from worker.sources.guard import GuardedResolver, Policy
from worker.sources.tls import client_context
from worker.urls import FeedUrl, join, mask, parse

CHUNK_BYTES = 1 << 20
REDIRECTS = (301, 302, 303, 307, 308)
# A host aiohttp can connect to: a name (IDNA-encoded by yarl) or an IP literal.
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[?[0-9A-Fa-f:.]+\]?")


async def http_stream(url: FeedUrl, settings: Settings, *,
                      previous: dict[str, Any] | None = None, token: str | None = None,
                      download: Download | None = None,
                      options: SourceOptions | None = None) -> AsyncIterator[bytes]:
    """The body at the URL. With `previous` validators (ETag, Last-Modified of the last
    read), an unchanged file raises NotModified; `download` gets this response's validators
    and the next page of a `Link: <...>; rel="next"` header. A token goes as a bearer
    token when the URL carries no user. `download.transfer.vouched`: the body has a
    Content-Length or is chunked, so aiohttp tells a cut body (TruncatedError) from the
    whole one; a body delimited by the connection's close is not vouched for. A
    Content-Length over the cap fails before the body is read. `options`: the feed's
    certificates (mapping.caBundle, mapping.tlsVerify), for every connection of the
    download, redirects included."""
    download = download if download is not None else Download(url, settings.max_file_bytes)
    shown = url.shown
    target = url.parsed
    if not target.host:
        raise FeedError(f"feed URL {shown} has no host")
    policy = Policy(settings.networks())
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=settings.fetch_connect_timeout_s,
        sock_read=settings.fetch_read_timeout_s,
    )
    # gzip on the wire arrives as it was sent: the pipeline inflates it (by its magic bytes)
    # under its own cap, and feed_runs.bytes counts what was downloaded.
    headers = {"User-Agent": f"feed-worker/{__version__}", "Accept-Encoding": "gzip"}
    if target.user is not None:
        auth = {"Authorization": aiohttp.encode_basic_auth(target.user, target.password or "")}
    elif token:
        auth = {"Authorization": f"Bearer {token}"}
    else:
        auth = {}
    origin = target.origin()
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy), use_dns_cache=False,
                                     ssl=_tls(options, shown, target))
    try:
        async with aiohttp.ClientSession(timeout=timeout, headers=headers, connector=connector,
                                         auto_decompress=False) as session:
            current = target.with_user(None)
            for _ in range(settings.max_redirects + 1):
                policy.check_literal(current.host or "")
                same_origin = current.origin() == origin.with_user(None)
                request_headers = dict(auth) if same_origin else {}
                if previous:
                    if previous.get("etag"):
                        request_headers["If-None-Match"] = str(previous["etag"])
                    if previous.get("last_modified"):
                        request_headers["If-Modified-Since"] = str(previous["last_modified"])
                async with session.get(current, allow_redirects=False,
                                       headers=request_headers) as resp:
                    if resp.status in REDIRECTS:
                        current = follow(current, resp.headers.get("Location"), shown)
                        continue
                    if resp.status == 304 and previous:
                        raise NotModified(f"{shown} is unchanged (HTTP 304)")
                    _check_status(resp, shown)
                    download.validators.update(etag=resp.headers.get("ETag"),
                                               last_modified=resp.headers.get("Last-Modified"))
                    nxt = resp.links.get("next")
                    if nxt is not None and nxt.get("url"):
                        download.link_next = str(join(current, str(nxt["url"])))
                    length = resp.content_length
                    chunked = "chunked" in resp.headers.get("Transfer-Encoding", "").lower()
                    download.announce(length, vouched=chunked or length is not None)
                    received = 0
                    try:
                        async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
                            received += len(chunk)
                            yield chunk
                    except aiohttp.ClientPayloadError as exc:
                        raise _cut_short(exc, received, None if chunked else length,
                                         shown) from None
                    return
            raise SourceError(f"{shown}: more than {settings.max_redirects} redirects")
    except aiohttp.ClientConnectorCertificateError as exc:
        why = getattr(exc.certificate_error, "verify_message", None) or exc.certificate_error
        raise SourceError(f"{shown}: TLS certificate of {target.host}:{target.port} not "
                          f"trusted ({url.scrub(str(why))})") from None
    except aiohttp.ClientConnectorError as exc:
        raise TransientSourceError(
            f"cannot connect to {target.host}:{target.port} for {shown}: "
            f"{url.scrub(str(exc.os_error.strerror or exc.os_error))}"
        ) from None
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise TransientSourceError(
            f"timed out reading {shown} (connect {settings.fetch_connect_timeout_s:g} s, "
            f"read {settings.fetch_read_timeout_s:g} s)"
        ) from None
    except aiohttp.ClientPayloadError as exc:
        raise TransientSourceError(
            f"{shown}: the body was cut short or malformed ({url.scrub(type(exc).__name__)})"
        ) from None
    except aiohttp.InvalidURL:
        raise FeedError(f"feed URL {shown} is not valid") from None
    except aiohttp.ClientError as exc:
        raise TransientSourceError(
            f"download of {shown} failed: {type(exc).__name__}: {url.scrub(str(exc))}"
        ) from None


def _tls(options: SourceOptions | None, shown: str, target: URL) -> ssl.SSLContext | bool:
    """The feed's own certificate check, else aiohttp's (the system's CAs)."""
    if options is None or (options.ca_bundle is None and options.tls_verify):
        return True
    return client_context(options.ca_bundle, options.tls_verify, shown=shown,
                          server=f"{target.host}:{target.port}")


def follow(current: URL, location: str | None, shown: str) -> URL:
    """Where a redirect from `current` leads; SourceError (permanent: the server answers
    the same next time) when it leads nowhere a download may go: no or an empty Location,
    one that cannot be parsed, a scheme other than http(s) (file:, ftp:, data:, ...), or
    no valid host. Without this, aiohttp raised a ValueError on file:///etc/hostname."""
    if location is None or not location.strip():
        raise SourceError(f"{shown} redirects with {'no' if location is None else 'an empty'} "
                          "Location header")
    location = location.strip()
    try:
        given = parse(location)
        target = current.join(given)
    except (ValueError, TypeError):
        raise SourceError(f"{shown} redirects to a Location that cannot be parsed") from None
    if target.scheme not in ("http", "https"):
        raise SourceError(f"{shown} redirects to {mask(target)}: only http and https "
                          f"redirects are followed, not {target.scheme or '(no scheme)'!r}")
    if (given.scheme or location.startswith("//")) and not given.raw_host:
        # "//", "http://", "http:///x": an authority part with no host; joined, yarl
        # would quietly keep the current host (and "//" would redirect in a loop).
        written = location if given.password is None else mask(given)
        raise SourceError(f"{shown} redirects to {written!r}, which has no host")
    if not target.raw_host or not _HOST.fullmatch(target.raw_host):
        raise SourceError(f"{shown} redirects to {mask(target)}, which has no valid host")
    return target


def _cut_short(exc: aiohttp.ClientPayloadError, received: int, length: int | None,
               shown: str) -> TransientSourceError:
    """A body that ended before its framing said it would (the connection closed or reset
    early) is truncated; a body whose framing is malformed stays a failed download."""
    cause = exc.__cause__
    if isinstance(cause, ContentLengthError):
        return TruncatedError(received, f"the response's Content-Length is {length or 0:,} "
                              "bytes")
    if isinstance(cause, TransferEncodingError) and "Not enough data" in str(cause):
        return TruncatedError(received, "the chunked body ended before its last chunk")
    return TransientSourceError(f"{shown}: the body is malformed "
                                f"({type(cause or exc).__name__})")


def _check_status(resp: aiohttp.ClientResponse, shown: str) -> None:
    if resp.status >= 400:
        message = f"HTTP {resp.status} {resp.reason or ''} from {shown}"
        if resp.status >= 500 or resp.status in (408, 429):
            raise TransientSourceError(message, retry_after(resp.headers.get("Retry-After")))
        raise NoSuchFile(message) if resp.status in (404, 410) else SourceError(message)


MAX_RETRY_AFTER_S = 300.0  # a server asking for longer is waited for this long at most


def retry_after(value: str | None) -> float | None:
    """A Retry-After header's wait in seconds (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - datetime.now(UTC)).total_seconds()), MAX_RETRY_AFTER_S)
