"""PUT /api/inventory-feeds/:id/parse-webhook.json and GET /api/push-messages/:id.json.

One variant (an object) is applied at once through the push merge (pipeline/syncpush.py:
the consumer's decoding, checks and merge; the requests of the moment share one
transaction, each with its own outcome) and the stored item comes back. An array of up to
50 is published as one feed-update message, confirmed and `mandatory`, carrying
x-status-id so that the daemon records what it came to (replay_outcomes); once confirmed,
it is recorded in api_messages (the requests of the moment in one statement, see
worker/coalesce.py), and the status URL reads both records.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from worker import broker
from worker import constants as C
from worker.api import items
from worker.api.context import Context, caller, context, json_body, path_id
from worker.api.errors import ApiError, json, not_found, pointer
from worker.api.tokens import Caller
from worker.errors import DEAD_REFUSED, TransientError
from worker.messages import encode_update
from worker.pipeline.push import Fate
from worker.pushmap import to_item
from worker.settings import Settings
from worker.store import api as store

MAX_ASYNC_VARIANTS = 50
_KEY = re.compile(r"[A-Za-z0-9._~:-]{1,128}")
OUTCOME_HEADER = "X-Feed-Worker-Outcome"


async def writable_feed(ctx: Context, who: Caller, feed_id: int) -> asyncpg.Record:
    """The feed, when the caller may write to it (kept for FEED_WORKER_API_CACHE_S: a
    synchronous push checks the feed's state again in its transaction)."""
    row = ctx.feeds.get(feed_id)
    if row is None:
        row = await store.get_feed(ctx.pool, feed_id, None)
        if row is not None:
            ctx.feeds.put(feed_id, row)
    if row is None or (who.scope is not None and row["dropship_provider_id"] != who.scope):
        raise not_found("inventory feed")
    if not row["enabled"] or row["provider_archived"]:
        raise ApiError(409, "feed_disabled", f"inventory feed {feed_id} is disabled")
    return row


async def parse_webhook(request: web.Request) -> web.Response:
    ctx, who, feed_id = context(request), caller(request), path_id(request)
    await writable_feed(ctx, who, feed_id)  # first: another's feed is 404, whatever the body
    data = await json_body(request)
    if isinstance(data, dict):
        return await apply_one(ctx, who, feed_id, data)
    if isinstance(data, list):
        return await _publish(request, ctx, who, feed_id, data)
    raise ApiError(422, "invalid", "the body must be a variant (an object) or an array of "
                   f"up to {MAX_ASYNC_VARIANTS} variants",
                   [{"pointer": "", "reason": "must be an object or an array"}])


async def apply_one(ctx: Context, who: Caller, feed_id: int,
                    variant: dict[str, Any]) -> web.Response:
    """One variant through the push merge, rate-limited per token; the stored item, or
    the error that says why not (the feed was checked to be in scope and enabled)."""
    wait = ctx.limiter.take(who.token_id)
    if wait > 0:
        raise ApiError(429, "rate_limited", "too many requests for this token; slow down",
                       headers={"Retry-After": str(math.ceil(wait))})
    if ctx.committer is None:  # pragma: no cover - serve() makes one
        raise RuntimeError("no group committer")
    got = await ctx.committer.push(feed_id, variant)
    e = got.envelope
    if e.fate is Fate.DEAD:
        if e.dead_kind == DEAD_REFUSED:  # failed alone in its transaction: ours, not theirs
            raise RuntimeError(e.reason)
        raise ApiError(409, "feed_disabled", e.reason)  # disabled or gone since it was read
    if e.rejected or got.refused is not None:
        problems = variant_problems(feed_id, variant, ctx.settings)
        if not problems and got.refused is not None:  # refused by the feed's value rules
            reason = got.refused
            field = reason.split(":", 1)[0].split(" ", 1)[0]
            problems = [{"pointer": pointer(field) if field in variant else "",
                         "reason": reason}]
        raise ApiError(422, "invalid_variant", "the variant was rejected: " + "; ".join(
            p["reason"] for p in problems), problems)
    if got.outcome == "held":
        raise ApiError(429, "daily_limit",
                       "the provider's daily SKU limit is reached: this item cannot be "
                       "written again before 00:00 UTC (items written today still can)",
                       headers={"Retry-After": str(_seconds_to_midnight())})
    if got.row is None:  # pragma: no cover - the merge just wrote or kept it
        raise not_found("inventory feed variant")
    return json(items.render(got.row), headers={OUTCOME_HEADER: got.outcome or "unchanged"})


def variant_problems(feed_id: int, variant: dict[str, Any],
                     settings: Settings) -> list[dict[str, str]]:
    """Each field's reason, found by the push checks themselves (pushmap.to_item) asked
    about the fields one at a time; the whole variant's reason when none alone is at
    fault; none when only the feed's value rules refuse it."""
    problems = []
    try:
        to_item(feed_id, {"externalId": variant.get("externalId")}, None, settings)
        key_ok = True
    except ValueError as exc:
        problems.append({"pointer": pointer("externalId"), "reason": str(exc)})
        key_ok = False
    base = {"externalId": variant["externalId"] if key_ok else "x"}
    for key, v in variant.items():
        if key == "externalId":
            continue
        try:
            to_item(feed_id, {**base, key: v}, None, settings)
        except ValueError as exc:
            problems.append({"pointer": pointer(key), "reason": str(exc)})
    if not problems:
        try:
            to_item(feed_id, variant, None, settings)
        except ValueError as exc:
            problems.append({"pointer": "", "reason": str(exc)})
    return problems


def _seconds_to_midnight() -> int:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - now).total_seconds()))


