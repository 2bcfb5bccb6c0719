"""One way of reading a JSON feed file, timed in CPU seconds: the child of json_paths.py.

Usage: python -I json_alone.py MODE FILE

  old      JsonRecords without the fast path (ijson reads everything), rows built
  new      JsonRecords as a pull runs it: the fast path (msgspec) for a top-level array or
           lines, rows built
  ijson    ijson.items alone (prefix `item`, or every value of newline-delimited JSON),
           each record built and dropped
  msgspec  the fast path's parsing alone: a top-level array's runs cut (with the guard that
           tracks the nesting) and decoded, or the lines decoded one by one; each record
           built and dropped

The file is read in 1 MiB chunks, as a download arrives; the mapping is the formats
benchmark's (eight attributes, one of them nested). The cyclic garbage collector is off, as
in the worker while it parses. Prints `records N rows R errors E cpu S fast F`; run through
measure_child.py, which reads the peak RSS.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

CHUNK = 1 << 20
FIELDS = {
    "externalId": "id", "vendorSku": "sku", "barcode": "barcode", "name": "name",
    "retailPrice": "price", "compareAtPrice": "compare", "inventoryQuantity": "stock.available",
    "grams": "grams",
}


def chunks(path: str) -> Any:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def records(path: str, fast: bool) -> tuple[int, int, int, bool]:
    from worker.feedmapping import parse_mapping
    from worker.parsers.json import JsonRecords

    mapping = {"auto": False, "fields": FIELDS}
    if path.endswith(".ndjson"):
        mapping["format"] = "ndjson"
    parser = JsonRecords(parse_mapping(mapping, "json"), fast=fast)
    rows = errors = 0
    for chunk in chunks(path):
        batch = parser.feed(chunk)
        rows, errors = rows + len(batch.rows), errors + len(batch.errors)
    batch = parser.close()
    rows, errors = rows + len(batch.rows), errors + len(batch.errors)
    return parser.records, rows, errors, parser.on_fast_path


def ijson_alone(path: str) -> int:
    import ijson  # type: ignore[import-untyped]

    ndjson = path.endswith(".ndjson")
    count = 0
    with open(path, "rb") as f:
        for _ in ijson.items(f, "" if ndjson else "item", multiple_values=ndjson):
            count += 1
    return count


def msgspec_alone(path: str) -> int:
    from worker.parsers.jsonchunk import ArrayRuns, decode_lines
    from worker.parsers.jsonstream import Guard

    count = 0
    if path.endswith(".ndjson"):
        rest = b""
        for chunk in chunks(path):
            block = rest + chunk
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            count += len(decode_lines(block[:cut].split(b"\n")) or ())
        return count + len(decode_lines([rest]) or ())
    guard, runs = Guard(), None
    for chunk in chunks(path):
        if runs is None:
            chunk = chunk.lstrip()
            runs = ArrayRuns(0)
        guard.check(chunk)
        count += len(runs.feed(chunk, guard.depth, guard.in_string, guard.lowest))
    return count


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("old", "new", "ijson", "msgspec"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, path = argv
    gc.disable()
    start = time.process_time()
    fast = False
    if mode in ("old", "new"):
        count, rows, errors, fast = records(path, fast=mode == "new")
    else:
        count = (ijson_alone if mode == "ijson" else msgspec_alone)(path)
        rows, errors = count, 0
    cpu = time.process_time() - start
    print(f"records {count} rows {rows} errors {errors} cpu {cpu:.3f} fast {fast}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
