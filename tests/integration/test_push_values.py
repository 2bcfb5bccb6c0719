"""Values Postgres would refuse, pushed and pulled beside good ones: each is a reject of its
own variant or row with the reason, and the group or run around it commits."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.pipeline.push import Envelope, Fate, apply_group
from worker.settings import Settings

POISON: list[tuple[dict[str, Any], str]] = [
    ({"externalId": "P1", "name": "a\x00b"}, "name: contains control character U+0000"),
    ({"externalId": "P2\x00"}, "externalId: contains control character U+0000"),
    ({"externalId": "P3", "color": "r\x00ed"}, "color: contains control character U+0000"),
    ({"externalId": "P" * 3000}, "externalId is 3000 bytes long (UTF-8), over the 1000-byte "
                                 "limit of an item key"),
    ({"externalId": "P5", "name": "n" * 10_000_000},
     "name is 10000000 characters long, over the 131072-character cap "
     "(FEED_WORKER_MAX_FIELD_CHARS)"),
    ({"externalId": "P6", "inventoryUpdatedAt": "9999-12-31T00:00:00Z"},
     "inventoryUpdatedAt: 9999-12-31T00:00:00+00:00 is more than 300 s in the future "
     "(FEED_WORKER_MAX_FUTURE_SKEW_S)"),
    ({"externalId": "P7", "retailPrice": 1e300},
     "retailPrice: 1e+300 has more than 15 digits before the decimal point"),
    ({"externalId": "P8", "options": {"size": "\x00"}},
     "options: contains control character U+0000"),
    ({"externalId": "P9", "inventoryQuantity": 1e300}, "inventoryQuantity: 1e+300 is out of "
                                                       "range"),
]


async def test_poisoned_variants_are_rejects_and_the_group_commits(
        pool: asyncpg.Pool, settings: Settings) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    good = [{"externalId": "G1", "name": "tab\there", "inventoryQuantity": 3,
             "retailPrice": 9.99, "color": "red"},
            {"externalId": "G2", "name": "line\nbreak", "retailPrice": "123456789012345.5",
             "inventoryUpdatedAt": "2026-01-01T00:00:00Z"}]
    variants = [good[0], *(v for v, _ in POISON), good[1]]
    group = [Envelope(orjson.dumps({"feedId": feed_id, "variants": variants}), "m1"),
             Envelope(orjson.dumps({"feedId": feed_id, "variants": [
                 {"externalId": "G3", "inventoryQuantity": 1},
                 {"externalId": "\u00e9" * 501}]}), "m2")]
    await apply_group(pool, settings, group)
    assert [e.fate for e in group] == [Fate.APPLIED, Fate.APPLIED]
    got = await feeds.items(pool, feed_id)
    assert set(got) == {"G1", "G2", "G3"}
    assert (got["G1"]["name"], got["G1"]["inventory_quantity"], got["G1"]["retail_price"]) == \
        ("tab\there", 3, Decimal("9.99"))
    assert (got["G2"]["name"], got["G2"]["retail_price"]) == \
        ("line\nbreak", Decimal("123456789012345.5"))
    run = await pool.fetchrow("SELECT * FROM feed_runs WHERE kind = 'push' AND "
                              "inventory_feed_id = $1", feed_id)
    assert run is not None
    assert (run["rows_read"], run["inserted"], run["rejected"]) == (len(variants) + 2, 3,
                                                                    len(POISON) + 1)
    rejects = await pool.fetch("SELECT message_id, position, raw, reason FROM feed_run_rejects "
                               "WHERE run_id = $1 ORDER BY message_id, position", run["id"])
    assert [(r["message_id"], r["position"], r["reason"]) for r in rejects] == [
        *(("m1", i, reason) for i, (_, reason) in enumerate(POISON, 1)),
        ("m2", 1, "externalId is 1002 bytes long (UTF-8), over the 1000-byte limit of an "
                  "item key")]
    assert all(len(r["raw"]) <= settings.max_reject_raw_chars for r in rejects)


async def test_a_pull_rejects_long_keys_and_control_characters_by_line(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    text = ("external_id,name,qty,retail_price\n"
            "A,ok,1,9.99\n"
            f"{'K' * 3000},long key,2,1\n"
            "B,bell\x07,3,1\n"
            "C,\"two\nlines\",4,1\n"
            "D,fine,5,9999999999999999\n"
            + "\u00e9" * 500 + ",a key of 1000 bytes,6,1\n")
    feed_id = await feeds.make_feed(pool, feed_server.add("/untrusted.csv", text.encode()))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["rows_read"], run["inserted"], run["rejected"]) == (6, 3, 3)
    got = await feeds.items(pool, feed_id)
    assert {k: v["inventory_quantity"] for k, v in got.items()} == {
        "A": 1, "C": 4, "\u00e9" * 500: 6}
    assert got["C"]["name"] == "two\nlines"
    rejects = await feeds.rejects(pool, run["id"])
    assert [(r["position"], r["reason"]) for r in rejects] == [
        (3, "externalId is 3000 bytes long (UTF-8), over the 1000-byte limit of an item key"),
        (4, "name: contains control character U+0007"),
        (7, "retailPrice: '9999999999999999' has more than 15 digits before the decimal "
            "point")]


async def test_json_and_xml_pulls_reject_by_record_number(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    records = [("A", "ok"), ("K" * 3000, "long key"), ("B", "del\x7f"), ("C", "fine")]
    json_feed = await feeds.make_feed(
        pool, feed_server.add("/untrusted.json", orjson.dumps(
            [{"id": e, "name": n, "options": {"k": "v\x01"} if e == "C" else None}
             for e, n in records])),
        resource_type="json", mapping={"fields": {"externalId": "id", "name": "name",
                                                  "options": "options"}})
    xml = "".join(f"<item><id>{e}</id><name>{n}</name></item>" for e, n in records)
    xml_feed = await feeds.make_feed(
        pool, feed_server.add("/untrusted.xml", f"<feed>{xml}</feed>".encode()),
        resource_type="xml", mapping={"record": "/feed/item",
                                      "fields": {"externalId": "id", "name": "name"}})
    key_reason = ("externalId is 3000 bytes long (UTF-8), over the 1000-byte limit of an "
                  "item key")
    for feed_id, landed, bad in [
            (json_feed, {"A"}, [(2, key_reason),
                                (3, "name: contains control character U+007F"),
                                (4, "options: contains control character U+0001")]),
            (xml_feed, {"A", "C"}, [(2, key_reason),
                                    (3, "name: contains control character U+007F")])]:
        run = await feeds.pull_once(pool, settings, feed_id)
        assert run["status"] == "succeeded", run["error"]
        assert set(await feeds.items(pool, feed_id)) == landed
        assert [(r["position"], r["reason"])
                for r in await feeds.rejects(pool, run["id"])] == bad
