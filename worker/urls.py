"""Feed URLs: parsed once into a FeedUrl, credentials parsed out, and a masked form safe
to show anywhere."""

from __future__ import annotations

import re
from dataclasses import dataclass

from yarl import URL

from worker.errors import FeedError


def parse(text: str) -> URL:
    """The URL in a string; ValueError (or TypeError) when it cannot be parsed."""
    return URL(text)


def join(base: URL, link: str) -> URL:
    """A link (absolute, or relative to `base`) as an absolute URL; ValueError when it
    cannot be parsed."""
    return base.join(parse(link))


def _parsed(text: str) -> URL | None:
    try:
        return parse(text)
    except (ValueError, TypeError):
        return None


# A comma that a URL's scheme follows separates two URLs of a list (AMQP_URL's nodes); a
# comma anywhere else is part of a URL (a Postgres DSN's hosts, a password).
_LIST_COMMA = re.compile(r"\s*,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def several(text: str) -> list[str]:
    """The URLs of a comma-separated list of whole URLs (`amqp://h1/v,amqp://h2/v`): each
    starts with its scheme; one URL alone is a list of one."""
    return [part for part in _LIST_COMMA.split(text.strip()) if part]


def mask(url: str | URL | FeedUrl) -> str:
    """The URL with its password (and any token in it) replaced by ***; each URL of a
    comma-separated list so."""
    if isinstance(url, FeedUrl):
        return url.shown
    if isinstance(url, str) and len(parts := several(url)) > 1:
        return ",".join(mask(part) for part in parts)
    u = url if isinstance(url, URL) else _parsed(url)
    if u is None:
        return "<unparseable URL>"
    if u.password is not None:
        u = u.with_password("***")
    return str(u)


def scrub(text: str, *urls: str | None) -> str:
    """Remove every password of the given URLs (or lists of URLs) from a text (an error
    message, say)."""
    secrets: set[str] = set()
    for raw in urls:
        for each in {raw, *several(raw)} if raw else ():
            u = _parsed(each)
            if u is not None:
                secrets.update(s for s in (u.password, u.raw_password) if s)
    for secret in sorted(secrets, key=len, reverse=True):  # "pw2" before "pw"
        text = text.replace(secret, "***")
    return text


def _scrubbed(text: str, u: URL) -> str:
    for secret in (u.password, u.raw_password):
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True, eq=False)
class FeedUrl:
    """A feed's URL, parsed once where it enters the sources; str() and repr() show it
    masked, so it cannot leak its password into a log or an error by accident."""

    parsed: URL
    shown: str  # the masked form, for errors and logs

    @classmethod
    def parse(cls, text: str) -> FeedUrl:
        """FeedError (permanent: the feed's settings are wrong) when it cannot be parsed."""
        parsed = _parsed(text)
        if parsed is None:
            raise FeedError(f"feed URL {mask(text)} cannot be parsed")
        return cls.of(parsed)

    @classmethod
    def of(cls, parsed: URL) -> FeedUrl:
        return cls(parsed, mask(parsed))

    @property
    def scheme(self) -> str:
        """Lower case ("" when there is none)."""
        return self.parsed.scheme.lower()

    @property
    def host(self) -> str | None:
        return self.parsed.host

    @property
    def port(self) -> int | None:
        """The port, or the scheme's default (None when yarl knows no default)."""
        return self.parsed.port

    @property
    def explicit_port(self) -> int | None:
        return self.parsed.explicit_port

    def server(self, schemes: tuple[str, ...], default_port: int) -> tuple[str, int]:
        """Host and port of a feed URL that must have one of these schemes; FeedError
        naming what is wrong otherwise."""
        if self.scheme not in schemes:
            names = " or ".join(f"{s}://" for s in schemes)
            raise FeedError(f"feed URL {self.shown} is not an {names} URL")
        if not self.host:
            raise FeedError(f"feed URL {self.shown} has no host")
        try:
            return self.host, self.explicit_port or default_port
        except ValueError:
            raise FeedError(f"feed URL {self.shown} has an invalid port") from None

    @property
    def user(self) -> str | None:
        return self.parsed.user

    @property
    def password(self) -> str | None:
        return self.parsed.password

    @property
    def path(self) -> str:
        """Percent-decoded."""
        return self.parsed.path

    @property
    def raw_path(self) -> str:
        return self.parsed.raw_path

    def join(self, link: str) -> FeedUrl:
        """A link found at this URL (a next page), absolute or relative to it; ValueError
        when it cannot be parsed."""
        return FeedUrl.of(join(self.parsed, link))

    def scrub(self, text: str) -> str:
        """The text without this URL's password (percent-encoded or not)."""
        return _scrubbed(text, self.parsed)

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:
        return f"FeedUrl({self.shown!r})"