async def _publish(request: web.Request, ctx: Context, who: Caller, feed_id: int,
                   variants: list[Any]) -> web.Response:
    if not variants:
        raise ApiError(422, "invalid", "the array of variants is empty",
                       [{"pointer": "", "reason": "must hold 1 to 50 variants"}])
    if len(variants) > MAX_ASYNC_VARIANTS:
        raise ApiError(422, "too_many_variants",
                       f"{len(variants)} variants in one request; at most "
                       f"{MAX_ASYNC_VARIANTS} (send several requests)",
                       [{"pointer": "", "reason": f"at most {MAX_ASYNC_VARIANTS} variants"}])
    for i, v in enumerate(variants):
        if not isinstance(v, dict):
            raise ApiError(422, "invalid", f"variant {i} is not an object",
                           [{"pointer": pointer(i), "reason": "must be an object"}])
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _KEY.fullmatch(key):
        raise ApiError(400, "bad_idempotency_key", "Idempotency-Key must be 1 to 128 of "
                       "A-Z a-z 0-9 . _ ~ : -")
    # Scoped by feed: two providers' keys never meet.
    message_id = f"api-{feed_id}-{key or uuid.uuid4()}"
    # A key sent before is not published again once it was confirmed; two requests with
    # the same key at once may both publish: the daemon applies a message id once.
    if key is None or await store.message_published_at(ctx.pool, message_id) is None:
        message = broker.json_message(encode_update(feed_id, variants), message_id,
                                      headers={C.HEADER_STATUS_ID: C.STATUS_ID_API})
        try:
            await broker.publish_routed(ctx.exchange, message, C.ROUTING_UPDATE)
        except TransientError:
            raise ApiError(503, "broker_unavailable", "the message could not be queued; "
                           "send the request again (with the same Idempotency-Key)",
                           headers={"Retry-After": "1"}) from None
        # recorded with the other requests of the moment: one commit for them all
        await ctx.published.add((message_id, feed_id, who.token_id, len(variants)))
    url = f"/api/push-messages/{message_id}.json"
    return json({"messageId": message_id, "status": "queued", "statusUrl": url},
                status=202, headers={"Location": url})


async def status(request: web.Request) -> web.Response:
    ctx, who = context(request), caller(request)
    message_id = request.match_info["messageId"]
    row = await store.message_status(ctx.pool, message_id, who.scope)
    if row is None:
        raise not_found("push message")
    out: dict[str, Any] = {"messageId": message_id, "inventoryFeedId": row["inventory_feed_id"],
                           "variants": row["variants"],
                           "createdAt": row["created_at"].isoformat()}
    outcome = row["outcome"]
    if outcome is None:
        out["status"] = "queued"
    elif outcome == "dead-lettered":
        out.update(status="dead-lettered", reason=row["reason"])
    else:
        out.update(status="applied", applied=row["applied"], stale=row["stale"],
                   rejected=row["rejected"], appliedAt=row["recorded_at"].isoformat())
        if outcome == "repeat":
            out["repeat"] = True
        rejects = await store.message_rejects(ctx.pool, message_id,
                                              ctx.settings.max_stored_rejects)
        out["rejects"] = [{"index": r["position"], "reason": r["reason"]} for r in rejects]
    return json(out)
