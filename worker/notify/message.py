"""What a notification says and how it is signed: pure, no I/O.

The body is JSON (schemas/notification.schema.json): the event, the feed, and the run's
report in the shape of the feed.run-completed event. The signature is HMAC-SHA256 of
"<timestamp>.<body>" under the secret, so a receiver that checks the time refuses a
body replayed later as well as one changed on the way."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from worker import constants as C
from worker.messages import encode_run_completed

FAILED, HELD, REJECTS, STALE = "run.failed", "run.held", "run.rejects", "feed.stale"
EVENTS = (FAILED, HELD, REJECTS, STALE)


def run_event(status: str, rows_read: int, rejected: int, rejected_share: float) -> str | None:
    """The event a pull's end makes, or None: failed, held, or succeeded with more than
    `rejected_share` of the records it read rejected."""
    if status == "failed":
        return FAILED
    if status == "held":
        return HELD
    if status == "succeeded" and rejected > 0 and rejected / max(rows_read, 1) > rejected_share:
        return REJECTS
    return None


def may_notify(status: str, rejected: int) -> bool:
    """Whether a pull's end may make an event at all, before any threshold is read."""
    return status in ("failed", "held") or (status == "succeeded" and rejected > 0)


def body(event: str, feed_id: int, feed_name: str, *, run: dict[str, Any] | None = None,
         feed_disabled: str | None = None, stale: dict[str, Any] | None = None,
         now: datetime | None = None) -> bytes:
    """The JSON POSTed; `run` a feed_runs row (as runs.get_run returns it)."""
    return orjson.dumps({
        "event": event,
        "feedId": feed_id,
        "feedName": feed_name,
        "at": (now or datetime.now(UTC)).isoformat(),
        "run": orjson.loads(encode_run_completed(run)) if run else None,
        "feedDisabled": feed_disabled,
        "stale": stale,
    })


def signature(secret: str, timestamp: int, payload: bytes) -> str:
    """'sha256=<hex>' of "<timestamp>.<payload>" under `secret`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def headers(secret: str | None, event: str, key: str, payload: bytes,
            timestamp: int | None = None) -> dict[str, str]:
    """The POST's headers; no signature without a secret."""
    ts = int(time.time()) if timestamp is None else timestamp
    out = {"Content-Type": "application/json", C.HEADER_NOTIFY_EVENT: event,
           C.HEADER_NOTIFY_DELIVERY: key, C.HEADER_NOTIFY_TIMESTAMP: str(ts)}
    if secret:
        out[C.HEADER_NOTIFY_SIGNATURE] = signature(secret, ts, payload)
    return out


def verify(secret: str, timestamp: str | None, signed: str | None, payload: bytes, *,
           tolerance_s: float = 300.0, now: float | None = None) -> bool:
    """What a receiver checks: the signature matches and was made within `tolerance_s`."""
    if not timestamp or not signed or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), payload), signed)
