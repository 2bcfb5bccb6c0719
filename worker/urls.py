"""Feed URLs: credentials parsed out, and a masked form safe to show anywhere."""

from __future__ import annotations

from yarl import URL


def mask(url: str | URL) -> str:
    """The URL with its password (and any token in it) replaced by ***."""
    try:
        u = url if isinstance(url, URL) else URL(url)
    except (ValueError, TypeError):
        return "<unparseable URL>"
    if u.password is not None:
        u = u.with_password("***")
    return str(u)


def scrub(text: str, *urls: str | None) -> str:
    """Remove every password of the given URLs from a text (an error message, say)."""
    for raw in urls:
        if not raw:
            continue
        try:
            u = URL(raw)
        except (ValueError, TypeError):
            continue
        for secret in (u.password, u.raw_password):
            if secret:
                text = text.replace(secret, "***")
    return text
