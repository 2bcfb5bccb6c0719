"""The HTTP API as a real `feed-worker api` process, against the real Postgres and RabbitMQ,
spoken to with aiohttp's client."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from tests.support import feeds
from tests.support.apiprocess import ApiProcess, Client, client
from tests.support.process import DaemonProcess
from tests.support.wait import until
from worker.api import tokens
from worker.settings import Settings

SECRET = "pa55w0rd-very-secret"
FEED_TOKEN = "bearer-token-also-secret"


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[ApiProcess]:
    process = ApiProcess(db_url, FEED_WORKER_API_RATE_PER_S="1000",
                         FEED_WORKER_API_RATE_BURST="1000",
                         FEED_WORKER_API_MAX_BODY_BYTES="65536")
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


@pytest.fixture
async def admin(api: ApiProcess, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with client(api.url, await tokens.create(pool, None)) as c:
        yield c


async def provider(admin: Client, name: str = "Acme", **more: Any) -> int:
    status, body, _ = await admin.call("POST", "/api/dropship-providers.json",
                                       {"name": name, **more})
    assert status == 201, body
    return int(body["id"])


async def feed(c: Client, provider_id: int, **more: Any) -> dict[str, Any]:
    status, body, _ = await c.call("POST", "/api/inventory-feeds.json",
                                   {"dropshipProviderId": provider_id, "name": "stock", **more})
    assert status == 201, body
    return dict(body)


def error(body: Any, code: str) -> dict[str, Any]:
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    return dict(body["error"])


async def test_health_metrics_and_auth(api: ApiProcess, admin: Client) -> None:
    anon = admin.as_(None)
    assert (await anon.call("GET", "/healthz"))[0] == 200
    status, body, _ = await anon.call("GET", "/readyz")
    assert (status, body["ready"]) == (200, True)
    status, body, headers = await anon.call("GET", "/api/dropship-providers.json")
    assert status == 401
    error(body, "unauthorized")
    assert headers["WWW-Authenticate"].startswith("Bearer")
    for bad in ("fwt_1_" + "x" * 43, "nonsense", ""):
        status, body, _ = await admin.as_(bad).call("GET", "/api/dropship-providers.json")
        assert status == 401, bad
    status, body, _ = await admin.call("GET", "/api/nothing-here.json")
    assert status == 404
    error(body, "not_found")
    status, body, _ = await admin.call("DELETE", "/api/dropship-providers.json")
    assert status == 405
    error(body, "method_not_allowed")
    status, text, _ = await anon.call("GET", "/metrics")
    assert status == 200
    assert 'feed_worker_api_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "feed_worker_api_request_seconds_bucket" in text


async def test_token_command_prints_a_token_that_works(
        api: ApiProcess, settings: Settings, pool: asyncpg.Pool) -> None:
    async with client(api.url, None) as c:
        p = await provider(c.as_(await tokens.create(pool, None)))
        env = {**api.env}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "token", "create", "--provider", str(p), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err
        token = out.decode().strip()
        assert token.startswith("fwt_")
        status, body, _ = await c.as_(token).call("GET", "/api/dropship-providers.json")
        assert status == 200
        assert [x["id"] for x in body] == [p]
        stored = await pool.fetchval("SELECT secret_sha256 FROM api_tokens WHERE "
                                     "dropship_provider_id = $1", p)
        assert token.split("_", 2)[2].encode() not in bytes(stored)  # only a digest
        token_id = token.split("_")[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "token", "revoke", token_id, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert (proc.returncode, out.decode().strip()) == (0, f"revoked token {token_id}"), err
        status, body, _ = await c.as_(token).call("GET", "/api/dropship-providers.json")
        assert status == 401
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "token", "create", "--provider", "999999",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 1
        assert b"does not exist" in err


async def test_providers_and_feeds_are_saved_checked_and_their_secrets_masked(
        api: ApiProcess, admin: Client) -> None:
    p = await provider(admin, skuPrefix="ACME-", dailySkuLimit=100)
    status, body, _ = await admin.call("GET", f"/api/dropship-providers/{p}.json")
    assert (status, body["skuPrefix"], body["dailySkuLimit"]) == (200, "ACME-", 100)
    status, body, _ = await admin.call("PUT", f"/api/dropship-providers/{p}.json",
                                       {"name": "Acme Ltd", "dailySkuLimit": None})
    assert (status, body["name"], body["dailySkuLimit"], body["skuPrefix"]) == \
        (200, "Acme Ltd", None, "ACME-")

    url = f"https://acme:{SECRET}@feeds.example.com/stock.csv"
    f = await feed(admin, p, resourceType="ftp_csv", resourceLocation=url,
                   authenticationToken=FEED_TOKEN, csvHasHeader=True, decimalNotation="comma",
                   mapping={"fields": {"externalId": "Item ID"}}, fetchFrequency="daily")
    assert f["resourceLocation"] == "https://acme:***@feeds.example.com/stock.csv"
    assert f["authenticationToken"] == "***"
    assert (f["decimalNotation"], f["fetchFrequency"], f["automaticallyConnect"]) == \
        ("comma", "daily", True)
    # Sent back as read (masked), the secrets are kept; other changes land.
    status, body, _ = await admin.call("PUT", f"/api/inventory-feeds/{f['id']}.json",
                                       {**f, "name": "renamed"})
    assert (status, body["name"]) == (200, "renamed"), body
    status, body, _ = await admin.call("GET", f"/api/inventory-feeds/{f['id']}.json")
    assert body["resourceLocation"] == f["resourceLocation"]
    status, listed, _ = await admin.call("GET", "/api/inventory-feeds.json")
    assert [x["id"] for x in listed] == [f["id"]]
    # The singular spelling of the seed guide creates one too.
    status, body, _ = await admin.call("POST", "/api/inventory-feed.json",
                                       {"dropshipProviderId": p, "name": "push"})
    assert (status, body["resourceType"]) == (201, "webhook")

    everything = orjson.dumps([f, listed, body]).decode() + api.log_text()
    assert SECRET not in everything
    assert FEED_TOKEN not in everything


@pytest.mark.parametrize(("body", "pointer"), [
    ({"name": 5}, "/name"),
    ({"name": "x", "resourceType": "ftp"}, "/resourceType"),
    ({"name": "x", "enabled": "yes"}, "/enabled"),
    ({"name": "x", "resourceLocation": "file:///etc/passwd"}, "/resourceLocation"),
    ({"name": "x", "fetchFrequency": "custom"}, "/fetchIntervalSeconds"),
    ({"name": "x", "breakerMaxRowsDrop": 2}, "/breakerMaxRowsDrop"),
    ({"name": "x", "encoding": "klingon"}, "/encoding"),
    ({"name": "x", "mapping": []}, "/mapping"),
    ({"name": "x", "resourceType": "ftp_csv", "csvHasHeader": False,
      "mapping": {"fields": {"externalId": "Item ID"}}}, "/mapping/fields/externalId"),
    ({"name": "x", "resourceType": "ftp_csv",
      "mapping": {"values": {"inventoryQuantity": {"in stock": "lots"}}}},
     "/mapping/values/inventoryQuantity/in stock"),
    ({"name": "x", "resourceType": "xml", "mapping": {"fields": {"externalId": "id"}}},
     "/mapping/record"),
    ({"name": "x", "colour": "red"}, "/colour"),
    ({"name": "x", "dropshipProviderId": 999999}, "/dropshipProviderId"),
])
async def test_a_bad_field_is_refused_with_its_pointer(
        admin: Client, body: dict[str, Any], pointer: str) -> None:
    p = await provider(admin)
    status, got, _ = await admin.call("POST", "/api/inventory-feeds.json",
                                      {"dropshipProviderId": p, **body})
    assert status == 422, got
    assert error(got, "invalid")["details"][0]["pointer"] == pointer


async def test_malformed_wrong_type_and_oversize_bodies(admin: Client) -> None:
    p = await provider(admin)
    path = "/api/inventory-feeds.json"
    status, body, _ = await admin.call("POST", path, raw=b"{not json",
                                       headers={"Content-Type": "application/json"})
    assert status == 400
    error(body, "malformed_json")
    status, body, _ = await admin.call("POST", path, raw=b"name=x",
                                       headers={"Content-Type": "text/plain"})
    assert status == 415
    error(body, "unsupported_media_type")
    status, body, _ = await admin.call("POST", path, [1, 2])
    assert status == 422
    big = {"dropshipProviderId": p, "name": "x" * 70_000}
    status, body, _ = await admin.call("POST", path, big)
    assert status == 413
    error(body, "body_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: cut off as it comes
        for _ in range(70):
            yield b" " * 1000

    status, body, _ = await admin.call("POST", path, raw=chunks(),  # type: ignore[arg-type]
                                       headers={"Content-Type": "application/json"})
    assert status == 413
    error(body, "body_too_large")


async def test_a_provider_token_sees_only_its_own(
        api: ApiProcess, admin: Client, pool: asyncpg.Pool) -> None:
    mine, theirs = await provider(admin, "Mine"), await provider(admin, "Theirs")
    my_feed, their_feed = await feed(admin, mine), await feed(admin, theirs)
    me = admin.as_(await tokens.create(pool, mine))
    probes = [
        ("GET", f"/api/dropship-providers/{theirs}.json", None),
        ("PUT", f"/api/dropship-providers/{theirs}.json", {"name": "taken"}),
        ("GET", f"/api/inventory-feeds/{their_feed['id']}.json", None),
        ("PUT", f"/api/inventory-feeds/{their_feed['id']}.json", {"name": "taken"}),
        ("PUT", f"/api/inventory-feeds/{their_feed['id']}/parse-webhook.json",
         {"externalId": "A"}),
        ("PUT", f"/api/inventory-feeds/{their_feed['id']}/parse-webhook.json",
         [{"externalId": "A"}]),
        ("GET", "/api/dropship-providers/999999.json", None),
        ("GET", "/api/inventory-feeds/999999.json", None),
    ]
    for method, path, body in probes:
        status, got, _ = await me.call(method, path, body)
        assert status == 404, (method, path, got)
        error(got, "not_found")
        assert "Theirs" not in orjson.dumps(got).decode()
        if method == "PUT":  # whatever the body
            status, got, _ = await me.call(method, path, raw=b"{oops",
                                           headers={"Content-Type": "application/json"})
            assert status == 404, (method, path, got)
    status, got, _ = await me.call("GET", "/api/inventory-feeds.json")
    assert [x["id"] for x in got] == [my_feed["id"]]
    status, got, _ = await me.call("GET", "/api/dropship-providers.json")
    assert [x["id"] for x in got] == [mine]
    status, got, _ = await me.call("POST", "/api/inventory-feeds.json",
                                   {"dropshipProviderId": theirs, "name": "sneaky"})
    assert status == 422
    assert error(got, "invalid")["details"][0]["pointer"] == "/dropshipProviderId"
    status, got, _ = await me.call("POST", "/api/inventory-feeds.json", {"name": "own"})
    assert (status, got["dropshipProviderId"]) == (201, mine)
    status, got, _ = await me.call("POST", "/api/dropship-providers.json", {"name": "new"})
    assert status == 403
    status, got, _ = await me.call("PUT", f"/api/dropship-providers/{mine}.json",
                                   {"dailySkuLimit": 10**6})
    assert status == 403
    their = await pool.fetchrow("SELECT name FROM inventory_feeds WHERE id = $1",
                                their_feed["id"])
    assert their["name"] == "stock"
    assert await feeds.items(pool, their_feed["id"]) == {}


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
    url = feed_server.add("/f.csv", b"external_id,qty\nA,1\nB,lots\nC,3\n")
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
    other = admin.as_(await tokens.create(pool, await provider(admin, "Other")))
    for path in (f"/api/feed-runs/{run['id']}/rejects.json", queued["runsUrl"]):
        assert (await other.call("GET", path))[0] == 404
    assert (await other.call("POST", f"/api/inventory-feeds/{pulled['id']}/fetch.json"))[0] \
        == 404


async def test_the_document_is_served(admin: Client) -> None:
    from worker.api.openapi import document

    status, body, _ = await admin.as_(None).call("GET", "/api/openapi.json")
    assert (status, body) == (200, orjson.loads(orjson.dumps(document())))


async def test_sigterm_stops_the_process_cleanly(api: ApiProcess) -> None:
    api.signal(signal.SIGTERM)
    assert await api.wait() == 0
    await api.wait_event("api.stopping")


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
