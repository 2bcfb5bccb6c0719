"""Dead letters as data: what one says about itself, which ones a replay selects, and the
headers it goes back with. Pure: no broker, no database (worker/replay.py does the I/O).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from worker import constants as C

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `7d`: a whole number and one unit."""
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 2h or 7d")
    return timedelta(seconds=int(m[1]) * _UNIT_S[m[2]])


@dataclass(frozen=True)
class DeadLetter:
    """What a dead-lettered message says about itself."""

    message_id: str | None
    routing_key: str  # where it was first published, and where replay sends it
    reason: str  # x-feed-worker-error, or `broker: <x-death reason>`
    body: bytes
    dead_lettered_at: datetime | None
    replay_id: str | None  # set when it was dead-lettered again after a replay
    # It carries a time that orders it among other updates of its items (timestamp_in_ms,
    # x-first-received-at, or x-death). Without one, a replayed update counts as new.
    ordered: bool = True

    @property
    def feed_id(self) -> int | None:
        """The body's feedId; None for a body that is not a JSON object with one."""
        try:
            data = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None
        feed = data.get("feedId") if isinstance(data, dict) else None
        return feed if isinstance(feed, int) and not isinstance(feed, bool) else None


def describe(headers: Mapping[str, Any] | None, routing_key: str | None,
             message_id: str | None, body: bytes) -> DeadLetter:
    headers = headers or {}
    reason = text(headers.get(C.HEADER_ERROR))
    if not reason:  # dead-lettered by the broker itself (the delivery limit, a TTL)
        deaths = _deaths(headers)
        why = text(deaths[0].get("reason")) if deaths else ""
        reason = f"broker: {why or 'unknown'}"
    return DeadLetter(
        message_id=message_id,
        routing_key=text(headers.get(C.HEADER_ORIGINAL_ROUTING_KEY)) or routing_key or "",
        reason=reason,
        body=body,
        dead_lettered_at=_iso(headers.get(C.HEADER_DEAD_LETTERED_AT)) or earliest_death(headers),
        replay_id=text(headers.get(C.HEADER_REPLAY_ID)) or None,
        ordered=any(headers.get(h) for h in (C.HEADER_TIMESTAMP_MS, C.HEADER_FIRST_RECEIVED,
                                             C.HEADER_DEATH)),
    )


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command takes: every given filter must match (none: all)."""

    message_ids: frozenset[str] | None = None
    reason: str | None = None
    feed_id: int | None = None
    older_than: timedelta | None = None

    def matches(self, dead: DeadLetter, now: datetime) -> bool:
        if self.message_ids is not None and dead.message_id not in self.message_ids:
            return False
        if self.reason is not None and self.reason.casefold() not in dead.reason.casefold():
            return False
        if self.feed_id is not None and dead.feed_id != self.feed_id:
            return False
        # A dead letter that does not say when it was dead-lettered is never "older".
        return self.older_than is None or (
            dead.dead_lettered_at is not None
            and now - dead.dead_lettered_at > self.older_than)


def replay_headers(headers: Mapping[str, Any] | None, replay_id: str) -> dict[str, Any]:
    """The headers a dead letter is sent back with: its own and the publisher's, including
    its order times (timestamp_in_ms, x-first-received-at), so that an update older than
    the stored item's is skipped as stale; without the record of its dead-lettering; with
    this replay's id. A broker dead letter that never reached the worker gets its first
    x-death time as x-first-received-at: it must not count as brand new."""
    source = dict(headers or {})
    out = {k: v for k, v in source.items()
           if k not in C.DEAD_LETTER_HEADERS and not k.startswith(C.DEAD_LETTER_HEADER_PREFIXES)}
    if C.HEADER_FIRST_RECEIVED not in out:
        first = earliest_death(source)
        if first is not None:
            out[C.HEADER_FIRST_RECEIVED] = first.isoformat()
    out[C.HEADER_REPLAY_ID] = replay_id
    return out


def earliest_death(headers: Mapping[str, Any]) -> datetime | None:
    """The earliest `time` of the broker's x-death entries (one per queue and reason)."""
    times = [t for t in (_when(d.get("time")) for d in _deaths(headers)) if t is not None]
    return min(times) if times else None


def _deaths(headers: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    deaths = headers.get(C.HEADER_DEATH)
    return [d for d in deaths if isinstance(d, Mapping)] if isinstance(deaths, list) else []


def _when(v: object) -> datetime | None:
    """An AMQP timestamp (a naive datetime in UTC, or seconds since the epoch)."""
    if isinstance(v, datetime):
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return datetime.fromtimestamp(v, UTC)
    return None


def _iso(v: object) -> datetime | None:
    try:
        t = datetime.fromisoformat(text(v)) if v else None
    except ValueError:
        return None
    return t if t is None or t.tzinfo is not None else t.replace(tzinfo=UTC)


def text(v: object) -> str:
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return "" if v is None else str(v)
