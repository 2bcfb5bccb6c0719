"""Bearer tokens: `fwt_<id>_<secret>`, shown once; only SHA-256 of the secret is stored.

The secret is 32 random bytes, so a fast hash suffices (nothing to brute-force); the id
finds the row and the digests are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import asyncpg

from worker.api.cache import TtlCache
from worker.store import api as store

PREFIX = "fwt_"


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: an admin token, or a provider's token (its scope)."""

    token_id: int
    provider_id: int | None

    @property
    def admin(self) -> bool:
        return self.provider_id is None

    @property
    def scope(self) -> int | None:
        """The provider whose rows this caller may see; None: every provider's."""
        return self.provider_id


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def split(token: str) -> tuple[int, str] | None:
    """(id, secret) of a well-formed token, else None."""
    if not token.startswith(PREFIX):
        return None
    id_text, sep, secret = token[len(PREFIX):].partition("_")
    if not sep or not id_text.isdigit() or len(id_text) > 18 or len(secret) < 32:
        return None
    return int(id_text), secret


async def create(pool: asyncpg.Pool, provider_id: int | None) -> str:
    """A new token (admin when provider_id is None); the only time it is seen whole."""
    secret = secrets.token_urlsafe(32)
    token_id = await store.create_token(pool, digest(secret), provider_id)
    return f"{PREFIX}{token_id}_{secret}"


TokenCache = TtlCache[tuple[int, bytes], "Caller"]


async def authenticate(pool: asyncpg.Pool, token: str,
                       cache: TokenCache | None = None) -> Caller | None:
    """The caller a bearer token stands for; None when it is unknown, revoked or wrong.
    A token found good is kept in `cache` (its digest, never the secret) for the cache's
    time: a revoked token may be taken that long by a replica that saw it just before."""
    parts = split(token)
    if parts is None:
        return None
    token_id, secret = parts
    sha = digest(secret)
    if cache is not None and (known := cache.get((token_id, sha))) is not None:
        return known
    row = await store.token(pool, token_id)
    if row is None or not hmac.compare_digest(bytes(row["secret_sha256"]), sha):
        return None
    found = Caller(token_id, row["dropship_provider_id"])
    if cache is not None:
        cache.put((token_id, sha), found)
    return found
