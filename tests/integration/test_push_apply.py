"""A push group applied straight through the pipeline (no broker): folding, currency,
repeats and the run record."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import orjson

from tests.support import feeds
from worker.pipeline.push import Envelope, Fate, apply_group
from worker.settings import Settings


def envelope(feed_id: int, *variants: dict[str, object], message_id: str | None = None
             ) -> Envelope:
    return Envelope(orjson.dumps({"feedId": feed_id, "variants": list(variants)}), message_id)


async def test_a_group_with_currency_and_repeats(pool: asyncpg.Pool, settings: Settings) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    group = [
        envelope(feed_id, {"externalId": "A", "retailPrice": "105.29 USD", "name": "n"},
                 message_id="a1"),
        envelope(feed_id, {"externalId": "A", "inventoryQuantity": 4}, message_id="a2"),
        envelope(feed_id, {"externalId": "B", "retailPrice": 3, "currency": "eur"},
                 message_id="a1"),  # the same id again in one group: a repeat
    ]
    report = await apply_group(pool, settings, group)
    assert [e.fate for e in group] == [Fate.APPLIED, Fate.APPLIED, Fate.REPEAT]
    assert report.items == 1
    got = await feeds.items(pool, feed_id)
    assert set(got) == {"A"}
    a = got["A"]
    assert (a["retail_price"], a["currency"], a["name"], a["inventory_quantity"]) == \
        (Decimal("105.29"), "USD", "n", 4)
    again = [envelope(feed_id, {"externalId": "A", "inventoryQuantity": 9}, message_id="a2")]
    await apply_group(pool, settings, again)
    assert again[0].fate is Fate.REPEAT
    assert (await feeds.items(pool, feed_id))["A"]["inventory_quantity"] == 4
    run = await pool.fetchrow("SELECT * FROM feed_runs WHERE kind = 'push'")
    assert run is not None
    assert (run["rows_read"], run["inserted"], run["duplicates"]) == (2, 1, 1)
