"""The CSV benchmark's feed (feed1.csv) written again as XML and as JSON, plus gzip'd copies
(in gzip/ beside them).

Same items, same order: each file is made from feedgen's feed1.csv of the same rows and
seed, row by row, so `db.read_sample(feed1.csv)` is also the sample of the XML and JSON
imports. Files are reused from disk when current (same rows, seed, source size, version).

  feed1.xml   <feed><items><item><id>..</id><sku>..</sku><barcode>..</barcode><name>..</name>
              <price>..</price><compare>..</compare><qty>..</qty><grams>..</grams></item>
              ...</items></feed>; a blank barcode is an empty element, a blank
              compare_at_price no element at all
  feed1.json  {"data": {"items": [{"id": "..", "sku": "..", "barcode": ".." | null,
              "name": "..", "price": 1.23, "compare": 4.56 | null,
              "stock": {"available": 7}, "grams": 89.5}, ...]}}
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from tests.bench import feedgen

# Bump when the generated content changes, so files on disk from older code are rewritten.
FORMAT_VERSION = 1
BLOCK_ROWS = 20_000
GZIP_LEVEL = 6
COPY_CHUNK = 1 << 20

XML_RECORD = "/feed/items/item"
XML_TAG = "item"
JSON_RECORD = "data.items"
JSON_PREFIX = "data.items.item"  # ijson's prefix of one record

XML_MAPPING = {
    "record": XML_RECORD,
    "fields": {
        "externalId": "id",
        "vendorSku": "sku",
        "barcode": "barcode",
        "name": "name",
        "retailPrice": "price",
        "compareAtPrice": "compare",
        "inventoryQuantity": "qty",
        "grams": "grams",
    },
}
JSON_MAPPING = {
    "record": JSON_RECORD,
    "fields": {
        "externalId": "id",
        "vendorSku": "sku",
        "barcode": "barcode",
        "name": "name",
        "retailPrice": "price",
        "compareAtPrice": "compare",
        "inventoryQuantity": "stock.available",
        "grams": "grams",
    },
}

_XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<feed>\n  <items>\n'
_XML_FOOT = "  </items>\n</feed>\n"
_JSON_HEAD = '{"data": {"items": [\n'
_JSON_FOOT = "\n]}}\n"

Row = list[str]  # external_id, vendor_sku, barcode, name, price, compare, quantity, grams


@dataclass(frozen=True)
class FormatFiles:
    """The XML and JSON files of one seed and row count; `*_gz` are None when not asked for."""

    csv: Path
    xml: Path
    json: Path
    xml_gz: Path | None
    json_gz: Path | None
    rows: int


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def _is_current(path: Path, meta: dict[str, int]) -> bool:
    meta_file = _meta_path(path)
    if not path.exists() or not meta_file.exists():
        return False
    return bool(json.loads(meta_file.read_text()) == {**meta, "bytes": path.stat().st_size})


def _write_meta(path: Path, meta: dict[str, int]) -> None:
    _meta_path(path).write_text(json.dumps({**meta, "bytes": path.stat().st_size}))


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _blocks(path: Path) -> Iterator[list[Row]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        if tuple(header) != feedgen.COLUMNS:
            raise ValueError(f"{path}: unexpected header {header}")
        while block := list(itertools.islice(reader, BLOCK_ROWS)):
            yield block


def _cached(convert: Callable[[str], str]) -> Callable[[str], str]:
    """`convert` remembered per name: names come from a pool of 65,536."""
    seen: dict[str, str] = {}

    def get(text: str) -> str:
        found = seen.get(text)
        if found is None:
            found = seen[text] = convert(text)
        return found

    return get


def _xml_block(block: list[Row], name_of: Callable[[str], str]) -> str:
    out: list[str] = []
    append = out.append
    for ext, sku, barcode, name, price, compare, qty, grams in block:
        code = f"<barcode>{barcode}</barcode>" if barcode else "<barcode/>"
        comp = f"<compare>{compare}</compare>" if compare else ""
        append(
            f"    <item><id>{ext}</id><sku>{sku}</sku>{code}<name>{name_of(name)}</name>"
            f"<price>{price}</price>{comp}<qty>{qty}</qty><grams>{grams}</grams></item>\n"
        )
    return "".join(out)


def _json_block(block: list[Row], name_of: Callable[[str], str]) -> str:
    out: list[str] = []
    append = out.append
    for ext, sku, barcode, name, price, compare, qty, grams in block:
        code = f'"{barcode}"' if barcode else "null"
        append(
            f'{{"id": "{ext}", "sku": "{sku}", "barcode": {code}, "name": {name_of(name)}, '
            f'"price": {price}, "compare": {compare or "null"}, '
            f'"stock": {{"available": {qty}}}, "grams": {grams}}}'
        )
    return ",\n".join(out)


def _write_both(source: Path, xml_path: Path, json_path: Path) -> int:
    """One pass over the CSV writing both files (each through a .tmp); returns the rows."""
    xml_name = _cached(escape)
    json_name = _cached(lambda s: json.dumps(s, ensure_ascii=False))
    xml_tmp, json_tmp = _tmp(xml_path), _tmp(json_path)
    rows = 0
    with xml_tmp.open("w", encoding="utf-8") as xf, json_tmp.open("w", encoding="utf-8") as jf:
        xf.write(_XML_HEAD)
        jf.write(_JSON_HEAD)
        for block in _blocks(source):
            xf.write(_xml_block(block, xml_name))
            jf.write((",\n" if rows else "") + _json_block(block, json_name))
            rows += len(block)
        xf.write(_XML_FOOT)
        jf.write(_JSON_FOOT)
    xml_tmp.replace(xml_path)
    json_tmp.replace(json_path)
    return rows


def _gzip(source: Path, target: Path) -> None:
    """zlib releases the GIL: two of these run side by side on two cores."""
    tmp = _tmp(target)
    with source.open("rb") as src, gzip.open(tmp, "wb", compresslevel=GZIP_LEVEL) as dst:
        shutil.copyfileobj(src, dst, COPY_CHUNK)
    tmp.replace(target)


def ensure_formats(
    csv_files: feedgen.FeedFiles, seed: int, *, gzipped: bool
) -> tuple[FormatFiles, bool]:
    """Write feed1.xml and feed1.json (and .gz copies) beside `csv_files.base` unless current.

    Returns the files and whether any was (re)written.
    """
    source = csv_files.base
    directory = source.parent
    meta = {
        "version": FORMAT_VERSION,
        "rows": csv_files.rows,
        "seed": seed,
        "source_bytes": source.stat().st_size,
    }
    xml_path, json_path = directory / "feed1.xml", directory / "feed1.json"
    # Not beside the plain files: aiohttp's FileResponse serves `X.gz` in place of a
    # requested `X` (Content-Encoding: gzip) to a client that accepts gzip, as the worker does.
    packed_dir = directory / "gzip"
    xml_gz = packed_dir / "feed1.xml.gz" if gzipped else None
    json_gz = packed_dir / "feed1.json.gz" if gzipped else None
    files = FormatFiles(source, xml_path, json_path, xml_gz, json_gz, csv_files.rows)
    made = False
    if not (_is_current(xml_path, meta) and _is_current(json_path, meta)):
        rows = _write_both(source, xml_path, json_path)
        if rows != csv_files.rows:
            raise ValueError(f"{source} holds {rows} rows, not {csv_files.rows}")
        _write_meta(xml_path, meta)
        _write_meta(json_path, meta)
        made = True
    pending = [
        (plain, packed)
        for plain, packed in ((xml_path, xml_gz), (json_path, json_gz))
        if packed is not None and (made or not _is_current(packed, meta))
    ]
    if pending:
        packed_dir.mkdir(exist_ok=True)
        with ThreadPoolExecutor(max_workers=len(pending)) as pool:
            for future in [pool.submit(_gzip, plain, packed) for plain, packed in pending]:
                future.result()
        for _, packed in pending:
            _write_meta(packed, meta)
        made = True
    return files, made
