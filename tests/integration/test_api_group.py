"""Group commit of the synchronous parse-webhook: concurrent requests to a real `feed-worker
api` process share push merge transactions, and each still gets the answer it would get
alone (its own outcome and stored item, 422, 429), same-item requests in arrival order."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import asyncpg

from tests.support import feeds
from tests.support.apiprocess import Client, error, feed, provider

BATCHES = """
SELECT coalesce(sum((details ->> 'batches')::int), 0) AS batches,
       coalesce(sum(inserted), 0) AS inserted, coalesce(sum(updated), 0) AS updated,
       coalesce(sum(rejected), 0) AS rejected
FROM feed_runs WHERE kind = 'push' AND inventory_feed_id = $1
"""


async def _all(admin: Client, path: str, bodies: list[dict[str, Any]]
               ) -> list[tuple[int, Any, Any]]:
    return list(await asyncio.gather(*(admin.call("PUT", path, b) for b in bodies)))


async def test_concurrent_requests_share_transactions_and_each_gets_its_own_answer(
        admin: Client, pool: asyncpg.Pool) -> None:
    f = await feed(admin, await provider(admin), mapping={"rules": {
        "barcode": {"gtin": "reject"}}})
    path = f"/api/inventory-feeds/{f['id']}/parse-webhook.json"
    assert (await admin.call("PUT", path, {"externalId": "old", "inventoryQuantity": 1}))[0] \
        == 200
    bodies: list[dict[str, Any]] = [{"externalId": f"N{i}", "inventoryQuantity": i}
                                    for i in range(60)]
    bodies[17] = {"externalId": "bad", "inventoryQuantity": "lots", "name": "x"}
    bodies[31] = {"externalId": "badcode", "barcode": "4006381333932"}  # refused by a rule
    bodies[45] = {"externalId": "old", "inventoryQuantity": 2}
    answers = await _all(admin, path, bodies)
    for sent, (status, body, headers) in zip(bodies, answers, strict=True):
        if sent["externalId"] == "bad":
            assert status == 422, body
            [problem] = error(body, "invalid_variant")["details"]
            assert problem["pointer"] == "/inventoryQuantity"
        elif sent["externalId"] == "badcode":
            assert status == 422, body
            [problem] = error(body, "invalid_variant")["details"]
            assert problem["pointer"] == "/barcode"
        else:
            assert status == 200, body
            assert (body["externalId"], body["inventoryQuantity"]) == \
                (sent["externalId"], sent["inventoryQuantity"])
            expected = "updated" if sent["externalId"] == "old" else "inserted"
            assert headers["X-Feed-Worker-Outcome"] == expected
    stored = await feeds.items(pool, f["id"])
    assert set(stored) == {"old"} | {f"N{i}" for i in range(60)} - {"N17", "N31", "N45"}
    runs = await pool.fetchrow(BATCHES, f["id"])
    assert runs is not None
    assert (runs["inserted"], runs["updated"], runs["rejected"]) == (1 + 57, 1, 2)
    # 61 requests, fewer transactions: the concurrent ones were merged together.
    assert runs["batches"] < 40, runs["batches"]


async def test_requests_for_one_item_are_applied_one_by_one_in_arrival_order(
        admin: Client, pool: asyncpg.Pool) -> None:
    f = await feed(admin, await provider(admin))
    path = f"/api/inventory-feeds/{f['id']}/parse-webhook.json"
    bodies = [{"externalId": "same", "inventoryQuantity": q} for q in range(1, 26)]
    bodies += [{"externalId": f"other{i}", "inventoryQuantity": i} for i in range(25)]
    answers = await _all(admin, path, bodies)
    outcomes = []
    for sent, (status, body, headers) in zip(bodies, answers, strict=True):
        assert status == 200, body
        # Its own state, not a later request's folded in.
        assert body["inventoryQuantity"] == sent["inventoryQuantity"], (sent, body)
        if sent["externalId"] == "same":
            outcomes.append(headers["X-Feed-Worker-Outcome"])
    assert sorted(outcomes) == ["inserted"] + ["updated"] * 24
    item = (await feeds.items(pool, f["id"]))["same"]
    history = await pool.fetch(
        "SELECT old_quantity, new_quantity FROM variant_inventory_updates h "
        "JOIN inventory_feed_variants v ON v.id = h.inventory_feed_variant_id "
        "WHERE v.inventory_feed_id = $1 AND v.external_id = 'same' ORDER BY h.id", f["id"])
    # One history row per update, each starting where the one before it ended: the
    # requests were applied one after the other, in the order the server received them.
    assert len(history) == 24
    assert all(a["new_quantity"] == b["old_quantity"] for a, b in itertools.pairwise(history))
    assert history[-1]["new_quantity"] == item["inventory_quantity"]


async def test_the_daily_limit_holds_only_the_items_past_it_in_a_group(admin: Client,
                                                                      pool: asyncpg.Pool) -> None:
    f = await feed(admin, await provider(admin, dailySkuLimit=3))
    path = f"/api/inventory-feeds/{f['id']}/parse-webhook.json"
    bodies = [{"externalId": f"D{i}", "inventoryQuantity": i} for i in range(10)]
    answers = await _all(admin, path, bodies)
    ok = {sent["externalId"] for sent, (s, _, _) in zip(bodies, answers, strict=True)
          if s == 200}
    held = [body for s, body, _ in answers if s == 429]
    assert (len(ok), len(held)) == (3, 7), [a[0] for a in answers]
    for body in held:
        error(body, "daily_limit")
    assert set(await feeds.items(pool, f["id"])) == ok
