"""The push and pull work the Citus scale test runs against a database, and what it
compares afterwards: the same messages and files give the same tables on one Postgres
and on the cluster."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from tests.bench import pushgen
from tests.support import feeds
from worker.pipeline.push import Envelope, apply_group
from worker.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# Columns that depend on when something ran (now(), clock_timestamp()) or on the ids a
# node hands out, left out of the comparison; every other column is compared.
ITEM_COLUMNS = (
    "external_id", "vendor_sku", "barcode", "name", "inventory_quantity", "inventory_policy",
    "retail_price", "cost_price", "compare_at_price", "grams", "mpn", "external_group_id",
    "options", "images", "extra", "currency", "variant_id", "inventory_quantity_override",
    "available", "fingerprint", "missing_since IS NOT NULL AS missing", "ordered_at",
)  # fmt: skip
# ordered_at comes from the messages' times for pushed items, and from the run's start for
# pulled ones: compared only where a push set it. (inventory_updated_at is now() for
# these variants, which carry no inventoryUpdatedAt: never compared.)
RUN_COLUMNS = (
    "kind", "status", "rows_read", "inserted", "updated", "unchanged", "rejected",
    "duplicates", "zeroed", "connected", "ambiguous", "skipped", "error",
)  # fmt: skip


def settings_for(dsn: str) -> Settings:
    return replace(Settings(), database_url=dsn, http_port=0, scheduler=False,
                   worker_id=f"scale-{uuid.uuid4().hex[:6]}", lease_s=60.0)


@dataclass(frozen=True)
class Feeds:
    pulled: int      # a CSV feed, cleanup on
    pushed: int      # a webhook feed
    limited: int     # a webhook feed whose provider has a daily SKU limit


async def make_feeds(pool: asyncpg.Pool) -> Feeds:
    pulled = await feeds.make_feed(pool, None, fetch_cleanup="enabled")
    pushed = await feeds.make_feed(pool, None, resource_type="webhook")
    limited = await feeds.make_feed(pool, None, resource_type="webhook")
    await pool.execute("UPDATE dropship_providers SET daily_sku_limit = 150 WHERE id = "
                       "(SELECT dropship_provider_id FROM inventory_feeds WHERE id = $1)",
                       limited)
    # store variants for the connecting step: a few SKUs of the pushed items, one twice
    skus = [pushgen.variant(k)["vendorSku"] for k in range(0, 400, 7)]
    await pool.executemany("INSERT INTO variants (sku) VALUES ($1)",
                           [(s,) for s in [*skus, skus[0]]])
    return Feeds(pulled, pushed, limited)


def pull_files(directory: Path, rows: int) -> list[Path]:
    """Two pulls of one feed: the second changes some rows, drops some (cleanup zeroes
    them) and adds some; both carry rows that are rejected and duplicate keys."""
    directory.mkdir(parents=True, exist_ok=True)
    header = "external_id,vendor_sku,barcode,name,retail_price,inventory_quantity,grams\n"
    first, second = directory / "pull1.csv", directory / "pull2.csv"
    with first.open("w") as f:
        f.write(header)
        for i in range(rows):
            f.write(f"P{i:07d},PS-{i % 9973},{10**12 + i},Item {i},{i % 500}.25,{i % 40},"
                    f"{i % 7}\n")
            if i % 997 == 0:
                f.write(f"P{i:07d},PS-{i},,Item {i} again,1.00,{i % 11},0\n")  # duplicate
            if i % 1499 == 0:
                f.write(f"Q{i:07d},x,,bad,not-a-price,many,0\n")  # rejected
    with second.open("w") as f:
        f.write(header)
        for i in range(rows // 20, rows + rows // 20):  # first 5% gone, 5% new
            qty = i % 40 + (3 if i % 5 == 0 else 0)
            f.write(f"P{i:07d},PS-{i % 9973},{10**12 + i},Item {i},{i % 500}.25,{qty},"
                    f"{i % 7}\n")
            if i % 1201 == 0:
                f.write(f"Q{i:07d},x,,bad,1.00,-what,0\n")
    return [first, second]


async def pull(pool: asyncpg.Pool, settings: Settings, feed_id: int, path: Path
               ) -> dict[str, Any]:
    return await feeds.pull_once(pool, settings, feed_id, path.as_uri(), force=True,
                                 local_files=True)


def push_groups(f: Feeds, messages: int, per_message: int, group: int
                ) -> list[list[tuple[bytes, str, datetime]]]:
    """Feed-update messages (body, message id, order time) in the groups the daemon would
    fold: pushgen's items for the pushed feed, some rejected variants, a repeated message,
    an older update that arrives late (stale), and a burst for the daily limit's feed."""
    bodies = pushgen.bodies(f.pushed, messages, per_message)
    out: list[tuple[bytes, str, datetime]] = []
    for n, body in enumerate(bodies):
        out.append((body, f"m{n}", T0 + timedelta(seconds=n)))
    bad = orjson.dumps({"feedId": f.pushed, "variants": [
        {"externalId": "BAD1", "inventoryQuantity": "lots"},
        {"inventoryQuantity": 3},
        {"externalId": pushgen.external_id(1), "inventoryQuantity": 77},
    ]})
    out.append((bad, "bad", T0 + timedelta(seconds=messages + 1)))
    out.append((bodies[0], "m0", T0 + timedelta(seconds=messages + 2)))  # a repeat
    stale = orjson.dumps({"feedId": f.pushed, "variants": [
        {"externalId": pushgen.external_id(2), "inventoryQuantity": 1}]})
    out.append((stale, "stale", T0 - timedelta(days=1)))
    limited = orjson.dumps({"feedId": f.limited, "variants": [
        {"externalId": f"L{i:04d}", "vendorSku": f"LS{i}", "inventoryQuantity": i % 9}
        for i in range(200)]})
    out.append((limited, "limited", T0))
    return [out[i:i + group] for i in range(0, len(out), group)]


