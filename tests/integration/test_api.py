"""The HTTP API as a real `feed-worker api` process against the real Postgres and RabbitMQ,
spoken to with aiohttp's client: health, tokens, providers and feeds, scoping, errors, the
document. Every answer is checked against schemas/openapi.yaml (tests/support/apiprocess)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from tests.support import feeds
from tests.support.apiprocess import ApiProcess, Client, client, error, feed, provider
from tests.support.wait import until
from worker.api import tokens
from worker.settings import Settings

SECRET = "pa55w0rd-very-secret"
FEED_TOKEN = "bearer-token-also-secret"


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
    for path in ("/api/nothing-here.json", "/api/inventory-feeds/99999999999999999999.json",
                 "/api/inventory-feeds/0.json", "/api/inventory-feeds/x.json"):
        status, body, _ = await admin.call("GET", path)
        assert status == 404, path
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
        revoked = time.monotonic()

        async def refused() -> bool:
            status, _, _ = await c.as_(token).call("GET", "/api/dropship-providers.json")
            return status == 401

        # A replica trusts what it read of a token for FEED_WORKER_API_CACHE_S (2 s).
        await until(refused, timeout_s=10, what="the revoked token refused")
        assert time.monotonic() - revoked < 2.0 + 1.0
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "token", "revoke", token_id, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        assert (proc.returncode, err.decode().strip()) == (
            2, f"feed-worker token revoke: error: no live token {token_id}")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "token", "create", "--provider", "999999",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 2
        assert err.decode().strip() == ("feed-worker token create: error: dropship provider "
                                        "999999 does not exist")


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


async def test_a_second_files_password_is_masked_and_kept(
        api: ApiProcess, admin: Client, pool: asyncpg.Pool) -> None:
    p = await provider(admin)
    second = {"url": f"sftp://stock:{SECRET}@files.example.com/stock.csv", "joinOn": "externalId"}
    f = await feed(admin, p, resourceType="ftp_csv",
                   resourceLocation="https://feeds.example.com/cat.csv",
                   mapping={"secondary": second})
    assert f["mapping"]["secondary"]["url"] == "sftp://stock:***@files.example.com/stock.csv"
    status, body, _ = await admin.call("PUT", f"/api/inventory-feeds/{f['id']}.json",
                                       {**f, "name": "renamed"})
    assert status == 200, body
    stored = await pool.fetchval("SELECT mapping FROM inventory_feeds WHERE id = $1", f["id"])
    assert SECRET in stored  # kept, as sent the first time
    moved = {**f, "mapping": {"secondary": {**f["mapping"]["secondary"],
                                            "url": "sftp://stock:***@other.example.com/s.csv"}}}
    status, body, _ = await admin.call("PUT", f"/api/inventory-feeds/{f['id']}.json", moved)
    assert status == 422
    assert error(body, "invalid")["details"][0]["pointer"] == "/mapping/secondary/url"
    assert SECRET not in orjson.dumps([f, body]).decode() + api.log_text()


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


async def test_the_document_is_served(admin: Client) -> None:
    from worker.api.openapi import document

    status, body, _ = await admin.as_(None).call("GET", "/api/openapi.json")
    assert (status, body) == (200, orjson.loads(orjson.dumps(document())))


async def test_sigterm_stops_the_process_cleanly(api: ApiProcess) -> None:
    api.signal(signal.SIGTERM)
    assert await api.wait() == 0
    await api.wait_event("api.stopping")
