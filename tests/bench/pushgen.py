"""Generated feed-update messages for the push benchmark, and what the table holds after them.

Item k (0 <= k < messages * variants) goes into message k // variants. Items with an even k
already exist (the seed, with another quantity): a message carries existing and new items
interleaved, half and half. External ids are a bijection of k scrambled over 32 bits, so
neither the messages nor the seed arrive in key order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

import orjson

SCRAMBLE = 2654435761  # odd: k -> k * SCRAMBLE mod 2**32 is a bijection
SEED_UPDATED_AT = "2024-01-01 00:00:00+00"
SAMPLE_SIZE = 4_000
NULL = "\\N"  # COPY text format

# external_id -> (vendor_sku, barcode, name, quantity, policy, retail, compare_at, grams)
Expected = tuple[str, str, str, int, str, Decimal, Decimal | None, Decimal]


def external_id(k: int) -> str:
    return f"V{(k * SCRAMBLE) % 2**32:08x}"


def quantity(k: int) -> int:
    """The quantity the messages carry (the final one)."""
    return (k * 37 + 11) % 1000


def seed_quantity(k: int) -> int:
    """The quantity an existing item has before the messages: always another one."""
    return (quantity(k) + 500) % 1000


def exists(k: int) -> bool:
    return k % 2 == 0


def _fields(k: int) -> tuple[str, str, str, str, str | None, int]:
    h = (k * SCRAMBLE) % 2**32
    sku = f"S{h:08x}"
    barcode = f"{(h * 7919) % 10**13:013d}"
    name = f"Tee {h % 9973} blue M"
    retail = f"{(k % 9000 + 100) / 100:.2f}"
    compare = None if k % 10 < 3 else "15.00"
    grams = 100 + k % 900
    return sku, barcode, name, retail, compare, grams


def variant(k: int) -> dict[str, object]:
    sku, barcode, name, retail, compare, grams = _fields(k)
    return {
        "externalId": external_id(k),
        "vendorSku": sku,
        "barcode": barcode,
        "name": name,
        "inventoryQuantity": quantity(k),
        "retailPrice": retail,
        "compareAtPrice": compare,
        "grams": grams,
        "inventoryPolicy": "track",
    }


def bodies(feed_id: int, messages: int, per_message: int) -> list[bytes]:
    """The feed-update bodies, in publishing order."""
    return [
        orjson.dumps(
            {
                "feedId": feed_id,
                "variants": [variant(m * per_message + i) for i in range(per_message)],
            }
        )
        for m in range(messages)
    ]


def seed_lines(feed_id: int, items: int) -> Iterator[str]:
    """COPY text lines of the existing items (columns: SEED_COLUMNS), older quantities."""
    for k in range(items):
        if not exists(k):
            continue
        sku, barcode, name, retail, compare, grams = _fields(k)
        compare_text = compare if compare is not None else NULL
        yield (
            f"{feed_id}\t{external_id(k)}\t{sku}\t{barcode}\t{name}\t{seed_quantity(k)}\t"
            f"track\t{retail}\t{compare_text}\t{grams}\t{SEED_UPDATED_AT}\n"
        )


SEED_COLUMNS = [
    "inventory_feed_id",
    "external_id",
    "vendor_sku",
    "barcode",
    "name",
    "inventory_quantity",
    "inventory_policy",
    "retail_price",
    "compare_at_price",
    "grams",
    "inventory_updated_at",
]


def expected(k: int) -> Expected:
    sku, barcode, name, retail, compare, grams = _fields(k)
    return (
        sku,
        barcode,
        name,
        quantity(k),
        "track",
        Decimal(retail),
        Decimal(compare) if compare is not None else None,
        Decimal(grams),
    )


@dataclass(frozen=True)
class Totals:
    items: int
    existing: int
    quantity_sum: int


@cache
def totals(items: int) -> Totals:
    existing = sum(1 for k in range(items) if exists(k))
    return Totals(items, existing, sum(quantity(k) for k in range(items)))


def sample(items: int) -> dict[str, Expected]:
    """About SAMPLE_SIZE items spread over all of them, existing and new alike (odd stride)."""
    stride = max(1, items // SAMPLE_SIZE) | 1
    return {external_id(k): expected(k) for k in range(0, items, stride)}