async def push(pool: asyncpg.Pool, settings: Settings,
               groups: list[list[tuple[bytes, str, datetime]]]) -> int:
    """The groups applied in order, as the consumer applies its micro-batches; the
    variants applied."""
    items = 0
    for g in groups:
        report = await apply_group(pool, settings, [Envelope(b, m, at) for b, m, at in g])
        items += report.items
    return items


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    """What the two databases must agree on, by feed and key (not by generated ids)."""
    items = await pool.fetch(
        f"SELECT inventory_feed_id, {', '.join(ITEM_COLUMNS)} FROM inventory_feed_variants "
        "ORDER BY inventory_feed_id, external_id")
    pushed = {r["inventory_feed_id"] for r in await pool.fetch(
        "SELECT DISTINCT inventory_feed_id FROM feed_runs WHERE kind = 'push'")}
    # A feed's push runs are one a minute: summed, so that a minute boundary falling
    # between two groups on one database and not on the other changes nothing.
    counts = RUN_COLUMNS[2:-1]
    runs = await pool.fetch(
        f"SELECT inventory_feed_id, {', '.join(RUN_COLUMNS)} FROM feed_runs "
        "WHERE kind <> 'push' UNION ALL "
        "SELECT inventory_feed_id, kind, status, "
        + ", ".join(f"sum({c})::int" for c in counts)
        + ", error FROM feed_runs WHERE kind = 'push' "
        "GROUP BY inventory_feed_id, kind, status, error ORDER BY "
        + ", ".join(str(i) for i in range(1, len(RUN_COLUMNS) + 1)))
    # (joined here: on one Postgres a reject names only its run)
    run_of = {r["id"]: (r["inventory_feed_id"], r["kind"])
              for r in await pool.fetch("SELECT id, inventory_feed_id, kind FROM feed_runs")}
    rejects = sorted(
        (*run_of[r["run_id"]], r["position"], r["message_id"] or "", r["raw"] or "",
         r["reason"])
        for r in await pool.fetch(
            "SELECT run_id, position, message_id, raw, reason FROM feed_run_rejects"))
    history = await pool.fetch(
        "SELECT h.inventory_feed_id, v.external_id, h.action_type, h.old_quantity, "
        "h.new_quantity, h.old_retail_price, h.new_retail_price "
        "FROM variant_inventory_updates h "
        "JOIN inventory_feed_variants v ON v.id = h.inventory_feed_variant_id "
        "AND v.inventory_feed_id = h.inventory_feed_id ORDER BY 1, 2, 3, 4, 5, 6, 7")
    daily = await pool.fetch(
        "SELECT inventory_feed_id, external_id FROM provider_daily_items ORDER BY 1, 2")

    def item(r: asyncpg.Record) -> tuple[Any, ...]:
        row = dict(r)
        if r["inventory_feed_id"] not in pushed:  # pulled: stamped with now()
            row["ordered_at"] = None
        return tuple(row.values())

    return {"items": [item(r) for r in items],
            "runs": [tuple(r.values()) for r in runs],
            "rejects": rejects,
            "history": [tuple(r.values()) for r in history],
            "daily": [tuple(r.values()) for r in daily]}
