"""The HTTP API's writes of items, as a real `feed-worker api` process (and daemon, for
the asynchronous path and pulls) against the real Postgres and RabbitMQ: parse-webhook
one at a time and in arrays, the status URL, items, runs, rejects, fetch."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import asyncpg
import orjson

from tests.support import feeds
from tests.support.apiprocess import ApiProcess, Client, client, error, feed, provider
from tests.support.process import DaemonProcess
from tests.support.wait import until
from worker.api import tokens
from worker.settings import Settings

SECRET = "pa55w0rd-of-the-feed"

async def test_one_variant_is_applied_at_once_through_the_push_merge(
        api: ApiProcess, admin: Client, pool: asyncpg.Pool) -> None:
    p = await provider(admin)
    f = await feed(admin, p, automaticallyConnect=True)
    store_variant = await pool.fetchval("INSERT INTO variants (sku) VALUES ('L1') RETURNING id")
    path = f"/api/inventory-feeds/{f['id']}/parse-webhook.json"
    status, body, headers = await admin.call("PUT", path, {
        "externalId": "1234", "vendorSku": "L1", "inventoryQuantity": 10,
        "retailPrice": "19.90", "color": "red"})
    assert status == 200, body
    assert headers["X-Feed-Worker-Outcome"] == "inserted"
    assert (body["externalId"], body["inventoryQuantity"], body["retailPrice"],
            body["variantId"], body["color"]) == ("1234", 10, 19.9, store_variant, "red")
    status, body, headers = await admin.call("PUT", path, {"externalId": "1234",
                                                           "inventoryQuantity": 7})
    assert (status, headers["X-Feed-Worker-Outcome"], body["inventoryQuantity"],
            body["vendorSku"]) == (200, "updated", 7, "L1")
    history = await pool.fetch("SELECT old_quantity, new_quantity FROM "
                               "variant_inventory_updates WHERE inventory_feed_id = $1", f["id"])
    assert [tuple(h) for h in history] == [(10, 7)]
    # An older update is stale (the ordering guard), and says so.
    status, body, headers = await admin.call("PUT", path, {
        "externalId": "1234", "inventoryQuantity": 1,
        "inventoryUpdatedAt": "2001-01-01T00:00:00Z"})
    assert (status, headers["X-Feed-Worker-Outcome"], body["inventoryQuantity"]) == \
        (200, "stale", 7)

    status, body, _ = await admin.call("PUT", path, {
        "externalId": "9", "inventoryQuantity": "lots", "retailPrice": "9.99 euros",
        "name": "ok"})
    assert status == 422
    details = error(body, "invalid_variant")["details"]
    assert [d["pointer"] for d in details] == ["/inventoryQuantity", "/retailPrice"]
    assert "inventoryQuantity" in details[0]["reason"]
    status, body, _ = await admin.call("PUT", path, {"vendorSku": "no id"})
    assert status == 422
    assert error(body, "invalid_variant")["details"][0]["pointer"] == "/externalId"
    assert set(await feeds.items(pool, f["id"])) == {"1234"}
    run = await pool.fetchrow("SELECT inserted, updated, rejected FROM feed_runs "
                              "WHERE inventory_feed_id = $1 AND kind = 'push'", f["id"])
    assert run is not None
    assert tuple(run) == (1, 1, 2)

    status, body, _ = await admin.call("PUT", "/api/inventory-feeds/999999/parse-webhook.json",
                                       {"externalId": "1"})
    assert status == 404
    await admin.call("PUT", f"/api/inventory-feeds/{f['id']}.json", {"enabled": False})
    for body_sent in ({"externalId": "1"}, [{"externalId": "1"}]):
        status, body, _ = await admin.call("PUT", path, body_sent)
        assert status == 409
        error(body, "feed_disabled")


async def test_the_daily_limit_answers_429(admin: Client) -> None:
    p = await provider(admin, dailySkuLimit=1)
    f = await feed(admin, p)
    path = f"/api/inventory-feeds/{f['id']}/parse-webhook.json"
    assert (await admin.call("PUT", path, {"externalId": "A", "inventoryQuantity": 1}))[0] == 200
    status, body, headers = await admin.call("PUT", path, {"externalId": "B"})
    assert status == 429
    assert "daily SKU limit" in error(body, "daily_limit")["message"]
    assert int(headers["Retry-After"]) > 0
    # The item written today may change again.
    assert (await admin.call("PUT", path, {"externalId": "A", "inventoryQuantity": 2}))[0] == 200


async def test_the_synchronous_route_is_rate_limited_per_token(
        db_url: str, pool: asyncpg.Pool, processes: list[DaemonProcess]) -> None:
    api = ApiProcess(db_url, FEED_WORKER_API_RATE_PER_S="0.5", FEED_WORKER_API_RATE_BURST="2")
    processes.append(api)
    await api.start()
    async with client(api.url, await tokens.create(pool, None)) as admin:
        f = await feed(admin, await provider(admin))
        path = f"/api/inventory-feeds/{f['id']}/parse-webhook.json"
        answers = [await admin.call("PUT", path, {"externalId": str(i)}) for i in range(3)]
        assert [a[0] for a in answers] == [200, 200, 429]
        error(answers[2][1], "rate_limited")
        assert int(answers[2][2]["Retry-After"]) >= 1
        other = admin.as_(await tokens.create(pool, None))
        assert (await other.call("PUT", path, {"externalId": "x"}))[0] == 200


async def test_an_array_is_queued_applied_by_the_daemon_and_reported(
        clean_broker: None, api: ApiProcess, admin: Client, pool: asyncpg.Pool,
        settings: Settings, processes: list[DaemonProcess]) -> None:
    daemon = DaemonProcess(settings.database_url, "api-daemon")
    processes.append(daemon)
    await daemon.start()
    f = await feed(admin, await provider(admin))
    path = f"/api/inventory-feeds/{f['id']}/parse-webhook.json"
    variants = [{"externalId": "A", "inventoryQuantity": 1},
                {"externalId": "B", "inventoryQuantity": "lots"},
                {"externalId": "C", "inventoryQuantity": 3}]
    status, body, headers = await admin.call("PUT", path, variants,
                                             headers={"Idempotency-Key": "order-1"})
    assert status == 202, body
    assert body["status"] == "queued"
    assert headers["Location"] == body["statusUrl"]

    async def reported() -> dict[str, Any] | None:
        s, b, _ = await admin.call("GET", body["statusUrl"])
        assert s == 200, b
        return dict(b) if b["status"] != "queued" else None

    done = await until(reported, what="the message's outcome")
    assert (done["status"], done["applied"], done["rejected"]) == ("applied", 2, 1)
    assert done["rejects"][0]["index"] == 1
    assert "inventoryQuantity" in done["rejects"][0]["reason"]
    assert {k: v["inventory_quantity"] for k, v in (await feeds.items(pool, f["id"])).items()} \
        == {"A": 1, "C": 3}

    # The same Idempotency-Key again: the same message, applied once.
    status, again, _ = await admin.call("PUT", path, [{"externalId": "A",
                                                       "inventoryQuantity": 99}],
                                        headers={"Idempotency-Key": "order-1"})
    assert (status, again["messageId"]) == (202, body["messageId"])
    _, still, _ = await admin.call("GET", body["statusUrl"])
    assert (still["status"], still["applied"]) == ("applied", 2)
    assert (await feeds.items(pool, f["id"]))["A"]["inventory_quantity"] == 1

    status, got, _ = await admin.call("PUT", path, [{"externalId": str(i)} for i in range(51)])
    assert status == 422
    error(got, "too_many_variants")
    status, got, _ = await admin.call("PUT", path, [])
    assert status == 422
    status, got, _ = await admin.call("PUT", path, [{"externalId": "A"}],
                                      headers={"Idempotency-Key": "bad key!"})
    assert status == 400
    # The same key sent several times at once: one message recorded, applied once.
    answers = await asyncio.gather(*(admin.call(
        "PUT", path, [{"externalId": "Z", "inventoryQuantity": 5}],
        headers={"Idempotency-Key": "order-2"}) for _ in range(5)))
    assert {(a[0], a[1]["messageId"]) for a in answers} == {(202, f"api-{f['id']}-order-2")}
    assert await pool.fetchval("SELECT count(*) FROM api_messages WHERE message_id = $1",
                               f"api-{f['id']}-order-2") == 1
    twice = answers[0][1]["statusUrl"]

    async def applied_z() -> dict[str, Any] | None:
        _, b, _ = await admin.call("GET", twice)
        return dict(b) if b["status"] != "queued" else None

    z = await until(applied_z, what="the keyed message's outcome")
    assert (z["status"], z["applied"], z.get("repeat")) == ("applied", 1, None)
    assert (await feeds.items(pool, f["id"]))["Z"]["inventory_quantity"] == 5

    # Another provider's token does not see the message.
    other = admin.as_(await tokens.create(pool, await provider(admin, "Other")))
    status, got, _ = await other.call("GET", body["statusUrl"])
    assert status == 404
    status, got, _ = await admin.call("GET", "/api/push-messages/api-1-nothing.json")
    assert status == 404


async def test_items_are_listed_filtered_paged_read_and_updated_through_the_merge(
        api: ApiProcess, admin: Client, pool: asyncpg.Pool) -> None:
    p = await provider(admin)
    f = await feed(admin, p)
    await pool.execute("INSERT INTO variants (sku) VALUES ('S1')")
    path = f"/api/inventory-feeds/{f['id']}/parse-webhook.json"
    for i in range(5):
        status, _, _ = await admin.call("PUT", path, {
            "externalId": f"E{i}", "vendorSku": f"S{i}", "barcode": f"B{i}",
            "inventoryQuantity": i})
        assert status == 200
    base = f"/api/inventory-feed-variants.json?inventoryFeedId={f['id']}"
    status, got, headers = await admin.call("GET", base + "&limit=2")
    assert [x["externalId"] for x in got] == ["E0", "E1"]
    assert 'rel="next"' in headers["Link"]
    next_url = headers["Link"].split(">")[0].lstrip("<")
    _, got2, _ = await admin.call("GET", next_url)
    assert [x["externalId"] for x in got2] == ["E2", "E3"]
    for query, expected in [("&externalId=E3", ["E3"]), ("&vendorSku=S2", ["E2"]),
                            ("&barcode=B4", ["E4"]), ("&connected=true", ["E1"]),
                            ("&updatedSince=2999-01-01T00:00:00Z", [])]:
        _, got, _ = await admin.call("GET", base + query)
        assert [x["externalId"] for x in got] == expected, query
    status, got, _ = await admin.call("GET", base + "&connected=maybe")
    assert status == 400
    error(got, "bad_query")

    item = (await admin.call("GET", base + "&externalId=E2"))[1][0]
    status, got, _ = await admin.call("GET", f"/api/inventory-feed-variants/{item['id']}.json")
    assert (status, got) == (200, item)
    # Sent back as read with a change: the merge applies it (history recorded).
    status, got, headers = await admin.call(
        "PUT", f"/api/inventory-feed-variants/{item['id']}.json",
        {**item, "inventoryQuantity": 40})
    assert (status, got["inventoryQuantity"], headers["X-Feed-Worker-Outcome"]) == \
        (200, 40, "updated"), got
    assert "available" not in (await feeds.items(pool, f["id"]))["E2"]["extra"]
    hist = await pool.fetch("SELECT new_quantity FROM variant_inventory_updates "
                            "WHERE inventory_feed_variant_id = $1", item["id"])
    assert [h["new_quantity"] for h in hist] == [40]
    # A manual override wins over the update, as it does for any push.
    await pool.execute("UPDATE inventory_feed_variants SET inventory_quantity_override = "
                       "'manual' WHERE id = $1", item["id"])
    status, got, _ = await admin.call("PUT", f"/api/inventory-feed-variants/{item['id']}.json",
                                      {"inventoryQuantity": 1, "name": "Lamp"})
    assert (status, got["inventoryQuantity"], got["name"]) == (200, 40, "Lamp")
    status, got, _ = await admin.call("PUT", f"/api/inventory-feed-variants/{item['id']}.json",
                                      {"externalId": "other"})
    assert status == 422

    other = admin.as_(await tokens.create(pool, await provider(admin, "Other")))
    for method, body in (("GET", None), ("PUT", {"inventoryQuantity": 0})):
        status, got, _ = await other.call(method,
                                          f"/api/inventory-feed-variants/{item['id']}.json", body)
        assert status == 404
    _, got, _ = await other.call("GET", "/api/inventory-feed-variants.json")
    assert got == []


async def test_fetch_queues_a_pull_whose_run_and_rejects_can_be_read(
        clean_broker: None, api: ApiProcess, admin: Client, pool: asyncpg.Pool,
        settings: Settings, processes: list[DaemonProcess], feed_server: Any) -> None:
    daemon = DaemonProcess(settings.database_url, "api-daemon")
    processes.append(daemon)
    await daemon.start()
    p = await provider(admin)
    feed_server.add("/f.csv", b"external_id,qty\nA,1\nB,lots\nC,3\n")
    url = feed_server.url("/f.csv", "acme", SECRET)
    pulled = await feed(admin, p, resourceType="ftp_csv", resourceLocation=url,
                        fetchCleanup="disabled")
    pushed = await feed(admin, p)
    status, got, _ = await admin.call("POST", f"/api/inventory-feeds/{pushed['id']}/fetch.json")
    assert status == 409
    error(got, "not_pullable")
    status, queued, _ = await admin.call("POST",
                                         f"/api/inventory-feeds/{pulled['id']}/fetch.json")
    assert status == 202, queued

    async def finished() -> list[dict[str, Any]] | None:
        _, runs, _ = await admin.call("GET", queued["runsUrl"])
        done = [r for r in runs if r["messageId"] == queued["messageId"]
                and r["status"] != "running"]
        return done or None

    [run] = await until(finished, what="the pull's run")
    assert (run["status"], run["inserted"], run["rejected"]) == ("succeeded", 2, 1), run
    status, rejects, _ = await admin.call("GET", f"/api/feed-runs/{run['id']}/rejects.json")
    assert status == 200
    assert [(r["position"], "inventoryQuantity" in r["reason"]) for r in rejects] == [(3, True)]
    assert run["source"] == url.replace(SECRET, "***")
    seen = orjson.dumps([run, rejects, daemon.events]).decode() + api.log_text()
    assert SECRET not in seen
    other = admin.as_(await tokens.create(pool, await provider(admin, "Other")))
    for path in (f"/api/feed-runs/{run['id']}/rejects.json", queued["runsUrl"]):
        assert (await other.call("GET", path))[0] == 404
    assert (await other.call("POST", f"/api/inventory-feeds/{pulled['id']}/fetch.json"))[0] \
        == 404


async def test_a_message_dead_lettered_by_the_daemon_reports_why(
        clean_broker: None, api: ApiProcess, admin: Client, settings: Settings,
        processes: list[DaemonProcess]) -> None:
    """Queued while no daemon runs; the feed is disabled before one takes the message."""
    first = DaemonProcess(settings.database_url, "api-declare")
    processes.append(first)
    await first.start()  # declares the queues, so that the message waits in one
    first.signal(signal.SIGTERM)
    assert await first.wait() == 0
    f = await feed(admin, await provider(admin))
    status, queued, _ = await admin.call(
        "PUT", f"/api/inventory-feeds/{f['id']}/parse-webhook.json", [{"externalId": "A"}])
    assert status == 202
    await admin.call("PUT", f"/api/inventory-feeds/{f['id']}.json", {"enabled": False})
    daemon = DaemonProcess(settings.database_url, "api-daemon")
    processes.append(daemon)
    await daemon.start()

    async def reported() -> dict[str, Any] | None:
        _, b, _ = await admin.call("GET", queued["statusUrl"])
        return dict(b) if b["status"] != "queued" else None

    done = await until(reported, what="the message's outcome")
    assert done["status"] == "dead-lettered"
    assert "is disabled" in done["reason"]


async def test_the_feeds_value_rules_apply_to_a_variant_pushed_at_once(admin: Client) -> None:
    f = await feed(admin, await provider(admin), mapping={"rules": {
        "price": {"markupPercent": 10}, "barcode": {"gtin": "reject"}}})
    path = f"/api/inventory-feeds/{f['id']}/parse-webhook.json"
    status, body, _ = await admin.call("PUT", path, {"externalId": "A", "retailPrice": "10.00",
                                                     "barcode": "4006381333931"})
    assert (status, body["retailPrice"]) == (200, 11), body
    status, body, _ = await admin.call("PUT", path, {"externalId": "B",
                                                     "barcode": "4006381333932"})
    assert status == 422, body
    [problem] = error(body, "invalid_variant")["details"]
    assert problem["pointer"] == "/barcode"
    assert "barcode" in problem["reason"]
