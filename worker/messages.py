"""Message bodies, decoded and validated (the JSON Schemas in schemas/ say the same)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from worker.errors import DEAD_NOT_JSON, BadMessage

MAX_ID = 2**63 - 1  # ids are Postgres bigints


@dataclass(frozen=True)
class PullRequest:
    feed_id: int
    force: bool = False


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"body is not JSON: {exc}", DEAD_NOT_JSON) from None
    if not isinstance(data, dict):
        raise BadMessage(f"body must be a JSON object, not {type(data).__name__}")
    return data


def _feed_id(data: dict[str, Any]) -> int:
    if "feedId" not in data:
        raise BadMessage("body lacks feedId")
    feed_id = data["feedId"]
    if isinstance(feed_id, bool) or not isinstance(feed_id, int) or not 0 < feed_id <= MAX_ID:
        raise BadMessage(f"feedId must be a positive integer, not {feed_id!r}"[:200])
    return feed_id


def _only(data: dict[str, Any], *allowed: str) -> None:
    unknown = set(data) - set(allowed)
    if unknown:
        raise BadMessage(f"unknown properties: {', '.join(sorted(unknown))}"[:300])


def decode_pull(body: bytes) -> PullRequest:
    data = _object(body)
    feed_id = _feed_id(data)
    _only(data, "feedId", "force")
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise BadMessage("force must be true or false")
    return PullRequest(feed_id, force)


def encode_pull(feed_id: int, force: bool = False) -> bytes:
    return orjson.dumps({"feedId": feed_id, "force": force})


MAX_VARIANTS = 10_000


@dataclass(frozen=True)
class FeedUpdate:
    feed_id: int
    variants: list[Any]  # each checked on its own: a bad one is a reject, not a bad message


def decode_update(body: bytes) -> FeedUpdate:
    data = _object(body)
    feed_id = _feed_id(data)
    _only(data, "feedId", "variants")
    variants = data.get("variants")
    if not isinstance(variants, list) or not variants:
        raise BadMessage("variants must be a non-empty array")
    if len(variants) > MAX_VARIANTS:
        raise BadMessage(f"{len(variants)} variants in one message; at most {MAX_VARIANTS}")
    return FeedUpdate(feed_id, variants)


def encode_update(feed_id: int, variants: list[Any]) -> bytes:
    return orjson.dumps({"feedId": feed_id, "variants": variants})


def encode_run_completed(run: dict[str, Any]) -> bytes:
    """The feed.run-completed event of a feed_runs row (schemas/run-completed.schema.json)."""
    timings = run.get("timings") or "{}"
    details = run.get("details") or {}
    if isinstance(details, str):
        details = orjson.loads(details)

    def when(v: Any) -> str | None:
        return v.isoformat() if v is not None else None

    return orjson.dumps({
        "runId": run["id"], "feedId": run["inventory_feed_id"], "kind": run["kind"],
        "status": run["status"], "startedAt": when(run["started_at"]),
        "finishedAt": when(run.get("finished_at")), "rowsRead": run["rows_read"],
        "inserted": run["inserted"], "updated": run["updated"],
        "unchanged": run["unchanged"], "rejected": run["rejected"],
        "duplicates": run["duplicates"], "bytes": run["bytes"],
        "zeroed": run.get("zeroed", 0), "connected": run.get("connected", 0),
        "ambiguous": run.get("ambiguous", 0), "skipped": run.get("skipped", 0),
        "delimiter": details.get("delimiter"), "encoding": details.get("encoding"),
        "timings": orjson.loads(timings) if isinstance(timings, str) else timings,
        "error": run.get("error"),
        "breaker": details.get("breaker"),
        "warnings": list(details.get("warnings") or ()),
        "matched": details.get("matched"),
        "rules": details.get("rules") or {},
        "rowsSkipped": details.get("skipped") or {},
        "file": details.get("file"),
    })
