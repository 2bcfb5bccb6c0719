"""One notification POSTed, tried again with backoff while the receiver is away or answers
408, 429 or 5xx; each try under its own timeout. Errors name the URL masked, never a secret."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from worker.errors import SourceError, TransientError
from worker.retry import RetryPolicy, describe
from worker.urls import mask, scrub

_RETRIED_STATUSES = frozenset({408, 429})
_MAX_ANSWER_BYTES = 64 * 1024  # what is read of an answer (then the connection is freed)


@dataclass(frozen=True)
class Delivery:
    sent: bool
    attempts: int
    error: str | None = None  # the last try's, masked


async def post(session: aiohttp.ClientSession, url: str, payload: bytes,
               headers: dict[str, str], policy: RetryPolicy, timeout_s: float,
               secret: str | None = None) -> Delivery:
    """POST until a 2xx answer, a refusal for good (another 4xx, an address the guard
    refuses) or the policy's last try."""
    attempt = 0
    while True:
        attempt += 1
        retry = True
        try:
            async with asyncio.timeout(timeout_s):
                async with session.post(url, data=payload, headers=headers,
                                        allow_redirects=False) as answer:
                    await answer.content.read(_MAX_ANSWER_BYTES)
                    status = answer.status
            if 200 <= status < 300:
                return Delivery(True, attempt)
            error = f"HTTP {status}"
            retry = status in _RETRIED_STATUSES or status >= 500
        except SourceError as exc:  # the address guard: not a place to send to
            error, retry = describe(exc), isinstance(exc, TransientError)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = describe(exc)
        error = _clean(f"{error} (POST {mask(url)})", url, secret)
        if not retry or attempt >= policy.attempts:
            return Delivery(False, attempt, error)
        await asyncio.sleep(policy.delay(attempt))


def _clean(text: str, url: str, secret: str | None) -> str:
    text = scrub(text, url)
    return text.replace(secret, "***") if secret else text
