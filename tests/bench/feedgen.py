"""Seeded generation of the benchmark's CSV feeds, reused from disk when already written."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

HEADER = (
    "external_id,vendor_sku,barcode,name,retail_price,compare_at_price,inventory_quantity,grams"
)
COLUMNS = tuple(HEADER.split(","))
# Bump when the generated content changes, so files on disk from older code are rewritten.
FORMAT_VERSION = 2
BLOCK_ROWS = 20_000
NAME_POOL = 1 << 16

_ADJECTIVES = (
    "Classic", "Organic", "Deluxe", "Vintage", "Slim", "Heavy-duty", "Compact", "Premium",
    "Eco", "Wireless", "Stainless", "Handmade", "Waterproof", "Soft", "Café", "Nordic",
)  # fmt: skip
_NOUNS = (
    "Mug", "T-Shirt", "Backpack", "Lamp", "Notebook", "Kettle", "Sneaker", "Blanket",
    "Headphones", "Planter", "Wallet", "Jacket", "Cutting Board", "Water Bottle", "Scarf",
    "Desk Organizer", "Candle", "Frying Pan", "Yoga Mat", "Phone Case",
)  # fmt: skip
_COLOURS = ("Black", "White", "Navy", "Olive", "Red", "Grey", "Sand", "Teal")
_SIZES = ("XS", "S", "M", "L", "XL", "XXL")


@dataclass(frozen=True)
class FeedFiles:
    """The generated files of one seed and row count; `changed` rows differ in `updated`."""

    base: Path
    updated: Path | None
    rows: int
    changed: int


def _csv_field(text: str) -> str:
    if "," in text or '"' in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _name(rng: random.Random) -> str:
    roll = rng.random()
    noun = rng.choice(_NOUNS)
    name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_ADJECTIVES)} {noun} {rng.choice(_COLOURS)}"
    if roll < 0.06:
        name = f"{name}, size {rng.choice(_SIZES)}"  # a comma: the field gets quoted
    elif roll < 0.09:
        name = f'{rng.randint(8, 24)}" {noun}, {rng.choice(_COLOURS)}'  # quotes inside quotes
    elif roll < 0.10:
        name = f'"{name}" edition'
    return f"{name} - model {rng.randint(100, 9999)}"


def _generate_lines(rows: int, seed: int, key_prefix: str) -> list[str]:
    """The CSV lines of `rows` items, by key index."""
    rng = random.Random(seed)
    # A pool of names and only rng.random() per row: randrange() would double the run time.
    names = [_csv_field(_name(rng)) for _ in range(NAME_POOL)]
    rand = rng.random
    lines: list[str] = []
    append = lines.append
    for i in range(rows):
        sku = int(rand() * 0x100000000)
        barcode = "" if rand() < 0.05 else 10**12 + int(rand() * 9 * 10**12)
        name = names[int(rand() * NAME_POOL)]
        cents = 100 + int(rand() * 99_900)
        compare = "" if rand() < 0.30 else _money(cents + 100 + int(rand() * 4_900))
        qty = int(rand() * 500)
        grams = int(rand() * 5_000)
        half = ".5" if rand() < 0.1 else ""
        append(
            f"{key_prefix}{i:08d},VS-{sku:08X},{barcode},{name},"
            f"{cents // 100}.{cents % 100:02d},{compare},{qty},{grams}{half}\n"
        )
    return lines


def _change(line: str, rng: random.Random) -> str:
    """The line with a higher quantity and, half of the time, a higher price."""
    head, price, compare, qty, grams = line.rsplit(",", 4)
    if rng.random() < 0.5:
        price = _money(round(float(price) * 100) + 1 + int(rng.random() * 500))
    return f"{head},{price},{compare},{int(qty) + 1 + int(rng.random() * 50)},{grams}"


def _shuffled(rows: int, rng: random.Random) -> list[int]:
    # Sorting by random keys: several times faster than random.shuffle() on 1M items.
    keys = [rng.random() for _ in range(rows)]
    return sorted(range(rows), key=keys.__getitem__)


def _write(path: Path, lines: list[str], order: list[int]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        f.write(HEADER + "\n")
        for start in range(0, len(order), BLOCK_ROWS):
            f.write("".join([lines[i] for i in order[start : start + BLOCK_ROWS]]))
    tmp.replace(path)


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def _is_current(path: Path, meta: dict[str, int]) -> bool:
    meta_file = _meta_path(path)
    if not path.exists() or not meta_file.exists():
        return False
    return bool(json.loads(meta_file.read_text()) == {**meta, "bytes": path.stat().st_size})


def _write_meta(path: Path, meta: dict[str, int]) -> None:
    _meta_path(path).write_text(json.dumps({**meta, "bytes": path.stat().st_size}))


def ensure_feed(
    directory: Path, rows: int, seed: int, *, with_update: bool, changed_share: float
) -> tuple[FeedFiles, bool]:
    """Write `<rows>-s<seed>/feed1.csv` (and `feed2.csv`) unless current files exist.

    Returns the files and whether they were (re)generated. feed2.csv has the same keys in
    another random order; `changed_share` of its rows differ in quantity and/or price.
    feed1.csv depends only on rows and seed, so a run without feed2.csv can share it.
    """
    directory = directory / f"{rows}-s{seed}"
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / "feed1.csv"
    updated = directory / "feed2.csv" if with_update else None
    changed = round(rows * changed_share) if with_update else 0
    base_meta = {"version": FORMAT_VERSION, "rows": rows, "seed": seed}
    update_meta = {**base_meta, "changed": changed}
    files = FeedFiles(base, updated, rows, changed)
    if _is_current(base, base_meta) and (updated is None or _is_current(updated, update_meta)):
        return files, False

    lines = _generate_lines(rows, seed, key_prefix=f"S{seed % 100:02d}-")
    rng = random.Random(seed + 1)
    _write(base, lines, _shuffled(rows, rng))
    _write_meta(base, base_meta)
    if updated is not None:
        for i in rng.sample(range(rows), changed):
            lines[i] = _change(lines[i], rng)
        _write(updated, lines, _shuffled(rows, rng))
        _write_meta(updated, update_meta)
    return files, True


RULES_EXTRA = ("stock_b", "stock_c")


def _gtin13(barcode: str) -> str:
    """The 13-digit number with its last digit made a valid GTIN check digit."""
    body = barcode[:12]
    total = sum(int(d) * (1 if k % 2 == 0 else 3) for k, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def ensure_rules_feed(base: Path) -> tuple[Path, bool]:
    """`feed-rules.csv` beside `base` (feed1.csv): the same items with valid GTIN-13
    barcodes and each quantity split over three warehouse columns (inventory_quantity,
    stock_b, stock_c, which sum to the original), for the value rules' runs."""
    path = base.with_name("feed-rules.csv")
    meta = {"version": FORMAT_VERSION, "source_bytes": base.stat().st_size}
    if _is_current(path, meta):
        return path, False
    tmp = path.with_suffix(".tmp")
    with base.open(newline="", encoding="utf-8") as src, \
            tmp.open("w", newline="", encoding="utf-8") as out:
        reader = csv.reader(src)
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*next(reader), *RULES_EXTRA])
        for row in reader:
            if row[2]:
                row[2] = _gtin13(row[2])
            qty = int(row[6])
            b, c = qty // 3, qty // 4
            row[6] = str(qty - b - c)
            writer.writerow([*row, str(b), str(c)])
    tmp.replace(path)
    _write_meta(path, meta)
    return path, True
